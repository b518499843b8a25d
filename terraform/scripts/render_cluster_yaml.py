"""Write the `ray up` cluster file rendered by Terraform (output ``ray_cluster_yaml``).

Terraform renders ``modules/ray/templates/cluster.yaml.tftpl`` with the network, storage and
ray module outputs; only the aws provider is available in this project's provider mirror (no
``local_file``), so this script writes the output to disk (``ray_cluster/cluster.yaml`` is git-ignored: each
deployment renders its own).

Usage::

    python terraform/scripts/render_cluster_yaml.py [--dir terraform] [--out ray_cluster/cluster.yaml]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def render(tf_dir: Path, out: Path) -> Path:
    """Write the output ``ray_cluster_yaml`` of the state in ``tf_dir`` to ``out`` (:func:`app.stack.terraform.write_cluster_yaml`).

    Raises:
        SystemExit: When ``terraform output`` fails or the output is missing or null (create_ray = false or not applied).
    """
    from app.stack.terraform import TerraformFailed, write_cluster_yaml

    try:
        return write_cluster_yaml(out, tf_dir)
    except TerraformFailed as exc:
        raise SystemExit(str(exc)) from None


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
