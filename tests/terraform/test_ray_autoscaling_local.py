"""Ray's autoscaler scales the node types of the cluster file (``ray_cluster/cluster.yaml``'s template) up and down, on one machine.

The AWS cluster file cannot launch EC2 instances here, so this test keeps its node types and
scaling bounds and swaps only the provider for Ray's ``fake_multinode`` one, which starts each
"worker node" as a local raylet (plus its agents) spawned by the autoscaler (monitor) process:

* ``available_node_types`` names (``ray.head.default`` / ``ray.worker.default``), the head's
  resources (``CPU: 0``: no training on the head) and the worker type's ``min_workers`` come
  from the file; ``max_workers`` is capped at 2 and the worker's ``resources`` (detected from the
  instance type on AWS) become 1 small CPU node, so the test stays light on a 2-core machine;
* a private head (own GCS port, temp dir, dashboard/agent/client ports) is started with
  ``RAY_FAKE_CLUSTER=1 ray start --head --block --autoscaling-config=...``;
* scale-up: tasks that need a CPU (only workers have one) are submitted, the number of ALIVE
  nodes must rise above 1 and the tasks must finish;
* scale-down: once idle, the alive workers must drop back to ``min_workers``
  (``idle_timeout_minutes`` is fractional, 0.1 min = 6 s; the schema only asks for a number >= 0).

The fake provider would connect new workers to ``<ip>:6379`` (hard-coded default in
``ray/autoscaler/_private/fake_multi_node/node_provider.py``, FakeMultiNodeProvider.
_create_node_with_resources_and_labels) unless ``provider.gcs_address`` is set, which is what
this test does, so it never touches the main stack's GCS on 6379.

Cleanup never calls ``ray stop`` (it would kill every Ray process on the machine, the main
stack's included): only the process group of the ``ray start --block`` process spawned here is
terminated (the monitor, and so the fake worker raylets it spawns, belong to that group), plus
any leftover process whose command line names the private temp dir. The temp dir
(``/tmp/rfk-<hex>``) is removed afterwards unless ``RFK_KEEP=1`` is set (to read its logs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from app.bench.fake_cluster import free_ports
from app.stack.terraform import reference_cluster_config

ROOT = Path(__file__).resolve().parents[2]
RAY_BIN = Path(sys.executable).with_name("ray")

HEAD_TYPE = "ray.head.default"
WORKER_TYPE = "ray.worker.default"
MAX_FAKE_WORKERS = 2  # cap on the AWS file's max_workers: every fake node is a raylet + agents
IDLE_TIMEOUT_MINUTES = 0.1  # 6 s; AWS uses 5 min
FAKE_WORKER_RESOURCES = {"CPU": 1, "object_store_memory": 80 * 1024 * 1024}
HEAD_OBJECT_STORE = 80 * 1024 * 1024

START_TIMEOUT_S = 60
SCALE_UP_TIMEOUT_S = 90
TASKS_TIMEOUT_S = 90
SCALE_DOWN_TIMEOUT_S = 90

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not RAY_BIN.exists(), reason=f"ray CLI not installed next to {sys.executable}"),
    pytest.mark.skipif(sys.platform != "linux", reason="fake multi-node cluster test is Linux-only"),
]


# Runs in a separate interpreter (env prepared by the test): connects to the private head,
# submits CPU tasks only workers can run, and reports timings as "RFK {json}" lines.
DRIVER = r"""
import json, os, sys, time
import ray

def emit(event, **kw):
    print("RFK " + json.dumps(dict(event=event, **kw)), flush=True)

def alive():
    c = {"head": 0, "worker": 0}
    for n in ray.nodes():
        if n.get("Alive"):
            c["head" if n.get("Resources", {}).get("node:__internal_head__") else "worker"] += 1
    return c

gcs = os.environ["RFK_GCS"]
min_w, max_w = int(os.environ["RFK_MIN_WORKERS"]), int(os.environ["RFK_MAX_WORKERS"])
deadline = time.monotonic() + %(start)d
while True:
    try:
        ray.init(address=gcs, _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="ERROR")
        break
    except Exception as e:
        if time.monotonic() > deadline:
            raise
        time.sleep(2)
emit("connected", alive=alive())

@ray.remote(num_cpus=1)
def work(i):
    time.sleep(10)
    return i * i

t0 = time.monotonic()
refs = [work.remote(i) for i in range(max_w)]
peak = 0
while time.monotonic() - t0 < %(up)d:
    c = alive()
    peak = max(peak, c["worker"])
    if c["worker"] > 0:
        emit("scaled_up", alive=c, after_s=time.monotonic() - t0)
        break
    time.sleep(1)
else:
    emit("no_scale_up", alive=alive())
    sys.exit(3)

pending = list(refs)
t_tasks = time.monotonic()
while pending and time.monotonic() - t_tasks < %(tasks)d:
    _, pending = ray.wait(pending, num_returns=len(pending), timeout=1)
    peak = max(peak, alive()["worker"])
if pending:
    emit("tasks_timeout", pending=len(pending), alive=alive())
    sys.exit(4)
emit("tasks_done", ok=ray.get(refs) == [i * i for i in range(max_w)], peak_workers=peak,
     after_s=time.monotonic() - t0)

t1 = time.monotonic()
while time.monotonic() - t1 < %(down)d:
    c = alive()
    if c["worker"] == min_w:
        emit("scaled_down", alive=c, after_s=time.monotonic() - t1)
        break
    time.sleep(1)
else:
    emit("no_scale_down", alive=alive())
    sys.exit(5)
ray.shutdown()
""" % {"start": START_TIMEOUT_S, "up": SCALE_UP_TIMEOUT_S, "tasks": TASKS_TIMEOUT_S, "down": SCALE_DOWN_TIMEOUT_S}  # noqa: UP031 - the driver code is full of braces; %-format keeps it verbatim



def _fake_cluster_config(cluster: dict, gcs_address: str) -> dict:
    """The fake_multinode autoscaling config built from the AWS cluster file's node types."""
    types = cluster["available_node_types"]
    assert set(types) == {HEAD_TYPE, WORKER_TYPE}, f"unexpected node types {sorted(types)}"
    assert cluster["head_node_type"] == HEAD_TYPE
    worker = types[WORKER_TYPE]
    # Detected from the instance type on AWS ({}): give the fake node a small explicit size.
    worker_resources = dict(worker.get("resources") or {}) or dict(FAKE_WORKER_RESOURCES)
    worker_resources.setdefault("object_store_memory", FAKE_WORKER_RESOURCES["object_store_memory"])
    max_workers = min(int(worker["max_workers"]), int(cluster["max_workers"]), MAX_FAKE_WORKERS)
    min_workers = int(worker.get("min_workers", 0))
    assert min_workers <= max_workers
    return {
        "cluster_name": f"{cluster['cluster_name']}-fake",
        "max_workers": max_workers,
        "upscaling_speed": float(cluster.get("upscaling_speed", 1.0)),
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        "provider": {
            "type": "fake_multinode",
            # Without this the provider joins new workers to <node ip>:6379.
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            HEAD_TYPE: {
                "resources": dict(types[HEAD_TYPE].get("resources") or {}),
                "node_config": {},
                "max_workers": 0,
            },
            WORKER_TYPE: {
                "resources": worker_resources,
                "node_config": {},
                "min_workers": min_workers,
                "max_workers": max_workers,
            },
        },
        "head_node_type": HEAD_TYPE,
        "auth": {},
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


def _kill_tree(proc: subprocess.Popen | None, temp_dir: str) -> None:
    """Stop only what this test started: its process group, then stray processes of its temp dir."""
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` shuts its head processes down
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    if proc is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # monitor-spawned fake workers share the group
        except ProcessLookupError:
            pass
    # Anything that escaped the group but is tied to the private temp dir (sessions, sockets).
    me = os.getpid()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == me:
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmd:
            try:
                os.kill(int(pid_dir.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _tail_logs(temp_dir: str, patterns=("monitor*", "raylet*.err", "raylet*.out")) -> str:
    logs = Path(temp_dir) / "session_latest" / "logs"
    out = []
    for pat in patterns:
        for f in sorted(logs.glob(pat)):
            try:
                text = f.read_text(errors="replace").splitlines()[-25:]
            except OSError:
                continue
            out.append(f"--- {f.name}\n" + "\n".join(text))
    return "\n".join(out)[-12000:]


def test_autoscaler_scales_cluster_yaml_node_types_up_and_down(tmp_path):
    cluster = reference_cluster_config()  # the ray module's cluster file, rendered without a deployment
    min_workers = int(cluster["available_node_types"][WORKER_TYPE].get("min_workers", 0))

    gcs_port, dashboard_port, agent_port, agent_grpc_port, runtime_env_port, metrics_port, client_port = free_ports(7)
    gcs_address = f"127.0.0.1:{gcs_port}"
    config = _fake_cluster_config(cluster, gcs_address)
    config_path = tmp_path / "fake_cluster.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    head_cpus = config["available_node_types"][HEAD_TYPE]["resources"].get("CPU", 0)
    assert head_cpus == 0, "cluster.yaml's head should not offer CPUs to training tasks"

    temp_dir = f"/tmp/rfk-{uuid.uuid4().hex[:6]}"  # short: unix socket paths are length-limited
    env = dict(os.environ)
    env.update(
        {
            "RAY_FAKE_CLUSTER": "1",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node ip = loopback, like the head
            "RAY_USAGE_STATS_ENABLED": "0",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        }
    )
    env.pop("RAY_ADDRESS", None)
    cmd = [
        str(RAY_BIN), "start", "--head", "--block",
        f"--port={gcs_port}",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp_dir}",
        f"--autoscaling-config={config_path}",
        f"--num-cpus={head_cpus}",
        f"--object-store-memory={HEAD_OBJECT_STORE}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={agent_port}",
        f"--dashboard-agent-grpc-port={agent_grpc_port}",
        f"--runtime-env-agent-port={runtime_env_port}",
        f"--metrics-export-port={metrics_port}",
        f"--ray-client-server-port={client_port}",
        "--disable-usage-stats",
    ]
    head_log = tmp_path / "ray_start.log"
    driver_budget = START_TIMEOUT_S + SCALE_UP_TIMEOUT_S + TASKS_TIMEOUT_S + SCALE_DOWN_TIMEOUT_S + 30
    proc = None
    try:
        with head_log.open("wb") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # The driver runs in its own interpreter: its wall time is bounded by the subprocess timeout
        # and it cannot clash with a ray.init() of another test in this pytest process.
        driver_env = dict(env, RFK_GCS=gcs_address, RFK_MIN_WORKERS=str(min_workers),
                          RFK_MAX_WORKERS=str(config["max_workers"]))
        try:
            done = subprocess.run(
                [sys.executable, "-c", DRIVER], env=driver_env, capture_output=True, text=True,
                timeout=driver_budget, cwd=tmp_path,
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"driver exceeded {driver_budget}s: {(e.stdout or '')[-3000:]}\n{_tail_logs(temp_dir)}")
        events = {}
        for line in done.stdout.splitlines():
            if line.startswith("RFK "):
                ev = json.loads(line[4:])
                events[ev.pop("event")] = ev
        diag = (
            f"rc={done.returncode} events={events}\nstderr:\n{done.stderr[-4000:]}\n"
            f"ray start:\n{head_log.read_text(errors='replace')[-2000:]}\n{_tail_logs(temp_dir)}"
        )
        assert "connected" in events, diag
        assert events["connected"]["alive"] == {"head": 1, "worker": min_workers}, diag
        assert "scaled_up" in events, diag
        up = events["scaled_up"]
        assert up["alive"]["worker"] > 0 and sum(up["alive"].values()) > 1, diag
        assert "tasks_done" in events, diag
        assert events["tasks_done"]["ok"], diag
        assert 0 < events["tasks_done"]["peak_workers"] <= config["max_workers"], diag
        assert "scaled_down" in events, diag
        assert events["scaled_down"]["alive"] == {"head": 1, "worker": min_workers}, diag
        assert done.returncode == 0, diag
        print(
            f"\nscale-up: first worker ALIVE {up['after_s']:.1f}s after submit, tasks done after "
            f"{events['tasks_done']['after_s']:.1f}s (peak {events['tasks_done']['peak_workers']} workers), "
            f"scale-down to {min_workers} workers {events['scaled_down']['after_s']:.1f}s after the work ended"
        )
    finally:
        _kill_tree(proc, temp_dir)
        if not os.environ.get("RFK_KEEP"):
            shutil.rmtree(temp_dir, ignore_errors=True)
