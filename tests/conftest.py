"""Shared fixtures: settings, the real local stack, and the shared Rossmann data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
