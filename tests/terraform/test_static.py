"""Static checks of terraform/: fmt, validate, terraform test (mock provider), tflint, checkov,
module layout and documentation, and the Ray cluster file against Ray's schema."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from ._tf import CLI_CONFIG, ROOT, TF_DIR, TOOLS_BIN, run_tf, terraform_bin, tf_env

pytestmark = pytest.mark.skipif(terraform_bin() is None, reason="terraform is not installed")

MODULES = sorted(p for p in (TF_DIR / "modules").iterdir() if p.is_dir())
VAR_RE = re.compile(r'^variable\s+"([^"]+)"\s*\{(.*?)^\}', re.M | re.S)
OUT_RE = re.compile(r'^output\s+"([^"]+)"\s*\{(.*?)^\}', re.M | re.S)
SECRET_NAME = re.compile(r"(password|secret|token|pepper|private_key)", re.I)
#: Names that mention a secret without carrying one: ARNs, and booleans about the RDS password and the
#: API key pepper's secret.
NOT_A_SECRET = re.compile(r"(_arns?$|^password_in_config$|^manage_master_user_password$|^create_pepper_secret$)")


def _secret_like(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not NOT_A_SECRET.search(name)


@pytest.fixture(scope="module")
def initialized() -> None:
    """``terraform init`` of the root module from the filesystem mirror (no backend)."""
    run_tf(["init", "-backend=false", "-input=false"], TF_DIR, timeout=300)


def test_cli_config_uses_only_the_mirror() -> None:
    text = CLI_CONFIG.read_text()
    assert "filesystem_mirror" in text and "/opt/tf-plugins" in text
    assert 'exclude = ["registry.terraform.io/*/*"]' in text


def test_fmt_check() -> None:
    proc = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff"], cwd=TF_DIR, env=tf_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}"


def test_validate(initialized: None) -> None:
    proc = run_tf(["validate", "-json"], TF_DIR)
    result = json.loads(proc.stdout)
    assert result["valid"], result
    assert result["warning_count"] == 0, result["diagnostics"]


def test_terraform_test_security_invariants(initialized: None) -> None:
    proc = run_tf(["test"], TF_DIR, timeout=900)
    assert "0 failed" in proc.stdout, proc.stdout
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"Success! [1-9]\d* passed, 0 failed", summary), summary


def test_tflint() -> None:
    tflint = TOOLS_BIN / "tflint"
    if not tflint.exists():
        pytest.skip("tflint not installed; run `make tools-setup`")
    proc = subprocess.run(
        [str(tflint), "--recursive", f"--config={TF_DIR / '.tflint.hcl'}", "--format=compact"],
        cwd=TF_DIR, env=tf_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_checkov_has_no_failed_checks() -> None:
    checkov = TOOLS_BIN / "checkov"
    if not checkov.exists():
        pytest.skip("checkov not installed; run `make tools-setup`")
    proc = subprocess.run(
        [str(checkov), "-d", str(TF_DIR), "--framework", "terraform", "-o", "json", "--compact",
         "--skip-path", ".terraform"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert not failed, "\n".join(f"{c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range']}" for c in failed)
    assert passed > 100, f"checkov ran only {passed} checks"


def test_every_checkov_skip_has_a_reason() -> None:
    skips = []
    for path in TF_DIR.rglob("*.tf"):
        if ".terraform" in path.parts:
            continue
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                m = re.search(r"checkov:skip=([A-Z0-9_]+):(.*)$", line)
                assert m, f"{path}: malformed skip {line!r}"
                assert len(m.group(2).strip()) >= 30, f"{path}: skip {m.group(1)} needs a real reason"
                skips.append(m.group(1))
    assert skips, "expected documented skips"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_layout_and_docs(module) -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (module / name).is_file(), f"{module.name}: missing {name}"
    readme = (module / "README.md").read_text()
    assert "## Inputs" in readme and "## Outputs" in readme
    variables = VAR_RE.findall((module / "variables.tf").read_text())
    outputs = OUT_RE.findall((module / "outputs.tf").read_text())
    for name, body in variables:
        assert re.search(r"^\s*type\s*=", body, re.M), f"{module.name}: variable {name} has no type"
        assert re.search(r"^\s*description\s*=", body, re.M), f"{module.name}: variable {name} has no description"
        assert f"`{name}`" in readme, f"{module.name}: README lacks input {name}"
        assert not _secret_like(name), f"{module.name}: secret-like variable {name}"
    for name, body in outputs:
        assert re.search(r"^\s*description\s*=", body, re.M), f"{module.name}: output {name} has no description"
        assert f"`{name}`" in readme, f"{module.name}: README lacks output {name}"
        assert not _secret_like(name), f"{module.name}: secret-like output {name}"
    main = (module / "main.tf").read_text()
    assert re.search(r'^resource\s+"[a-z0-9_]+"\s+"this"', main, re.M), f"{module.name}: no main resource named this"


def test_root_has_no_secret_variables_or_outputs() -> None:
    for file, pattern in (("variables.tf", VAR_RE), ("outputs.tf", OUT_RE)):
        for name, _ in pattern.findall((TF_DIR / file).read_text()):
            assert not _secret_like(name), f"root {file}: {name}"


def test_cluster_yaml_matches_ray_schema() -> None:
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import validate_config

    from app.stack.terraform import reference_cluster_config

    config = reference_cluster_config()
    validate_config(config)
    assert set(config["available_node_types"]) == {"ray.head.default", "ray.worker.default"}
    assert config["head_node_type"] == "ray.head.default"
    worker = config["available_node_types"]["ray.worker.default"]
    assert 0 <= worker["min_workers"] <= worker["max_workers"] <= config["max_workers"]
    assert config["provider"]["type"] == "aws"


def test_ray_head_starts_the_monitoring_agent() -> None:
    """The monitoring module's agent commands (fetch the config from SSM, start Prometheus in agent mode) reach the
    head's ``head_setup_commands`` exactly, shell metacharacters and all; without monitoring the list is empty."""
    from app.stack.terraform import reference_cluster_config

    main = (TF_DIR / "main.tf").read_text()
    assert re.search(r"head_setup_commands\s*=\s*var\.create_monitoring \? module\.monitoring\[0\]\.head_setup_commands : \[\]", main)
    commands = ["command -v prometheus >/dev/null || sudo apt-get install -y prometheus",
                'nohup prometheus --config.file=$HOME/agent.yml > ~/agent.log 2>&1 & echo "${HOME}"']
    assert reference_cluster_config(head_setup_commands=commands)["head_setup_commands"] == commands
    assert reference_cluster_config()["head_setup_commands"] == []


def test_cluster_yaml_is_rendered_per_deployment_not_committed() -> None:
    """Issue 19: no deployment's ids in the tree. ``ray_cluster/cluster.yaml`` is git-ignored (each deployment writes
    its own from Terraform's outputs, ``make tf-ray-cluster``), no committed file under ``ray_cluster/`` carries
    subnet, security group or account ids, and the reference rendering carries the placeholders only."""
    from app.stack.terraform import CLUSTER_YAML, REFERENCE_INPUTS, render_reference_cluster_yaml

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, check=False).returncode == 0

    assert ignored(str(CLUSTER_YAML.relative_to(ROOT))), "ray_cluster/cluster.yaml must be git-ignored"
    tracked = subprocess.run(["git", "ls-files", "ray_cluster"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    present = [p for p in tracked if (ROOT / p).is_file()]
    assert [p for p in present if ignored(p)] == [], "a rendered cluster file is tracked: remove it from git"
    real_ids = re.compile(r"subnet-[0-9a-f]{8,}|sg-[0-9a-f]{8,}|arn:aws:iam::\d{12}:")
    assert [p for p in present if real_ids.search((ROOT / p).read_text(errors="replace"))] == []
    text = render_reference_cluster_yaml()
    for value in (*REFERENCE_INPUTS["subnet_ids"], REFERENCE_INPUTS["security_group_id"], "arn:aws:iam::ACCOUNT_ID:instance-profile/sfmlops-ray-head"):
        assert value in text
    assert not real_ids.search(text)


def test_cloudwatch_alarms_are_one_resource_over_a_map() -> None:
    """Issue 19: one ``aws_cloudwatch_metric_alarm`` block with ``for_each`` over the alarm map, not a block per alarm
    (what each alarm watches is checked by ``terraform test``, tests/monitoring.tftest.hcl)."""
    blocks = [
        (str(path.relative_to(TF_DIR)), name)
        for path in sorted(TF_DIR.rglob("*.tf")) if ".terraform" not in path.parts
        for name in re.findall(r'^resource\s+"aws_cloudwatch_metric_alarm"\s+"(\w+)"', path.read_text(), re.M)
    ]
    assert blocks == [("modules/monitoring/main.tf", "this")]
    body = (TF_DIR / "modules" / "monitoring" / "main.tf").read_text().split('resource "aws_cloudwatch_metric_alarm" "this" {', 1)[1]
    assert re.match(r"\s*for_each\s*=\s*local\.alarms\b", body)


def test_cluster_yaml_comments_every_key() -> None:
    """Ray's example-full.yaml style: a comment line above every key of the template."""
    lines = (TF_DIR / "modules" / "ray" / "templates" / "cluster.yaml.tftpl").read_text().splitlines()
    key_re = re.compile(r"^\s*(- )?[A-Za-z_.][\w.]*:")
    for i, line in enumerate(lines):
        if key_re.match(line):
            prev = next(p for p in reversed(lines[:i]) if not p.startswith("%{"))
            assert prev.strip().startswith("#") or prev.strip().startswith("- "), f"line {i + 1} has no comment: {line}"


def test_mlflow_container_command_quotes_any_database_password(tmp_path) -> None:
    """The ECS tracking server builds its backend URI from the role's secret: an RDS-generated password with
    '@', ':', '/', '%', quotes or a backslash must reach MLflow (SQLAlchemy URL, basic-auth ini) unchanged."""
    import configparser
    import json as _json
    import sys

    from sqlalchemy.engine import make_url

    text = (TF_DIR / "modules" / "mlflow" / "main.tf").read_text()

    def hcl_string(name: str) -> str:
        m = re.search(rf'^\s*{name}\s*=\s*("(?:[^"\\]|\\.)*")\s*$', text, re.M)
        return _json.loads(m.group(1))

    block = re.search(r'start_command = join\(" && ", \[(.*?)\]\)', text, re.S).group(1)
    parts = [_json.loads(x) for x in re.findall(r'("(?:[^"\\]|\\.)*")\s*,', block)]
    ini = tmp_path / "basic_auth.ini"
    command = (" && ".join(parts).replace("${local.backend_uri_command}", hcl_string("backend_uri_command"))
               .replace("${local.port}", "5000").replace("${var.artifact_bucket_name}", "b")
               .replace("/tmp/basic_auth.ini", str(ini)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    # stand-in for the image's `mlflow`: records its argv and the URI it would read from the environment
    (bin_dir / "mlflow").write_text(f'#!/bin/sh\nprintf %s "$*" > {tmp_path}/argv\nprintf %s "$MLFLOW_BACKEND_STORE_URI" > {tmp_path}/uri\n')
    (bin_dir / "mlflow").chmod(0o755)
    password, admin = "p@ss:w/o%rd' \"x\\y#?", "adm%in pw'\""
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DB_USER": "sfmlops_mlflow", "DB_PASSWORD": password, "DB_HOST": "db.example",
           "DB_PORT": "5432", "DB_NAME": "mlflow", "MLFLOW_ADMIN_PASSWORD": admin}
    result = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    uri = make_url((tmp_path / "uri").read_text())
    assert (uri.username, uri.password, uri.host, uri.port, uri.database) == ("sfmlops_mlflow", password, "db.example", 5432, "mlflow")
    assert password not in (tmp_path / "argv").read_text() and "backend-store-uri" not in (tmp_path / "argv").read_text()
    config = configparser.ConfigParser()
    config.read(ini)
    assert make_url(config["mlflow"]["database_uri"]).password == password
    assert config["mlflow"]["admin_password"] == admin


def test_the_emr_release_runs_the_spark_the_job_packages_are_for() -> None:
    """The spark module's default release is the one app/common/spark.py names: the DAG's --packages (the Kafka
    source for EMR_SPARK_VERSION, Scala 2.13) load only on that release's Spark."""
    from app.common.spark import EMR_RELEASE_LABEL, EMR_SPARK_VERSION, spark_packages

    variables = dict(VAR_RE.findall((TF_DIR / "modules" / "spark" / "variables.tf").read_text()))
    default = re.search(r'default\s*=\s*"([^"]+)"', variables["release_label"])
    assert default is not None and default.group(1) == EMR_RELEASE_LABEL
    assert f"spark-sql-kafka-0-10_2.13:{EMR_SPARK_VERSION}" in spark_packages()
