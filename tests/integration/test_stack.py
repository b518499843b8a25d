"""The local stack with real services: healthy, usable, idempotent, clear on conflicts, clean on down."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid

import psutil
import pytest

from app import stack as local_stack
from app.config import Settings
from app.stack.base import PortInUseError, free_port

pytestmark = pytest.mark.integration


def _argv(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def private_settings(base: Settings, tmp_path, **overrides) -> Settings:
    """Settings for a second, isolated stack: own state folder and free ports."""
    names = (
        "emulator_port", "pg_port", "kafka_port", "kafka_controller_port", "mlflow_port", "ray_dashboard_port", "ray_client_port",
        "ray_agent_port", "ray_agent_grpc_port", "ray_runtime_env_agent_port", "ray_metrics_port",
    )
    ports = {name: free_port() for name in names}
    gcs = 20000 + (uuid.uuid4().int % 5000)
    values = {
        "state_dir": tmp_path / "state",
        "ray_gcs_port": gcs,
        "aws_endpoint_url": f"http://127.0.0.1:{ports['emulator_port']}",
        **ports,
        **overrides,
    }
    return base.model_copy(update=values)


def test_every_service_is_healthy_and_really_works(stack):
    rows = {r.name: r for r in local_stack.status(stack)}
    assert set(rows) >= {"emulator", "postgres", "kafka", "mlflow", "ray"}
    assert all(r.healthy and r.pid and r.rss_bytes > 0 for r in rows.values()), rows

    # S3 on the emulator: the project's buckets exist and take objects.
    s3 = stack.boto3_client("s3")
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {stack.bucket_raw, stack.bucket_checkpoints, stack.bucket_mlflow, stack.bucket_code} <= buckets

    # PostgreSQL: the application role owns the schema the migrations created.
    from app.db import connect

    with connect(stack) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, to_regclass(%s) IS NOT NULL", (stack.table_sales,))
        assert cur.fetchone() == (stack.pg_user, True)
    conn.close()

    # Kafka: a topic round trip.
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    producer.send(topic, b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=15000)
    assert [m.value for m in consumer][:1] == [b"hello"]
    consumer.close()
    admin.delete_topics([topic])
    admin.close()

    # MLflow: a run whose artifact lands in the emulator's bucket through the server.
    import mlflow

    mlflow.set_tracking_uri(stack.mlflow_uri)
    mlflow.set_experiment(f"stack-test-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run() as run:
        mlflow.log_metric("x", 1.0)
        mlflow.log_text("artifact body", "note.txt")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket_mlflow).get("Contents", [])]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/note.txt") for k in keys)

    # Ray: the Jobs API answers on the dashboard port.
    import httpx

    assert httpx.get(f"{stack.ray_jobs_url}/api/jobs/", timeout=10).status_code == 200


def test_up_twice_reuses_every_running_service(stack):
    before = {r.name: r.pid for r in local_stack.status(stack)}
    outcome = local_stack.up(stack)
    assert set(outcome.values()) == {"reused"}
    assert {r.name: r.pid for r in local_stack.status(stack)} == before


def test_taken_port_fails_naming_the_port_and_its_holder(stack, tmp_path):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        s = private_settings(stack, tmp_path, emulator_port=port, aws_endpoint_url=f"http://127.0.0.1:{port}")
        with pytest.raises(PortInUseError) as exc:
            local_stack.up(s)
        message = str(exc.value)
        assert f"port {port}" in message and f"pid {psutil.Process().pid}" in message
        # Nothing of the refused wave was started.
        assert not any(svc.is_running() for svc in local_stack.services(s))
    finally:
        holder.close()


@pytest.mark.slow
def test_emulator_keeps_s3_objects_across_a_restart(stack, tmp_path):
    """MLflow's artifacts, the job zips and the streaming checkpoints live in the emulator's S3 while the registry and
    the ledger live in Postgres: a restart (`sfmlops down` / `up`) must not lose the objects."""
    from app.stack.emulator import Emulator

    s = private_settings(stack, tmp_path)
    emulator = Emulator(s)
    emulator.start()
    try:
        key = f"models/m-{uuid.uuid4().hex}/artifacts/MLmodel"
        s.boto3_client("s3").put_object(Bucket=s.bucket_mlflow, Key=key, Body=b"flavors: {}\n")
        emulator.stop()
        emulator.start()
        body = s.boto3_client("s3").get_object(Bucket=s.bucket_mlflow, Key=key)["Body"].read()
        assert body == b"flavors: {}\n"
    finally:
        emulator.stop()


def test_private_stack_comes_up_healthy_and_goes_down_clean(stack, tmp_path):
    s = private_settings(stack, tmp_path)
    bystander = subprocess.Popen(["sleep", "300"])  # not ours: must survive `down`
    try:
        local_stack.up(s)
        rows = local_stack.status(s)
        assert all(r.healthy for r in rows), [(r.name, r.detail) for r in rows if not r.healthy]
        total = sum(r.rss_bytes for r in rows)
        assert total < 4 * 1024**3, f"idle stack uses {total / 1024**2:.0f} MB"
        pids = [p.pid for r in rows for p in local_stack.base.process_tree(r.pid)]
        ports = [p for svc in local_stack.services(s) for p in svc.ports()]
        # Every listening socket of every service (children included) is on loopback: MiniStack's side
        # listeners (IoT mTLS on 8883, SFTP) ignored BIND_HOST; Ray's gRPC servers follow the node IP.
        from test_local_security import non_loopback_listeners, stack_pids

        assert sorted(stack_pids(s)) == sorted(r.pid for r in rows)
        assert non_loopback_listeners(stack_pids(s)) == []
        # No password on a command line (`ps` shows argv to every local user).
        secret = s.pg_password.get_secret_value()
        assert [pid for pid in pids if secret in _argv(pid)] == []
    finally:
        stopped = local_stack.down(s)
    assert sorted(stopped) == ["emulator", "kafka", "mlflow", "postgres", "ray"]
    time.sleep(1)
    assert [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE] == []
    assert [p for p in ports if local_stack.base.port_holder("127.0.0.1", p)] == []
    assert bystander.poll() is None
    bystander.kill()
    # The main stack was not touched.
    assert all(r.healthy for r in local_stack.status(stack))
