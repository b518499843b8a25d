"""Calibration of the forecast intervals: empirical coverage and pinball loss on backtest origins.

The intervals of the served model are split-conformal on multiplicative residuals
(:func:`app.forecasting.backtest.interval_quantiles`: per-store quantiles of ``log(y / yhat)`` shrunk to the
all-store ones). Measuring their coverage on the rows they were calibrated on would flatter them, so
:func:`evaluate_intervals` calibrates on some backtest origins and scores on the others (each origin in turn
when there are several): coverage is the share of later actuals inside the band, pinball loss the quantile
loss of both band edges. Rows scored: open days with positive sales (as for RMSPE).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Nominal levels whose coverage is reported.
LEVELS: tuple[float, ...] = (0.8, 0.95)


def with_interval(forecasts: pd.DataFrame, factors: pd.DataFrame, level: float) -> pd.DataFrame:
    """``forecasts`` with ``lo``/``hi`` columns: ``yhat`` times the store's factors (all-store ones if unseen)."""
    glo, ghi = factors.attrs.get("global", (1.0, 1.0))
    lo = factors["lo"].reindex(forecasts["unique_id"]).fillna(glo).to_numpy()
    hi = factors["hi"].reindex(forecasts["unique_id"]).fillna(ghi).to_numpy()
    yhat = forecasts["yhat"].to_numpy(dtype="float64")
    return forecasts.assign(lo=yhat * np.minimum(lo, 1.0), hi=yhat * np.maximum(hi, 1.0), level=level)


def coverage_and_pinball(frame: pd.DataFrame, level: float) -> dict[str, float]:
    """Empirical coverage of ``[lo, hi]`` and the mean pinball loss of its edges (relative to mean sales).

    Uses :func:`utilsforecast.losses.coverage` and :func:`utilsforecast.losses.quantile_loss` over all scored
    rows as one series.

    Args:
        frame: Rows with ``y``, ``lo``, ``hi`` (and ``unique_id``, ``ds``); rows with ``y <= 0`` are ignored.
        level: Nominal level of the band (0.8 for an 80 % interval).

    Returns:
        ``{"coverage", "pinball", "pinball_rel", "rows"}``; ``pinball`` is the mean of the two edges' quantile
        losses (quantiles ``(1 - level) / 2`` and ``(1 + level) / 2``), ``pinball_rel`` that divided by the
        mean actual.

    Raises:
        ValueError: no row with positive actuals, or a band with ``lo > hi``.
    """
    from utilsforecast.losses import coverage, quantile_loss

    rows = frame[frame["y"] > 0]
    if rows.empty:
        raise ValueError("no row with positive actuals to measure interval coverage on")
    if (rows["lo"] > rows["hi"]).any():
        raise ValueError(f"{int((rows['lo'] > rows['hi']).sum())} interval(s) have lo > hi")
    pct = int(round(level * 100))
    df = pd.DataFrame(
        {"all": 0, "y": rows["y"].to_numpy(dtype="float64"), f"m-lo-{pct}": rows["lo"].to_numpy(dtype="float64"),
         f"m-hi-{pct}": rows["hi"].to_numpy(dtype="float64"), "lo": rows["lo"].to_numpy(dtype="float64"),
         "hi": rows["hi"].to_numpy(dtype="float64")}
    )
    cov = float(coverage(df, ["m"], level=pct, id_col="all")["m"].iloc[0])
    qlo = float(quantile_loss(df, {"lo": "lo"}, q=(1 - level) / 2, id_col="all")["lo"].iloc[0])
    qhi = float(quantile_loss(df, {"hi": "hi"}, q=(1 + level) / 2, id_col="all")["hi"].iloc[0])
    pinball = (qlo + qhi) / 2
    return {"coverage": cov, "pinball": pinball, "pinball_rel": pinball / float(df["y"].mean()), "rows": int(len(df))}


def evaluate_intervals(forecasts: pd.DataFrame, model: str, levels: tuple[float, ...] = LEVELS) -> dict[str, float]:
    """Out-of-sample coverage of ``model``'s intervals on backtest origins.

    With several origins, each origin is scored with the interval factors calibrated on the other origins
    (leave-one-origin-out) and the scored rows are pooled.

    Args:
        forecasts: Backtest forecasts (``model, cutoff, unique_id, ds, y, yhat``) of at least 2 origins.
        model: The model whose intervals are measured.
        levels: Nominal levels.

    Returns:
        ``{"coverage_80", "pinball_80", "pinball_rel_80", "coverage_95", ...}``.

    Raises:
        ValueError: fewer than 2 origins (calibration and scoring on the same rows would be in-sample).
    """
    from app.forecasting.backtest import interval_quantiles

    f = forecasts[forecasts["model"] == model]
    origins = sorted(f["cutoff"].unique())
    if len(origins) < 2:
        raise ValueError(f"interval coverage needs at least 2 backtest origins of {model!r}, got {len(origins)}")
    out: dict[str, float] = {}
    for level in levels:
        scored = []
        for origin in origins:
            factors = interval_quantiles(f[f["cutoff"] != origin], model, level=level)
            scored.append(with_interval(f[f["cutoff"] == origin], factors, level))
        res = coverage_and_pinball(pd.concat(scored, ignore_index=True), level)
        pct = int(round(level * 100))
        out.update({f"coverage_{pct}": res["coverage"], f"pinball_{pct}": res["pinball"], f"pinball_rel_{pct}": res["pinball_rel"]})
    return out
