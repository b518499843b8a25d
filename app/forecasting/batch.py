"""Batch forecast: the champion's forecasts for every store for the next N days into ``{table_forecasts}``.

The known-future inputs of a (store, day) come from the planning data (``{table_planning}``, the newest
version's row: :mod:`app.forecasting.planning`) where the business uploaded them, and are projected from the
recent past everywhere else; each forecast row records which (``inputs`` = ``plan`` | ``projected``), and the
API returns it with the forecast. The projection (:func:`project_future_inputs`):

* ``open``: 1 when the store was open on at least half of the same weekday in the last 8 weeks;
* ``promo``: Rossmann promotions run on a two-week cycle, so a day copies ``promo`` from 14 days (or a
  multiple of 14 days) earlier;
* ``state_holiday`` = '0' and ``school_holiday`` = 0 (no holiday calendar is available here).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

log = logging.getLogger(__name__)


def project_future_inputs(sales: pd.DataFrame, days: int, start: pd.Timestamp | None = None) -> pd.DataFrame:
    """Known-future inputs for ``days`` days after the last day of ``sales`` (see module docstring).

    Args:
        sales: Canonical sales frame (at least the last 8 weeks of every store).
        days: Number of days to project.
        start: First projected day (default: the day after the last day in ``sales``).

    Returns:
        Frame with ``store, date, day_of_week, open, promo, state_holiday, school_holiday``.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    last = sales["date"].max()
    start = pd.Timestamp(start) if start is not None else last + pd.Timedelta(days=1)
    recent = sales[sales["date"] > last - pd.Timedelta(days=56)]
    open_rate = recent.groupby(["store", recent["date"].dt.dayofweek.rename("dow")])["open"].mean()
    promo_cycle = recent[recent["date"] > last - pd.Timedelta(days=14)].set_index(["store", "date"])["promo"]
    stores = np.sort(sales["store"].unique())
    dates = pd.date_range(start, periods=days, freq="D")
    grid = pd.MultiIndex.from_product([stores, dates], names=["store", "date"]).to_frame(index=False)
    dow = grid["date"].dt.dayofweek
    grid["day_of_week"] = (dow + 1).astype("int8")
    rate = open_rate.reindex(pd.MultiIndex.from_arrays([grid["store"], dow])).to_numpy()
    grid["open"] = (np.nan_to_num(rate, nan=1.0) >= 0.5).astype("int8")
    # Map each day back into the last 14 observed days.
    source_day = grid["date"] - pd.to_timedelta(((grid["date"] - last).dt.days + 13) // 14 * 14, unit="D")
    promo = promo_cycle.reindex(pd.MultiIndex.from_arrays([grid["store"], source_day])).to_numpy()
    grid["promo"] = np.nan_to_num(promo, nan=0.0).astype("int8")
    grid.loc[grid["open"] == 0, "promo"] = 0
    grid["state_holiday"] = "0"
    grid["school_holiday"] = np.int8(0)
    return grid


def with_projected_inputs(rows: pd.DataFrame, history: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """``rows`` (a canonical sales frame of days from ``start`` on) with the known-future inputs that
    :func:`project_future_inputs` projects from ``history`` in place of their own: what a forecast without
    planning data sees (``sfmlops evaluate --projected-inputs``). Other columns (``sales``...) are kept.

    Raises:
        ValueError: a store of ``rows`` has no history.
    """
    start = pd.Timestamp(start)
    days = int((rows["date"].max() - start).days) + 1
    future = project_future_inputs(history, max(days, 1), start=start)
    inputs = ["day_of_week", "open", "promo", "state_holiday", "school_holiday"]
    keys = rows.drop(columns=[c for c in inputs if c in rows.columns]).astype({"store": "int64"})
    out = keys.merge(future.astype({"store": "int64"}), on=["store", "date"], how="left", validate="one_to_one")
    missing = out["open"].isna()
    if missing.any():
        raise ValueError(f"{int(missing.sum())} row(s) of store(s) {sorted(out.loc[missing, 'store'].unique().tolist())[:10]} have no history"
                         f" to project inputs from (or are dated before {start.date()})")
    return out.astype(dict.fromkeys(("day_of_week", "open", "promo", "school_holiday"), "int8"))


def load_plan(settings: Settings, first: pd.Timestamp, last: pd.Timestamp, stores: list[int] | None = None) -> pd.DataFrame:
    """The planning data of the days ``first..last`` (of ``stores``): the newest version's row per (store, date).

    Returns:
        Frame with ``store, date, open, promo, state_holiday, school_holiday, version`` (empty without a plan).

    Raises:
        RuntimeError: the planning table does not exist (the migrations were not applied).
    """
    import psycopg2

    from app.db import connect
    from app.forecasting.planning import read_plan

    conn = connect(settings)
    try:
        rows = read_plan(conn, settings, pd.Timestamp(first).date(), pd.Timestamp(last).date(), stores)
    except psycopg2.errors.UndefinedTable as exc:
        raise RuntimeError(
            f"planning table {settings.table_planning!r} (SFMLOPS_TABLE_PLANNING) does not exist: run `sfmlops up` to apply the migrations"
        ) from exc
    finally:
        conn.close()
    plan = pd.DataFrame(rows, columns=["store", "date", "open", "promo", "state_holiday", "school_holiday", "version"])
    plan["date"] = pd.to_datetime(plan["date"])
    return plan.astype({"store": "int32", "open": "int8", "promo": "int8", "state_holiday": "object", "school_holiday": "int8"})


def apply_plan(future: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """``future`` (projected inputs, :func:`project_future_inputs`) with the inputs of ``plan`` wherever it has the
    (store, date), and an ``inputs`` column: ``plan`` for those rows, ``projected`` for the others.

    Rows of ``plan`` outside ``future``'s (store, date) grid are ignored.
    """
    out = future.copy()
    cols = ["open", "promo", "state_holiday", "school_holiday"]
    if plan.empty:
        out["inputs"] = "projected"
        return out
    keys = out[["store", "date"]].astype({"store": "int64"})
    planned = plan[["store", "date", *cols]].astype({"store": "int64"}).assign(date=pd.to_datetime(plan["date"]).dt.normalize())
    merged = keys.merge(planned, on=["store", "date"], how="left", validate="one_to_one")  # in the order of ``keys``
    hit = merged["open"].notna().to_numpy()
    for col in cols:
        out.loc[hit, col] = merged.loc[hit, col].astype(out[col].dtype).to_numpy()
    out["inputs"] = np.where(hit, "plan", "projected")
    return out


def load_model(settings: Settings, model_uri: str | None = None, stores: list[int] | None = None) -> tuple[Any, dict[str, str]]:
    """Load the champion (or ``model_uri``) as the python object behind the pyfunc, with its identity.

    With ``stores``, the champion of exactly that store scope (alias ``champion-stores-<hash>``, set by a
    training on those stores) wins over the all-stores ``champion`` when it exists.

    Returns:
        ``(SalesForecaster, {"model_name", "model_version", "run_id"})`` (``run_id`` "": a version registered
        without a run; ``forecasts.run_id`` is NOT NULL).
    """
    import mlflow
    from mlflow import MlflowClient

    from app.forecasting.registry import CHAMPION, scope_aliases, scope_of
    from app.forecasting.tracking import configure_mlflow

    configure_mlflow(settings)
    client = MlflowClient()
    if model_uri is None:
        mv = None
        if stores:
            try:
                mv = client.get_model_version_by_alias(settings.model_name, scope_aliases(scope_of(stores))[0])
            except Exception:  # noqa: BLE001 - no champion of that scope: the all-stores champion below
                mv = None
        try:
            mv = mv or client.get_model_version_by_alias(settings.model_name, CHAMPION)
        except Exception as exc:
            raise RuntimeError(
                f"registered model {settings.model_name!r} has no '{CHAMPION}' alias at {settings.mlflow_uri}: train first"
            ) from exc
        model_uri = f"models:/{settings.model_name}/{mv.version}"
        ident = {"model_name": settings.model_name, "model_version": str(mv.version), "run_id": mv.run_id or ""}
    else:
        ident = {"model_name": settings.model_name, "model_version": model_uri, "run_id": model_uri.split("/")[1] if model_uri.startswith("runs:/") else ""}
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    return pyfunc.unwrap_python_model(), ident


def write_forecasts(settings: Settings, frame: pd.DataFrame, ident: dict[str, str]) -> int:
    """Upsert forecast rows into ``{table_forecasts}`` (idempotent per model name, version, store, date).

    ``frame`` has ``store, date, value, lower, upper`` and optionally ``inputs`` (``plan`` | ``projected``, the
    default).
    """
    from psycopg2.extras import execute_values

    from app.db import connect

    sql = (
        f"INSERT INTO {settings.table_forecasts} (model_name, model_version, store, date, value, lower, upper, run_id, forecast_run, inputs)"
        " VALUES %s ON CONFLICT (model_name, model_version, store, date) DO UPDATE SET value = EXCLUDED.value, lower = EXCLUDED.lower,"
        " upper = EXCLUDED.upper, run_id = EXCLUDED.run_id, forecast_run = EXCLUDED.forecast_run, inputs = EXCLUDED.inputs,"
        " created_at = now()"
    )
    # Which inputs each row used (apply_plan); a frame without the column was forecast from projected inputs.
    labels = frame["inputs"] if "inputs" in frame.columns else pd.Series("projected", index=frame.index)
    with connect(settings) as conn, conn.cursor() as cur:
        # One run number per call, stamped on every row in this one transaction (the API serves a store's newest run).
        cur.execute("SELECT nextval(%s)", (f"{settings.table_forecasts}_run_seq",))
        run = cur.fetchone()[0]
        rows = [
            (ident["model_name"], ident["model_version"], int(r.store), r.date.date(), float(r.value), float(r.lower), float(r.upper), ident["run_id"], run,
             label)
            for r, label in zip(frame.itertuples(index=False), labels, strict=True)
        ]
        execute_values(cur, sql, rows, page_size=5000)
    conn.close()
    return len(rows)


def forecast(
    settings: Settings,
    days: int | None = None,
    stores: list[int] | None = None,
    model_uri: str | None = None,
    source: str = "auto",
    write: bool = True,
    version_label: str | None = None,
) -> dict[str, Any]:
    """Forecast every store (or ``stores``) for the ``days`` days after the sales data and store them.

    The known-future inputs are the planning data's where ``{table_planning}`` has the (store, day), projected
    elsewhere (:func:`apply_plan`); each row's ``inputs`` says which.

    Args:
        settings: Settings (MLflow, Postgres, table names, ``horizon_days`` as default ``days``).
        days: Horizon in days.
        stores: Only these stores.
        model_uri: A model URI instead of the champion.
        source: Where the recent sales come from (see :func:`app.forecasting.data.load_training_data`).
        write: Write to the forecasts table (False: only return the summary).
        version_label: Value of ``model_version`` in the table (default: the registry version).

    Returns:
        Summary: rows written, stores, first/last date, model identity, ``plan_rows``/``projected_rows`` (how
        many rows used planned / projected inputs), seconds.
    """
    from app.forecasting.data import load_training_data

    t0 = time.perf_counter()
    days = int(days or settings.horizon_days)
    model, ident = load_model(settings, model_uri, stores)
    if version_label:
        ident["model_version"] = version_label
    sales, _, used = load_training_data(settings, source=source, stores=stores)  # type: ignore[arg-type]
    known = set(model.stores)
    sales = sales[sales["store"].isin(known)]
    if sales.empty:
        raise ValueError("none of the requested stores is known to the model")
    start = max(sales["date"].max(), model.train_end) + pd.Timedelta(days=1)
    future = project_future_inputs(sales, days, start=start)
    plan = load_plan(settings, start, start + pd.Timedelta(days=days - 1), sorted(int(s) for s in future["store"].unique()) if stores else None)
    future = apply_plan(future, plan)
    pred = model.predict(None, future)
    labels = future[["store", "date", "inputs"]].astype({"store": "int64"})
    pred = pred.merge(labels, on=["store", "date"], how="left", validate="one_to_one")
    written = write_forecasts(settings, pred, ident) if write else 0
    return {
        **ident,
        "rows": int(len(pred)),
        "written": int(written),
        "stores": int(pred["store"].nunique()),
        "first_date": str(pred["date"].min().date()),
        "last_date": str(pred["date"].max().date()),
        "days": days,
        "plan_rows": int((pred["inputs"] == "plan").sum()),
        "projected_rows": int((pred["inputs"] == "projected").sum()),
        "source": used,
        "seconds": round(time.perf_counter() - t0, 2),
    }
