"""Fixtures for the ingestion tests: an isolated topic and set of tables per test on the real stack."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from ingest_helpers import load_stores

from app.config import PROJECT_ROOT, Settings, get_settings

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "rossmann"


@pytest.fixture(scope="session")
def ingest_base(request: pytest.FixtureRequest) -> Settings:
    """Settings of the running local stack (the project's ``stack`` fixture when it exists)."""
    try:
        return request.getfixturevalue("stack")
    except pytest.FixtureLookupError:
        return get_settings()


@pytest.fixture(scope="session")
def rossmann() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sales, stores): the real shared data when present, else the synthetic dataset."""
    if (SHARED_DATA / "store.csv").is_file():
        from app.data import kaggle

        train = next(p for p in (SHARED_DATA / "train.csv.gz", SHARED_DATA / "train.csv") if p.is_file())
        return kaggle.load_train(train), kaggle.load_stores(SHARED_DATA / "store.csv")
    from app.data import synthetic

    return synthetic.generate(42, 60, "2015-01-01", "2015-06-13")


def isolated(base: Settings, tmp_path: Path, stores: pd.DataFrame) -> Settings:
    """Settings with a fresh topic, fresh tables (migrated) and a local checkpoint folder."""
    from app.db import apply_migrations

    tag = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={
            "kafka_topic": f"sales_test_{tag}",
            "kafka_partitions": 4,
            "table_sales": f"t{tag}_sales",
            "table_stores": f"t{tag}_stores",
            "table_dead_letter": f"t{tag}_dead",
            "table_ledger": f"t{tag}_ledger",
            "table_ingest_staging": f"t{tag}_stage",
            "ingest_checkpoint": str(tmp_path / "checkpoint"),
            "state_dir": tmp_path / "state",
        }
    )
    apply_migrations(settings)
    load_stores(settings, stores)
    return settings


def drop_tables(settings: Settings) -> None:
    from app.db import transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
            (settings.table_sales.split("_")[0] + "_%",),
        )
        for (name,) in cur.fetchall():
            cur.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def ingest_settings(ingest_base: Settings, tmp_path: Path, rossmann) -> Settings:
    """Isolated settings for one test; its tables are dropped afterwards."""
    settings = isolated(ingest_base, tmp_path, rossmann[1])
    yield settings
    drop_tables(settings)
