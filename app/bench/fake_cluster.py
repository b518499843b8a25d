"""A private fake multinode Ray cluster on this machine: the ray module's cluster file's node types, autoscaled
(:func:`app.stack.terraform.reference_cluster_config`; the deployment's own rendering is ``ray_cluster/cluster.yaml``).

:class:`FakeMultinodeHead` is the stack's :class:`~app.stack.ray.RayHead` with its own state dir, free ports
and temp dir, started with ``RAY_FAKE_CLUSTER=1`` and ``--autoscaling-config`` = the rendered
``ray_cluster/fake_multinode/cluster.yaml`` (:func:`render_config`): its autoscaler adds "worker nodes"
(local raylets) for pending tasks and removes idle ones. The main stack's head is never touched: workers
join the private GCS (``provider.gcs_address``), and :meth:`FakeMultinodeHead.stop` ends only the process
group it started plus processes tied to its private temp dir (never ``ray stop``).

Used by ``sfmlops bench scale`` (1 vs 2 worker nodes) and the autoscaling test of the real training job.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import yaml

from app.config import PROJECT_ROOT
from app.stack.base import free_ports as _free_ports
from app.stack.ray import RayHead

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

FAKE_CLUSTER_YAML = PROJECT_ROOT / "ray_cluster" / "fake_multinode" / "cluster.yaml"
HEAD_TYPE = "ray.head.default"
WORKER_TYPE = "ray.worker.default"
#: Ray's default worker port range; the private head's ports stay outside it.
RAY_WORKER_PORTS = range(10002, 20000)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free TCP ports on ``host`` outside Ray's worker port range."""
    return _free_ports(n, host, avoid=RAY_WORKER_PORTS)


def render_config(
    gcs_address: str,
    min_workers: int = 0,
    max_workers: int = 2,
    worker_cpus: int = 1,
    worker_object_store_mb: int = 80,
    idle_timeout_minutes: float = 0.1,
) -> dict[str, Any]:
    """The fake multinode autoscaling config for a head whose GCS is ``gcs_address``.

    Raises:
        ValueError: on bounds that Ray would reject or that could reach the main stack's GCS.
    """
    if not gcs_address or ":" not in gcs_address:
        raise ValueError(f"gcs_address must be host:port of the private head, not {gcs_address!r}")
    if not 0 <= min_workers <= max_workers or max_workers < 1:
        raise ValueError(f"need 0 <= min_workers <= max_workers and max_workers >= 1, got {min_workers}, {max_workers}")
    if worker_cpus < 1:
        raise ValueError(f"worker_cpus must be >= 1, got {worker_cpus}")
    config = yaml.safe_load(FAKE_CLUSTER_YAML.read_text())
    config["provider"]["gcs_address"] = gcs_address
    config["max_workers"] = max_workers
    config["idle_timeout_minutes"] = float(idle_timeout_minutes)
    worker = config["available_node_types"][WORKER_TYPE]
    worker.update(min_workers=min_workers, max_workers=max_workers)
    worker["resources"] = {"CPU": worker_cpus, "object_store_memory": int(worker_object_store_mb) * 1024 * 1024}
    return config


class FakeMultinodeHead(RayHead):
    """A private Ray head whose autoscaler runs the fake multinode provider (see the module docstring).

    Args:
        settings: Settings whose ``state_dir`` (pidfile, log, rendered config) and Ray ports are this
            cluster's own (:func:`private_settings`).
        config: The rendered autoscaling config (:func:`render_config`).
        head_object_store_mb: Object store of the head (the driver puts the training data there).
    """

    name = "ray-fake"
    start_timeout = 180.0
    # `ray start` gives the raylet a fixed 30 s to register; a loaded machine misses it more often.
    start_attempts = 6

    def __init__(self, settings: Settings, config: dict[str, Any], head_object_store_mb: int = 256) -> None:
        super().__init__(settings)
        self.config = config
        self.head_object_store_mb = head_object_store_mb

    @property
    def temp_dir(self) -> str:
        return f"/tmp/sfmlops-rayfake-{self.settings.ray_gcs_port}"  # short: AF_UNIX paths are length-limited

    @property
    def config_path(self) -> Path:
        return self.settings.state_dir / "fake_cluster.yaml"

    def prepare(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def command(self) -> list[str]:
        cmd = super().command()
        head_cpus = int(self.config["available_node_types"][HEAD_TYPE]["resources"].get("CPU", 0))
        cmd[cmd.index("--num-cpus") + 1] = str(head_cpus)
        cmd[cmd.index("--object-store-memory") + 1] = str(self.head_object_store_mb * 1024 * 1024)
        return [*cmd, "--autoscaling-config", str(self.config_path), "--include-dashboard", "true"]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.update({"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"})
        return env

    def stop(self) -> bool:
        """Stop the head's process group (the monitor's fake worker raylets included), then any process tied
        to the private temp dir, and remove that dir."""
        stopped = super().stop()
        strays = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if self.temp_dir in " ".join(proc.info["cmdline"] or []):
                    proc.send_signal(signal.SIGKILL)
                    strays.append(proc)
            except psutil.Error:
                continue
        psutil.wait_procs(strays, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return stopped or bool(strays)

    def worker_nodes(self) -> list[dict[str, Any]]:
        """The ALIVE non-head nodes (``node_id``, ``resources_total``) from the state API."""
        from ray.util.state import list_nodes

        nodes = list_nodes(address=self.address, limit=1000, raise_on_missing_output=False)
        return [
            {"node_id": n.node_id, "resources_total": dict(n.resources_total or {})}
            for n in nodes
            if n.state == "ALIVE" and not n.is_head_node
        ]

    def wait_workers(self, count: int, timeout_s: float) -> list[dict[str, Any]]:
        """Wait until exactly ``count`` worker nodes are ALIVE; returns them.

        Raises:
            TimeoutError: naming how many were alive, with the autoscaler log's tail.
        """
        deadline = time.monotonic() + timeout_s
        nodes: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                nodes = self.worker_nodes()
            except Exception:  # noqa: BLE001 - the state API may not answer while nodes come and go
                nodes = []
            if len(nodes) == count:
                return nodes
            time.sleep(1)
        raise TimeoutError(f"{len(nodes)} worker nodes alive after {timeout_s:.0f}s, expected {count}:\n{self.monitor_log()}")

    def monitor_log(self, lines: int = 30) -> str:
        """The last lines of the autoscaler (monitor) log, for error messages."""
        logs = sorted(Path(self.temp_dir).glob("session_*/logs/monitor.log"))
        if not logs:
            return "(no monitor log)"
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:])


def private_settings(base: Settings, state_dir: Path) -> Settings:
    """``base`` with a state dir and Ray ports of a private head (nothing shared with the main stack's head)."""
    gcs, dash, client, agent, agent_grpc, rt_env, metrics = free_ports(7, base.bind_host)
    return base.model_copy(
        update={
            "state_dir": state_dir, "ray_gcs_port": gcs, "ray_dashboard_port": dash, "ray_client_port": client,
            "ray_agent_port": agent, "ray_agent_grpc_port": agent_grpc, "ray_runtime_env_agent_port": rt_env,
            "ray_metrics_port": metrics, "ray_address": None,
        }
    )


@contextmanager
def fake_cluster(
    base: Settings,
    state_dir: Path,
    min_workers: int = 0,
    max_workers: int = 2,
    worker_cpus: int = 1,
    worker_object_store_mb: int = 80,
    head_object_store_mb: int = 256,
    idle_timeout_minutes: float = 0.1,
) -> Iterator[FakeMultinodeHead]:
    """A started private fake multinode cluster (``min_workers`` nodes up), stopped and removed on exit."""
    settings = private_settings(base, state_dir)
    config = render_config(
        f"{settings.bind_host}:{settings.ray_gcs_port}", min_workers, max_workers, worker_cpus,
        worker_object_store_mb, idle_timeout_minutes,
    )
    head = FakeMultinodeHead(settings, config, head_object_store_mb)
    try:
        head.start()
        if min_workers:
            head.wait_workers(min_workers, timeout_s=240)
        yield head
    finally:
        head.stop()
