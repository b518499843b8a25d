"""A local Ray head with the dashboard / Jobs API, started with ``ray start --head --block``."""

from __future__ import annotations

import json
import os
import urllib.request

from app.config import PROJECT_ROOT
from app.stack.base import Service


class RayHead(Service):
    name = "ray"
    start_timeout = 120.0
    stop_timeout = 30.0
    # `ray start` gives the raylet a fixed 30 s to register, which a loaded 2-core machine can miss.
    start_attempts = 2

    def ports(self) -> list[int]:
        s = self.settings
        return [s.ray_gcs_port, s.ray_dashboard_port, s.ray_client_port, s.ray_agent_port, s.ray_agent_grpc_port,
                s.ray_runtime_env_agent_port, s.ray_metrics_port]

    @property
    def address(self) -> str:
        return self.settings.ray_jobs_url

    @property
    def temp_dir(self) -> str:
        # Ray keeps sockets under its temp dir; the path must stay short (AF_UNIX limit of 107 bytes).
        return f"/tmp/sfmlops-ray-{self.settings.ray_gcs_port}"

    def command(self) -> list[str]:
        s = self.settings
        return [
            str(PROJECT_ROOT / ".venv" / "bin" / "ray"), "start", "--head", "--block",
            "--port", str(s.ray_gcs_port),
            "--node-ip-address", s.bind_host,
            "--dashboard-host", s.bind_host,
            "--dashboard-port", str(s.ray_dashboard_port),
            "--num-cpus", str(s.ray_num_cpus or os.cpu_count() or 1),
            "--object-store-memory", str(s.ray_object_store_mb * 1024 * 1024),
            # Ray starts its client server whenever grpc is installed; give it a configured port.
            "--ray-client-server-port", str(s.ray_client_port),
            # Fixed agent ports from settings, so several heads can share a machine.
            "--dashboard-agent-listen-port", str(s.ray_agent_port),
            "--dashboard-agent-grpc-port", str(s.ray_agent_grpc_port),
            "--runtime-env-agent-port", str(s.ray_runtime_env_agent_port),
            "--metrics-export-port", str(s.ray_metrics_port),
            "--temp-dir", self.temp_dir,
            "--disable-usage-stats",
        ]

    def expected_cmd_fragment(self) -> str:
        return f"--dashboard-port {self.settings.ray_dashboard_port}"

    def environment(self) -> dict[str, str]:
        # Jobs fetch their working_dir from S3 (the emulator locally) and talk to MLflow/Postgres.
        return {
            **self.settings.aws_env(),
            "RAY_USAGE_STATS_ENABLED": "0",
            # Keep the node IP on the loopback instead of resolving 127.0.0.1 to the machine's address.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            **self.settings.mlflow_env(),
            "PYTHONUNBUFFERED": "1",
            # Job entrypoints say `python ...`: that must be the project's interpreter, not the system's.
            "PATH": os.pathsep.join([str(PROJECT_ROOT / ".venv" / "bin"), os.environ.get("PATH", "")]),
            "VIRTUAL_ENV": str(PROJECT_ROOT / ".venv"),
        }

    def healthy(self) -> bool:
        # The dashboard answers before the raylet registers: require an ALIVE head node.
        with urllib.request.urlopen(f"{self.address}/api/v0/nodes?limit=10", timeout=5) as resp:  # loopback
            nodes = json.loads(resp.read())["data"]["result"]["result"]
        return any(n.get("is_head_node") and n.get("state") == "ALIVE" for n in nodes)
