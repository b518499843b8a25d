"""The one job vocabulary (app.common.jobs): states and the parsers of a job's output."""

from __future__ import annotations

import json

from app.common.jobs import (
    ACTIVE_STATES,
    FAILED_STATES,
    FINISHED_STATES,
    INGEST_SUMMARY_PREFIX,
    RAY_FINISHED_STATES,
    JobState,
    ingest_summary,
    last_json_object,
)


def test_states_split_into_active_and_finished() -> None:
    assert [s.value for s in ACTIVE_STATES] == ["SUBMITTING", "PENDING", "RUNNING"]
    assert FINISHED_STATES == {"SUCCEEDED", "FAILED", "STOPPED", "LOST"}
    assert FAILED_STATES == FINISHED_STATES - {"SUCCEEDED"} and RAY_FINISHED_STATES == FINISHED_STATES - {"LOST"}
    assert JobState("RUNNING").active and JobState.LOST.finished and not JobState.PENDING.finished
    assert f"{JobState.FAILED}" == "FAILED" and JobState.FAILED == "FAILED"  # plain strings in JSON, SQL and messages


def test_result_is_the_last_json_object_line() -> None:
    logs = 'start\n{"not": "last"}\n[1, 2]\n{broken\n{"rmspe": 0.1}\n  \n'
    assert last_json_object(logs) == {"rmspe": 0.1}
    assert last_json_object(logs.splitlines()) == {"rmspe": 0.1}
    long = json.dumps({"x": "y" * 100})
    assert last_json_object(f'{{"a": 1}}\n{long}', max_line_chars=50) == {"a": 1}
    assert last_json_object("no json here\n{broken") is None


def test_ingest_summary_is_the_prefixed_line() -> None:
    text = f'batch 0\n{INGEST_SUMMARY_PREFIX}{{"rows": 3}}\n{{"other": 1}}'
    assert ingest_summary(text) == {"rows": 3}
    assert ingest_summary("batch 0") is None
