"""Job states and job results: what a training (or forecast) job is doing and what it printed last."""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """State of a job submitted through ``POST /v1/training-jobs``.

    Ray's own states (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED) plus ``SUBMITTING`` (recorded by the API,
    Ray has not confirmed the submission yet) and ``LOST`` (Ray no longer knows an unfinished job).
    """

    SUBMITTING = "SUBMITTING"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    LOST = "LOST"

    @property
    def active(self) -> bool:
        """The job may still change state."""
        return self in ACTIVE_STATES

    @property
    def finished(self) -> bool:
        """The job will never change state again."""
        return self not in ACTIVE_STATES


#: States that may still change, in the order a job passes them.
ACTIVE_STATES: tuple[JobState, ...] = (JobState.SUBMITTING, JobState.PENDING, JobState.RUNNING)
#: States that never change again.
FINISHED_STATES: frozenset[JobState] = frozenset(set(JobState) - set(ACTIVE_STATES))
#: Finished states that are failures (everything finished except SUCCEEDED).
FAILED_STATES: frozenset[JobState] = FINISHED_STATES - {JobState.SUCCEEDED}
#: The finished states Ray itself reports (LOST is ours: Ray forgot the job).
RAY_FINISHED_STATES: frozenset[JobState] = FINISHED_STATES - {JobState.LOST}

#: Prefix of the streaming job's summary line (``SFMLOPS_INGEST_SUMMARY {...}``).
INGEST_SUMMARY_PREFIX = "SFMLOPS_INGEST_SUMMARY "
#: How many lines from the end a result is looked for in.
RESULT_SEARCH_LINES = 200


def _lines(output: str | Iterable[str]) -> list[str]:
    return output.strip().splitlines() if isinstance(output, str) else list(output)


def last_json_object(output: str | Iterable[str], max_line_chars: int | None = None) -> dict[str, Any] | None:
    """The result of a job or command: the last of its output lines (of the last ``RESULT_SEARCH_LINES``)
    that is a JSON object; jobs and commands print their summary as one JSON line last.

    Args:
        output: The whole output, or its lines.
        max_line_chars: Skip longer lines (the API stores and lists the result with every job).
    """
    for line in reversed(_lines(output)[-RESULT_SEARCH_LINES:]):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        if max_line_chars is not None and len(line) > max_line_chars:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def ingest_summary(output: str | Iterable[str]) -> dict[str, Any] | None:
    """The streaming job's summary: its last ``SFMLOPS_INGEST_SUMMARY {...}`` line, if printed."""
    for line in reversed(_lines(output)):
        if line.startswith(INGEST_SUMMARY_PREFIX):
            value = json.loads(line[len(INGEST_SUMMARY_PREFIX) :])
            return value if isinstance(value, dict) else None
    return None
