"""``sfmlops bench train``: time and memory of full training + the 48-day forecast, model vs baselines.

One run does, on all stores of the configured data:

1. the backtest of the last ``horizon`` days: the model (fitted on everything before them) and the
   baselines computed in the same run -> RMSPE of each;
2. the full training of the model on all data plus the ``horizon``-day forecast of every store -> the
   timed figure (goal: <= 600 s on 2 CPU cores) and the peak resident memory of the process (goal: <= 8 GB).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from app.forecasting.executor import peak_rss_mb

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings


def run(
    settings: Settings,
    stores: list[int] | None = None,
    neural: bool = False,
    max_steps: int | None = None,
    lgbm_rounds: int | None = None,
    source: str = "auto",
    threads: int = 2,
    short_windows: int = 0,
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able result line.

    Args:
        settings: Settings (data source).
        stores: Restrict to these stores (default: all).
        neural: Also backtest the NHITS candidate (its figures are reported separately).
        max_steps: NHITS training steps.
        lgbm_rounds: LightGBM boosting rounds.
        source: ``auto``, ``postgres`` or ``dataset``.
        threads: CPU threads for the models.
        short_windows: Also backtest the 7-day horizon over this many rolling origins (reported as ``h7``).
    """
    from app.forecasting.executor import Progress
    from app.forecasting.pipeline import TrainConfig, train

    t0 = time.perf_counter()
    config = TrainConfig(
        stores=tuple(stores) if stores else None, neural=neural, max_steps=max_steps, lgbm_rounds=lgbm_rounds,
        short_windows=short_windows, source=source, register=False, log_mlflow=False, threads=threads, per_store=False,
    )
    out = train(settings, config, progress=Progress(lambda event: None))
    rows = {r["model"]: r for r in out["backtest"]["h48"]}
    secs = out["seconds"]
    result: dict[str, Any] = {
        "bench": "train",
        "stores": out["stores"],
        "rows": out["rows"],
        "model": out["model"],
        "train_and_forecast_s": round(secs["final_fit"] + secs["forecast"], 1),
        "final_fit_s": secs["final_fit"],
        "forecast_s": secs["forecast"],
        "backtest_s": secs["backtest"],
        "total_s": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(peak_rss_mb(include_children=True), 1),
        "rmspe": round(out["rmspe"], 5),
        "baseline_median_rmspe": round(out["median_baseline_rmspe"], 5),
        "baseline_seasonal_naive_rmspe": round(out["seasonal_naive_rmspe"], 5),
        "improvement_vs_median": round(out["improvement_vs_median"], 4),
        "goal_met": bool(
            out["rmspe"] <= 0.110
            and out["improvement_vs_median"] >= 0.15
            and secs["final_fit"] + secs["forecast"] <= 600
            and peak_rss_mb(include_children=True) <= 8192
        ),
        "threads": threads,
    }
    for rec in out["backtest"].get("h7", []):
        result[f"h7_{rec['model']}_rmspe"] = round(rec["rmspe"], 5)
    for name, rec in rows.items():
        if name not in ("seasonal_naive", "median_dow_promo"):
            result[f"{name}_rmspe"] = round(rec["rmspe"], 5)
            result[f"{name}_backtest_fit_s"] = round(rec["fit_seconds"], 1)
    return result


def register(app) -> None:  # typer.Typer
    """Add ``train`` to a typer ``bench`` app: ``sfmlops bench train [--stores 1,2] [--neural] ...``."""
    import json

    import typer

    @app.command("train")
    def bench_train(
        stores: str = typer.Option("", help="Comma-separated store ids (default: all)"),
        neural: bool = typer.Option(False, help="Also backtest the NHITS candidate"),
        max_steps: int = typer.Option(None, help="NHITS training steps"),
        lgbm_rounds: int = typer.Option(None, help="LightGBM boosting rounds"),
        source: str = typer.Option("auto", help="auto | postgres | dataset"),
    ) -> None:
        from app.config import get_settings

        ids = [int(s) for s in stores.split(",") if s.strip()] or None
        print(json.dumps(run(get_settings(), ids, neural, max_steps, lgbm_rounds, source)))
