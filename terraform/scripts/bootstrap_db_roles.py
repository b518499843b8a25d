"""Create the per-component database roles of the AWS deployment and put their passwords in their secrets.

Terraform (``modules/database``) creates one Secrets Manager secret per role (API Lambda, Ray jobs, Spark
ingestion, MLflow server) without a value, and outputs ``database_roles`` (component -> username, secret
ARN). Run this once after the first ``terraform apply`` and the migrations, from inside the VPC, as the RDS
master user (its secret: ``SFMLOPS_PG_SECRET_ARN``); run it again after a migration that adds tables (grants)
and with ``--rotate`` to rotate every role's password (the apps re-read their secret when the database
refuses the old one). The grants are ``app.db.ROLE_GRANTS``.

Usage::

    SFMLOPS_PROFILE=aws SFMLOPS_PG_HOST=<rds> SFMLOPS_PG_SECRET_ARN=<master secret> \\
      python terraform/scripts/bootstrap_db_roles.py [--dir terraform | --roles roles.json] [--rotate]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def terraform_roles(tf_dir: Path) -> dict[str, dict[str, str]]:
    """The ``database_roles`` output of the applied configuration in ``tf_dir``."""
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.environ.get("TF_CLI_CONFIG_FILE", str(ROOT / "terraform" / "terraformrc"))}
    out = subprocess.run(  # fixed argv
        ["terraform", f"-chdir={tf_dir}", "output", "-json", "database_roles"],
        capture_output=True, text=True, env=env, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"terraform output database_roles failed: {out.stderr.strip()[-500:]}")
    roles = json.loads(out.stdout)
    if not roles:
        raise SystemExit("database_roles is empty: create_database = false, nothing to bootstrap")
    return roles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=ROOT / "terraform", help="Terraform root with the applied state")
    parser.add_argument("--roles", type=Path, help="JSON file {component: {username, secret_arn}} instead of --dir")
    parser.add_argument("--rotate", action="store_true", help="Generate new passwords for every role")
    args = parser.parse_args(argv)
    from app.config import get_settings
    from app.db import bootstrap_roles

    roles = json.loads(args.roles.read_text()) if args.roles else terraform_roles(args.dir)
    print(json.dumps(bootstrap_roles(get_settings(), roles, rotate=args.rotate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
