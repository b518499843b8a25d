"""The ensemble candidate: a weighted blend of other candidates' forecasts.

The weights are fitted on backtest origins *other than the scored one* (:func:`fit_weights` on the forecasts
of the fitting origins), then applied to the members' forecasts of the scored origin (:func:`blend`), so the
blend's backtest score is an out-of-sample figure like any other candidate's and the champion gate decides on
it as for any other model. Weights are non-negative and sum to 1; they minimise the squared percentage error
(RMSPE) of the blend on the fitting rows (actuals > 0).

:class:`EnsembleForecaster` is the refit form: the member candidates fitted on all history, their
forecasts blended with the fixed weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ENSEMBLE = "ensemble"


def _wide(forecasts: pd.DataFrame, members: list[str]) -> pd.DataFrame:
    """One row per (cutoff, unique_id, ds) with ``y``, ``open`` and one column per member's ``yhat``."""
    missing = [m for m in members if m not in set(forecasts["model"])]
    if missing:
        raise ValueError(f"no backtest forecasts of ensemble member(s) {missing}")
    rows = forecasts[forecasts["model"].isin(members)]
    key = ["cutoff", "unique_id", "ds"]
    wide = rows.pivot_table(index=key, columns="model", values="yhat", aggfunc="first")
    facts = rows.drop_duplicates(key).set_index(key)[["y", "open"]]
    wide = facts.join(wide, how="inner")
    incomplete = wide[members].isna().any(axis=1)
    if incomplete.any():
        raise ValueError(f"{int(incomplete.sum())} backtest row(s) lack a forecast of some ensemble member")
    return wide.reset_index()


def fit_weights(forecasts: pd.DataFrame, members: list[str]) -> dict[str, float]:
    """Blend weights (>= 0, sum 1) minimising the RMSPE of ``sum(w * yhat)`` on ``forecasts``.

    Args:
        forecasts: Backtest forecasts (``model, cutoff, unique_id, ds, y, open, yhat``) of the fitting origins
            only; the caller keeps the scored origin out.
        members: Candidate names to blend (at least 2).

    Returns:
        ``{member: weight}``.

    Raises:
        ValueError: fewer than 2 members, a member without forecasts, or no row with positive actuals.
    """
    from scipy.optimize import minimize

    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {members}")
    wide = _wide(forecasts, members)
    wide = wide[wide["y"] > 0]
    if wide.empty:
        raise ValueError("no backtest row with positive actuals to fit the ensemble weights on")
    A = wide[members].to_numpy(dtype="float64") / wide["y"].to_numpy(dtype="float64")[:, None]
    k = len(members)

    def loss(w: np.ndarray) -> float:
        return float(np.mean((A @ w - 1.0) ** 2))

    def grad(w: np.ndarray) -> np.ndarray:
        return 2.0 * A.T @ (A @ w - 1.0) / len(A)

    res = minimize(
        loss, np.full(k, 1.0 / k), jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
    )
    w = np.where(res.x < 1e-3, 0.0, res.x)  # numerically zero: the member is left out
    w = w / w.sum()
    return {m: float(v) for m, v in zip(members, w, strict=True)}


def blend(forecasts: pd.DataFrame, weights: dict[str, float], name: str = ENSEMBLE) -> pd.DataFrame:
    """The blend's forecast rows (``model = name``) of every (cutoff, store, day) all members forecast."""
    members = list(weights)
    wide = _wide(forecasts, members)
    yhat = wide[members].to_numpy(dtype="float64") @ np.array([weights[m] for m in members])
    out = wide[["unique_id", "ds", "y", "open", "cutoff"]].assign(yhat=yhat, model=name)
    out.loc[out["open"] == 0, "yhat"] = 0.0
    return out[["unique_id", "ds", "y", "open", "yhat", "cutoff", "model"]]


def backtest_ensemble(
    forecasts: pd.DataFrame, members: list[str], score_cutoffs: list[pd.Timestamp], name: str = ENSEMBLE
) -> tuple[dict[str, float], pd.DataFrame]:
    """Fit the weights on every origin not in ``score_cutoffs`` and blend the scored origins' forecasts.

    Returns:
        ``(weights, blended forecast rows of the scored origins)``.

    Raises:
        ValueError: no fitting origin is left (the scored window would be used to fit its own weights).
    """
    scored = forecasts["cutoff"].isin(list(score_cutoffs))
    fit_rows = forecasts[~scored & forecasts["model"].isin(members)]
    if fit_rows.empty:
        raise ValueError("the ensemble needs backtest origins other than the scored ones to fit its weights")
    weights = fit_weights(fit_rows, members)
    return weights, blend(forecasts[scored], weights, name)


@dataclass
class EnsembleForecaster:
    """Member models (candidates of :mod:`app.forecasting.plan`) fitted on the same history, blended.

    Attributes:
        members: ``[(candidate, weight)]``.
    """

    members: list[tuple[Any, float]]
    alias: str = ENSEMBLE

    models: list[Any] = field(default_factory=list, repr=False)
    train_end: pd.Timestamp | None = None
    fit_seconds: float = 0.0

    def fit(self, history: pd.DataFrame, stores: pd.DataFrame) -> EnsembleForecaster:
        t0 = time.perf_counter()
        self.models = [cand.build().fit(history, stores) for cand, _ in self.members]
        self.train_end = history["ds"].max()
        self.fit_seconds = time.perf_counter() - t0
        return self

    def predict(self, future: pd.DataFrame) -> pd.DataFrame:
        if not self.models:
            raise RuntimeError(f"{self.alias}.predict called before fit")
        total = np.zeros(len(future))
        for model, (_, weight) in zip(self.models, self.members, strict=True):
            if weight > 0:
                total += weight * model.predict(future)["yhat"].to_numpy(dtype="float64")
        out = future.drop(columns=["yhat"], errors="ignore").copy()
        out["yhat"] = total
        from app.forecasting.features import apply_closed

        return apply_closed(out)
