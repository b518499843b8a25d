"""Forecasting: features, baselines, models, backtest, metrics, registry (champion gate), batch forecast,
evaluation.

Entry points for the CLI, the Ray jobs and the benchmark:

* :func:`app.forecasting.pipeline.train` - backtest models vs baselines, fit, log to MLflow, register, gate;
* :func:`app.forecasting.batch.forecast` - the champion's forecasts for the next N days into the forecasts table;
* :func:`app.forecasting.evaluate.evaluate` - score the champion on a Kaggle-format actuals file.

Nothing here connects to a service at import time.
"""
