"""The streaming job's consumer group (``kafka_consumer_group``, monitoring only): after a run on the real local
Kafka (the test's own topic, tables and group, the group deleted afterwards) the group's committed offsets are the
topic's end offsets, so Kafka's per-group lag (MSK's ``MaxOffsetLag`` and its alarm) is real; the one definition of
the group is the setting, whose default Terraform's ``kafka_consumer_group`` repeats."""

from __future__ import annotations

import re
import uuid

import pytest
from ingest_helpers import encode, query, record, send_raw
from pydantic import ValidationError

from app.config import PROJECT_ROOT, Settings


def test_ingest_commits_every_batch_end_offsets_for_the_group(ingest_settings: Settings) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    from app import ingest

    s = ingest_settings.model_copy(update={"kafka_consumer_group": f"sfmlops-test-{uuid.uuid4().hex[:8]}"})
    stores = [r[0] for r in query(s, "SELECT store FROM {table_stores} ORDER BY store LIMIT 5")]
    rows = [record(store, f"2015-07-{day:02d}") for store in stores for day in range(1, 9)]
    send_raw(s, [encode(r) for r in rows] + [(b"1", b"not json")], partitions=4)
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, client_id="sfmlops-test")
    consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap)
    try:
        summary = ingest.run(s, timeout_s=600, max_offsets_per_trigger=len(rows) // 2)  # two batches at least
        assert summary["batches"] >= 2 and summary["rows"] == len(rows) + 1 and summary["rejected"] == 1, summary
        end = consumer.end_offsets([TopicPartition(s.kafka_topic, p) for p in range(4)])
        committed = admin.list_group_offsets(s.kafka_consumer_group)[s.kafka_consumer_group]
        assert {tp.partition: meta.offset for tp, meta in committed.items()} == {tp.partition: o for tp, o in end.items()}
        assert sum(end.values()) == len(rows) + 1
        with open(summary["log"], encoding="utf-8", errors="replace") as log:
            assert "(monitoring only)" not in log.read()  # no commit failed along the way
    finally:
        admin.delete_groups([s.kafka_consumer_group])  # answers GroupIdNotFound when there is none: nothing to undo
        admin.close()
        consumer.close()


def test_group_id_is_refused_unless_cloudwatch_can_name_it() -> None:
    with pytest.raises(ValidationError, match="kafka_consumer_group"):
        Settings(_env_file=None, kafka_consumer_group="ingest:prod")  # MSK emits no lag metrics for a ':' in the name


def test_terraform_default_group_is_the_settings() -> None:
    variables = (PROJECT_ROOT / "terraform" / "variables.tf").read_text()
    block = re.search(r'variable "kafka_consumer_group" \{(.*?)^\}', variables, re.S | re.M)
    assert block and f'default     = "{Settings.model_fields["kafka_consumer_group"].default}"' in block.group(1)
    main = (PROJECT_ROOT / "terraform" / "main.tf").read_text()
    assert re.search(r"SFMLOPS_KAFKA_CONSUMER_GROUP\s*=\s*var\.kafka_consumer_group", main)
    assert re.search(r"\n\s*kafka_consumer_group\s*=\s*var\.kafka_consumer_group", main)  # the monitoring module's alarm
