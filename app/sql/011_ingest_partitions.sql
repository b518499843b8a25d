-- Parallel exactly-once commits (issue 16): every Kafka partition of a micro-batch is committed in a
-- transaction of its own, with its row here; the batch's row in {table_ledger} follows once all its
-- partitions are in. A batch retried after a crash skips the partitions already here. Idempotent.
CREATE TABLE IF NOT EXISTS {table_ledger}_partitions (
    query_id         text        NOT NULL,
    batch_id         bigint      NOT NULL,
    topic            text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    rows_in          bigint      NOT NULL,
    rows_rejected    bigint      NOT NULL,
    rows_upserted    bigint      NOT NULL,
    started_at       timestamptz NOT NULL,
    committed_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (query_id, batch_id, topic, kafka_partition)
);
