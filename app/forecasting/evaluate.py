"""``sfmlops evaluate --actuals PATH``: score the champion on actuals it has never seen.

PATH is a CSV in the Kaggle ``train.csv`` format whose dates come after the model's training data. The
file's Open, Promo, StateHoliday and SchoolHoliday are the known-future inputs of the forecast; its Sales
are the actuals.

Besides the overall RMSPE the answer reads like a report (:func:`breakdown`, shared with the training run's
MLflow metrics and the UI's Accuracy view): RMSPE per horizon bucket (1-7, 8-14, 15-28, 29-48 days after the
end of the training data), per store type (from ``{table_stores}``) and the worst stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from app.forecasting import metrics as M

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings


#: How many of the worst stores a breakdown lists.
WORST_STORES = 10


class EvaluationError(ValueError):
    """The actuals file cannot be evaluated; the message says why."""


def breakdown(
    frame: pd.DataFrame,
    store_types: pd.Series | None = None,
    worst: int = WORST_STORES,
    pred_col: str = "yhat",
    true_col: str = "y",
    id_col: str = "unique_id",
) -> dict[str, Any]:
    """RMSPE by horizon bucket, by store type and of the worst stores of one forecast frame.

    Args:
        frame: Forecast rows with actuals, store ids and a ``horizon`` column or ``ds`` and ``cutoff`` columns
            (see :func:`app.forecasting.metrics.rmspe_by_bucket`).
        store_types: Store type by store id (stores missing from it count as type ``unknown``); None: no
            per-type figures.
        worst: How many stores to list, worst first.
        pred_col: Forecast column.
        true_col: Actuals column.
        id_col: Store id column.

    Returns:
        ``{"horizon_buckets": {"1-7": rmspe, ...}, "store_types": {"a": rmspe, ...}, "worst_stores": [{"store",
        "rmspe", "store_type"}, ...]}`` (``store_types`` empty without ``store_types``).
    """
    buckets = M.rmspe_by_bucket(frame, pred_col=pred_col, true_col=true_col)
    types: dict[str, float] = {}
    type_of = pd.Series(dtype="object")
    if store_types is not None:
        type_of = frame[id_col].map(store_types).fillna("unknown").astype(str)
        for name, grp in frame.groupby(type_of, sort=True):
            types[str(name)] = M.rmspe(grp[true_col], grp[pred_col])
    per_store = M.per_store_rmspe(frame, pred_col, true_col, id_col).sort_values(ascending=False, kind="stable").head(worst)
    worst_rows = []
    for store, value in per_store.items():
        row: dict[str, Any] = {"store": int(store), "rmspe": float(value)}
        if store_types is not None:
            row["store_type"] = str(store_types.get(store, "unknown"))
        worst_rows.append(row)
    return {"horizon_buckets": buckets, "store_types": types, "worst_stores": worst_rows}


def breakdown_metrics(result: dict[str, Any], prefix: str) -> dict[str, float]:
    """A :func:`breakdown` as flat metric names (MLflow): ``<prefix>.bucket.1-7``, ``<prefix>.store_type.a``,
    ``<prefix>.worst_store.<id>``; NaN values are left out."""
    out = {f"{prefix}.bucket.{k}": v for k, v in result["horizon_buckets"].items()}
    out.update({f"{prefix}.store_type.{k}": v for k, v in result["store_types"].items()})
    out.update({f"{prefix}.worst_store.{r['store']}": r["rmspe"] for r in result["worst_stores"]})
    return {k: float(v) for k, v in out.items() if v == v}


def store_types(settings: Settings) -> pd.Series:
    """Store type by store id from ``{table_stores}`` (empty when the table has no rows)."""
    from app.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT store, store_type FROM {settings.table_stores}")  # name from settings
            rows = cur.fetchall()
    finally:
        conn.close()
    return pd.Series({int(store): str(kind) for store, kind in rows}, dtype="object")


def score(model: Any, actuals: pd.DataFrame, source: str = "actuals", types: pd.Series | None = None) -> dict[str, Any]:
    """Forecast the rows of ``actuals`` (canonical sales frame) with ``model`` and score them.

    Args:
        model: A :class:`~app.forecasting.pyfunc.SalesForecaster`.
        actuals: Canonical sales frame with the actuals.
        source: Name of the data in error messages.
        types: Store type by store id, for the per-type figures of the breakdown.

    Returns:
        ``{"rmspe", "mae", "rows", "stores", "horizon_days", "horizon_buckets", "store_types", "worst_stores"}``
        (see :func:`breakdown`; the horizon is counted from the end of the training data).

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
    merged["horizon"] = (merged["date"] - model.train_end).dt.days
    return {
        "rmspe": M.rmspe(merged["sales"], merged["value"]),
        "mae": M.mae(merged["sales"], merged["value"]),
        "rows": int(len(merged)),
        "stores": int(merged["store"].nunique()),
        "horizon_days": int(merged["horizon"].max()),
        **breakdown(merged, types, pred_col="value", true_col="sales", id_col="store"),
    }


def evaluate(settings: Settings, path: str | Path, model_uri: str | None = None, projected_inputs: bool = False) -> dict[str, Any]:
    """Evaluate the champion (or ``model_uri``) on the Kaggle-format CSV at ``path``.

    Args:
        settings: Settings.
        path: The actuals file.
        model_uri: A model URI instead of the champion.
        projected_inputs: Also score the forecast from the inputs the batch forecast projects when it has no
            planning data (:func:`app.forecasting.batch.with_projected_inputs`, from the sales up to the model's
            training end) instead of the file's true inputs: what the planning data are worth (issue 17.5).

    Returns:
        :func:`score`'s answer and ``model_version`` (and ``projected_inputs``: ``rmspe``, ``mae``, ``rows``,
        ``horizon_buckets`` of that forecast).

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
    types = store_types(settings)
    result = {**score(model, actuals, source=str(path), types=types), "model_version": ident["model_version"]}
    if projected_inputs:
        from app.forecasting.batch import with_projected_inputs
        from app.forecasting.data import load_training_data

        sales, _, _ = load_training_data(settings, stores=sorted({int(s) for s in actuals["store"].unique()}))
        history = sales[sales["date"] <= model.train_end]
        if history.empty:
            raise EvaluationError(f"no sales up to the model's training end {model.train_end.date()} to project the inputs from")
        try:
            projected = with_projected_inputs(actuals, history, model.train_end + pd.Timedelta(days=1))
        except ValueError as exc:
            raise EvaluationError(str(exc)) from exc
        scored = score(model, projected, source=f"{path} (projected inputs)", types=types)
        result["projected_inputs"] = {k: scored[k] for k in ("rmspe", "mae", "rows", "horizon_buckets")}
    return result
