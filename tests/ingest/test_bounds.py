"""Bounded dead letters and batches (issue 13, item 2): a flood of large records is stored cut to
``ingest_dead_letter_payload_bytes`` with its full length and SHA-256, and no micro-batch holds more than
``ingest_max_batch_bytes``."""

from __future__ import annotations

import hashlib
import math

import pytest
from ingest_helpers import encode, query, record, send_raw

from app import ingest
from app.ingest.job import batch_record_cap, staged_record_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLOOD, RECORD_BYTES, PER_BATCH = 40, 200_000, 7


def test_flood_of_large_records_is_cut_hashed_and_batched_by_bytes(ingest_settings) -> None:
    s = ingest_settings.model_copy(update={"ingest_dead_letter_payload_bytes": 100})
    s = s.model_copy(update={"ingest_max_batch_bytes": staged_record_bytes(s) * PER_BATCH + 1})
    assert batch_record_cap(s, s.ingest_max_offsets_per_trigger) == PER_BATCH
    flood = [(b"k" * 5000 + bytes([i]), bytes([i % 251]) * RECORD_BYTES) for i in range(FLOOD)]
    good = [encode(record(1, f"2015-05-{d:02d}", sales=d)) for d in range(1, 4)]
    send_raw(s, flood + good)

    summary = ingest.run(s, "available-now", timeout_s=900)
    assert summary["error"] is None and summary["rows"] == FLOOD + len(good)
    assert summary["max_offsets_per_trigger"] == PER_BATCH

    dead = query(s, "SELECT payload, payload_bytes, payload_sha256, kafka_key, reason, batch_id FROM {table_dead_letter}")
    assert len(dead) == FLOOD
    expected = {hashlib.sha256(value).digest(): (key, value) for key, value in flood}
    for payload, size, digest, key, reason, _ in dead:
        key_sent, value = expected.pop(bytes(digest))
        assert bytes(payload) == value[:100] and size == RECORD_BYTES
        assert bytes(key) == key_sent[:100]
        assert reason.startswith("oversized")
    assert not expected
    assert query(s, "SELECT count(*) FROM {table_sales}") == [(len(good),)]

    # Batches: at most PER_BATCH records each, so at most ingest_max_batch_bytes staged per batch.
    ledger = query(s, "SELECT batch_id, rows_in FROM {table_ledger} ORDER BY batch_id")
    assert sum(n for _, n in ledger) == FLOOD + len(good)
    assert max(n for _, n in ledger) <= PER_BATCH
    assert len(ledger) >= math.ceil((FLOOD + len(good)) / PER_BATCH)
    held = query(
        s,
        "SELECT batch_id, sum(2 * octet_length(payload) + 2 * octet_length(kafka_key) + 4 * length(reason) + 66) "
        "FROM {table_dead_letter} GROUP BY batch_id",
    )
    assert all(total <= s.ingest_max_batch_bytes for _, total in held)
