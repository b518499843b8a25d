"""Isolated tagged tables: the one way tests get tables of their own on the running stack (issue 19).

:func:`isolated_settings` renames every ``table_*`` setting to ``<prefix><8 hex>_<name>`` (``table_sales`` ->
``t1a2b3c4d_sales``), applies the migrations to them, and :func:`drop_isolated` drops everything whose name starts
with that tag (tables, views, sequences, the key-version function). Nothing a test does through such settings can
reach the tables a user's stack serves. The fixture ``isolated_tables`` (``tests/conftest.py``) wraps both; support
modules that build their own settings (``montest_support``, ``e2e_support``, ...) call these functions directly.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from app.config import Settings

#: Every table setting (an isolated copy renames them all).
TABLE_SETTINGS = tuple(name for name in Settings.model_fields if name.startswith("table_"))
_TAG = re.compile(r"[a-z]{1,8}[0-9a-f]{8}")


def isolated_names(prefix: str = "t") -> dict[str, str]:
    """``{table_setting: "<prefix><tag>_<name>"}`` for every table setting, under a fresh tag."""
    if not re.fullmatch(r"[a-z]{1,8}", prefix):
        raise ValueError(f"prefix must be 1-8 lower-case letters, got {prefix!r}")
    tag = f"{prefix}{uuid.uuid4().hex[:8]}"
    return {name: f"{tag}_{name.removeprefix('table_')}" for name in TABLE_SETTINGS}


def isolated_settings(base: Settings, prefix: str = "t", *, migrate: bool = True, **update: Any) -> Settings:
    """``base`` with every table of its own (migrated unless ``migrate=False``) and ``update`` applied on top."""
    settings = base.model_copy(update={**isolated_names(prefix), **update})
    if migrate:
        from app.db import apply_migrations

        apply_migrations(settings)
    return settings


def table_env(settings: Settings) -> dict[str, str]:
    """The ``SFMLOPS_TABLE_*`` variables that give a child process (an API server, a Lambda) ``settings``' tables."""
    return {f"SFMLOPS_{name.upper()}": getattr(settings, name) for name in TABLE_SETTINGS}


def isolation_tag(settings: Settings) -> str:
    """The tag of isolated settings' tables; refuses settings whose tables are not isolated (a user's)."""
    tag = settings.table_sales.removesuffix("_sales")
    if not _TAG.fullmatch(tag) or any(not getattr(settings, n).startswith(f"{tag}_") for n in TABLE_SETTINGS):
        raise ValueError(f"settings are not isolated (table_sales={settings.table_sales!r}): refusing to drop their tables")
    return tag


def drop_isolated(settings: Settings) -> list[str]:
    """Drop every relation and function of isolated settings' tag; returns the names dropped."""
    from app.db import transaction

    like = isolation_tag(settings) + "\\_%"
    dropped = []
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relname LIKE %s"
            " AND relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY relkind = 'S', relname",
            (like,),
        )
        kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
        for name, kind in cur.fetchall():
            cur.execute(f'DROP {kinds[kind]} IF EXISTS "{name}" CASCADE')
            dropped.append(name)
        cur.execute("SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace AND proname LIKE %s", (like,))
        for (name,) in cur.fetchall():
            cur.execute(f'DROP FUNCTION IF EXISTS "{name}"() CASCADE')
            dropped.append(name)
    return dropped
