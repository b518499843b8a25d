"""Ray job: the batch forecast (the champion's forecasts for the next N days into the forecasts table).

The same work as ``sfmlops forecast --days N [--stores ...]``, run on the Ray cluster next to MLflow where
the model libraries are installed. Submitted through the API (``POST /v1/training-jobs`` with
``{"kind": "forecast", "days": N}``, used by the weekly DAG on AWS) or directly::

    ray job submit --working-dir . -- python ray_cluster/jobs/forecast.py --days 48

Settings come from ``SFMLOPS_*`` environment variables (the job's runtime_env). The last line of the log
is a JSON summary: model name and version, rows written, stores, first/last date, days.
"""

from __future__ import annotations

import argparse

from _common import emit, run  # sets sys.path first


def forecast_job(days: int | None, stores: list[int] | None, source: str) -> dict:
    from app.config import get_settings
    from app.forecasting.batch import forecast

    return forecast(get_settings(), days=days, stores=stores, source=source)


def _store_ids(text: str) -> list[int] | None:
    try:
        return [int(s) for s in text.split(",") if s.strip()] or None
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stores must be comma-separated store ids, not {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=None, help="Days after the data (default: SFMLOPS_HORIZON_DAYS)")
    parser.add_argument("--stores", type=_store_ids, default=None, help="Comma-separated store ids (default: all stores)")
    parser.add_argument("--source", default="auto", choices=["auto", "postgres", "dataset"], help="Where recent sales come from")
    parser.add_argument("--in-driver", action="store_true", help="Run in the driver instead of a Ray task")
    parser.add_argument("--num-cpus", type=float, default=1, help="CPUs the Ray task reserves")
    args = parser.parse_args(argv)
    if args.days is not None and args.days < 1:
        parser.error(f"--days must be >= 1, got {args.days}")
    result = run(forecast_job, {"days": args.days, "stores": args.stores, "source": args.source}, args.in_driver, args.num_cpus)
    emit({"job": "forecast", **result})


if __name__ == "__main__":
    main()
