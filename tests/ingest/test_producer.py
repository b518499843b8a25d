"""The replay producer: column-wise encoding (same bytes and rules as per record) and the forked
producers per group of partitions, on the real Kafka."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from app.ingest.schema import validate_row
from app.produce import ProduceConfig, _KeyPartitions, encode_frame, encode_record, produce, to_record

TODAY = dt.date(2015, 6, 13)


def _frame() -> pd.DataFrame:
    days = pd.date_range("2015-06-01", "2015-06-14")
    rows = [
        {"store": s, "date": d, "day_of_week": d.isoweekday(), "sales": 100 * s + d.day, "customers": s,
         "open": int(d.isoweekday() != 7), "promo": s % 2, "state_holiday": "0a"[d.day == 4], "school_holiday": d.day % 2}
        for s in (1, 2, 3) for d in days
    ]
    frame = pd.DataFrame(rows).astype({"store": "int32", "day_of_week": "int8", "sales": "int32", "customers": "int32",
                                       "open": "int8", "promo": "int8", "school_holiday": "int8"})
    return frame


def test_encode_frame_gives_the_bytes_and_verdicts_of_the_per_record_path() -> None:
    frame = _frame()
    frame.loc[3, "sales"] = -1
    frame.loc[5, "day_of_week"] = 3 if frame.loc[5, "day_of_week"] != 3 else 4
    frame.loc[6, "state_holiday"] = "x"
    frame.loc[7, "promo"] = 2
    frame.loc[8, "store"] = 0
    values, errors = encode_frame(frame, TODAY, 1)
    expected = []
    for row in frame.to_dict("records"):
        rec = to_record(row)
        expected.append(None if validate_row(rec, today=TODAY, max_future_days=1) else encode_record(rec))
    assert values == expected
    # the last day (2015-06-14) is TODAY + 1: still valid; with no tolerance it is in the future
    assert sum(v is None for v in values) == 5 and len(errors) == 5
    assert any("negative sales" in e for e in errors) and any("state_holiday" in e for e in errors)
    strict, _ = encode_frame(frame, TODAY, 0)
    assert sum(v is None for v in strict) == 5 + 3
    assert json.loads(values[0]) == {**to_record(frame.iloc[0].to_dict())}


def test_encode_frame_redates_live_rows_and_screens_odd_frames() -> None:
    frame = _frame().head(3)
    values, _ = encode_frame(frame, TODAY, 1, live_day=TODAY)
    assert [json.loads(v)["date"] for v in values] == ["2015-06-13"] * 3
    assert all(json.loads(v)["day_of_week"] == 6 for v in values)
    odd = frame.astype({"sales": "float64"})
    odd.loc[1, "sales"] = float("nan")
    values, errors = encode_frame(odd, TODAY, 1)
    assert values[1] is None and values[0] == encode_record(to_record(frame.iloc[0].to_dict())) and errors


@pytest.mark.integration
def test_parallel_replay_keeps_every_record_and_its_order_per_key(ingest_settings, rossmann) -> None:
    """Two forked producers over four partitions: every row once, each store's days in order, and each
    store in the partition the default partitioner gives its key."""
    from kafka import KafkaConsumer, TopicPartition

    sales = rossmann[0]
    stores = sorted(sales["store"].unique())[:40]
    part = sales[sales["store"].isin(stores)].sort_values(["date", "store"]).tail(25_000)
    s = ingest_settings.model_copy(update={"producer_processes": 2})
    result = produce(s, ProduceConfig(progress=False), sales=part)
    assert result["processes"] == 2 and result["sent"] == len(part) and result["failed"] == 0 == result["invalid"]

    consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False, consumer_timeout_ms=10_000)
    partitions = [TopicPartition(s.kafka_topic, p) for p in range(4)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen: dict[int, list[str]] = {}
    where: dict[int, set[int]] = {}
    count = 0
    for message in consumer:
        rec = json.loads(message.value)
        assert message.key == str(rec["store"]).encode()
        seen.setdefault(rec["store"], []).append(rec["date"])
        where.setdefault(rec["store"], set()).add(message.partition)
        count += 1
        if count == len(part):
            break
    consumer.close()
    assert count == len(part)
    partition_of = _KeyPartitions(range(4))
    for store, days in seen.items():
        assert days == sorted(days) and len(days) == len(set(days))
        assert where[store] == {partition_of(str(store).encode())}
    expected = part.groupby("store").size().to_dict()
    assert {k: len(v) for k, v in seen.items()} == expected
