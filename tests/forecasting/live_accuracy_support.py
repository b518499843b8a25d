"""A stale and a fresh model version of a test's own, with forecasts stored for days whose real actuals exist.

Both versions are the median(store, weekday, promo) baseline on 30 real Rossmann stores, stored as batch
forecasts of the 48 days 2015-04-26 .. 2015-06-12 (cutoff 2015-04-25), whose actuals are in the shared data:

* version 1 ("fresh"): fitted on the history up to the cutoff; its backtest is the same method fitted up to
  2015-03-08 and scored on the next 48 days;
* version 2 ("stale", written last, so the current version): fitted on the history up to 2013-06-30 only, two
  years before the days it forecasts; its backtest is on the 48 days after 2013-06-30, where it was good.

The versions are registered under the test's model name in the real MLflow with their backtest RMSPEs as the
``backtest_rmspe`` tag (as the champion gate tags them). Tables (sales, stores, forecasts, accuracy) and the
model name are the test's own: :func:`cleanup` removes them.
"""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd

CUTOFF = pd.Timestamp("2015-04-25")
DAYS = 48
STORES = list(range(1, 31))
STALE_END = pd.Timestamp("2013-06-30")
FRESH_BACKTEST_END = pd.Timestamp("2015-03-08")


def isolated(base: Any) -> Any:  # app.config.Settings
    """``base`` with every table (migrated; the daily DAG's retraining cool-down reads the jobs table) and a model
    name of this test."""
    from isolated_support import isolated_settings

    tag = uuid.uuid4().hex[:8]
    return isolated_settings(
        base,
        "tacc",
        model_name=f"test-accuracy-{tag}",
        mlflow_experiment=f"sfmlops-test-accuracy-{tag}",
        accuracy_drift_margin=0.2,
        accuracy_drift_days=5,
    )


def cleanup(settings: Any) -> None:
    """Drop the test's tables (and the views/sequences that go with them), its registered model and its runs."""
    import contextlib

    from isolated_support import drop_isolated

    drop_isolated(settings)
    with contextlib.suppress(Exception):
        from mlflow import MlflowClient

        from app.forecasting.tracking import configure_mlflow

        configure_mlflow(settings)
        client = MlflowClient()
        client.delete_registered_model(settings.model_name)
        exp = client.get_experiment_by_name(settings.mlflow_experiment)
        if exp is not None:
            for run in client.search_runs([exp.experiment_id]):
                client.delete_run(run.info.run_id)
            client.delete_experiment(exp.experiment_id)


def _median(long: pd.DataFrame, history_end: pd.Timestamp, start: pd.Timestamp) -> pd.DataFrame:
    from app.forecasting.baselines import median_store_weekday_promo

    hist = long[long["ds"] <= history_end]
    fut = long[(long["ds"] >= start) & (long["ds"] < start + pd.Timedelta(days=DAYS))]
    return median_store_weekday_promo(hist, fut)


def build(settings: Any, sales: pd.DataFrame, stores: pd.Series | None = None) -> dict[str, Any]:
    """Load the actuals, register both versions (each with a run of its backtest metrics and breakdown, store
    types from ``stores``), store their forecasts (fresh first, stale last).

    Returns:
        ``{"fresh": {...}, "stale": {...}}`` with each version's number, backtest RMSPE and the frame of its
        stored forecasts (``unique_id, ds, y, yhat, horizon``).
    """
    import mlflow
    from mlflow import MlflowClient

    from app.data.load import load_sales_table
    from app.forecasting import metrics as M
    from app.forecasting.batch import write_forecasts
    from app.forecasting.evaluate import breakdown, breakdown_metrics
    from app.forecasting.features import to_long
    from app.forecasting.registry import RMSPE_TAG
    from app.forecasting.tracking import configure_mlflow

    sales = sales[sales["store"].isin(STORES)]
    long = to_long(sales)
    actual_days = sales[(sales["date"] > CUTOFF) & (sales["date"] <= CUTOFF + pd.Timedelta(days=DAYS))]
    load_sales_table(settings, actual_days)
    configure_mlflow(settings)
    client = MlflowClient()
    client.create_registered_model(settings.model_name)
    experiment = mlflow.set_experiment(settings.mlflow_experiment).experiment_id
    out: dict[str, Any] = {}
    for label, history_end, backtest_end in (("fresh", CUTOFF, FRESH_BACKTEST_END), ("stale", STALE_END, STALE_END)):
        backtest = _median(long, backtest_end, backtest_end + pd.Timedelta(days=1))
        bt_rmspe = M.rmspe(backtest["y"], backtest["yhat"])
        backtest["cutoff"] = backtest_end
        readable = breakdown(backtest, stores)
        with mlflow.start_run(experiment_id=experiment, run_name=f"{label}-median") as run:
            mlflow.log_metrics({RMSPE_TAG: bt_rmspe, **breakdown_metrics(readable, f"h{DAYS}.median")})
        mv = client.create_model_version(settings.model_name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                         tags={RMSPE_TAG: f"{bt_rmspe:.6f}"})
        pred = _median(long, history_end, CUTOFF + pd.Timedelta(days=1))
        pred["horizon"] = (pred["ds"] - CUTOFF).dt.days
        rows = pred.rename(columns={"unique_id": "store", "ds": "date", "yhat": "value"})
        rows = rows.assign(lower=rows["value"], upper=rows["value"])
        write_forecasts(settings, rows, {"model_name": settings.model_name, "model_version": str(mv.version), "run_id": f"test-{label}"})
        out[label] = {"version": str(mv.version), "backtest_rmspe": round(bt_rmspe, 6), "frame": pred}
    return out
