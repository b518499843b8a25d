"""The API's test job (``python -m app.jobs.noop``), run as Ray runs it: a subprocess with the entrypoint line."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

from app.api import jobs_service
from app.common.jobs import last_json_object
from app.config import PROJECT_ROOT, Settings


def _run(entrypoint: str) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(entrypoint)
    assert argv[0] == "python"
    return subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, cwd=PROJECT_ROOT.parent, timeout=60)


def test_the_noop_entrypoint_prints_its_banner_and_one_json_result_line() -> None:
    entrypoint, _ = jobs_service.build_submission(Settings(_env_file=None), {"kind": "noop", "noop_seconds": 0})
    done = _run(entrypoint)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "sfmlops noop job"
    assert json.loads(lines[-1]) == {"ok": True, "seconds": 0} == last_json_object(done.stdout)


def test_the_noop_job_refuses_a_negative_duration() -> None:
    done = _run("python -m app.jobs.noop --seconds -1")
    assert done.returncode == 2 and "--seconds must be >= 0, got -1" in done.stderr and not done.stdout
