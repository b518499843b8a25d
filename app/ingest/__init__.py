"""Streaming ingestion: run ``spark_jobs/sales_stream.py`` through spark-submit, as on EMR.

``sfmlops ingest`` calls :func:`run`, which builds the spark-submit line with :func:`build_command`
(local master, the connector jars resolved by Maven into ``.cache/jars/spark``) and passes the job
the same arguments EMR gets. The job reads its settings from the ``SFMLOPS_*`` environment, which
:func:`settings_env` renders from the caller's settings.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.common.jobs import INGEST_SUMMARY_PREFIX, ingest_summary
from app.common.spark import PGJDBC_VERSION
from app.config import PROJECT_ROOT, settings_env  # settings_env is part of this module's API

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

JOB_FILE = PROJECT_ROOT / "spark_jobs" / "sales_stream.py"
POM_FILE = PROJECT_ROOT / "spark_jobs" / "pom.xml"
SUMMARY_PREFIX = INGEST_SUMMARY_PREFIX
#: artifacts that pyspark already ships in its jars/ folder (not copied again).
PYSPARK_PROVIDED = (
    "hadoop-client-runtime,hadoop-client-api,scala-library,scala-parallel-collections_2.13,slf4j-api,"
    "snappy-java,jsr305,spark-tags_2.13,lz4-java,wildfly-openssl"
)


#: jar name prefixes the job needs (Kafka source, s3a, PgJDBC of app/common/spark.py); a cache missing one is
#: resolved again.
REQUIRED_JARS = ("spark-sql-kafka", "hadoop-aws", f"postgresql-{PGJDBC_VERSION}.jar")


def jars_dir(settings: Settings) -> Path:
    return Path(settings.cache_dir) / "jars" / "spark"


def resolve_jars(settings: Settings, quiet: bool = True) -> list[Path]:
    """The connector jars (Kafka source, hadoop-aws + AWS SDK, PgJDBC), resolved with Maven once and cached."""
    folder = jars_dir(settings)
    jars = sorted(folder.glob("*.jar"))
    if all(any(j.name.startswith(prefix) for j in jars) for prefix in REQUIRED_JARS):
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(f"connector jars missing in {folder} and `mvn` is not installed: run `make system-deps`")
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM_FILE),
        "dependency:copy-dependencies",
        f"-Dmaven.repo.local={Path(settings.cache_dir) / 'm2'}",
        f"-DoutputDirectory={folder}",
        f"-Dpgjdbc.version={PGJDBC_VERSION}",  # the one definition: app/common/spark.py (also EMR's --packages)
        "-DincludeScope=runtime",
        f"-DexcludeArtifactIds={PYSPARK_PROVIDED}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"Maven could not resolve spark_jobs/pom.xml:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return sorted(folder.glob("*.jar"))


def job_arguments(
    settings: Settings,
    trigger: str = "available-now",
    checkpoint: str | None = None,
    topic: str | None = None,
    max_offsets_per_trigger: int | None = None,
    interval: str | None = None,
    run_seconds: float = 0,
    starting_offsets: str = "earliest",
    min_partitions: int = 0,
) -> list[str]:
    """The job's own arguments: identical for local runs and the EMR step."""
    args = ["--trigger", trigger, "--topic", topic or settings.kafka_topic, "--starting-offsets", starting_offsets]
    args += ["--max-offsets-per-trigger", str(max_offsets_per_trigger or settings.ingest_max_offsets_per_trigger)]
    if checkpoint:
        args += ["--checkpoint", checkpoint]
    if trigger == "processing-time":
        args += ["--interval", interval or settings.ingest_trigger_interval]
        if run_seconds:
            args += ["--run-seconds", str(run_seconds)]
    if min_partitions:
        args += ["--min-partitions", str(min_partitions)]
    return args


def build_command(settings: Settings, **job_opts: Any) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` of the local spark-submit run; ``job_opts`` go to :func:`job_arguments`."""
    import pyspark

    spark_home = Path(pyspark.__file__).resolve().parent
    jars = os.pathsep.join(str(j) for j in resolve_jars(settings))
    argv = [
        str(spark_home / "bin" / "spark-submit"),
        "--master",
        settings.spark_master,
        "--driver-memory",
        settings.spark_driver_memory,
        # Local master: driver and executors share one JVM, so the connector jars go on its class path
        # directly (spark.jars would copy the 680 MB AWS SDK bundle into a temp folder on every start).
        "--conf",
        f"spark.driver.extraClassPath={jars}",
        "--conf",
        "spark.log.level=WARN",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        f"spark.driver.host={settings.bind_host}",
        "--conf",
        f"spark.driver.bindAddress={settings.bind_host}",
        "--conf",
        "spark.sql.streaming.stopGracefullyOnShutdown=true",
        str(JOB_FILE),
        *job_arguments(settings, **job_opts),
    ]
    env = dict(os.environ)
    env.update(settings_env(settings))
    env.update(settings.aws_env())
    env["SPARK_HOME"] = str(spark_home)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return argv, env


def _die_with_caller(parent: int) -> Callable[[], None]:
    """``preexec_fn`` of the spark-submit process: SIGKILL when the thread that started it dies.

    The driver runs in a session of its own (so it can be killed as a whole), which also shields it from
    a kill of the caller's process group (an Airflow task timeout); without this a killed
    ``sfmlops ingest`` would leave its driver running. spark-submit execs the JVM, which keeps this
    setting; the Python driver the JVM starts sets its own (:func:`app.ingest.job.die_with_parent`).
    """

    if not sys.platform.startswith("linux"):
        return lambda: None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork: the child only calls it

    def arm() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the caller died before the prctl
            os._exit(1)

    return arm


def start(settings: Settings, log_path: Path | None = None, **job_opts: Any) -> subprocess.Popen:
    """Start the job in its own process group (so it can be killed as a whole); output to ``log_path``.

    The job dies with the calling thread (parent-death signal), so call this from a thread that lives
    as long as the job should.
    """
    argv, env = build_command(settings, **job_opts)
    out = open(log_path, "ab") if log_path else subprocess.PIPE  # owned by the Popen
    return subprocess.Popen(
        argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=PROJECT_ROOT,
        preexec_fn=_die_with_caller(os.getpid()),  # only async-signal-safe calls
    )


def parse_summary(text: str) -> dict | None:
    """The job's summary line from its output, if any."""
    return ingest_summary(text)


def run(
    settings: Settings,
    trigger: str = "available-now",
    timeout_s: float | None = None,
    log_path: Path | None = None,
    echo: bool = False,
    **job_opts: Any,
) -> dict:
    """Run the streaming job to its end and return its summary.

    Args:
        settings: The settings (Kafka, Postgres, tables, checkpoint bucket, Spark master/memory).
        trigger: ``available-now`` (drain and stop) or ``processing-time`` (continuous; give
            ``run_seconds`` or stop it with SIGTERM).
        timeout_s: Kill the job after this many seconds (``None`` = no limit).
        log_path: Where the Spark output goes (default: ``<logs_dir>/ingest.log``).
        echo: Also print the job's own progress lines.
        **job_opts: ``checkpoint``, ``topic``, ``max_offsets_per_trigger``, ``interval``,
            ``run_seconds``, ``starting_offsets``, ``min_partitions``.

    Returns:
        The job's summary (query id, batches, rows, rejected, upserted, stage/wall seconds) plus
        ``returncode`` and ``log``.

    Raises:
        RuntimeError: The job failed; the message carries the end of its log.
    """
    log_path = Path(log_path or Path(settings.logs_dir) / "ingest.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start_at = log_path.stat().st_size if log_path.exists() else 0
    proc = start(settings, log_path=log_path, trigger=trigger, **job_opts)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        raise RuntimeError(f"ingest job ran over {timeout_s}s and was killed; see {log_path}") from None
    with open(log_path, "rb") as fh:
        fh.seek(start_at)
        text = fh.read().decode("utf-8", "replace")
    if echo:
        for line in text.splitlines():
            if line.startswith("batch "):
                print(line)
    summary = parse_summary(text)
    if proc.returncode != 0 or summary is None:
        raise RuntimeError(f"ingest job failed (exit {proc.returncode}); last log lines:\n{text[-4000:]}")
    summary.update(returncode=proc.returncode, log=str(log_path))
    return summary
