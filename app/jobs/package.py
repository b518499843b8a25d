"""The Ray job-code zip: ``app/`` and ``ray_cluster/`` under one top-level folder, uploaded to S3.

Ray fetches a remote ``working_dir`` zip and uses its single top-level folder as the job's working
directory, so entrypoints such as ``python ray_cluster/jobs/train_all.py`` run from the project layout.
The Ray nodes need S3 access: locally the head is started with ``AWS_ENDPOINT_URL`` (the emulator) and
the emulator's credentials in its environment (see ``Settings.aws_env``); ``smart_open`` and ``boto3``
must be installed where the job runs.

Usage: ``python -m app.jobs.package [--no-upload]`` (``make job-package``).
"""

from __future__ import annotations

import argparse
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

from app.config import PROJECT_ROOT, Settings, get_settings

TOP = "sfmlops_job"
INCLUDE = ("app", "ray_cluster")
EXCLUDE_DIRS = {"__pycache__", ".pytest_cache", "ui"}
EXCLUDE_SUFFIXES = {".pyc", ".pyo"}


def build(out: Path = PROJECT_ROOT / "build" / "job.zip") -> Path:
    """Write the deterministic job-code zip; returns its path.

    Raises:
        FileNotFoundError: if ``ray_cluster/jobs`` is missing (the training entrypoints live there).
    """
    if not (PROJECT_ROOT / "ray_cluster" / "jobs").is_dir():
        raise FileNotFoundError(f"{PROJECT_ROOT / 'ray_cluster' / 'jobs'} is missing: nothing to ship to Ray")
    out.parent.mkdir(parents=True, exist_ok=True)
    files = []
    for top in INCLUDE:
        for path in sorted((PROJECT_ROOT / top).rglob("*")):
            rel = path.relative_to(PROJECT_ROOT)
            if path.is_file() and not (set(rel.parts) & EXCLUDE_DIRS) and path.suffix not in EXCLUDE_SUFFIXES:
                files.append((path, rel))
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, rel in files:
            info = zipfile.ZipInfo(f"{TOP}/{rel.as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    tmp.replace(out)
    return out


def upload(settings: Settings, path: Path) -> str:
    """Upload ``path`` to ``s3://bucket_code/job_code_key`` (creating the bucket on the emulator); returns the URI."""
    s3 = settings.boto3_client("s3")
    if settings.aws_endpoint_url:
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if settings.bucket_code not in existing:
            s3.create_bucket(Bucket=settings.bucket_code)
    s3.upload_file(str(path), settings.bucket_code, settings.job_code_key)
    return f"s3://{settings.bucket_code}/{settings.job_code_key}"


def publish(settings: Settings, extra_buckets: Sequence[str | None] = ()) -> list[str]:
    """Build the zip and upload it to the code bucket and to every other bucket named (e.g. Terraform's)."""
    path = build()
    uris = [upload(settings, path)]
    for bucket in extra_buckets:
        if bucket and bucket != settings.bucket_code:
            uris.append(upload(settings.model_copy(update={"bucket_code": bucket}), path))
    return uris


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Ray job-code zip and upload it to the code bucket")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "job.zip", help="Zip to write")
    parser.add_argument("--no-upload", action="store_true", help="Only build the zip")
    args = parser.parse_args(argv)
    path = build(args.out)
    result = {"zip": str(path), "size_kb": round(path.stat().st_size / 1024, 1)}
    if not args.no_upload:
        result["uri"] = upload(get_settings(), path)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
