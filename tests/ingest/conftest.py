"""Fixtures for the ingestion tests: an isolated topic and set of tables per test on the real stack."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from ingest_helpers import load_stores
from isolated_support import drop_isolated, isolated_settings

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
    """Settings with every table of their own (migrated, :func:`isolated_support.isolated_settings`), a fresh topic
    and consumer group (the job commits its offsets there for monitoring: never the stack's group), a local
    checkpoint folder and the stores loaded."""
    tag = uuid.uuid4().hex[:8]
    settings = isolated_settings(
        base,
        "t",
        kafka_topic=f"sales_test_{tag}",
        kafka_consumer_group=f"sfmlops-test-{tag}",
        kafka_partitions=4,
        ingest_checkpoint=str(tmp_path / "checkpoint"),
        state_dir=tmp_path / "state",
    )
    load_stores(settings, stores)
    return settings


@pytest.fixture
def ingest_settings(ingest_base: Settings, tmp_path: Path, rossmann) -> Settings:
    """Isolated settings for one test; its tables are dropped afterwards."""
    settings = isolated(ingest_base, tmp_path, rossmann[1])
    yield settings
    drop_isolated(settings)
    drop_group(settings)


def drop_group(settings: Settings) -> None:
    """Delete the test's consumer group (there is none when no ingest run committed for it)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="sfmlops-test")
    try:
        admin.delete_groups([settings.kafka_consumer_group])  # {group: error name} when there was none: fine
    finally:
        admin.close()
