"""Write the `ray up` cluster file rendered by Terraform (output ``ray_cluster_yaml``).

Terraform renders ``modules/ray/templates/cluster.yaml.tftpl`` with the network, storage and
ray module outputs; only the aws provider is available in this project's provider mirror (no
``local_file``), so this script writes the output to disk.

Usage::

    python terraform/scripts/render_cluster_yaml.py [--dir terraform] [--out ray_cluster/cluster.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def render(tf_dir: Path, out: Path) -> Path:
    """Read ``terraform output -json`` in ``tf_dir`` and write ``ray_cluster_yaml`` to ``out``.

    Raises:
        SystemExit: When the output is missing or null (create_ray = false or not applied).
    """
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.environ.get("TF_CLI_CONFIG_FILE", str(ROOT / "terraform" / "terraformrc"))}
    proc = subprocess.run(["terraform", "output", "-json"], cwd=tf_dir, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"terraform output failed in {tf_dir}: {proc.stderr.strip()}")
    outputs = json.loads(proc.stdout or "{}")
    text = (outputs.get("ray_cluster_yaml") or {}).get("value")
    if not text:
        raise SystemExit(f"output ray_cluster_yaml is empty in {tf_dir}: apply with create_ray = true first")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Write ray_cluster/cluster.yaml from Terraform outputs")
    parser.add_argument("--dir", type=Path, default=ROOT / "terraform", help="Applied root module folder")
    parser.add_argument("--out", type=Path, default=ROOT / "ray_cluster" / "cluster.yaml", help="File to write")
    args = parser.parse_args(argv)
    print(f"wrote {render(args.dir, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
