"""The AWS Prometheus agent config (terraform/modules/monitoring/prometheus-agent.yml.tftpl): rendered with
Terraform's own ``templatefile`` (``terraform console``, no provider needed) and checked with the Debian
``promtool check config``; the module's use of it is checked by terraform/tests/monitoring.tftest.hcl."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "terraform" / "modules" / "monitoring" / "prometheus-agent.yml.tftpl"
URL = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-abc/api/v1/remote_write"

pytestmark = pytest.mark.skipif(not (shutil.which("terraform") and shutil.which("promtool")), reason="needs terraform and promtool")


def render(tmp_path: Path, **overrides: str) -> str:
    values = {
        "parameter_name": "/sfmlops-prod/monitoring/prometheus-agent.yml", "stack": "sfmlops-prod",
        "scrape_interval": "30s", "scrape_timeout": "30s", "exporter": "127.0.0.1:9188", "pushgateway": "127.0.0.1:9091",
        "ray_sd_file": str(tmp_path / "prom_metrics_service_discovery.json"), "remote_write_url": URL, "region": "eu-west-1",
        **overrides,
    }
    expr = f"jsonencode({{config = templatefile({json.dumps(str(TEMPLATE))}, {json.dumps(values)})}})"
    home = tmp_path / "tf"
    home.mkdir(exist_ok=True)
    proc = subprocess.run(["terraform", "console"], input=expr + "\n", cwd=home, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(home), "TF_CLI_CONFIG_FILE": str(ROOT / "terraform" / "terraformrc")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the console prints the JSON string as an HCL string literal: a JSON string literal here (no ${ in it)
    return json.loads(json.loads(proc.stdout.strip()))["config"]


def test_rendered_agent_config_passes_promtool(tmp_path: Path) -> None:
    text = render(tmp_path)
    (tmp_path / "prom_metrics_service_discovery.json").write_text(json.dumps([{"targets": ["10.0.0.5:44217"], "labels": {}}]))
    path = tmp_path / "agent.yml"
    path.write_text(text)
    proc = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout + proc.stderr, proc.stdout + proc.stderr

    config = yaml.safe_load(text)
    assert config["remote_write"] == [{"url": URL, "sigv4": {"region": "eu-west-1"},
                                       "queue_config": {"max_samples_per_send": 1000, "max_shards": 10}}]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["sfmlops_exporter"]["static_configs"] == [{"targets": ["127.0.0.1:9188"]}]
    assert jobs["pushgateway"]["honor_labels"] is True and jobs["pushgateway"]["static_configs"] == [{"targets": ["127.0.0.1:9091"]}]
    assert jobs["ray"]["file_sd_configs"] == [{"files": [str(tmp_path / "prom_metrics_service_discovery.json")]}]
    assert "rule_files" not in config and "alerting" not in config  # agent mode: no rules, no Alertmanager


def test_a_broken_render_is_refused_by_promtool(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    path.write_text(render(tmp_path, scrape_interval="every minute"))
    proc = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "every minute" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
