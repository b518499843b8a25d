"""Terraform applied to the emulator (MiniStack): the Lambda zip, ``terraform apply`` and its outputs.

The applies go through the make targets (``lambda-package``, ``tf-apply-local``), which own the variable
files and the provider mirror; :func:`outputs` reads ``terraform output -json`` as plain values.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import TYPE_CHECKING, Any

from app.config import PROJECT_ROOT

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

TF_DIR = PROJECT_ROOT / "terraform"
APPLY_TARGETS = ("lambda-package", "tf-apply-local")


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


def outputs() -> dict[str, Any]:
    """``terraform output -json`` of the applied state, as ``{name: value}``."""
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(TF_DIR / "terraformrc")}
    proc = subprocess.run(["terraform", f"-chdir={TF_DIR}", "output", "-json"], env=env, text=True,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise TerraformFailed(f"`terraform output -json` failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return output_values(proc.stdout)


def output_values(text: str) -> dict[str, Any]:
    """``{name: value}`` of ``terraform output -json``'s ``{name: {"value", "type", "sensitive"}}``."""
    return {name: out.get("value") for name, out in json.loads(text or "{}").items()}


def gateway_url(settings: Settings, api_id: str) -> str:
    """The emulator's path-style invoke URL of an HTTP API (``<id>.execute-api.localhost`` needs DNS)."""
    return f"{settings.aws_endpoint_url}/_aws/execute-api/{api_id}"
