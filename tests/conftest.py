"""Shared fixtures: settings, the real local stack, the shared Rossmann data, isolated tables, and the check that
the session leaves what a running stack serves as it was."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from isolated_support import drop_isolated, isolated_settings

from app.config import PROJECT_ROOT, Settings, get_settings


@pytest.fixture
def settings() -> Settings:
    """The settings of the running local stack (fresh read of the environment)."""
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="session")
def stack() -> Settings:
    """Ensure the local stack is up (reusing running services) and return its settings."""
    from app import stack as local_stack

    get_settings.cache_clear()
    s = get_settings()
    local_stack.up(s)
    return s


@pytest.fixture(scope="session")
def rossmann_dir() -> Path:
    """The shared real Rossmann data; tests that need it are skipped on machines without it."""
    candidates = [os.environ.get("SFMLOPS_TEST_ROSSMANN_DIR"), str(PROJECT_ROOT.parent / "shared" / "data" / "rossmann")]
    for c in candidates:
        if c and (Path(c) / "store.csv").is_file():
            return Path(c)
    pytest.skip("shared Rossmann data not present on this machine")


@pytest.fixture
def isolated_tables() -> Iterator[Callable[..., Settings]]:
    """Factory ``make(base, prefix="t", migrate=True, **update)`` of settings whose every table is the test's own
    (:func:`isolated_support.isolated_settings`); all of them are dropped after the test."""
    made: list[Settings] = []

    def make(base: Settings, prefix: str = "t", *, migrate: bool = True, **update: Any) -> Settings:
        settings = isolated_settings(base, prefix, migrate=migrate, **update)
        made.append(settings)
        return settings

    yield make
    for settings in made:
        drop_isolated(settings)


#: What a running stack serves, read at the start and the end of the session (issue 15.3, issue 19): the configured
#: model's forecast rows, the job, client and key tables (row counts and newest ids) and the model's registry aliases.
_SERVED_QUERIES = {
    "forecasts": "SELECT count(*) || ':' || coalesce(md5(string_agg(f::text, ',' ORDER BY f.model_version, f.store, f.date)), '')"
    " FROM {table_forecasts} f WHERE f.model_name = %(model)s",
    "training_jobs": "SELECT count(*) || ':' || coalesce((SELECT id FROM {table_training_jobs} ORDER BY created_at DESC, id DESC LIMIT 1), '')"
    " FROM {table_training_jobs}",
    "api_clients": "SELECT count(*) || ':' || coalesce(max(id), 0) FROM {table_api_clients}",
    "api_keys": "SELECT count(*) || ':' || coalesce(max(id), 0) || ':' || count(revoked_at) FROM {table_api_keys}",
}


def _served_state(s: Settings) -> dict[str, str] | None:
    """A digest per table a running stack's API serves (``absent`` for a table that does not exist) and the
    registry aliases of the configured model; None when Postgres is not reachable (test-fast: nothing to protect)."""
    try:
        from app.db import connect, render

        conn = connect(s, connect_timeout=2)
    except Exception:  # noqa: BLE001 - no database here (test-fast): nothing to protect
        return None
    state: dict[str, str] = {}
    try:
        with conn, conn.cursor() as cur:
            for name, sql in _SERVED_QUERIES.items():
                table = getattr(s, f"table_{name}")
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
                if not cur.fetchone()[0]:
                    state[name] = "absent"
                    continue
                cur.execute(render(sql, s), {"model": s.model_name})
                state[name] = cur.fetchone()[0]
    finally:
        conn.close()
    state["model_aliases"] = _aliases(s)
    return state


def _aliases(s: Settings) -> str:
    """``alias=version,...`` of the configured registered model ('' when it does not exist, 'unreachable' without MLflow)."""
    from app.api.errors import ApiError
    from app.api.mlflow_rest import MlflowRest

    rest = MlflowRest(s, timeout_s=5)
    try:
        model = rest.registered_model(s.model_name)
    except ApiError:
        return "unreachable"
    finally:
        rest.close()
    return ",".join(sorted(f"{a.get('alias')}={a.get('version')}" for a in (model or {}).get("aliases", [])))


@pytest.fixture(scope="session", autouse=True)
def served_state_unchanged() -> Iterator[None]:
    """The suite leaves what a running stack serves unchanged: the configured model's forecast rows, the
    training-job, API-client and API-key tables (row counts, newest ids) and the model's aliases are the same after
    the session as before it (tests use tables and model names of their own: ``isolated_tables``)."""
    get_settings.cache_clear()
    s = get_settings()
    before = _served_state(s)
    yield
    after = _served_state(s) if before is not None else None
    if after is None and before is not None:
        import warnings

        warnings.warn("could not re-read the served tables at the end of the session: they were not checked", stacklevel=1)
    elif before is not None and after is not None:
        if "unreachable" in (before["model_aliases"], after["model_aliases"]):
            before.pop("model_aliases"), after.pop("model_aliases")
        changed = {k: f"{before[k]} -> {after[k]}" for k in before if before[k] != after[k]}
        assert not changed, (
            f"the test session changed what the running stack serves (model {s.model_name!r}): {changed};"
            " tests must write to tables and model names of their own (the isolated_tables fixture)"
        )
