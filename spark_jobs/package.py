"""Build the EMR artefacts of the streaming job and print the exact spark-submit line.

Writes ``dist/spark/`` with ``sales_stream.py``, ``app.zip`` (the ``app`` package for ``--py-files``)
and ``spark-submit.txt``. The same artefacts run locally::

    python spark_jobs/package.py [--emr-spark-version 4.0.2] [--code-uri s3://bucket/spark]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.common.spark import EMR_SPARK_VERSION, spark_packages  # noqa: E402 - the one definition of the coordinates
from app.config import get_settings  # noqa: E402


def build(out: Path, emr_spark_version: str, code_uri: str) -> dict:
    """Write the artefacts into ``out``; returns their paths and the spark-submit argv."""
    from app.ingest import job_arguments

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "spark_jobs" / "sales_stream.py", out / "sales_stream.py")
    archive = out / "app.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((ROOT / "app").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".sql"}:
                zf.write(path, path.relative_to(ROOT))
    settings = get_settings()
    packages = spark_packages(emr_spark_version)
    argv = [
        "spark-submit",
        "--deploy-mode", "cluster",
        "--packages", packages,
        "--py-files", f"{code_uri}/app.zip",
        "--conf", "spark.sql.streaming.stopGracefullyOnShutdown=true",
        f"{code_uri}/sales_stream.py",
        *job_arguments(settings, trigger="available-now"),
    ]
    line = shlex.join(argv)
    (out / "spark-submit.txt").write_text(line + "\n")
    return {"dir": str(out), "app_zip": str(archive), "job": str(out / "sales_stream.py"), "spark_submit": line}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "spark", help="output folder")
    parser.add_argument("--emr-spark-version", default=EMR_SPARK_VERSION, help="Spark version of the EMR release (emr-spark-8.0.0)")
    parser.add_argument("--code-uri", default=None, help="where the artefacts are uploaded (default s3://<bucket_code>/spark)")
    args = parser.parse_args()
    code_uri = args.code_uri or f"s3://{get_settings().bucket_code}/spark"
    result = build(args.out, args.emr_spark_version, code_uri)
    print(f"wrote {result['app_zip']} and {result['job']}")
    print(result["spark_submit"])


if __name__ == "__main__":
    main()
