"""``sfmlops bench scale``: the real training job on synthetic chains of 1x, 4x, 16x Rossmann, fanned out vs one process.

For every size (a multiple of Rossmann's 1,115 stores) one run:

1. generates the chain with the deterministic generator (:func:`app.data.synthetic.generate`, seed 42) and loads
   it into Postgres tables of the bench's own (``bench_scale_<tag>_sales`` / ``_stores``, created like the
   ``sales`` / ``stores`` tables and dropped at the end; the user's tables are never read or written);
2. submits the training job (``ray_cluster/jobs/train_all.py``: LightGBM + the per-store family, neural off,
   ``--threads`` CPUs per task, not registered) to the local Ray cluster, fanned out (the figure), then the
   same job with ``--in-driver`` (the old single-task path: every fit in one process: the baseline);
3. prints one JSON line: rows, stores, wall seconds (Ray's own job start/end), rows/s, Ray tasks, nodes used,
   the peak RSS of the largest process of the job (driver or task worker; VmHWM of every process carrying
   the job's tag), the baseline's figures, whether the backtest metrics of both runs agree, and the load
   average (the machine may be shared).

Then, on a private fake multinode cluster (:mod:`app.bench.fake_cluster`) at ``fake_size``: the fanned-out job
with one worker node vs two worker nodes of ``worker_cpus`` CPU each (nodes up before the job starts) -> speedup.

Every job runs through the Jobs API (``ray.init`` from a plain process cannot reach a loopback head here).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

ROSSMANN_STORES = 1115
DEFAULT_SIZES = (1.0, 4.0, 16.0)
SEED = 42
TRAIN_ALL = "ray_cluster/jobs/train_all.py"
TAG_ENV = "SFMLOPS_BENCH_RUN"
#: Backtest RMSPE of the fanned-out run and the baseline must agree within this.
METRICS_TOL = 1e-6


def parse_sizes(text: str) -> list[float]:
    """``"1,4,16"`` -> ``[1.0, 4.0, 16.0]`` (multiples of Rossmann's store count; fractions allowed).

    Raises:
        ValueError: naming the bad item.
    """
    sizes = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"--sizes must be comma-separated numbers, not {item!r}") from None
        if value <= 0 or value * ROSSMANN_STORES < 1:
            raise ValueError(f"size {item!r} gives no store (need size x {ROSSMANN_STORES} >= 1)")
        sizes.append(value)
    if not sizes:
        raise ValueError("--sizes is empty")
    return sizes


def stores_for(size: float) -> int:
    return max(1, round(size * ROSSMANN_STORES))


def size_label(size: float) -> str:
    return f"{size:g}x"


# --- the job ---------------------------------------------------------------------------------------------


def job_code(out_dir: Path) -> Path:
    """The job's code: the job-code package (``app/`` + ``ray_cluster/``, what the API ships) unpacked under
    ``out_dir``, so a job runs the code as of the benchmark's start even if the tree changes meanwhile."""
    from app.jobs.package import TOP, build

    zip_path = build(out_dir / "job.zip")
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(out_dir)
    zip_path.unlink()
    return out_dir / TOP


def job_env(settings: Settings, tag: str) -> dict[str, str]:
    """The job's environment: this process's SFMLOPS_* settings, ``settings``' tables / experiment / state dir,
    and the tag that marks every process of the job (driver and task workers) for the RSS sampling."""
    from app.api.jobs_service import job_env as api_job_env

    env = {k: v for k, v in os.environ.items() if k.startswith("SFMLOPS_")}
    env.update(api_job_env(settings))
    env.update(
        {
            "SFMLOPS_TABLE_SALES": settings.table_sales, "SFMLOPS_TABLE_STORES": settings.table_stores,
            "SFMLOPS_MLFLOW_EXPERIMENT": settings.mlflow_experiment, "SFMLOPS_MODEL_NAME": settings.model_name,
            "SFMLOPS_STATE_DIR": str(settings.state_dir), TAG_ENV: tag, "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def tagged_peak_rss(tag: str, peaks: dict[int, dict[str, Any]]) -> None:
    """Update ``peaks`` {pid: {"mb", "cmd"}} with the peak RSS (VmHWM) of every live Python process (job driver,
    Ray task workers) whose environment carries ``TAG_ENV=tag``."""
    marker = f"{TAG_ENV}={tag}\0".encode()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            if marker not in (pid_dir / "environ").read_bytes():
                continue
            status = (pid_dir / "status").read_text()
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        except OSError:
            continue
        if not (cmd.startswith("ray::") or "python" in cmd):  # helpers such as `sleep` of the job's shell
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                mb = int(line.split()[1]) / 1024.0
                pid = int(pid_dir.name)
                if mb > peaks.get(pid, {}).get("mb", 0.0):
                    peaks[pid] = {"mb": mb, "cmd": cmd}


@dataclass
class JobRun:
    """What one training job did: its JSON result, Ray's timings, its tasks' nodes and peak memory.

    ``tasks`` holds each Ray task once, as its last attempt; ``retries`` counts the earlier attempts (a task Ray
    ran again: a retry, or the rebuild of an object lost with a node the autoscaler removed).
    """

    result: dict[str, Any]
    job_id: str
    wall_s: float
    tasks: list[dict[str, Any]] = field(default_factory=list)
    peak_rss: dict[int, dict[str, Any]] = field(default_factory=dict)
    retries: int = 0

    @property
    def nodes(self) -> list[str]:
        """Distinct node ids the job's tasks ran on."""
        return sorted({t["node_id"] for t in self.tasks if t.get("node_id")})

    @property
    def peak_rss_mb(self) -> float:
        return round(max((p["mb"] for p in self.peak_rss.values()), default=0.0), 1)

    @property
    def peak_rss_process(self) -> str:
        if not self.peak_rss:
            return ""
        cmd = max(self.peak_rss.values(), key=lambda p: p["mb"])["cmd"]
        return "driver" if TRAIN_ALL in cmd else "task worker"

    def rmspe(self, horizon: str = "h48") -> dict[str, float]:
        return {r["model"]: float(r["rmspe"]) for r in self.result["backtest"][horizon]}


def last_attempts(listed: Sequence[Any]) -> list[dict[str, Any]]:
    """Each task of Ray's state API listing once, as its last attempt (the listing has one entry per attempt).

    Args:
        listed: ``ray.util.state.list_tasks`` entries (``task_id``, ``attempt_number``, ``name``, ``node_id``,
            ``state``).
    """
    last: dict[str, Any] = {}
    for t in listed:
        if t.task_id not in last or t.attempt_number > last[t.task_id].attempt_number:
            last[t.task_id] = t
    return [{"name": t.name, "node_id": t.node_id, "state": t.state, "attempt": t.attempt_number} for t in last.values()]


def submit_train_job(
    jobs_url: str,
    args: Sequence[str],
    env: dict[str, str],
    code: Path,
    timeout_s: float = 3600,
    on_poll: Callable[[], None] | None = None,
) -> JobRun:
    """Run ``train_all.py args`` as a Ray job on the cluster at ``jobs_url`` and wait for it.

    Args:
        jobs_url: The cluster's Jobs API (dashboard) URL.
        args: Arguments of ``train_all.py``.
        env: Environment of the job (:func:`job_env`; its ``TAG_ENV`` marks the job's processes).
        code: The job code (:func:`job_code`), on this machine.
        timeout_s: Stop the job and raise after this long.
        on_poll: Called about once a second while the job runs.

    Raises:
        RuntimeError: when the job does not succeed (with the end of its log).
    """
    from ray.job_submission import JobStatus, JobSubmissionClient
    from ray.util.state import list_tasks

    from app.common.jobs import last_json_object

    client = JobSubmissionClient(jobs_url)
    # Every node of these clusters runs on this machine: the job code is imported from ``code`` (PYTHONPATH)
    # instead of a runtime_env working_dir. Fake worker nodes share the head's session dir (runtime_resources/):
    # with a working_dir, the unpacked copy - the driver's cwd - was deleted while the job still ran, once
    # idle worker nodes were being removed (os.getcwd() -> FileNotFoundError in mlflow.log_model).
    entrypoint = " ".join([sys.executable, str(code / TRAIN_ALL), *args])  # the head runs here: this interpreter
    env = {**env, "PYTHONPATH": str(code)}
    deadline = time.monotonic() + 180
    while True:  # a freshly started head answers "No available agent" until its agent is up
        try:
            sub_id = client.submit_job(entrypoint=entrypoint, runtime_env={"env_vars": env})
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(3)
    peaks: dict[int, dict[str, Any]] = {}
    tag = env.get(TAG_ENV, "")
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_job_status(sub_id)
        if tag:
            tagged_peak_rss(tag, peaks)
        if on_poll is not None:
            on_poll()
        if status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            break
        if time.monotonic() > deadline:
            client.stop_job(sub_id)
            raise RuntimeError(f"ray job {sub_id} still {status} after {timeout_s:.0f}s:\n{client.get_job_logs(sub_id)[-3000:]}")
        time.sleep(1)
    logs = client.get_job_logs(sub_id)
    if status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"ray job {sub_id} ended {status}:\n{logs[-4000:]}")
    result = last_json_object(logs)
    if result is None or result.get("job") != "train_all":
        raise RuntimeError(f"ray job {sub_id} printed no train_all result:\n{logs[-3000:]}")
    info = client.get_job_info(sub_id)
    wall = (info.end_time - info.start_time) / 1000.0 if info.end_time and info.start_time else float("nan")
    tasks: list[dict[str, Any]] = []
    attempts = 0
    # Task events reach the GCS asynchronously (flushed about once a second per worker): on a loaded machine the
    # last tasks can be missing or still RUNNING right after the job ended, so ask again for a little while.
    expected, settle = int(result.get("tasks") or 0), time.monotonic() + 30
    while info.job_id:
        listed = [t for t in list_tasks(address=jobs_url, filters=[("job_id", "=", info.job_id)], limit=10000,
                                        detail=True, raise_on_missing_output=False) if t.type == "NORMAL_TASK"]
        attempts = len(listed)
        tasks = last_attempts(listed)
        settled = len(tasks) >= expected and all(t["state"] in ("FINISHED", "FAILED") for t in tasks)
        if settled or time.monotonic() > settle:
            break
        time.sleep(1)
    return JobRun(result=result, job_id=info.job_id or sub_id, wall_s=round(wall, 2), tasks=tasks, peak_rss=peaks,
                  retries=attempts - len(tasks))


def train_args(rounds: int, threads: int, shard_stores: int, short_windows: int, in_driver: bool = False,
               lgbm_workers: int = 1) -> list[str]:
    """``train_all.py`` arguments of the benchmark: LightGBM + per-store family, neural off, no MLflow run (the
    bench measures training; logging would time the artifact store). ``lgbm_workers`` > 1: each LightGBM fit
    data-parallel on that many Ray Train workers (the baseline, ``in_driver``, always fits in its one process)."""
    args = [
        "--source", "postgres", "--no-neural", "--no-mlflow", "--lgbm-rounds", str(int(rounds)),
        "--threads", str(int(threads)), "--shard-stores", str(int(shard_stores)), "--short-windows", str(int(short_windows)),
        "--lgbm-workers", "1" if in_driver else str(int(lgbm_workers)),
    ]
    return [*args, "--in-driver"] if in_driver else args


def metrics_diff(a: JobRun, b: JobRun) -> float:
    """Largest absolute difference of the backtest RMSPEs of two runs (inf when the model sets differ)."""
    ra, rb = a.rmspe(), b.rmspe()
    if set(ra) != set(rb):
        return float("inf")
    return max(abs(ra[k] - rb[k]) for k in ra)


# --- data ------------------------------------------------------------------------------------------------


def load_chain(settings: Settings, like: tuple[str, str], n_stores: int, start: str, end: str) -> int:
    """Generate the chain and load it into ``settings.table_sales`` / ``table_stores`` (created LIKE the tables
    ``like`` = (sales, stores) of the stack; they must not exist yet). Returns the number of sales rows."""
    from app.data import synthetic
    from app.data.load import load_sales_table, load_stores_table
    from app.db import transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        for table, template in zip((settings.table_sales, settings.table_stores), like, strict=True):
            cur.execute(f"CREATE TABLE {table} (LIKE {template} INCLUDING ALL)")
    sales, stores = synthetic.generate(SEED, n_stores, start, end)
    load_stores_table(settings, stores)
    rows = len(sales)
    load_sales_table(settings, sales)
    return rows


def drop_tables(settings: Settings) -> None:
    from app.db import transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        for table in (settings.table_sales, settings.table_stores):
            cur.execute(f"DROP TABLE IF EXISTS {table}")


# --- the benchmark ---------------------------------------------------------------------------------------


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_size(settings: Settings, like: tuple[str, str], size: float, code: Path, rounds: int, threads: int, shard_stores: int,
             short_windows: int, start: str, end: str, timeout_s: float, lgbm_workers: int = 1) -> tuple[dict[str, Any], JobRun]:
    """One size on the local Ray cluster: fanned out, then the single-process baseline -> the JSON line."""
    n_stores = stores_for(size)
    load_before = _load()
    t0 = time.perf_counter()
    rows = load_chain(settings, like, n_stores, start, end)
    load_s = round(time.perf_counter() - t0, 3)
    tag = uuid.uuid4().hex[:10]
    fan = submit_train_job(settings.ray_jobs_url, train_args(rounds, threads, shard_stores, short_windows, lgbm_workers=lgbm_workers),
                           job_env(settings, f"{tag}-fan"), code, timeout_s)
    base = submit_train_job(settings.ray_jobs_url, train_args(rounds, threads, shard_stores, short_windows, in_driver=True),
                            job_env(settings, f"{tag}-base"), code, timeout_s)
    diff = metrics_diff(fan, base)
    line = {
        "bench": "scale", "size": size_label(size), "stores": fan.result["stores"], "rows": fan.result["rows"],
        "generated_rows": rows, "load_db_s": load_s,
        "wall_s": fan.wall_s, "rows_per_s": round(fan.result["rows"] / fan.wall_s, 1),
        "ray_tasks": len(fan.tasks), "ray_task_retries": fan.retries, "pipeline_tasks": fan.result["tasks"],
        "nodes": len(fan.nodes),
        "peak_rss_mb": fan.peak_rss_mb, "peak_rss_process": fan.peak_rss_process,
        "seconds": fan.result["seconds"], "model": fan.result["model"], "rmspe": fan.rmspe(),
        "baseline": {
            "path": "single process (--in-driver)", "wall_s": base.wall_s,
            "rows_per_s": round(base.result["rows"] / base.wall_s, 1), "ray_tasks": len(base.tasks),
            "peak_rss_mb": base.peak_rss_mb, "seconds": base.result["seconds"],
        },
        "speedup_vs_baseline": round(base.wall_s / fan.wall_s, 3),
        "peak_rss_vs_baseline": round(fan.peak_rss_mb / base.peak_rss_mb, 3) if base.peak_rss_mb else None,
        "metrics_max_abs_diff": diff, "metrics_equal": bool(diff <= METRICS_TOL),
        "threads": threads, "lgbm_rounds": rounds, "lgbm_workers": lgbm_workers, "shard_stores": shard_stores,
        "load_avg_before": load_before, "load_avg_after": _load(),
    }
    return line, fan


def run_fake(settings: Settings, like: tuple[str, str], size: float, code: Path, rounds: int, threads: int, shard_stores: int,
             short_windows: int, start: str, end: str, timeout_s: float, worker_cpus: int = 1, lgbm_workers: int = 1) -> dict[str, Any]:
    """The fanned-out job on a fake multinode cluster with one, then two worker nodes -> the speedup line."""
    from app.bench.fake_cluster import fake_cluster

    if threads > worker_cpus:
        raise ValueError(f"--threads {threads} needs nodes of at least {threads} CPUs (worker_cpus={worker_cpus})")
    n_stores = stores_for(size)
    load_before = _load()
    rows = load_chain(settings, like, n_stores, start, end)
    runs: dict[int, JobRun] = {}
    # The driver puts the long frame into the head's object store; workers fetch it from there.
    store_mb = max(256, int(rows * 200 / 1e6))
    for workers in (1, 2):
        with tempfile.TemporaryDirectory(prefix="sfmlops-fake-") as tmp:
            with fake_cluster(settings, Path(tmp) / "state", min_workers=workers, max_workers=workers,
                              worker_cpus=worker_cpus, worker_object_store_mb=store_mb, head_object_store_mb=store_mb) as head:
                tag = uuid.uuid4().hex[:10]
                runs[workers] = submit_train_job(head.address, train_args(rounds, threads, shard_stores, short_windows, lgbm_workers=lgbm_workers),
                                                 job_env(settings, tag), code, timeout_s)
    one, two = runs[1], runs[2]
    return {
        "bench": "scale-fake-multinode", "size": size_label(size), "stores": one.result["stores"], "rows": one.result["rows"],
        "worker_cpus": worker_cpus, "one_worker_s": one.wall_s, "two_workers_s": two.wall_s,
        "speedup": round(one.wall_s / two.wall_s, 3), "nodes_used": {"one": len(one.nodes), "two": len(two.nodes)},
        "ray_tasks": len(two.tasks), "ray_task_retries": {"one": one.retries, "two": two.retries},
        "seconds_one": one.result["seconds"], "seconds_two": two.result["seconds"],
        "metrics_max_abs_diff": metrics_diff(one, two), "load_avg_before": load_before, "load_avg_after": _load(),
    }


class _RunArgs(TypedDict):
    """The arguments :func:`run` passes to both :func:`run_size` and :func:`run_fake`."""

    rounds: int
    threads: int
    shard_stores: int
    short_windows: int
    start: str
    end: str
    timeout_s: float
    lgbm_workers: int


def run(
    settings: Settings,
    sizes: Sequence[float] = DEFAULT_SIZES,
    rounds: int = 100,
    threads: int = 1,
    shard_stores: int = 250,
    short_windows: int = 1,
    start: str = "2013-01-01",
    end: str = "2015-06-13",
    fake_size: float | None = None,
    timeout_s: float = 3600,
    lgbm_workers: int = 1,
    emit: Callable[[dict[str, Any]], None] = lambda line: print(json.dumps(line), flush=True),
) -> list[dict[str, Any]]:
    """Run the benchmark; ``emit`` gets each JSON line as it is measured; returns all lines.

    Args:
        settings: The stack's settings (Postgres, MLflow, the local Ray cluster's Jobs API).
        sizes: Multiples of Rossmann's 1,115 stores.
        rounds: LightGBM boosting rounds.
        threads: CPUs (threads) per model-fit task; the fake cluster's nodes have ``max(1, threads)`` CPUs.
        shard_stores: Stores per task of the per-store family.
        short_windows: Origins of the 7-day backtest of the chosen model.
        start / end: Date range of the synthetic chain.
        fake_size: Size of the one-vs-two-worker-nodes run (default: the largest of ``sizes``; 0: skip).
        timeout_s: Per job.
        lgbm_workers: Ray Train workers of each LightGBM fit of the fanned-out runs (1: one task per fit).
    """
    tag = uuid.uuid4().hex[:8]
    bench = settings.model_copy(
        update={
            "table_sales": f"bench_scale_{tag}_sales", "table_stores": f"bench_scale_{tag}_stores",
            "model_name": f"sales-forecaster-bench-scale-{tag}",
        }
    )
    like = (settings.table_sales, settings.table_stores)
    fake = max(sizes) if fake_size is None else fake_size
    lines: list[dict[str, Any]] = []
    code_dir = Path(tempfile.mkdtemp(prefix="sfmlops-bench-scale-"))
    try:
        code = job_code(code_dir)
        common: _RunArgs = {"rounds": rounds, "threads": threads, "shard_stores": shard_stores, "short_windows": short_windows,
                            "start": start, "end": end, "timeout_s": timeout_s, "lgbm_workers": lgbm_workers}
        for size in sizes:
            try:
                line, _ = run_size(bench, like, size, code, **common)
            finally:
                drop_tables(bench)
            line["tag"] = tag
            lines.append(line)
            emit(line)
        if fake and fake > 0:
            try:
                line = run_fake(bench, like, fake, code, worker_cpus=max(1, threads), **common)
            finally:
                drop_tables(bench)
            lines.append(line)
            emit(line)
        if len([x for x in lines if x["bench"] == "scale"]) > 1:
            sized = sorted((x for x in lines if x["bench"] == "scale"), key=lambda x: x["rows"])
            small, large = sized[0], sized[-1]
            summary = {
                "bench": "scale-summary", "sizes": [x["size"] for x in sized],
                "rows_ratio": round(large["rows"] / small["rows"], 2),
                "wall_ratio": round(large["wall_s"] / small["wall_s"], 2),
                "cost_at_most_linear": large["wall_s"] / small["wall_s"] <= large["rows"] / small["rows"],
                "largest_peak_rss_vs_baseline": large["peak_rss_vs_baseline"],
                "smallest_speedup_vs_baseline": small["speedup_vs_baseline"],
            }
            fake_line = next((x for x in lines if x["bench"] == "scale-fake-multinode"), None)
            if fake_line:
                summary["two_vs_one_worker_speedup"] = fake_line["speedup"]
            lines.append(summary)
            emit(summary)
    finally:
        shutil.rmtree(code_dir, ignore_errors=True)
    return lines


def register(app) -> None:  # typer.Typer
    """Add ``scale`` to a typer ``bench`` app: ``sfmlops bench scale [--sizes 1,4,16] [--rounds 100] ...``."""
    import typer

    @app.command("scale")
    def bench_scale(
        sizes: str = typer.Option("1,4,16", help="Chain sizes as multiples of Rossmann's 1,115 stores"),
        rounds: int = typer.Option(100, help="LightGBM boosting rounds"),
        threads: int = typer.Option(1, help="CPUs per model-fit task (= CPUs of a fake worker node)"),
        shard_stores: int = typer.Option(250, help="Stores per task of the per-store family"),
        start: str = typer.Option("2013-01-01", help="First day of the synthetic chain"),
        fake_size: float = typer.Option(None, help="Size of the 1-vs-2 fake worker nodes run (default: largest; 0 skips)"),
        lgbm_workers: int = typer.Option(1, min=1, help="Ray Train workers of each LightGBM fit of the fanned-out runs (data-parallel)"),
    ) -> None:
        """Training job on synthetic chains (fanned out vs one process); 1 vs 2 fake worker nodes. JSON lines."""
        from app.config import get_settings

        try:
            parsed = parse_sizes(sizes)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--sizes") from None
        run(get_settings(), parsed, rounds=rounds, threads=threads, shard_stores=shard_stores, start=start, fake_size=fake_size,
            lgbm_workers=lgbm_workers)
