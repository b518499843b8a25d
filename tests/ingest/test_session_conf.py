"""``build_session``: ``spark.sql.shuffle.partitions`` is the ``ingest_shuffle_partitions`` setting unless a
spark-submit ``--conf`` sets it (a real pyspark driver each time, launched through spark-submit as
``PYSPARK_SUBMIT_ARGS`` says, on loopback without a UI)."""

from __future__ import annotations

import os
import subprocess
import sys

from app.config import PROJECT_ROOT

SCRIPT = (
    "from app.config import get_settings\n"
    "from app.ingest.job import build_session\n"
    "spark = build_session(get_settings())\n"
    "print('PARTITIONS=' + spark.conf.get('spark.sql.shuffle.partitions'), flush=True)\n"
    "spark.stop()\n"
)
LOOPBACK = "--conf spark.ui.enabled=false --conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1"


def _partitions(setting: str | None, submit_conf: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if k != "SFMLOPS_INGEST_SHUFFLE_PARTITIONS"}
    if setting is not None:
        env["SFMLOPS_INGEST_SHUFFLE_PARTITIONS"] = setting
    env["PYSPARK_SUBMIT_ARGS"] = f"{LOOPBACK} {submit_conf} pyspark-shell"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines() if line.startswith("PARTITIONS=")][0].split("=", 1)[1]


def test_shuffle_partitions_default_setting_and_submit_conf() -> None:
    from app.config import Settings

    assert Settings.model_fields["ingest_shuffle_partitions"].default == 4  # as before it was a setting
    assert _partitions("7") == "7"
    assert _partitions("7", "--conf spark.sql.shuffle.partitions=3") == "3"  # spark-submit's --conf wins


def test_shuffle_partitions_setting_is_validated() -> None:
    import pytest
    from pydantic import ValidationError

    from app.config import Settings

    with pytest.raises(ValidationError, match="ingest_shuffle_partitions"):
        Settings(ingest_shuffle_partitions=0)
