"""Rolling-origin backtests of models against the baselines.

For a horizon ``h`` and ``n_windows`` origins, the cutoffs are ``end - h - (n_windows - 1 - i) * step``
(``step`` defaults to ``h``), so the last window ends on the last day of the data. Each model is refitted
on the history up to each cutoff and forecasts the next ``h`` days with the known-future inputs of those
days; targets after the cutoff are never visible to the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from app.forecasting import metrics as M
from app.forecasting.baselines import BASELINES

log = logging.getLogger(__name__)

ModelFactory = Callable[[], object]


def cutoffs(end: pd.Timestamp, horizon: int, n_windows: int = 1, step: int | None = None) -> list[pd.Timestamp]:
    """Training cutoffs (last history day) of a rolling-origin backtest, oldest first."""
    step = step or horizon
    return [end - pd.Timedelta(days=horizon + (n_windows - 1 - i) * step) for i in range(n_windows)]


def split(long: pd.DataFrame, cutoff: pd.Timestamp, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History (``ds <= cutoff``) and the ``horizon`` days after it (available rows only)."""
    hist = long[long["ds"] <= cutoff]
    fut = long[(long["ds"] > cutoff) & (long["ds"] <= cutoff + pd.Timedelta(days=horizon))]
    return hist, fut[fut["available"] == 1] if "available" in fut.columns else fut


@dataclass
class BacktestResult:
    """Forecasts of every model/baseline in every window and their metrics."""

    horizon: int
    forecasts: pd.DataFrame  # unique_id, ds, y, open, cutoff, model, yhat
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> metrics
    fit_seconds: dict[str, float] = field(default_factory=dict)
    fitted: dict[str, object] = field(default_factory=dict)  # model -> fitted model of the last window

    def table(self) -> pd.DataFrame:
        """One row per model: rmspe, mae, per-store distribution, fit seconds."""
        rows = [{"model": m, "horizon": self.horizon, **v, "fit_seconds": self.fit_seconds.get(m, 0.0)} for m, v in self.metrics.items()]
        return pd.DataFrame(rows).sort_values("rmspe", ignore_index=True)


def run_backtest(
    long: pd.DataFrame,
    stores: pd.DataFrame,
    models: dict[str, ModelFactory],
    horizon: int,
    n_windows: int = 1,
    step: int | None = None,
    baselines: bool = True,
) -> BacktestResult:
    """Backtest ``models`` (name -> factory of an unfitted model) and the baselines.

    Args:
        long: Long frame (``to_long``) of all history.
        stores: Stores frame.
        models: Name -> zero-argument factory returning a model with ``fit``/``predict``.
        horizon: Days forecast after each cutoff.
        n_windows: Number of rolling origins.
        step: Days between origins (default ``horizon``).
        baselines: Also score the baselines.

    Returns:
        :class:`BacktestResult`.
    """
    end = long["ds"].max()
    parts: list[pd.DataFrame] = []
    seconds: dict[str, float] = {}
    fitted: dict[str, object] = {}
    for cutoff in cutoffs(end, horizon, n_windows, step):
        hist, fut = split(long, cutoff, horizon)
        if fut.empty:
            raise ValueError(f"backtest window after {cutoff.date()} has no rows")
        candidates: dict[str, Callable[[], pd.DataFrame]] = {}
        if baselines:
            for name, fn in BASELINES.items():
                candidates[name] = lambda fn=fn: fn(hist, fut)
        for name, factory in models.items():
            def fit_predict(name: str = name, factory: ModelFactory = factory) -> pd.DataFrame:
                model = factory().fit(hist, stores)
                fitted[name] = model
                return model.predict(fut)
            candidates[name] = fit_predict
        for name, call in candidates.items():
            t0 = time.perf_counter()
            pred = call()
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
            parts.append(pred[["unique_id", "ds", "y", "open", "yhat"]].assign(cutoff=cutoff, model=name))
            log.info("backtest h=%d cutoff=%s %s rmspe=%.4f", horizon, cutoff.date(), name, M.rmspe(pred["y"], pred["yhat"]))
    forecasts = pd.concat(parts, ignore_index=True)
    metrics = {name: M.evaluate_frame(grp) for name, grp in forecasts.groupby("model", sort=False)}
    return BacktestResult(horizon=horizon, forecasts=forecasts, metrics=metrics, fit_seconds=seconds, fitted=fitted)


def interval_quantiles(forecasts: pd.DataFrame, model: str, level: float = 0.9, shrink: int = 20) -> pd.DataFrame:
    """Per-store multiplicative interval factors from backtest residuals.

    ``log(y / yhat)`` on scored rows gives per-store quantiles ``(1-level)/2`` and ``(1+level)/2``, shrunk
    towards the all-store quantiles with weight ``n / (n + shrink)``.

    Returns:
        Frame indexed by store with ``lo`` and ``hi`` multipliers (``lo <= 1 <= hi`` typically).
    """
    f = forecasts[(forecasts["model"] == model) & (forecasts["y"] > 0) & (forecasts["yhat"] > 0)]
    if f.empty:
        raise ValueError(f"no scored backtest rows for model {model!r}")
    r = np.log(f["y"] / f["yhat"])
    qlo, qhi = (1 - level) / 2, (1 + level) / 2
    glo, ghi = float(r.quantile(qlo)), float(r.quantile(qhi))
    g = r.groupby(f["unique_id"])
    n = g.size()
    w = n / (n + shrink)
    lo = w * g.quantile(qlo) + (1 - w) * glo
    hi = w * g.quantile(qhi) + (1 - w) * ghi
    out = pd.DataFrame({"lo": np.exp(np.minimum(lo, 0.0)), "hi": np.exp(np.maximum(hi, 0.0))})
    out.attrs["global"] = (float(np.exp(min(glo, 0.0))), float(np.exp(max(ghi, 0.0))))
    return out
