"""Helpers of the end-to-end DAG test that need the ``app`` package (run in ``.venv``, not in Airflow's venv).

The test runs on an isolated slice of the real stack: its own Kafka topic, sales/stores/ingest/forecast
tables, checkpoint, registered model name and job-code zip on the emulator's S3. So the weekly DAG's
``kind=all`` training sees only the slice, whatever else the stack's ``sales`` table holds (or not), and
the stack's data, champion and forecasts are left untouched.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: Stores whose full history the daily DAG ingests ...
SLICE_STORES = [1, 2, 3, 4, 5, 6]
#: ... and the weekly DAG trains on, forecasts and checks (store 6 is ingested but left out on purpose).
TRAIN_STORES = [1, 2, 3, 4, 5]


def isolated_settings(base, tmp_path: Path):  # app.config.Settings
    """``base`` with every table of its own (migrated), a fresh topic, checkpoint, model name and job-code key."""
    from isolated_support import isolated_settings as isolated

    tag = uuid.uuid4().hex[:8]
    return isolated(
        base,
        "taf",
        kafka_topic=f"test-airflow-{tag}",
        ingest_checkpoint=str(tmp_path / "checkpoint"),
        model_name=f"test-airflow-{tag}",
        mlflow_experiment=f"{base.mlflow_experiment}-airflow-tests",
        job_code_key=f"tests/airflow-{tag}.zip",
    )


def cleanup(settings) -> None:
    """Drop the slice's tables, registered model, topic and job-code zip (best effort)."""
    from isolated_support import drop_isolated

    with contextlib.suppress(Exception):
        drop_isolated(settings)
    with contextlib.suppress(Exception):
        from mlflow import MlflowClient

        MlflowClient(settings.mlflow_uri).delete_registered_model(settings.model_name)
    with contextlib.suppress(Exception):
        settings.boto3_client("s3").delete_object(Bucket=settings.bucket_code, Key=settings.job_code_key)
    with contextlib.suppress(Exception):
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        admin.delete_topics([settings.kafka_topic])
        admin.close()


def slice_data() -> tuple[Any, Any, str]:
    """The full history of ``SLICE_STORES`` and their store rows: the shared Kaggle data, else synthetic."""
    candidates = [os.environ.get("SFMLOPS_TEST_ROSSMANN_DIR"), str(ROOT.parent / "shared" / "data" / "rossmann")]
    folder = next((Path(c) for c in candidates if c and (Path(c) / "store.csv").is_file()), None)
    if folder is not None:
        from app.data.kaggle import load_stores, load_train

        train = next(p for p in (folder / "train.csv.gz", folder / "train.csv") if p.is_file())
        sales, stores, source = load_train(train), load_stores(folder / "store.csv"), f"kaggle {folder}"
    else:
        from app.data.synthetic import generate

        sales, stores = generate(42, max(SLICE_STORES), "2013-01-01", "2015-06-13")
        source = "synthetic"
    sales = sales[sales["store"].isin(SLICE_STORES)].sort_values(["date", "store"]).reset_index(drop=True)
    return sales, stores[stores["store"].isin(SLICE_STORES)].reset_index(drop=True), source


def prepare_slice(settings) -> dict[str, Any]:
    """Load the slice's stores, publish its sales to the slice's topic and the job code to S3.

    Returns what the DAG test expects: rows and days sent, the last day, the stores.
    """
    from app.data.load import load_stores_table
    from app.jobs import package as job_package
    from app.produce import ProduceConfig, produce

    sales, stores, source = slice_data()
    load_stores_table(settings, stores)
    summary = produce(settings, ProduceConfig(progress=False), sales=sales)
    print(f"produced {len(sales)} rows of stores {SLICE_STORES} ({source}) to {settings.kafka_topic}: {summary}")
    zip_path = job_package.build(ROOT / "build" / f"job-{settings.job_code_key.rsplit('/', 1)[-1]}")
    job_package.upload(settings, zip_path)
    zip_path.unlink(missing_ok=True)
    return {
        "rows": len(sales),
        "days": int(sales["date"].nunique()),
        "last_day": str(sales["date"].max().date()),
        "stores": SLICE_STORES,
        "train_stores": TRAIN_STORES,
        "source": source,
    }


@contextlib.contextmanager
def api_server(settings) -> Iterator[tuple[str, str]]:
    """The real API under uvicorn on a free loopback port, and a fresh key; yields ``(base_url, key)``."""
    from app.api.auth import issue_key
    from app.config import settings_env
    from app.stack.base import free_port

    port = free_port(settings.bind_host)
    settings = settings.model_copy(update={"api_port": port})
    key = issue_key(settings, f"airflow-e2e-{uuid.uuid4().hex[:8]}")
    url = f"http://{settings.bind_host}:{port}"
    env = {**os.environ, **settings_env(settings), **settings.aws_env()}
    proc = subprocess.Popen(  # fixed argv
        [sys.executable, "-m", "uvicorn", "app.api.main:create_app", "--factory", "--host", settings.bind_host,
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # loopback
                    break
            except Exception:  # noqa: BLE001 - booting
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not come up on {url}") from None
                time.sleep(0.5)
        yield url, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
