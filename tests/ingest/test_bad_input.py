"""Bad input through the real path: Kafka -> Spark -> Postgres; every bad record is dead-lettered."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from ingest_helpers import encode, query, record, send_raw

from app import ingest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bad_records_go_to_dead_letter_and_query_keeps_advancing(ingest_settings) -> None:
    s = ingest_settings
    future = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat()
    good = [record(store, f"2015-05-0{d}", sales=1000 * store + d) for store in (1, 2, 3) for d in (1, 2, 3)]
    # out-of-order days for store 4: accepted, stored by date
    out_of_order = [record(4, day, sales=40 + i) for i, day in enumerate(["2015-05-03", "2015-05-01", "2015-05-02"])]
    bad: dict[str, tuple[bytes | None, bytes | None]] = {
        "malformed JSON": (b"1", b'{"schema_version": 1, "store": 1,'),
        "not a JSON object": (b"1", b"[1, 2, 3]"),
        "wrong type for field(s): sales": (b"1", json.dumps(record(1, "2015-05-04", sales="lots")).encode()),
        "wrong type for field(s): store": (b"1", json.dumps({**record(1, "2015-05-05"), "store": 1.5}).encode()),
        "negative sales": encode(record(1, "2015-05-06", sales=-5)),
        "unknown store 99999": encode(record(99999, "2015-05-01")),
        "is in the future": encode(record(1, future)),
        "missing field(s): customers": (b"1", json.dumps({k: v for k, v in record(1, "2015-05-07").items() if k != "customers"}).encode()),
        "oversized": (b"1", json.dumps({**record(1, "2015-05-08"), "padding": "x" * 20_000}).encode()),
        "unsupported schema_version 2": encode(record(1, "2015-05-09", schema_version=2)),
        "invalid date '2015-02-30'": encode(record(1, "2015-05-10", date="2015-02-30")),
        "invalid date '2015-5-1'": encode(record(1, "2015-05-01", date="2015-5-1")),
        "invalid date '2015-05-14T10:00'": encode(record(1, "2015-05-14", date="2015-05-14T10:00")),
        "unknown store 1116": encode(record(1116, "2015-05-01")),
        "does not match date": encode(record(1, "2015-05-11", day_of_week=3)),
        "open must be 0 or 1": encode(record(1, "2015-05-12", open=3)),
        "state_holiday must be one of": encode(record(1, "2015-05-13", state_holiday="z")),
        "empty payload": (b"1", None),
    }
    first_dup = record(5, "2015-05-01", sales=111)
    last_dup = record(5, "2015-05-01", sales=222)
    messages = [encode(r) for r in good + out_of_order] + list(bad.values()) + [encode(first_dup), encode(last_dup)]
    send_raw(s, messages)

    summary = ingest.run(s, "available-now", timeout_s=900)
    dead = query(s, "SELECT reason, payload, kafka_partition, kafka_offset, topic, payload_sha256, payload_bytes FROM {table_dead_letter}")
    assert summary["rows"] == len(messages)
    assert summary["rejected"] == len(bad) + 1, [r for r, *_ in dead]  # + the superseded duplicate
    assert len(dead) == len(bad) + 1
    assert all(topic == s.kafka_topic and offset >= 0 for _, _, _, offset, topic, *_ in dead)
    # Dead letters keep the payload's first ingest_dead_letter_payload_bytes, its full length and SHA-256.
    payloads = {bytes(h) if h is not None else None: (reason, p, n) for reason, p, _, _, _, h, n in dead}
    limit = s.ingest_dead_letter_payload_bytes
    for expected, (_, value) in bad.items():
        digest = None if value is None else hashlib.sha256(value).digest()
        assert digest in payloads, f"{expected!r} record not dead-lettered"
        reason, stored, size = payloads[digest]
        assert expected in reason, f"{expected!r} not in reason {reason!r}"
        assert (None if stored is None else bytes(stored)) == (None if value is None else value[:limit])
        assert size == (None if value is None else len(value))
    assert "duplicate" in payloads[hashlib.sha256(json.dumps(first_dup).encode()).digest()][0]

    rows = {(store, str(day)): sales for store, day, sales in query(s, "SELECT store, date, sales FROM {table_sales}")}
    expected_rows = {(r["store"], r["date"]): r["sales"] for r in good + out_of_order + [last_dup]}
    assert rows == expected_rows

    # The query keeps advancing: new good and bad records in a second run from the same checkpoint.
    later = [record(6, "2015-05-01", sales=600), record(1, "2015-05-01", sales=999)]  # a new row and a correction
    unchanged = record(2, "2015-05-02", sales=2002)  # same values again: the stored row is not touched
    before = query(s, "SELECT ingested_at FROM {table_sales} WHERE store = 2 AND date = '2015-05-02'")
    send_raw(s, [encode(r) for r in later] + [encode(unchanged), (b"7", b"not json at all")])
    summary2 = ingest.run(s, "available-now", timeout_s=900)
    assert summary2["query_id"] == summary["query_id"]
    assert summary2["rows"] == 4 and summary2["rejected"] == 1 and summary2["upserted"] == 2
    assert query(s, "SELECT sales FROM {table_sales} WHERE store = 1 AND date = '2015-05-01'") == [(999,)]
    assert query(s, "SELECT sales FROM {table_sales} WHERE store = 6") == [(600,)]
    assert query(s, "SELECT ingested_at FROM {table_sales} WHERE store = 2 AND date = '2015-05-02'") == before
    assert query(s, "SELECT count(*) FROM {table_dead_letter}") == [(len(bad) + 2,)]
    ledger = query(s, "SELECT batch_id, rows_in, rows_rejected FROM {table_ledger} ORDER BY batch_id")
    assert [b for b, *_ in ledger] == [0, 1]
