"""A small training job and a ``kind=forecast`` job through the real API on the real Ray head.

Isolated: its own sales/stores/forecasts tables (a few stores' history from the shared Kaggle data, or
the synthetic dataset), its own registered model name and job-code zip on the emulator's S3, so the
stack's data and champion are left alone.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.common.jobs import FINISHED_STATES
from app.config import PROJECT_ROOT, Settings
from app.db import transaction

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TERMINAL = set(FINISHED_STATES)
STORES = [1, 2, 3]
HISTORY_DAYS = 400


def _slice() -> tuple[Any, Any]:
    """The last ``HISTORY_DAYS`` days of ``STORES`` (shared Kaggle data, else synthetic) and their store rows."""
    import pandas as pd

    folder = next(
        (p for p in (os.environ.get("SFMLOPS_TEST_ROSSMANN_DIR"), str(PROJECT_ROOT.parent / "shared" / "data" / "rossmann"))
         if p and os.path.isfile(os.path.join(p, "store.csv"))),
        None,
    )
    if folder:
        from app.data import kaggle

        sales, stores = kaggle.load_train(os.path.join(folder, "train.csv.gz")), kaggle.load_stores(os.path.join(folder, "store.csv"))
    else:
        from app.data import synthetic

        sales, stores = synthetic.generate(7, len(STORES), "2014-01-01", "2015-06-13")
    sales = sales[sales["store"].isin(STORES) & (sales["date"] > sales["date"].max() - pd.Timedelta(days=HISTORY_DAYS))]
    return sales.reset_index(drop=True), stores[stores["store"].isin(STORES)].reset_index(drop=True)


@pytest.fixture(scope="module")
def job_settings(api_settings: Settings) -> Settings:
    """Fresh tables with the slice, a unique model name and this checkout's job code on S3."""
    from app.data.load import load_sales_table, load_stores_table
    from app.db import apply_migrations, transaction
    from app.jobs import package as job_package

    tag = uuid.uuid4().hex[:8]
    settings = api_settings.model_copy(update={
        "table_sales": f"tapi{tag}_sales",
        "table_stores": f"tapi{tag}_stores",
        "table_forecasts": f"tapi{tag}_forecasts",
        "table_dead_letter": f"tapi{tag}_dead",
        "table_ledger": f"tapi{tag}_ledger",
        "table_ingest_staging": f"tapi{tag}_stage",
        "model_name": f"test-api-forecast-{tag}",
        "job_code_key": f"tests/api-forecast-{tag}.zip",
    })
    apply_migrations(settings)
    sales, stores = _slice()
    load_stores_table(settings, stores)
    load_sales_table(settings, sales)
    job_package.upload(settings, job_package.build(PROJECT_ROOT / "build" / f"job-test-{tag}.zip"))
    yield settings
    from mlflow import MlflowClient

    try:
        MlflowClient(settings.mlflow_uri).delete_registered_model(settings.model_name)
    except Exception:  # noqa: BLE001 - not registered when the training failed
        pass
    settings.boto3_client("s3").delete_object(Bucket=settings.bucket_code, Key=settings.job_code_key)
    (PROJECT_ROOT / "build" / f"job-test-{tag}.zip").unlink(missing_ok=True)
    with transaction(settings) as conn, conn.cursor() as cur:
        for table in ("sales", "stores", "forecasts", "dead", "ledger", "stage"):
            cur.execute(f"DROP TABLE IF EXISTS tapi{tag}_{table}")


def _run_job(api: TestClient, key: str, body: dict[str, Any], timeout_s: float = 900) -> dict[str, Any]:
    resp = api.post("/v1/training-jobs", json=body, headers={"X-API-Key": key, "Idempotency-Key": f"t-{uuid.uuid4().hex}"})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    deadline = time.monotonic() + timeout_s
    while True:
        job = api.get(f"/v1/training-jobs/{job_id}", headers={"X-API-Key": key}).json()
        if job["state"] in TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(2)
    if job["state"] != "SUCCEEDED":
        logs = api.get(f"/v1/training-jobs/{job_id}/logs", headers={"X-API-Key": key}, params={"tail": 60}).json()
        pytest.fail(f"{body} ended {job['state']}: {job.get('message')}\n{logs.get('logs')}")
    return job


def test_small_training_then_forecast_job_through_the_api(job_settings: Settings, keys: dict[str, str]) -> None:
    with TestClient(create_app(job_settings), raise_server_exceptions=False) as api:
        # Every store of the slice: only an all-store model can be the chain's champion (a `stores` subset
        # is gated within its own scope, see tests/forecasting/test_registry.py).
        trained = _run_job(api, keys["carol"], {"kind": "all", "neural": False, "lgbm_rounds": 40})
        assert trained["entrypoint"] == "python ray_cluster/jobs/train_all.py --lgbm-rounds 40 --no-neural"
        result = trained["result"]
        assert result["job"] == "train_all" and result["stores"] == len(STORES), result
        candidates = {row["model"] for row in result["backtest"]["h48"]}
        assert "lgbm" in candidates and "nhits" not in candidates, candidates  # neural=false
        assert result["gate"]["decision"] == "champion", result["gate"]  # first version of a fresh model name

        done = _run_job(api, keys["carol"], {"kind": "forecast", "days": 5, "stores": [2]})
    assert done["entrypoint"] == "python ray_cluster/jobs/forecast.py --days 5 --stores 2"
    summary = done["result"]
    assert summary["job"] == "forecast" and summary["model_name"] == job_settings.model_name, summary
    assert summary["model_version"] == str(result["gate"]["version"]) and summary["days"] == 5 and summary["stores"] == 1
    with transaction(job_settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT max(date) FROM {job_settings.table_sales}")
        last = cur.fetchone()[0]
        cur.execute(
            f"SELECT store, count(*), min(date), max(date), bool_and(lower <= value AND value <= upper) "
            f"FROM {job_settings.table_forecasts} WHERE model_name = %s AND model_version = %s GROUP BY store",
            (job_settings.model_name, summary["model_version"]),
        )
        rows = cur.fetchall()
    conn.close()
    assert len(rows) == 1, rows  # stores 1 and 3 were trained but not asked for
    store, n, first, final, ordered = rows[0]
    assert (store, n, ordered) == (2, 5, True)
    assert (first - last).days == 1 and (final - last).days == 5
