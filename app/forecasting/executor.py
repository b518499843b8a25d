"""Where the tasks of a training run: in this process (:class:`LocalExecutor`) or as Ray tasks with declared
resources (:class:`RayExecutor`), with progress reported per finished task.

Both run the same task functions (:mod:`app.forecasting.plan`) on the same arguments; the Ray executor puts
each large argument into the object store once (:meth:`put`) and passes the reference to every task, so
nothing is pickled per task. A task that raises is an :class:`Outcome` with ``error`` set: the pipeline
decides what a failure means (a failed candidate is reported and left out of the selection).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parents[1]
PROGRESS_PREFIX = "SFMLOPS_PROGRESS "


def peak_rss_mb(include_children: bool = False) -> float:
    """Peak resident memory in MiB of this process (``ru_maxrss``); with ``include_children``, the larger of it and
    the peak of its largest waited-for child process (``RUSAGE_CHILDREN`` reports the largest child, not a sum)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if include_children:
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return peak / 1024.0


@contextmanager
def run_storage(configured: str, prefix: str) -> Iterator[str]:
    """The storage of a Ray Train / Tune run: ``configured`` (``SFMLOPS_TRAIN_STORAGE_PATH``, kept), else a
    temporary folder on this node, removed afterwards."""
    if configured:
        yield configured
        return
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Outcome:
    """Result of one task: ``value`` or ``error`` (``"ExceptionType: message"``)."""

    label: str
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Call:
    """One task to run: ``fn(*args)``, with the CPUs it needs and a label for progress and errors."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    label: str
    cpus: float = 1


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # RayTaskError carries the task's exception as .cause
    text = f"{type(cause).__name__}: {cause}".strip()
    return text.splitlines()[0][:500] if text else type(cause).__name__


class Progress:
    """Counts finished tasks per stage and reports ``{"stage", "done", "failed", "total", "elapsed_s"}`` to
    ``sink`` (default: one ``SFMLOPS_PROGRESS {json}`` line on stdout, which the Ray job log carries)."""

    def __init__(self, sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.sink = sink or self.print_line
        self.t0 = time.perf_counter()
        self.stage = ""
        self.total = self.done = self.failed = 0
        self.tasks_total = 0

    @staticmethod
    def print_line(event: dict[str, Any]) -> None:
        print(PROGRESS_PREFIX + json.dumps(event), flush=True)

    def event(self) -> dict[str, Any]:
        return {
            "stage": self.stage, "done": self.done, "failed": self.failed, "total": self.total,
            "elapsed_s": round(time.perf_counter() - self.t0, 1),
        }

    def start(self, stage: str, total: int = 0) -> None:
        self.stage, self.total, self.done, self.failed = stage, total, 0, 0
        self.tasks_total += total
        self.sink(self.event())

    def finished(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        self.sink(self.event())


def parse_progress(text: str) -> dict[str, Any] | None:
    """The last progress event in a job log, or None."""
    for line in reversed(text.splitlines()):
        idx = line.find(PROGRESS_PREFIX)
        if idx >= 0:
            try:
                return json.loads(line[idx + len(PROGRESS_PREFIX) :])
            except ValueError:
                continue
    return None


@dataclass
class LocalExecutor:
    """Runs every task in this process, one after the other."""

    name: str = "local"

    def put(self, obj: Any) -> Any:
        return obj

    def map(self, stage: str, calls: Sequence[Call], progress: Progress) -> list[Outcome]:
        progress.start(stage, len(calls))
        out = []
        for call in calls:
            try:
                out.append(Outcome(call.label, call.fn(*call.args)))
            except Exception as exc:  # noqa: BLE001 - reported as the task's outcome
                log.warning("task %s failed: %s", call.label, exc)
                out.append(Outcome(call.label, error=_error_text(exc)))
            progress.finished(out[-1].ok)
        return out


@dataclass
class RayExecutor:
    """Runs every task as a Ray task with ``num_cpus`` (the call's CPUs) and ``memory`` (``memory_mb``) declared.

    Args:
        address: Ray cluster to join when Ray is not initialized yet (inside a Ray job: ``auto``).
        memory_mb: Memory each task reserves (0: none declared).
        max_retries: Retries of a task whose worker died (exceptions are not retried).
    """

    address: str = "auto"
    memory_mb: int = 0
    max_retries: int = 1
    name: str = "ray"
    _started: bool = field(default=False, repr=False)
    _remote: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": self.address, "log_to_driver": True}
            if not os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
                # Outside a Ray job (CLI, tests, benchmark): ship the ``app`` package to the workers; inside a
                # job its working_dir already has it.
                kwargs["runtime_env"] = {"py_modules": [str(APP_DIR)], "excludes": ["__pycache__", "*.pyc"]}
            ray.init(**kwargs)
            self._started = True

    def close(self) -> None:
        import ray

        if self._started:
            ray.shutdown()
            self._started = False

    def put(self, obj: Any) -> Any:
        import ray

        return ray.put(obj)

    def _fn(self, fn: Callable[..., Any]) -> Any:
        import ray

        if fn not in self._remote:
            self._remote[fn] = ray.remote(max_retries=self.max_retries, retry_exceptions=False)(fn)
        return self._remote[fn]

    def map(self, stage: str, calls: Sequence[Call], progress: Progress) -> list[Outcome]:
        import ray

        progress.start(stage, len(calls))
        opts: dict[str, Any] = {}
        if self.memory_mb > 0:
            opts["memory"] = int(self.memory_mb) * 1024 * 1024
        refs = [self._fn(c.fn).options(num_cpus=c.cpus, name=c.label[:100], **opts).remote(*c.args) for c in calls]
        index = {ref: i for i, ref in enumerate(refs)}
        out: list[Outcome | None] = [None] * len(calls)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = index[ref]
                try:
                    outcome = Outcome(calls[i].label, ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - RayTaskError of the task, reported as its outcome
                    log.warning("task %s failed: %s", calls[i].label, _error_text(exc))
                    outcome = Outcome(calls[i].label, error=_error_text(exc))
                out[i] = outcome
                progress.finished(outcome.ok)
        return [o for o in out if o is not None]


def make_executor(kind: str, settings: Any = None) -> LocalExecutor | RayExecutor:
    """``local`` or ``ray`` (joining the cluster with ``address="auto"``: inside a Ray job, its cluster).

    Outside a job on this machine Ray rewrites a loopback GCS address to the host's primary IP, where the local
    head (bound to 127.0.0.1) does not listen; so local fan-out runs go through a Ray job (the API or
    ``ray job submit``), as the tests do."""
    if kind == "local":
        return LocalExecutor()
    if kind != "ray":
        raise ValueError(f"executor must be 'local' or 'ray', not {kind!r}")
    address = "auto"
    memory = int(getattr(settings, "train_task_memory_mb", 0) or 0) if settings is not None else 0
    return RayExecutor(address=address, memory_mb=memory)


__all__ = ["Call", "LocalExecutor", "Outcome", "Progress", "RayExecutor", "make_executor", "parse_progress"]


class RichProgress:
    """A progress sink that draws one bar per stage (tasks done / total, elapsed) on the terminal (stderr)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self.bars = Bars(
            TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(), console=Console(stderr=True), transient=False,
        )
        self.current: Any = None
        self.stage: str | None = None

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        if event["stage"] != self.stage:
            if self.current is not None:
                self.bars.update(self.current, completed=self.bars.tasks[self.current].total or 1, total=self.bars.tasks[self.current].total or 1)
            self.stage = event["stage"]
            self.current = self.bars.add_task(self.stage, total=event["total"] or None, failed="")
        failed = f"[red]{event['failed']} failed" if event["failed"] else ""
        self.bars.update(self.current, completed=event["done"], failed=failed)
