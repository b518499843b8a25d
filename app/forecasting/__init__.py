"""Forecasting: features, baselines, models, the training plan and its executors (in-process or Ray tasks),
backtest, metrics, MLflow tracking, registry (scopes and the champion gate), batch forecast, evaluation.

Entry points for the CLI, the Ray jobs and the benchmark:

* :func:`app.forecasting.pipeline.train` - the stages load -> plan -> backtest -> select -> refit -> log ->
  register/gate, configured by :class:`app.forecasting.pipeline.TrainConfig`;
* :func:`app.forecasting.batch.forecast` - the champion's forecasts for the next N days into the forecasts table;
* :func:`app.forecasting.evaluate.evaluate` - score the champion on a Kaggle-format actuals file.

Nothing here connects to a service at import time.
"""
