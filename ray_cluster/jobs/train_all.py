"""Ray job: backtest, train, log and register the sales forecaster for all stores (or a subset).

Submitted through the Ray Jobs API with the project as ``working_dir``::

    ray job submit --working-dir . -- python ray_cluster/jobs/train_all.py --max-steps 300

Settings come from ``SFMLOPS_*`` environment variables (pass them in the job's runtime_env). The last line
of the log is a JSON summary: model, backtest RMSPE vs baselines, run id, version, champion decision.
"""

from __future__ import annotations

import argparse

from _common import emit, run  # noqa: I001 - sets sys.path first


def train_job(**kwargs):  # noqa: ANN003, ANN201
    from app.config import get_settings
    from app.forecasting.pipeline import train

    return train(get_settings(), **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="", help="Comma-separated store ids (default: all stores)")
    parser.add_argument("--max-steps", type=int, default=None, help="Training steps of the neural model")
    parser.add_argument("--lgbm-rounds", type=int, default=None, help="Boosting rounds of LightGBM")
    parser.add_argument("--no-neural", action="store_true", help="Skip the neuralforecast candidate")
    parser.add_argument("--short-windows", type=int, default=2, help="Rolling origins of the 7-day backtest")
    parser.add_argument("--source", default="auto", choices=["auto", "postgres", "dataset"], help="Training data source")
    parser.add_argument("--no-register", action="store_true", help="Log the run but do not register/gate the model")
    parser.add_argument("--lgbm-param", action="append", default=[], help="Extra LightGBM parameter key=value")
    parser.add_argument("--in-driver", action="store_true", help="Run in the driver instead of a Ray task")
    parser.add_argument("--num-cpus", type=float, default=1, help="CPUs the Ray task reserves")
    args = parser.parse_args(argv)
    lgbm_params = {}
    for item in args.lgbm_param:
        key, _, value = item.partition("=")
        try:
            lgbm_params[key] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            lgbm_params[key] = value
    kwargs = {
        "stores": [int(s) for s in args.stores.split(",") if s.strip()] or None,
        "max_steps": args.max_steps,
        "lgbm_rounds": args.lgbm_rounds,
        "lgbm_params": lgbm_params or None,
        "neural": not args.no_neural,
        "short_windows": args.short_windows,
        "source": args.source,
        "register": not args.no_register,
        "run_name": "train_all",
    }
    result = run(train_job, kwargs, args.in_driver, args.num_cpus)
    emit({"job": "train_all", **{k: v for k, v in result.items() if k != "backtest"}, "backtest": result.get("backtest")})


if __name__ == "__main__":
    main()
