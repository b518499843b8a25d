"""Shared bits of the Ray job entrypoints: make ``app`` importable from the job's working_dir, run a
function on the cluster (as a Ray task) or in the driver, print one JSON line last."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup() -> None:
    """Logging of a job driver."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def run(fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any], in_driver: bool, num_cpus: float) -> dict[str, Any]:
    """Run ``fn(**kwargs)`` as one Ray task (default) or directly in the driver process (the batch-forecast
    job; training fans out by itself, see ``train_all.py``)."""
    setup()
    if in_driver:
        return fn(**kwargs)
    import ray

    root = str(ROOT)

    def call(fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> dict[str, Any]:
        # Pickled by value (nested function): on a worker the job's working_dir is the cwd and on sys.path;
        # the driver's root is added for local runs without a runtime_env.
        import logging as _logging
        import os as _os
        import sys as _sys

        _logging.basicConfig(level=_logging.INFO, format=LOG_FORMAT)
        for path in (_os.getcwd(), root):
            if _os.path.isdir(_os.path.join(path, "app")) and path not in _sys.path:
                _sys.path.insert(0, path)
        return fn(**kwargs)

    ray.init(address="auto", log_to_driver=True)
    try:
        task = ray.remote(num_cpus=num_cpus, max_retries=0)(call)
        return ray.get(task.remote(fn, kwargs))
    finally:
        ray.shutdown()


def emit(result: dict[str, Any]) -> None:
    """Print the result as the last line (JSON) for the job log and the API."""
    print(json.dumps(result, default=str), flush=True)
