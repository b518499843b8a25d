"""Helpers shared by the Terraform tests: the project's CLI config, tools, and a runner."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
CLI_CONFIG = TF_DIR / "terraformrc"
TOOLS_BIN = ROOT / ".venv-tools" / "bin"


def terraform_bin() -> str | None:
    """Path of the terraform binary, or None."""
    return shutil.which("terraform")


def tf_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for terraform: the project's CLI config, never ~/.terraformrc."""
    env = dict(os.environ)
    env["TF_CLI_CONFIG_FILE"] = str(CLI_CONFIG)
    env["TF_IN_AUTOMATION"] = "1"
    env["TF_INPUT"] = "0"
    env.pop("TF_LOG", None)
    if extra:
        env.update(extra)
    return env


def run_tf(args: list[str], cwd: Path, timeout: int = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``terraform ARGS`` in ``cwd`` without colour; raises with the output on failure."""
    proc = subprocess.run(
        ["terraform", *args, "-no-color"] if args[0] not in {"fmt", "output", "version"} else ["terraform", *args],
        cwd=cwd,
        env=env or tf_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"terraform {' '.join(args)} failed (rc={proc.returncode}) in {cwd}:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    return proc
