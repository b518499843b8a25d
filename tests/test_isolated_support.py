"""The one isolated-tables helper (``tests/isolated_support.py``): every table renamed, migrated, and dropped with
everything the migrations created for it; a user's tables are never dropped."""

from __future__ import annotations

import re

import pytest
from isolated_support import TABLE_SETTINGS, drop_isolated, isolated_settings, isolation_tag

from app.config import Settings
from app.db import transaction

pytestmark = pytest.mark.integration


def _objects(settings: Settings, like: str) -> set[str]:
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relname LIKE %s"
                    " UNION SELECT proname FROM pg_proc WHERE proname LIKE %s", (like, like))
        return {name for (name,) in cur.fetchall()}


def test_isolated_settings_own_every_table_and_drop_removes_all_they_created(settings: Settings) -> None:
    s = isolated_settings(settings, "iso", model_name="test-iso")
    tag = isolation_tag(s)
    assert s.model_name == "test-iso" and all(getattr(s, n) == f"{tag}_{n.removeprefix('table_')}" for n in TABLE_SETTINGS)
    created = _objects(s, tag + "\\_%")
    assert {s.table_sales, s.table_api_keys, s.table_training_jobs, f"{s.table_forecasts}_run_seq",
            f"{s.table_api_keys}_bump_version"} <= created
    users = _objects(settings, settings.table_training_jobs)
    assert set(drop_isolated(s)) >= {s.table_sales, s.table_training_jobs, f"{s.table_api_keys}_bump_version"}
    assert _objects(s, tag + "\\_%") == set()
    assert _objects(settings, settings.table_training_jobs) == users  # the stack's own table is still there


def test_settings_that_are_not_isolated_are_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match=re.escape(f"settings are not isolated (table_sales={settings.table_sales!r})")):
        drop_isolated(settings)
    half = isolated_settings(settings, "iso", migrate=False).model_copy(update={"table_api_keys": "api_keys"})
    with pytest.raises(ValueError, match="not isolated"):
        drop_isolated(half)
    with pytest.raises(ValueError, match="prefix must be 1-8 lower-case letters"):
        isolated_settings(settings, "Bad-")
