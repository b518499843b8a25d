"""Ray job: retrain and re-forecast one store.

Backtests models trained on that store's history alone against the baselines (fanned out as Ray tasks),
logs the run to MLflow
(tag ``scope=stores:<id>``; the registry and its champion alias are left alone) and writes the store's
forecasts for the next ``--days`` days to the forecasts table with version ``run-<run id>``::

    ray job submit --working-dir . -- python ray_cluster/jobs/train_store.py --store 7
"""

from __future__ import annotations

import argparse

from _common import emit, setup  # sets sys.path first


def train_store_job(store: int, days: int | None, lgbm_rounds: int | None, source: str, write: bool, in_driver: bool):
    from app.config import get_settings
    from app.forecasting.batch import forecast
    from app.forecasting.executor import make_executor
    from app.forecasting.pipeline import TrainConfig, train

    settings = get_settings()
    config = TrainConfig(
        stores=(store,), neural=False, lgbm_rounds=lgbm_rounds, short_windows=1, source=source,
        register=False, run_name=f"train_store_{store}", tags={"job": "train_store"},
    )
    executor = make_executor("local" if in_driver else "ray", settings)
    try:
        result = train(settings, config, executor)
    finally:
        getattr(executor, "close", lambda: None)()
    fc = forecast(settings, days=days, stores=[store], model_uri=f"runs:/{result['run_id']}/model", source=source, write=write,
                  version_label=f"run-{result['run_id']}")
    return {**{k: v for k, v in result.items() if k != "backtest"}, "backtest": result["backtest"], "forecast": fc}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=int, required=True, help="Store id")
    parser.add_argument("--days", type=int, default=None, help="Forecast horizon (default: settings.horizon_days)")
    parser.add_argument("--lgbm-rounds", type=int, default=None, help="Boosting rounds of LightGBM")
    parser.add_argument("--source", default="auto", choices=["auto", "postgres", "dataset"], help="Training data source")
    parser.add_argument("--no-write", action="store_true", help="Do not write forecasts")
    parser.add_argument("--in-driver", action="store_true", help="Run every task in the driver instead of Ray tasks")
    args = parser.parse_args(argv)
    setup()
    emit({"job": "train_store", **train_store_job(args.store, args.days, args.lgbm_rounds, args.source, not args.no_write, args.in_driver)})


if __name__ == "__main__":
    main()
