"""``sfmlops evaluate --actuals PATH``: score the champion on actuals it has never seen.

PATH is a CSV in the Kaggle ``train.csv`` format whose dates come after the model's training data. The
file's Open, Promo, StateHoliday and SchoolHoliday are the known-future inputs of the forecast; its Sales
are the actuals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from app.forecasting import metrics as M

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings


class EvaluationError(ValueError):
    """The actuals file cannot be evaluated; the message says why."""


def score(model: Any, actuals: pd.DataFrame, source: str = "actuals") -> dict[str, Any]:
    """Forecast the rows of ``actuals`` (canonical sales frame) with ``model`` and score them.

    Args:
        model: A :class:`~app.forecasting.pyfunc.SalesForecaster`.
        actuals: Canonical sales frame with the actuals.
        source: Name of the data in error messages.

    Returns:
        ``{"rmspe", "mae", "rows", "stores", "horizon_days"}``.

    Raises:
        EvaluationError: unknown stores, dates on or before the end of the training data, no rows.
    """
    if actuals.empty:
        raise EvaluationError(f"{source} has no rows")
    unknown = sorted(set(actuals["store"].astype(int)) - set(model.stores))
    if unknown:
        raise EvaluationError(
            f"{source} has {len(unknown)} store id(s) unknown to the model, e.g. {unknown[:10]}"
            f" (the model knows {len(model.stores)} stores)"
        )
    overlap = actuals["date"] <= model.train_end
    if overlap.any():
        raise EvaluationError(
            f"{source} has {int(overlap.sum())} row(s) dated {actuals.loc[overlap, 'date'].min().date()}.."
            f"{actuals.loc[overlap, 'date'].max().date()}, overlapping the training data (which ends"
            f" {model.train_end.date()}); evaluate only dates after it"
        )
    pred = model.predict(None, actuals)
    merged = actuals[["store", "date", "sales"]].merge(pred, on=["store", "date"], how="left", validate="one_to_one")
    return {
        "rmspe": M.rmspe(merged["sales"], merged["value"]),
        "mae": M.mae(merged["sales"], merged["value"]),
        "rows": int(len(merged)),
        "stores": int(merged["store"].nunique()),
        "horizon_days": int((merged["date"].max() - model.train_end).days),
    }


def evaluate(settings: "Settings", path: str | Path, model_uri: str | None = None) -> dict[str, Any]:
    """Evaluate the champion (or ``model_uri``) on the Kaggle-format CSV at ``path``.

    Returns:
        ``{"rmspe", "mae", "rows", "stores", "horizon_days", "model_version"}``.

    Raises:
        EvaluationError: for missing/invalid columns (named), unknown stores, overlapping dates.
    """
    from app.data.kaggle import load_train
    from app.data.validation import DataValidationError
    from app.forecasting.batch import load_model

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"actuals file {path} does not exist")
    try:
        actuals = load_train(path)
    except DataValidationError as exc:
        raise EvaluationError(str(exc)) from exc
    model, ident = load_model(settings, model_uri)
    return {**score(model, actuals, source=str(path)), "model_version": ident["model_version"]}
