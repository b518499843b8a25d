"""Bulk loads of the canonical frames into PostgreSQL (COPY, then upsert)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from app.data.schema import SALES_COLUMNS, STORES_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from app.config import Settings


def _copy_upsert(settings: Settings, frame: pd.DataFrame, table: str, columns: list[str], key: list[str]) -> int:
    from psycopg2 import sql

    from app.db import transaction

    buf = io.StringIO()
    frame[columns].to_csv(buf, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d")
    buf.seek(0)
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    updates = sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in columns if c not in key
    )
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TEMP TABLE _load (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DROP").format(t=sql.Identifier(table)))
        cur.copy_expert(sql.SQL("COPY _load ({}) FROM STDIN WITH (FORMAT csv, NULL '\\N')").format(cols).as_string(cur), buf)
        cur.execute(
            sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM _load ON CONFLICT ({k}) DO UPDATE SET {u}").format(
                t=sql.Identifier(table), c=cols, k=sql.SQL(", ").join(map(sql.Identifier, key)), u=updates
            )
        )
        return cur.rowcount


def load_stores_table(settings: Settings, stores: pd.DataFrame | None = None) -> int:
    """Upsert store metadata (default: the prepared parquet) into ``settings.table_stores``."""
    from app.data import load_dataset

    if stores is None:
        _, stores = load_dataset(settings)
    frame = stores.copy()
    for col in ("competition_open_since_month", "competition_open_since_year", "promo2_since_week", "promo2_since_year"):
        frame[col] = frame[col].astype("Int64")
    return _copy_upsert(settings, frame, settings.table_stores, STORES_COLUMNS, ["store"])


def load_sales_table(settings: Settings, sales: pd.DataFrame) -> int:
    """Upsert sales rows directly (test seeding and development; production data arrives via Kafka/Spark)."""
    return _copy_upsert(settings, sales, settings.table_sales, SALES_COLUMNS, ["store", "date"])
