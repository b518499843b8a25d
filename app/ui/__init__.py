"""The operator UI: a Streamlit app that talks only to the sfmlops API (``sfmlops ui``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings, get_settings

APP_FILE = Path(__file__).with_name("streamlit_app.py")


def streamlit_command(settings: Settings) -> list[str]:
    """The ``streamlit run`` command line that serves the UI on ``bind_host:ui_port``."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_FILE),
        "--server.address",
        settings.bind_host,
        "--server.port",
        str(settings.ui_port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.showErrorDetails",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--server.fileWatcherType",
        "none",
    ]


def ui_env(settings: Settings) -> dict[str, str]:
    """The settings the Streamlit script reads, as ``SFMLOPS_*`` variables (so ``run(settings)`` is honoured)."""
    return {
        "SFMLOPS_API_URL": settings.api_base_url,
        "SFMLOPS_API_KEY": settings.api_key.get_secret_value(),
        "SFMLOPS_UI_POLL_SECONDS": str(settings.ui_poll_seconds),
        "SFMLOPS_UI_API_TIMEOUT_S": str(settings.ui_api_timeout_s),
        "SFMLOPS_HORIZON_DAYS": str(settings.horizon_days),
    }


def run(settings: Settings | None = None) -> int:
    """Serve the UI in the foreground (``sfmlops ui``) until interrupted; returns streamlit's exit code."""
    settings = settings or get_settings()
    print(f"sfmlops UI on http://{settings.bind_host}:{settings.ui_port} (API {settings.api_base_url})", flush=True)
    env = {
        **os.environ,
        **ui_env(settings),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(APP_FILE.parents[2]), os.environ.get("PYTHONPATH")])),
    }
    try:
        return subprocess.call(streamlit_command(settings), env=env)
    except KeyboardInterrupt:
        return 0
