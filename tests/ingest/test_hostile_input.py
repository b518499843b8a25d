"""Hostile input through the real Spark job: any byte sequence on the topic ends as a stored row or as a
dead letter with a reason, never as a failed batch (issue 13, item 1)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from hostile import hostile_records
from ingest_helpers import query, send_raw

from app import ingest
from app.ingest.schema import validate_row

pytestmark = [pytest.mark.integration, pytest.mark.slow]


#: Records the job accepts although the producer's rules (strict JSON, exact types) would not: a JSON
#: number where the string "0" is expected (Spark reads scalars into string fields as their text), and
#: bytes after the record's JSON object (Spark parses the first JSON value) or invalid UTF-8 in an
#: unknown field (read as U+FFFD). The producer never writes them; the job stores exactly the values
#: the record's own object carries.
LENIENT = {"state_holiday=0", "trailing garbage", "two objects", "NUL after record", "latin-1 extra"}


def _producer_verdict(value: bytes | None, settings, stores: set[int]) -> tuple[int, str] | None:
    """(store, date) when the producer's rules accept the record as JSON text, else None; records over
    ``ingest_max_message_bytes`` are rejected (a rule of the job only: the producer never writes them)."""
    if value is None or len(value) > settings.ingest_max_message_bytes:
        return None
    try:
        row = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(row, dict):
        return None
    reason = validate_row(
        row, stores, max_future_days=settings.ingest_max_future_days, min_date=dt.date.fromisoformat(settings.ingest_min_date)
    )
    return None if reason else (row["store"], row["date"])


def test_every_hostile_record_is_stored_or_dead_lettered(ingest_settings) -> None:
    s = ingest_settings
    cases = hostile_records(s.ingest_max_message_bytes)
    send_raw(s, [(key, value) for _, key, value in cases])

    summary = ingest.run(s, "available-now", timeout_s=900)
    assert summary["error"] is None and summary["returncode"] == 0
    assert summary["rows"] == len(cases)

    dead = query(s, "SELECT reason, payload_sha256, payload_bytes, octet_length(payload), octet_length(kafka_key) FROM {table_dead_letter}")
    sales = {(store, str(day)) for store, day in query(s, "SELECT store, date FROM {table_sales}")}
    # Every record is in exactly one place: its own sales row or its own dead letter.
    assert len(dead) + len(sales) == len(cases), (len(dead), len(sales), len(cases))
    assert all(reason and reason.strip() for reason, *_ in dead)
    assert all("\x00" not in reason and len(reason) <= 501 for reason, *_ in dead)
    limit = s.ingest_dead_letter_payload_bytes
    assert all((p or 0) <= limit and (k or 0) <= limit for *_, p, k in dead)
    dead_by_hash: dict[bytes | None, list[str]] = {}
    for reason, digest, _, _, _ in dead:
        dead_by_hash.setdefault(None if digest is None else bytes(digest), []).append(reason)

    # Where the producer's rules decide (JSON text), the job agrees with them record by record.
    stores = {row[0] for row in query(s, "SELECT store FROM {table_stores}")}
    disagreements = []
    for label, _, value in cases:
        verdict = _producer_verdict(value, s, stores)
        digest = None if value is None else hashlib.sha256(value).digest()
        in_dead = digest in dead_by_hash
        if verdict is not None and (verdict not in sales or in_dead):
            disagreements.append((label, "producer accepts, job rejected", dead_by_hash.get(digest)))
        if label in LENIENT:
            if in_dead:
                disagreements.append((label, "lenient case dead-lettered", dead_by_hash.get(digest)))
            continue
        if verdict is None and not in_dead:
            disagreements.append((label, "producer rejects, job did not dead-letter it", None))
    assert not disagreements, "\n".join(map(repr, disagreements))

    # A rerun on the same checkpoint is a no-op; a replay from scratch changes nothing either.
    snapshot = "SELECT store, date, sales, ingested_at, xmin::text FROM {table_sales} ORDER BY store, date"
    dead_snapshot = "SELECT topic, kafka_partition, kafka_offset, reason, rejected_at FROM {table_dead_letter} ORDER BY 1, 2, 3"
    before, dead_before = query(s, snapshot), query(s, dead_snapshot)
    again = ingest.run(s, "available-now", timeout_s=900)
    assert again["error"] is None and again["rows"] == 0
    replay = ingest.run(s, "available-now", timeout_s=900, checkpoint=str(s.ingest_checkpoint) + "-replay")
    assert replay["error"] is None and replay["rows"] == len(cases) and replay["upserted"] == 0
    assert query(s, snapshot) == before
    assert query(s, dead_snapshot) == dead_before
