"""Simple baselines every model must beat.

Both take history (long frame with known ``y``) and future rows (long frame with known-future inputs) and
return the future rows with a ``yhat`` column; closed days are forecast as 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.forecasting.features import apply_closed


def seasonal_naive(history: pd.DataFrame, future: pd.DataFrame) -> pd.DataFrame:
    """Same weekday of the last week of history.

    For every forecast day the value is the sales of the same weekday in the last 7 days of history. When
    the store was closed (or had no row) that day, the most recent open day with the same weekday is used;
    stores without any such day get their mean open-day sales.

    Args:
        history: Long frame with ``unique_id, ds, y, open``.
        future: Long frame with ``unique_id, ds, open``.

    Returns:
        ``future`` with ``yhat``.
    """
    pos = history[(history["open"] == 1) & (history["y"] > 0)]
    cutoff = history["ds"].max()
    last_week = history[history["ds"] > cutoff - pd.Timedelta(days=7)]
    key = ["unique_id", "dow"]
    lw = last_week.assign(dow=last_week["ds"].dt.dayofweek).set_index(key)["y"]
    lw = lw[lw > 0]
    latest_open = (
        pos.assign(dow=pos["ds"].dt.dayofweek).sort_values("ds").groupby(key)["y"].last()
    )
    store_mean = pos.groupby("unique_id")["y"].mean()
    out = future.copy()
    idx = pd.MultiIndex.from_arrays([out["unique_id"].to_numpy(), out["ds"].dt.dayofweek.to_numpy()])
    yhat = lw.reindex(idx).to_numpy()
    yhat = np.where(np.isnan(yhat), latest_open.reindex(idx).to_numpy(), yhat)
    yhat = np.where(np.isnan(yhat), store_mean.reindex(out["unique_id"]).to_numpy(), yhat)
    out["yhat"] = np.nan_to_num(yhat, nan=0.0)
    return apply_closed(out)


def median_store_weekday_promo(history: pd.DataFrame, future: pd.DataFrame, window_days: int = 365) -> pd.DataFrame:
    """Median open-day sales by (store, weekday, promo) over the last ``window_days`` of history.

    Falls back to the median by (store, weekday), then by store, when a cell has no open day.

    Args:
        history: Long frame with ``unique_id, ds, y, open, promo``.
        future: Long frame with ``unique_id, ds, open, promo``.
        window_days: Length of the history window.

    Returns:
        ``future`` with ``yhat``.
    """
    cutoff = history["ds"].max()
    recent = history[(history["ds"] > cutoff - pd.Timedelta(days=window_days)) & (history["open"] == 1) & (history["y"] > 0)]
    recent = recent.assign(dow=recent["ds"].dt.dayofweek)
    by3 = recent.groupby(["unique_id", "dow", "promo"])["y"].median()
    by2 = recent.groupby(["unique_id", "dow"])["y"].median()
    by1 = recent.groupby("unique_id")["y"].median()
    out = future.copy()
    uid = out["unique_id"].to_numpy()
    dow = out["ds"].dt.dayofweek.to_numpy()
    yhat = by3.reindex(pd.MultiIndex.from_arrays([uid, dow, out["promo"].to_numpy().astype("int64")])).to_numpy()
    yhat = np.where(np.isnan(yhat), by2.reindex(pd.MultiIndex.from_arrays([uid, dow])).to_numpy(), yhat)
    yhat = np.where(np.isnan(yhat), by1.reindex(uid).to_numpy(), yhat)
    out["yhat"] = np.nan_to_num(yhat, nan=0.0)
    return apply_closed(out)


BASELINES = {"seasonal_naive": seasonal_naive, "median_dow_promo": median_store_weekday_promo}
