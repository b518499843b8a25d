"""Helpers for the UI tests: a real API (uvicorn on loopback) over the real local stack with seeded data.

Isolation: every table the API reads or writes (stores, sales, forecasts, clients, keys, training jobs) is this
run's own (``ui<run>_*``, ``isolated_support.isolated_settings``), the registry model is ``test-ui-<run>``, and the
UI uses API keys issued for this run; the tables are dropped at the end. Training jobs are real Ray jobs whose code is a tiny stand-in zip (file://)
that prints the champion-gate summary a real training job prints.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from app.config import PROJECT_ROOT, Settings
from app.stack.base import free_port

UI_APP = PROJECT_ROOT / "app" / "ui" / "streamlit_app.py"
SCREENSHOTS = PROJECT_ROOT / "screenshots"

#: Seeded data: stores 1..6; store 6 has sales but no forecast (404 case).
STORES = [(1, "a", "a"), (2, "b", "a"), (3, "c", "c"), (4, "d", "c"), (5, "a", "b"), (6, "a", "a")]
FORECAST_STORES = [1, 2, 3, 4, 5]
LAST_DAY = date(2015, 6, 13)
HORIZON = 14
#: Backtest RMSPE per store logged with the champion (store 4 is the worst, then 2).
STORE_RMSPE = {1: 0.08, 2: 0.21, 3: 0.05, 4: 0.34, 5: 0.12}
#: Store 2's planning data (uploaded as one version), by day of the horizon (1 = the day after LAST_DAY, a Sunday):
#: its forecast used it on days 1-4 (inputs plan, the others projected); day 6's row came after the forecast.
PLAN_STORE = 2
PLAN_DAYS = {
    1: {"open": 0, "promo": 0, "state_holiday": "0", "school_holiday": 0},
    2: {"open": 1, "promo": 1, "state_holiday": "0", "school_holiday": 1},
    3: {"open": 1, "promo": 1, "state_holiday": "a", "school_holiday": 0},
    4: {"open": 1, "promo": 0, "state_holiday": "0", "school_holiday": 1},
}
LATE_PLAN_DAY = 6

TRAIN_STORE_JOB = '''
import argparse, json, time
p = argparse.ArgumentParser(); p.add_argument("--store", type=int); a = p.parse_args()
print(f"training store {a.store}", flush=True)
time.sleep(4)
print(json.dumps({"store": a.store, "model_version": "3", "rmspe": 0.09,
                  "gate": {"decision": "champion", "version": "3", "new_rmspe": 0.09, "champion_rmspe": 0.1,
                           "previous_champion": "2", "reason": "new 0.0900 < champion v2 0.1000"}}))
'''


def _sales_rows(store: int) -> list[tuple]:
    rows = []
    for k in range(70):
        day = LAST_DAY - timedelta(days=k)
        dow = day.isoweekday()
        opened = int(dow != 7)
        promo = int(opened and ((day - date(2015, 1, 5)).days // 7) % 2 == 0 and dow <= 5)
        sales = (4000 + 300 * store + 900 * promo + 50 * dow) * opened
        rows.append((store, day, dow, sales, sales // 9, opened, promo, "0", 0))
    return rows


def _forecast_rows(model: str, version: str, run_id: str) -> list[tuple]:
    rows = []
    for store in FORECAST_STORES:
        for k in range(1, HORIZON + 1):
            day = LAST_DAY + timedelta(days=k)
            value = 0.0 if day.isoweekday() == 7 else 4000.0 + 300 * store + 10 * k
            inputs = "plan" if store == PLAN_STORE and k in PLAN_DAYS else "projected"
            rows.append((model, version, store, day, value, value * 0.85, value * 1.15, run_id, inputs))
    return rows


def _plan_rows() -> list[dict]:
    """Store 2's plan rows (:data:`PLAN_DAYS` and the late day), as ``POST /v1/planning`` takes them."""
    days = {**PLAN_DAYS, LATE_PLAN_DAY: {"open": 1, "promo": 1, "state_holiday": "0", "school_holiday": 0}}
    return [{"store": PLAN_STORE, "date": str(LAST_DAY + timedelta(days=k)), **v} for k, v in days.items()]


def _seed_registry(settings: Settings) -> dict[str, str]:
    """Two versions of a unique model: v1 challenger, v2 champion with per-store RMSPE artifact."""
    import mlflow
    from mlflow import MlflowClient

    os.environ.update(settings.aws_env())
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_experiment(f"{settings.mlflow_experiment}-ui-tests")
    client = MlflowClient(settings.mlflow_uri)
    client.create_registered_model(settings.model_name)
    runs = {}
    for version_rmspe in (0.14, 0.10):
        with mlflow.start_run() as run:
            mlflow.log_metrics(
                {
                    "backtest_rmspe": version_rmspe,
                    "median_baseline_rmspe": 0.128,
                    "improvement_vs_median": round(1 - version_rmspe / 0.128, 4),
                    "h48.lgbm.rmspe": version_rmspe,
                    "h48.median_baseline.rmspe": 0.128,
                    "h48.lgbm.mae": 610.0,
                    "h48.median_baseline.mae": 700.0,
                }
            )
            csv = "unique_id,rmspe\n" + "".join(f"{s},{v}\n" for s, v in STORE_RMSPE.items())
            mlflow.log_text(csv, "backtest/store_rmspe.csv")
            mlflow.log_dict({"stand_in": True}, "model/MLmodel.json")
            artifact_uri = run.info.artifact_uri
        version = client.create_model_version(settings.model_name, f"{artifact_uri}/model", run.info.run_id)
        runs[str(version.version)] = run.info.run_id
    client.set_registered_model_alias(settings.model_name, "challenger", "1")
    client.set_registered_model_alias(settings.model_name, "champion", "2")
    return runs


@dataclass
class UiEnv:
    """What the UI tests need: API settings, the API URL and keys."""

    settings: Settings
    api_url: str
    key: str
    other_key: str
    run_id: str

    def ui_env(self, *, api_url: str | None = None, key: str | None = None) -> dict[str, str]:
        """SFMLOPS_* variables that point the UI at this API."""
        return {
            "SFMLOPS_API_URL": api_url or self.api_url,
            "SFMLOPS_API_KEY": key if key is not None else self.key,
            "SFMLOPS_HORIZON_DAYS": str(HORIZON),
            "SFMLOPS_UI_POLL_SECONDS": "1",
            "SFMLOPS_UI_API_TIMEOUT_S": "10",
        }


class StreamlitServer:
    """``streamlit run app/ui/app.py`` as a subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        from app.ui import streamlit_command

        self.port = free_port()
        settings = Settings(ui_port=self.port, bind_host="127.0.0.1")
        full_env = {**os.environ, **env, "PYTHONPATH": str(PROJECT_ROOT)}
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            streamlit_command(settings), env=full_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"streamlit did not start on {self.url}; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Terminate the server (only the process this object started)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
