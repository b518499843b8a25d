"""Forecast accuracy metrics.

RMSPE follows the Rossmann Kaggle definition: root mean squared percentage error over the rows whose
actual sales are positive (closed days and zero-sales days are ignored, because the percentage error
is undefined there).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.forecasting.horizons import HORIZON_BUCKETS, bucket_label


def _arrays(y_true: object, y_pred: object) -> tuple[np.ndarray, np.ndarray]:
    yt = np.asarray(y_true, dtype="float64")
    yp = np.asarray(y_pred, dtype="float64")
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has shape {yt.shape} but y_pred has shape {yp.shape}")
    if np.isnan(yp).any():
        raise ValueError(f"y_pred contains {int(np.isnan(yp).sum())} NaN value(s)")
    return yt, yp


def rmspe(y_true: object, y_pred: object) -> float:
    """Root mean squared percentage error on rows with ``y_true > 0``.

    Args:
        y_true: Actual sales.
        y_pred: Forecast sales, same length.

    Returns:
        ``sqrt(mean(((y - yhat) / y) ** 2))`` over rows with ``y > 0``; NaN when there are none.
    """
    yt, yp = _arrays(y_true, y_pred)
    mask = yt > 0
    if not mask.any():
        return float("nan")
    return float(np.sqrt(np.mean(((yt[mask] - yp[mask]) / yt[mask]) ** 2)))


def mae(y_true: object, y_pred: object) -> float:
    """Mean absolute error over all rows (closed days included, where the forecast should be 0)."""
    yt, yp = _arrays(y_true, y_pred)
    mask = ~np.isnan(yt)
    if not mask.any():
        return float("nan")
    return float(np.mean(np.abs(yt[mask] - yp[mask])))


def per_store_rmspe(frame: pd.DataFrame, pred_col: str = "yhat", true_col: str = "y", id_col: str = "unique_id") -> pd.Series:
    """RMSPE of each store (rows with positive actuals only), indexed by store id."""
    pos = frame[frame[true_col] > 0]
    err = ((pos[true_col] - pos[pred_col]) / pos[true_col]) ** 2
    return np.sqrt(err.groupby(pos[id_col]).mean()).rename("rmspe")


def distribution(values: pd.Series) -> dict[str, float]:
    """Summary of a per-store metric: quantiles, mean, and the worst value."""
    v = values.dropna()
    if v.empty:
        return {}
    q = v.quantile([0.1, 0.5, 0.9]).to_numpy()
    return {"p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2]), "mean": float(v.mean()), "max": float(v.max())}


def evaluate_frame(frame: pd.DataFrame, pred_col: str = "yhat", true_col: str = "y", id_col: str = "unique_id") -> dict[str, float]:
    """RMSPE, MAE, row count and per-store RMSPE distribution of one forecast frame.

    Args:
        frame: Rows with actuals ``true_col``, forecasts ``pred_col`` and store ids ``id_col``.
        pred_col: Forecast column.
        true_col: Actuals column.
        id_col: Store id column.

    Returns:
        ``{"rmspe", "mae", "rows", "rows_scored", "stores", "store_rmspe_p10"...}``.
    """
    out: dict[str, float] = {
        "rmspe": rmspe(frame[true_col], frame[pred_col]),
        "mae": mae(frame[true_col], frame[pred_col]),
        "rows": int(len(frame)),
        "rows_scored": int((frame[true_col] > 0).sum()),
        "stores": int(frame[id_col].nunique()),
    }
    for key, value in distribution(per_store_rmspe(frame, pred_col, true_col, id_col)).items():
        out[f"store_rmspe_{key}"] = value
    return out


def rmspe_by_bucket(
    frame: pd.DataFrame,
    pred_col: str = "yhat",
    true_col: str = "y",
    horizon_col: str = "horizon",
    date_col: str = "ds",
    cutoff_col: str = "cutoff",
) -> dict[str, float]:
    """RMSPE per horizon bucket (:data:`app.forecasting.horizons.HORIZON_BUCKETS`: 1-7, 8-14, 15-28, 29-48 days after the cutoff).

    The horizon of a row is ``frame[horizon_col]`` (days after the cutoff, 1 = the first forecast day) when
    that column exists, else ``(frame[date_col] - frame[cutoff_col]).days``. Rows past the last bucket (day 49
    on) are not scored here.

    Args:
        frame: Rows with actuals, forecasts and either a horizon or a date and a cutoff column.
        pred_col: Forecast column.
        true_col: Actuals column.
        horizon_col: Horizon column (days after the cutoff).
        date_col: Date of the forecast day (used without ``horizon_col``).
        cutoff_col: Cutoff of the forecast (used without ``horizon_col``).

    Returns:
        ``{"1-7": rmspe, ...}`` in bucket order, for the buckets with at least one row (NaN when none of
        its rows has positive actuals).

    Raises:
        ValueError: a row dated on or before its cutoff (horizon < 1), or neither horizon nor date/cutoff columns.
    """
    if horizon_col in frame.columns:
        horizon = frame[horizon_col].to_numpy(dtype="int64")
    elif date_col in frame.columns and cutoff_col in frame.columns:
        horizon = ((pd.to_datetime(frame[date_col]) - pd.to_datetime(frame[cutoff_col])).dt.days).to_numpy(dtype="int64")
    else:
        raise ValueError(f"frame needs a {horizon_col!r} column or {date_col!r} and {cutoff_col!r} columns")
    if (horizon < 1).any():
        raise ValueError(f"{int((horizon < 1).sum())} row(s) are dated on or before their cutoff (horizon < 1)")
    out: dict[str, float] = {}
    for lo, hi in HORIZON_BUCKETS:
        mask = (horizon >= lo) & (horizon <= hi)
        if mask.any():
            out[bucket_label(lo, hi)] = rmspe(frame.loc[mask, true_col], frame.loc[mask, pred_col])
    return out
