"""`promtool` (Debian's prometheus package) checks the rules and runs their unit tests; every alert has a case."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from app.stack.prometheus import MONITORING_DIR, RULES_DIR

RULES = RULES_DIR / "sfmlops.yml"
TESTS = RULES_DIR / "tests" / "sfmlops_test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run `make system-deps` (Debian package prometheus)")
    return path


def _alerts() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"] for g in groups for r in g["rules"] if "alert" in r}


def test_rules_are_valid(promtool: str) -> None:
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    out = subprocess.run([promtool, "test", "rules", str(TESTS)], capture_output=True, text=True, cwd=TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_fires_in_a_test_case_and_has_a_quiet_or_early_case() -> None:
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = _alerts()
    assert alerts - fired == set(), f"alerts without a firing promtool case: {sorted(alerts - fired)}"
    # every alert but the two plain state checks also has a case where it must stay quiet
    assert alerts - quiet <= {"ForecastAccuracyDrift", "ExporterSourceDown", "ScrapeTargetDown"}, sorted(alerts - quiet)


def test_a_wrong_expectation_fails(promtool: str, tmp_path) -> None:
    """The promtool cases are real checks: a changed expected value makes `promtool test rules` fail."""
    text = TESTS.read_text().replace("../sfmlops.yml", str(RULES)).replace("lags by 200000 records", "lags by 1 records")
    broken = tmp_path / "broken_test.yml"
    broken.write_text(text)
    out = subprocess.run([promtool, "test", "rules", str(broken)], capture_output=True, text=True)
    assert out.returncode != 0
    assert "IngestionLagging" in out.stdout + out.stderr


def test_configs_render_with_every_placeholder(tmp_path) -> None:
    """prometheus.yml and alertmanager.yml render (no placeholder left unfilled) and bind only to loopback."""
    from app.config import Settings
    from app.stack.prometheus import Alertmanager, Prometheus

    s = Settings(_env_file=None, state_dir=tmp_path)
    for cls in (Prometheus, Alertmanager):
        svc = cls(s)
        svc.prepare()
        text = svc.config_file.read_text()
        assert "${" not in text
        yaml.safe_load(text)
        assert all("127.0.0.1" in arg for arg in svc.command() if arg.startswith("--web.listen-address"))
    token = tmp_path / "monitoring" / "alert-webhook-token"
    assert token.stat().st_mode & 0o077 == 0  # the webhook bearer token is private
    prom = subprocess.run([shutil.which("promtool") or "promtool", "check", "config", str(Prometheus(s).config_file)],
                          capture_output=True, text=True)
    assert prom.returncode == 0, prom.stdout + prom.stderr
    am = subprocess.run([shutil.which("amtool") or "amtool", "check-config", str(Alertmanager(s).config_file)],
                        capture_output=True, text=True)
    assert am.returncode == 0, am.stdout + am.stderr


def test_readme_lists_every_metric_and_alert() -> None:
    """monitoring/README.md names every metric defined in app/monitoring and every alert of the rules."""
    import re

    from app.config import PROJECT_ROOT

    sources = [(PROJECT_ROOT / "app" / "monitoring" / f).read_text() for f in ("metrics.py", "exporter.py")]
    sources.append((PROJECT_ROOT / "app" / "common" / "pushgateway.py").read_text())  # what the DAG tasks push
    names = {m for text in sources for m in re.findall(r'"(sfmlops_[a-z0-9_]+)"', text)}
    assert len(names) > 30
    readme = (MONITORING_DIR / "README.md").read_text()
    missing = sorted(n for n in names | _alerts() if f"`{n}`" not in readme and f"`{n}_total`" not in readme)
    assert not missing, f"not in monitoring/README.md: {missing}"
