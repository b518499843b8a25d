"""Reading training data (sales, stores) from PostgreSQL, with the prepared parquet files as fallback."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from app.data.schema import SALES_DTYPES

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

log = logging.getLogger(__name__)

SALES_SELECT = "store, date, day_of_week, sales, customers, open, promo, state_holiday, school_holiday"
STORES_SELECT = (
    "store, store_type, assortment, competition_distance, competition_open_since_month, competition_open_since_year,"
    " promo2, promo2_since_week, promo2_since_year, promo_interval"
)

Source = Literal["auto", "postgres", "dataset"]


def _copy(conn, sql: str) -> pd.DataFrame:  # psycopg2 connection
    buf = io.StringIO()
    with conn.cursor() as cur:
        cur.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", buf)
    buf.seek(0)
    return pd.read_csv(buf, dtype={"state_holiday": str, "promo_interval": str, "store_type": str, "assortment": str})


def _where(stores: list[int] | tuple[int, ...] | None) -> str:
    """A keyed filter on ``store`` (the sales table's primary key leads with it): a range for consecutive ids."""
    if not stores:
        return ""
    ids = sorted({int(s) for s in stores})
    if ids[-1] - ids[0] + 1 == len(ids):
        return f" WHERE store BETWEEN {ids[0]} AND {ids[-1]}"
    return f" WHERE store IN ({','.join(str(s) for s in ids)})"


def read_postgres(settings: Settings, stores: list[int] | tuple[int, ...] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``settings.table_sales`` and ``settings.table_stores`` into the canonical frames (one ``COPY`` each).

    Args:
        settings: Connection settings and table names.
        stores: Only these store ids (all when None); also the unit of a sharded read (:func:`read_sharded`),
            each shard with its own stores' metadata.
    """
    from app.db import connect

    where = _where(stores)
    with connect(settings, connect_timeout=10) as conn:
        sales = _copy(conn, f"SELECT {SALES_SELECT} FROM {settings.table_sales}{where}")
        stores_df = _copy(conn, f"SELECT {STORES_SELECT} FROM {settings.table_stores}{where}")
    conn.close()
    sales["date"] = pd.to_datetime(sales["date"])
    sales["state_holiday"] = sales["state_holiday"].astype(str).str.strip()
    sales = sales.astype(SALES_DTYPES)
    stores_df["store"] = stores_df["store"].astype("int32")
    stores_df["promo_interval"] = stores_df["promo_interval"].where(stores_df["promo_interval"].notna(), None)
    return sales.sort_values(["store", "date"], ignore_index=True), stores_df.sort_values("store", ignore_index=True)


def store_ids(settings: Settings, stores: list[int] | None = None) -> list[int]:
    """Store ids in the sales or the stores table (of ``stores`` when given): the keys a sharded read splits."""
    from app.db import connect

    where = _where(stores)
    with connect(settings, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT DISTINCT store FROM {settings.table_sales}{where} UNION SELECT store FROM {settings.table_stores}{where} ORDER BY 1"
        )
        ids = [int(r[0]) for r in cur.fetchall()]
    conn.close()
    return ids


def store_shards(stores: list[int], size: int) -> list[tuple[int, ...]]:
    """Consecutive shards of at most ``size`` stores (sorted ids)."""
    ids = sorted(int(s) for s in stores)
    size = max(1, int(size))
    return [tuple(ids[i : i + size]) for i in range(0, len(ids), size)]


def read_sharded(
    settings: Settings, shards: int, stores: list[int] | None = None, run: Callable[[list[tuple[int, ...]]], list[Any]] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`read_postgres` in ``shards`` keyed reads of consecutive store ranges, each with its stores'
    metadata, run by ``run`` (default: one after the other here; the pipeline passes its executor, so on Ray
    every shard is read by a task of its own, in parallel); the result equals :func:`read_postgres`.

    Args:
        settings: Settings.
        shards: Number of shards (>= 1).
        stores: Only these store ids.
        run: Reads a list of shards, returning ``[(sales, stores), ...]`` in order.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    ids = store_ids(settings, stores)
    if not ids:
        return read_postgres(settings, stores)
    parts = store_shards(ids, -(-len(ids) // shards))
    run = run or (lambda ps: [read_postgres(settings, p) for p in ps])
    frames = run(parts)
    sales = pd.concat([f[0] for f in frames], ignore_index=True)
    meta = pd.concat([f[1] for f in frames], ignore_index=True)
    return sales.sort_values(["store", "date"], ignore_index=True), meta.sort_values("store", ignore_index=True)


def load_training_data(
    settings: Settings, source: Source = "auto", stores: list[int] | None = None, shards: int = 1,
    run: Callable[[list[tuple[int, ...]]], list[Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Sales and stores for training.

    Args:
        settings: Settings.
        source: ``postgres`` (the ingested tables), ``dataset`` (``sfmlops data`` parquet files), or
            ``auto``: Postgres when its sales table has rows, else the parquet files.
        stores: Only these store ids.
        shards: Read PostgreSQL in this many keyed store-range reads (:func:`read_sharded`; 1: one ``COPY``).
        run: How the shards are read (see :func:`read_sharded`).

    Returns:
        ``(sales, stores, source_used)``.

    Raises:
        ValueError: when no data is found or requested stores are unknown.
    """
    sales = stores_df = None
    used = source
    if source in ("auto", "postgres"):
        try:
            sales, stores_df = read_sharded(settings, shards, stores, run) if shards > 1 else read_postgres(settings, stores)
            used = "postgres"
        except Exception as exc:  # fall back only in auto mode
            if source == "postgres":
                raise
            log.warning("reading %s from PostgreSQL failed (%s); using the prepared dataset", settings.table_sales, exc)
        if source == "auto" and (sales is None or sales.empty):
            sales = None
    if sales is None:
        from app.data import load_dataset

        sales, stores_df = load_dataset(settings)
        used = "dataset"
        if stores:
            sales = sales[sales["store"].isin(stores)].reset_index(drop=True)
            stores_df = stores_df[stores_df["store"].isin(stores)].reset_index(drop=True)
    assert stores_df is not None  # read (or loaded) together with sales
    if sales.empty:
        raise ValueError(f"no sales rows found (source={used}, table {settings.table_sales})")
    if stores:
        unknown = sorted(set(stores) - set(sales["store"].unique()))
        if unknown:
            raise ValueError(f"unknown store id(s) {unknown[:10]}: not in the sales data ({used})")
    missing_meta = sorted(set(sales["store"].unique()) - set(stores_df["store"]))
    if missing_meta:
        raise ValueError(f"store(s) {missing_meta[:10]} have sales but no row in {settings.table_stores}")
    return sales, stores_df, used
