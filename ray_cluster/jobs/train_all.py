"""Ray job: backtest, train, log and register the sales forecaster for all stores (or a subset).

The job's driver plans the work and fans it out as Ray tasks with declared resources: every (candidate x
backtest origin x store shard) fit, the final refit, the short-horizon backtest and the batch forecast; the
data go into the object store once. The driver collects the metrics, logs to MLflow and runs the champion
gate (see ``app/forecasting/pipeline.py`` and ``ray_cluster/README.md``)::

    ray job submit --working-dir . -- python ray_cluster/jobs/train_all.py --max-steps 300

Settings come from ``SFMLOPS_*`` environment variables (pass them in the job's runtime_env). While it runs,
the log carries ``SFMLOPS_PROGRESS {json}`` lines (stage, tasks done/total, elapsed); the last line is a
JSON summary: model, backtest RMSPE vs baselines, failed candidates, run id, version, champion decision.
"""

from __future__ import annotations

import argparse

from _common import emit, setup  # sets sys.path first


def parse_lgbm_params(items: list[str]) -> dict:
    params: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            params[key] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            params[key] = value
    return params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="", help="Comma-separated store ids (default: all stores)")
    parser.add_argument("--max-steps", type=int, default=None, help="Training steps of the neural model")
    parser.add_argument("--lgbm-rounds", type=int, default=None, help="Boosting rounds of LightGBM")
    parser.add_argument("--no-neural", action="store_true", help="Skip the neuralforecast candidate")
    parser.add_argument("--no-per-store", action="store_true", help="Skip the per-store statsforecast candidate")
    parser.add_argument("--short-windows", type=int, default=2, help="Rolling origins of the 7-day backtest")
    parser.add_argument("--shard-stores", type=int, default=250, help="Stores per task of the per-store family")
    parser.add_argument("--source", default="auto", choices=["auto", "postgres", "dataset"], help="Training data source")
    parser.add_argument("--no-register", action="store_true", help="Log the run but do not register/gate the model")
    parser.add_argument("--lgbm-param", action="append", default=[], help="Extra LightGBM parameter key=value")
    parser.add_argument("--threads", type=int, default=2, help="Threads (= CPUs reserved) per model-fit task")
    parser.add_argument(
        "--lgbm-workers", type=int, default=None, help="Ray Train workers per LightGBM fit (default SFMLOPS_TRAIN_LGBM_WORKERS, 1)"
    )
    parser.add_argument(
        "--tune-trials", type=int, default=None,
        help="Ray Tune trials of each tuned candidate: LightGBM, and NHITS unless --no-neural (default SFMLOPS_TRAIN_TUNE_TRIALS, 0: none)",
    )
    parser.add_argument(
        "--tune-time-budget-s", type=float, default=None, help="Time budget of the search (default SFMLOPS_TRAIN_TUNE_TIME_BUDGET_S, 0: none)"
    )
    parser.add_argument("--in-driver", action="store_true", help="Run every task in the driver instead of Ray tasks")
    parser.add_argument("--no-mlflow", action="store_true", help="Neither log nor register (benchmarks, offline runs)")
    args = parser.parse_args(argv)
    setup()
    from app.config import get_settings
    from app.forecasting.executor import make_executor
    from app.forecasting.pipeline import TrainConfig, train

    try:
        stores = tuple(int(s) for s in args.stores.split(",") if s.strip()) or None
    except ValueError:
        parser.error(f"--stores must be comma-separated store ids, not {args.stores!r}")
    settings = get_settings()
    config = TrainConfig(
        stores=stores, max_steps=args.max_steps, lgbm_rounds=args.lgbm_rounds, lgbm_params=parse_lgbm_params(args.lgbm_param),
        neural=not args.no_neural, per_store=not args.no_per_store, short_windows=args.short_windows, shard_stores=args.shard_stores,
        source=args.source, register=not (args.no_register or args.no_mlflow), threads=args.threads, run_name="train_all",
        log_mlflow=not args.no_mlflow,
        lgbm_workers=args.lgbm_workers or settings.train_lgbm_workers,
        tune_trials=settings.train_tune_trials if args.tune_trials is None else args.tune_trials,
        tune_time_budget_s=(settings.train_tune_time_budget_s if args.tune_time_budget_s is None else args.tune_time_budget_s) or None,
    )
    executor = make_executor("local" if args.in_driver else "ray", settings)
    try:
        result = train(settings, config, executor)
    finally:
        getattr(executor, "close", lambda: None)()
    emit({"job": "train_all", **{k: v for k, v in result.items() if k != "backtest"}, "backtest": result.get("backtest")})


if __name__ == "__main__":
    main()
