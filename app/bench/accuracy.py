"""``sfmlops bench accuracy``: every candidate next to the baselines on a rolling-origin backtest, one JSON line.

One run, on all stores of the configured data (read only):

1. ``origins`` rolling origins of the ``horizon``-day backtest (cutoffs ``horizon`` days apart, the last window
   ending on the last day of the data); at each origin every candidate (LightGBM, the per-store ``ses``,
   optionally NHITS) and both baselines are fitted on the history up to the cutoff and forecast the window;
2. the ensemble: at each origin, the blend of the candidates with weights fitted on the *other* origins
   (leave-one-origin-out, :func:`app.forecasting.ensemble.backtest_ensemble`; the scored window never fits its
   own weights);
3. per model: RMSPE overall and per origin, per horizon bucket (1-7, 8-14, 15-28, 29-48 days after the cutoff,
   :func:`app.forecasting.metrics.rmspe_by_bucket`; ``h7`` is the first bucket, i.e. the 7-day forecast of each
   origin), the out-of-sample coverage and pinball loss of its 80 % and 95 % intervals
   (:func:`app.forecasting.intervals.evaluate_intervals`) and its fit seconds;
4. ``champion``: the candidate with the lowest RMSPE and whether it beats every baseline at 7 and at 48 days
   on every origin.

Nothing is logged to MLflow or registered.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

BASELINE_NAMES = ("seasonal_naive", "median_dow_promo")


def _candidates(neural: bool, threads: int, horizon: int, max_steps: int | None) -> list[Any]:
    from app.forecasting.plan import Candidate

    out = [
        Candidate("lgbm", "lgbm", {"num_threads": threads}, cpus=threads),
        Candidate("ses", "stats", {"model": "ses", "h": horizon, "alias": "ses"}, cpus=1),
    ]
    if neural:
        nn: dict[str, Any] = {"h": horizon, "num_threads": threads}
        if max_steps is not None:
            nn["max_steps"] = int(max_steps)
        out.append(Candidate("nhits", "nhits", nn, cpus=threads))
    return out


def score(forecasts: pd.DataFrame, seconds: dict[str, float], horizon: int) -> dict[str, dict[str, Any]]:
    """Per model: RMSPE (overall, per origin), RMSPE per horizon bucket, interval coverage, fit seconds."""
    from app.forecasting import metrics as M
    from app.forecasting.intervals import evaluate_intervals

    out: dict[str, dict[str, Any]] = {}
    for name, grp in forecasts.groupby("model", sort=True):
        rec: dict[str, Any] = {
            "rmspe": round(M.rmspe(grp["y"], grp["yhat"]), 5),
            "rmspe_by_origin": {str(pd.Timestamp(c).date()): round(M.rmspe(g["y"], g["yhat"]), 5) for c, g in grp.groupby("cutoff")},
            "buckets": {k: round(v, 5) for k, v in M.rmspe_by_bucket(grp).items()},
        }
        first = grp[(grp["ds"] - grp["cutoff"]).dt.days <= 7]
        rec["h7_by_origin"] = {str(pd.Timestamp(c).date()): round(M.rmspe(g["y"], g["yhat"]), 5) for c, g in first.groupby("cutoff")}
        if grp["cutoff"].nunique() >= 2:
            rec.update({k: round(v, 4) for k, v in evaluate_intervals(forecasts, str(name)).items()})
        rec["fit_s"] = round(seconds.get(str(name), 0.0), 1)
        out[str(name)] = rec
    return out


def champion(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The candidate with the lowest RMSPE and whether it beats every baseline on every origin at 7 and 48 days."""
    cands = {k: v for k, v in models.items() if k not in BASELINE_NAMES}
    best = min(cands, key=lambda k: cands[k]["rmspe"])
    rec = cands[best]

    def beats(key: str) -> bool:
        return all(
            rec[key][o] < models[b][key][o] for b in BASELINE_NAMES if b in models for o in rec[key]
        )

    return {"model": best, "beats_baselines_h7_every_origin": beats("h7_by_origin"), "beats_baselines_h48_every_origin": beats("rmspe_by_origin")}


def run(
    settings: Settings,
    stores: list[int] | None = None,
    horizon: int = 48,
    origins: int = 3,
    neural: bool = False,
    max_steps: int | None = None,
    source: str = "auto",
    threads: int = 2,
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able result line (see the module docstring)."""
    from app.forecasting.backtest import cutoffs
    from app.forecasting.data import load_training_data
    from app.forecasting.ensemble import ENSEMBLE, backtest_ensemble
    from app.forecasting.features import to_long
    from app.forecasting.plan import Task, baselines, run_task

    if origins < 2:
        raise ValueError(f"origins must be >= 2 (the ensemble and the intervals fit on the other origins), got {origins}")
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    sales, stores_df, used = load_training_data(settings, source=source, stores=stores)  # type: ignore[arg-type]
    long = to_long(sales)
    cands = _candidates(neural, threads, horizon, max_steps)
    parts: list[pd.DataFrame] = []
    seconds: dict[str, float] = {}
    for cutoff in cutoffs(long["ds"].max(), horizon, origins):
        for cand in [*cands, *baselines()]:
            out = run_task(long, stores_df, Task("backtest", cand, horizon, cutoff, None))
            parts.append(out["forecasts"])
            seconds[cand.name] = seconds.get(cand.name, 0.0) + out["seconds"]
    forecasts = pd.concat(parts, ignore_index=True)
    members = [c.name for c in cands]
    blends, weights = [], {}
    for cutoff in sorted(forecasts["cutoff"].unique()):
        w, rows = backtest_ensemble(forecasts, members, [cutoff])
        blends.append(rows)
        weights[str(pd.Timestamp(cutoff).date())] = {k: round(v, 3) for k, v in w.items()}
    forecasts = pd.concat([forecasts, *blends], ignore_index=True)
    seconds[ENSEMBLE] = sum(seconds[m] for m in members)
    models = score(forecasts, seconds, horizon)
    return {
        "bench": "accuracy",
        "source": used,
        "stores": int(long["unique_id"].nunique()),
        "rows": int(len(long)),
        "horizon": horizon,
        "origins": [str(pd.Timestamp(c).date()) for c in sorted(forecasts["cutoff"].unique())],
        "models": models,
        "ensemble_weights": weights,
        "champion": champion(models),
        "threads": threads,
        "total_s": round(time.perf_counter() - t0, 1),
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
    }


def register(app) -> None:  # typer.Typer
    """Add ``accuracy`` to a typer ``bench`` app: ``sfmlops bench accuracy [--stores 1,2] [--origins 3] ...``."""
    import json

    import typer

    @app.command("accuracy")
    def bench_accuracy(
        stores: str = typer.Option("", help="Comma-separated store ids (default: all)"),
        horizon: int = typer.Option(48, help="Backtest horizon (days)"),
        origins: int = typer.Option(3, help="Rolling origins (>= 2)"),
        neural: bool = typer.Option(False, help="Also backtest the NHITS candidate"),
        max_steps: int = typer.Option(None, help="NHITS training steps"),
        source: str = typer.Option("auto", help="auto | postgres | dataset"),
        threads: int = typer.Option(2, help="Threads of LightGBM / torch"),
    ) -> None:
        from app.config import get_settings

        ids = [int(s) for s in stores.split(",") if s.strip()] or None
        print(json.dumps(run(get_settings(), ids, horizon, origins, neural, max_steps, source, threads)))
