"""What the Ray head runs for monitoring on AWS (terraform/modules/monitoring/head_commands.tf, output
``head_setup_commands``): rendered by Terraform itself (``terraform console`` over the module's variables and that
file: no provider, no deployment), they reach the cluster file, every one parses as shell, the pins match the
project's, and the Pushgateway and exporter start lines, run here as the head runs them (``HOME`` = a tmp folder;
Debian's Pushgateway binary where the release's would be unpacked; the job-code zip's ``app`` package), start
services that answer; a second run replaces the running instance. Everything started is stopped afterwards."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.stack.base import free_port

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform" / "modules" / "monitoring"
PUSHGATEWAY = shutil.which("prometheus-pushgateway")
REQUIRED = {"name": "sfmlops-prod", "region": "eu-west-1", "job_code_uri": "s3://sfmlops-prod-code/ray/job.zip",
            "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"}

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="needs terraform")


def render(tmp_path: Path, **inputs: object) -> list[str]:
    """``local.head_setup_commands`` of the module for :data:`REQUIRED` + ``inputs``."""
    work = tmp_path / "tf"
    work.mkdir(exist_ok=True)
    for name in ("variables.tf", "head_commands.tf"):
        shutil.copy2(MODULE / name, work / name)
    (work / "terraform.tfvars.json").write_text(json.dumps({**REQUIRED, **inputs}))
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(ROOT / "terraform" / "terraformrc"), "HOME": str(work)}
    proc = subprocess.run(["terraform", "console"], input="base64encode(jsonencode(local.head_setup_commands))\n", cwd=work,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(base64.b64decode(json.loads(proc.stdout.strip())))


def _one(commands: list[str], marker: str) -> str:
    found = [c for c in commands if marker in c]
    assert len(found) == 1, (marker, commands)
    return found[0]


def test_head_commands_reach_the_cluster_file_and_parse_as_shell(tmp_path: Path) -> None:
    from app.stack.terraform import reference_cluster_config

    commands = render(tmp_path, exporter_environment={"SFMLOPS_PROFILE": "aws", "SFMLOPS_PG_HOST": "db.internal",
                                                      "SFMLOPS_TABLE_SALES": "it's_quoted"})
    assert len(commands) == 7
    for command in commands:
        proc = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (command, proc.stderr)
    sha = "6ce6ffab84d0d71195036326640295c02165462abd12b8092b0fa93188f5ee37"
    fetch = _one(commands, "sha256sum -c")
    assert "https://github.com/prometheus/pushgateway/releases/download/v1.11.1/pushgateway-1.11.1.linux-amd64.tar.gz" in fetch
    assert f"echo '{sha}  pushgateway-1.11.1.linux-amd64.tar.gz' | sha256sum -c" in fetch
    # every interface (the EMR job and the MWAA tasks push at the head's private address), the agent's port
    assert "--web.listen-address=0.0.0.0:9091 " in _one(commands, "restart pushgateway")
    exporter = _one(commands, "app.monitoring.exporter")
    assert "SFMLOPS_BIND_HOST='127.0.0.1' SFMLOPS_EXPORTER_PORT='9188' SFMLOPS_PG_HOST='db.internal' SFMLOPS_PROFILE='aws'" in exporter
    assert "SFMLOPS_TABLE_SALES='it'\\''s_quoted'" in exporter  # every value single-quoted for the shell
    assert "aws ssm get-parameter --region eu-west-1 --with-decryption --name /sfmlops-prod/monitoring/prometheus-agent.yml" in \
        _one(commands, "aws ssm get-parameter")
    # the ray module puts them in the cluster file as they are
    assert reference_cluster_config(head_setup_commands=commands)["head_setup_commands"] == commands


def test_pins_and_paths_are_the_projects(tmp_path: Path) -> None:
    """The exporter's packages are pinned as in requirements/main.lock; the zip's top folder and the code key the
    commands and main.tf use are app.jobs.package's and Settings.job_code_key's."""
    from app.config import Settings
    from app.jobs.package import TOP

    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "requirements" / "main.lock").read_text(), re.M))
    lock = {k.lower().replace("_", "-"): v for k, v in lock.items()}
    fetch = _one(render(tmp_path), "aws s3 cp")
    pins = dict(re.findall(r"'([A-Za-z0-9_.-]+)==([^']+)'", fetch))
    assert pins and all(lock.get(name) == version for name, version in pins.items()), (pins, lock)
    assert f"$HOME/sfmlops-monitoring/{TOP} " in fetch
    main = (ROOT / "terraform" / "main.tf").read_text()
    assert f'job_code_uri = "s3://${{module.storage.bucket_names["code"]}}/{Settings().job_code_key}"' in main


def _stop(pidfile: Path) -> None:
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_http(url: str, deadline_s: float = 60) -> httpx.Response:
    end = time.monotonic() + deadline_s
    while True:
        try:
            resp = httpx.get(url, timeout=5)
            if resp.status_code == 200:
                return resp
        except httpx.HTTPError:
            pass
        assert time.monotonic() < end, f"{url} did not answer"
        time.sleep(0.2)


@pytest.fixture
def head_home(tmp_path: Path) -> Iterator[Path]:
    """A tmp ``HOME`` standing in for the head's; whatever the commands started there is stopped afterwards."""
    home = tmp_path / "home"
    (home / "sfmlops-monitoring").mkdir(parents=True)
    yield home
    for pidfile in (home / "sfmlops-monitoring").glob("*.pid"):
        _stop(pidfile)


def _run(command: str, home: Path, **env: str) -> None:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # python3 = this virtualenv's, as the head's has the app's deps
    proc = subprocess.run(["bash", "-c", command], env={**os.environ, "HOME": str(home), "PATH": path, **env},
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, (command, proc.stdout, proc.stderr)


@pytest.mark.skipif(PUSHGATEWAY is None, reason="needs Debian's prometheus-pushgateway")
def test_pushgateway_lines_start_it_on_its_listen_address_and_restart_it(tmp_path: Path, head_home: Path) -> None:
    port = free_port()
    # loopback here (the head's default is every interface; this machine's services stay on 127.0.0.1)
    commands = render(tmp_path, prometheus_agent_targets={"exporter": "127.0.0.1:9188", "pushgateway": f"127.0.0.1:{port}",
                                                          "ray_sd_file": "/tmp/ray/prom_metrics_service_discovery.json"},
                      pushgateway_listen_address=f"127.0.0.1:{port}")
    unpacked = head_home / "sfmlops-monitoring" / "pushgateway-1.11.1.linux-amd64"
    unpacked.mkdir()
    (unpacked / "pushgateway").symlink_to(PUSHGATEWAY)
    _run(_one(commands, "sha256sum -c"), head_home)  # already unpacked: nothing is downloaded
    start = _one(commands, "restart pushgateway")
    _run(start, head_home)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/-/ready")
    pidfile = head_home / "sfmlops-monitoring" / "pushgateway.pid"
    first = int(pidfile.read_text())
    assert httpx.put(f"{url}/metrics/job/sfmlops_training/scope/all", content="sfmlops_training_gate_promoted 1\n").status_code == 200
    _run(start, head_home)  # a second `ray up`: the running one is replaced, not doubled
    second = int(pidfile.read_text())
    assert second != first and not _alive(first)
    text = _wait_http(f"{url}/metrics").text
    # what was pushed before survived the restart (--persistence.file, written on shutdown)
    assert 'sfmlops_training_gate_promoted{instance="",job="sfmlops_training",scope="all"} 1' in text


def test_exporter_line_serves_metrics_from_the_job_code_zip(tmp_path: Path, head_home: Path, stack, isolated_tables) -> None:
    from app.jobs.package import build

    s = isolated_tables(stack, "x")
    port = free_port()
    tables = {f"SFMLOPS_{name.upper()}": getattr(s, name) for name in type(s).model_fields if name.startswith("table_")}
    commands = render(
        tmp_path,
        prometheus_agent_targets={"exporter": f"127.0.0.1:{port}", "pushgateway": "127.0.0.1:9091", "ray_sd_file": "/tmp/x.json"},
        exporter_environment={"SFMLOPS_PROFILE": "local", "SFMLOPS_PG_HOST": s.pg_host, "SFMLOPS_PG_PORT": str(s.pg_port),
                              "SFMLOPS_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap, **tables},
    )
    # what the fetch line leaves on the head: the job-code zip unpacked in ~/sfmlops-monitoring
    with zipfile.ZipFile(build(tmp_path / "job.zip")) as zf:
        zf.extractall(head_home / "sfmlops-monitoring")
    _run(_one(commands, "app.monitoring.exporter"), head_home, SFMLOPS_PG_PASSWORD=s.pg_password.get_secret_value())
    text = _wait_http(f"http://127.0.0.1:{port}/metrics").text
    for source in ("forecasts", "ledger", "training_jobs", "accuracy", "kafka"):
        assert f'sfmlops_exporter_source_up{{source="{source}"}} 1.0' in text, text
    assert "sfmlops_forecast_stores 0.0" in text  # the test's own (empty) stores table
