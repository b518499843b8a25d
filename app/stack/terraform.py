"""Terraform applied to the emulator (MiniStack): the Lambda zip, ``terraform apply`` and its outputs.

The applies go through the make targets (``lambda-package``, ``tf-apply-local``), which own the variable
files and the provider mirror; :func:`outputs` reads ``terraform output -json`` as plain values.

The Ray cluster file has one template, ``terraform/modules/ray/templates/cluster.yaml.tftpl``, rendered only by
Terraform: :func:`write_cluster_yaml` writes a deployment's rendering (output ``ray_cluster_yaml``) to the
git-ignored ``ray_cluster/cluster.yaml`` for ``ray up``; :func:`reference_cluster_config` renders the same
module file with the module's defaults and placeholder ids, without a deployment, for what reads only the node
types (the fake multinode cluster, the tests).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import PROJECT_ROOT

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

TF_DIR = PROJECT_ROOT / "terraform"
APPLY_TARGETS = ("lambda-package", "tf-apply-local")
RAY_MODULE = TF_DIR / "modules" / "ray"
#: Where ``ray up`` reads the cluster file; rendered per deployment (``make tf-ray-cluster``), never committed.
CLUSTER_YAML = PROJECT_ROOT / "ray_cluster" / "cluster.yaml"
#: The ray module's required inputs for :func:`reference_cluster_config`: visibly fake ids, no account.
REFERENCE_INPUTS: dict[str, Any] = {
    "name": "sfmlops-ray",
    "region": "us-east-1",
    "availability_zones": ["us-east-1a", "us-east-1b"],
    "subnet_ids": ["subnet-placeholder-a", "subnet-placeholder-b"],
    "security_group_id": "sg-placeholder",
    "code_bucket_arn": "arn:aws:s3:::placeholder-code",
    "artifact_bucket_arn": "arn:aws:s3:::placeholder-mlflow",
    "kms_key_arn": "arn:aws:kms:us-east-1:ACCOUNT_ID:key/placeholder",
}


class TerraformFailed(RuntimeError):
    """A make target of the apply failed; the message ends with its output."""


def apply_to_emulator() -> None:
    """Build the Lambda zip and apply ``terraform/`` to the emulator (``make lambda-package tf-apply-local``).

    Raises:
        TerraformFailed: naming the target, with the end of its output.
    """
    for target in APPLY_TARGETS:
        proc = subprocess.run(["make", "--no-print-directory", target], cwd=PROJECT_ROOT, text=True,
                              capture_output=True, check=False)
        if proc.returncode != 0:
            raise TerraformFailed(f"`make {target}` failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CLI_CONFIG_FILE": os.environ.get("TF_CLI_CONFIG_FILE", str(TF_DIR / "terraformrc"))}


def outputs(tf_dir: Path = TF_DIR) -> dict[str, Any]:
    """``terraform output -json`` of the state applied in ``tf_dir``, as ``{name: value}``."""
    proc = subprocess.run(["terraform", f"-chdir={tf_dir}", "output", "-json"], env=_env(), text=True,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise TerraformFailed(f"`terraform output -json` failed in {tf_dir} (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return output_values(proc.stdout)


def write_cluster_yaml(out: Path = CLUSTER_YAML, tf_dir: Path = TF_DIR) -> Path:
    """Write the ``ray up`` cluster file of the deployment applied in ``tf_dir`` (output ``ray_cluster_yaml``).

    Raises:
        TerraformFailed: when ``terraform output`` fails, or the output is empty (``create_ray = false``, not applied).
    """
    text = outputs(tf_dir).get("ray_cluster_yaml")
    if not text:
        raise TerraformFailed(f"output ray_cluster_yaml is empty in {tf_dir}: apply with create_ray = true first")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def render_reference_cluster_yaml(**inputs: Any) -> str:
    """The cluster file as the ray module renders it with its variable defaults and :data:`REFERENCE_INPUTS`
    (``inputs`` override or add module variables).

    Terraform itself evaluates the module's ``cluster_yaml.tf`` (the ``templatefile`` call) and ``variables.tf``
    in a scratch folder, with the two instance profile ARNs as placeholders: no providers, no state, no init.

    Raises:
        TerraformFailed: when ``terraform console`` fails.
    """
    with tempfile.TemporaryDirectory(prefix="sfmlops-cluster-") as tmp:
        work = Path(tmp)
        for name in ("variables.tf", "cluster_yaml.tf"):
            shutil.copy2(RAY_MODULE / name, work / name)
        shutil.copytree(RAY_MODULE / "templates", work / "templates")
        profile = f"arn:aws:iam::ACCOUNT_ID:instance-profile/{REFERENCE_INPUTS['name']}"
        (work / "placeholders.tf").write_text(
            f'locals {{\n  head_profile_arn   = "{profile}-head"\n  worker_profile_arn = "{profile}-worker"\n}}\n'
        )
        (work / "terraform.tfvars.json").write_text(json.dumps({**REFERENCE_INPUTS, **inputs}))
        proc = subprocess.run(["terraform", "console"], cwd=work, env=_env(), input="base64encode(local.cluster_yaml)\n",
                              text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        raise TerraformFailed(f"`terraform console` of the ray module's cluster file failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return base64.b64decode(json.loads(proc.stdout.strip())).decode()


def reference_cluster_config(**inputs: Any) -> dict[str, Any]:
    """:func:`render_reference_cluster_yaml`, parsed: the node types, sizes and commands of every deployment."""
    import yaml

    config: dict[str, Any] = yaml.safe_load(render_reference_cluster_yaml(**inputs))
    return config


def output_values(text: str) -> dict[str, Any]:
    """``{name: value}`` of ``terraform output -json``'s ``{name: {"value", "type", "sensitive"}}``."""
    return {name: out.get("value") for name, out in json.loads(text or "{}").items()}


def gateway_url(settings: Settings, api_id: str) -> str:
    """The emulator's path-style invoke URL of an HTTP API (``<id>.execute-api.localhost`` needs DNS)."""
    return f"{settings.aws_endpoint_url}/_aws/execute-api/{api_id}"
