"""The MLflow pyfunc wrapper of a fitted forecaster (what the registry stores and the API/batch load).

Input: a frame with ``store, date, open, promo, state_holiday, school_holiday`` (the known-future inputs of
the days to forecast). Output: ``store, date, value, lower, upper`` (closed days are 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel  # not mlflow.pyfunc.PythonModel: mypy takes mlflow.pyfunc for mlflow's LazyLoader

from app.forecasting import features as F

INPUT_COLUMNS = ["store", "date", "open", "promo", "state_holiday", "school_holiday"]
#: What :meth:`SalesForecaster.predict` returns, one row per input row (the API and the batch forecast read these).
OUTPUT_COLUMNS = ("store", "date", "value", "lower", "upper")


class SalesForecaster(PythonModel):
    """Wraps a fitted model (``predict(long) -> long with yhat``) with per-store interval factors.

    Args:
        model: Fitted :class:`~app.forecasting.models.LGBMForecaster` (or any object with ``predict``).
        intervals: Frame indexed by store with ``lo``/``hi`` multipliers (:func:`backtest.interval_quantiles`).
        train_end: Last day of the training data.
        stores: Store ids the model knows.
        info: Free-form metadata (model family, backtest metrics).
    """

    def __init__(self, model: Any, intervals: pd.DataFrame, train_end: pd.Timestamp, stores: list[int], info: dict | None = None) -> None:
        self.model = model
        self.intervals = intervals
        self.global_interval = intervals.attrs.get("global", (0.85, 1.15))
        self.train_end = pd.Timestamp(train_end)
        self.stores = sorted(int(s) for s in stores)
        self.info = dict(info or {})

    def check_input(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Validate the input frame, raising ``ValueError`` that names the problem."""
        missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"forecast input lacks column(s): {', '.join(missing)} (needs {', '.join(INPUT_COLUMNS)})")
        out = frame[INPUT_COLUMNS].copy()
        out["date"] = pd.to_datetime(out["date"]).dt.normalize()
        unknown = sorted(set(out["store"].astype(int)) - set(self.stores))
        if unknown:
            raise ValueError(f"unknown store id(s) {unknown[:10]}: the model was trained on {len(self.stores)} store(s)")
        early = out["date"] <= self.train_end
        if early.any():
            raise ValueError(
                f"{int(early.sum())} row(s) dated on or before the end of the training data ({self.train_end.date()}),"
                f" e.g. {out.loc[early, 'date'].min().date()}"
            )
        return out

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Forecast the rows of ``model_input``; see the module docstring."""
        frame = self.check_input(pd.DataFrame(model_input))
        long = F.to_long(frame)
        pred = self.model.predict(long)
        lo = self.intervals["lo"].reindex(pred["unique_id"]).fillna(self.global_interval[0]).to_numpy()
        hi = self.intervals["hi"].reindex(pred["unique_id"]).fillna(self.global_interval[1]).to_numpy()
        value = pred["yhat"].to_numpy(dtype="float64")
        out = pd.DataFrame(
            {
                "store": pred["unique_id"].astype("int64").to_numpy(),
                "date": pred["ds"].to_numpy(),
                "value": value,
                "lower": value * np.minimum(lo, 1.0),
                "upper": value * np.maximum(hi, 1.0),
            }
        )
        return out[list(OUTPUT_COLUMNS)].sort_values(["store", "date"], ignore_index=True)
