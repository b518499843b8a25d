"""Reading training data (sales, stores) from PostgreSQL, with the prepared parquet files as fallback."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Literal

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


def _copy(conn, sql: str) -> pd.DataFrame:  # noqa: ANN001 - psycopg2 connection
    buf = io.StringIO()
    with conn.cursor() as cur:
        cur.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", buf)
    buf.seek(0)
    return pd.read_csv(buf, dtype={"state_holiday": str, "promo_interval": str, "store_type": str, "assortment": str})


def read_postgres(settings: "Settings", stores: list[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``settings.table_sales`` and ``settings.table_stores`` into the canonical frames.

    Args:
        settings: Connection settings and table names.
        stores: Only these store ids (all when None).
    """
    from app.db import connect

    where = f" WHERE store IN ({','.join(str(int(s)) for s in stores)})" if stores else ""
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


def load_training_data(settings: "Settings", source: Source = "auto", stores: list[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Sales and stores for training.

    Args:
        settings: Settings.
        source: ``postgres`` (the ingested tables), ``dataset`` (``sfmlops data`` parquet files), or
            ``auto``: Postgres when its sales table has rows, else the parquet files.
        stores: Only these store ids.

    Returns:
        ``(sales, stores, source_used)``.

    Raises:
        ValueError: when no data is found or requested stores are unknown.
    """
    sales = stores_df = None
    used = source
    if source in ("auto", "postgres"):
        try:
            sales, stores_df = read_postgres(settings, stores)
            used = "postgres"
        except Exception as exc:  # noqa: BLE001 - fall back only in auto mode
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
