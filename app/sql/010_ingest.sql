-- Streaming ingestion (issue 4): dead letters, the batch ledger and the staging table. Idempotent.

-- Every rejected Kafka record, with its raw bytes, why it was rejected and where it came from.
-- Keyed by its Kafka coordinates, so a replayed batch cannot add it twice.
CREATE TABLE IF NOT EXISTS {table_dead_letter} (
    topic            text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    kafka_offset     bigint      NOT NULL,
    kafka_key        bytea,
    kafka_timestamp  timestamptz,
    payload          bytea,
    payload_bytes    integer,
    reason           text        NOT NULL,
    query_id         text        NOT NULL,
    batch_id         bigint      NOT NULL,
    rejected_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
CREATE INDEX IF NOT EXISTS {table_dead_letter}_rejected_at_idx ON {table_dead_letter} (rejected_at);

-- One row per committed micro-batch; written in the same transaction as the upsert into sales, so a
-- batch that Spark replays after a crash is recognised and changes nothing.
CREATE TABLE IF NOT EXISTS {table_ledger} (
    query_id       text        NOT NULL,
    batch_id       bigint      NOT NULL,
    topic          text        NOT NULL,
    rows_in        bigint      NOT NULL,
    rows_valid     bigint      NOT NULL,
    rows_rejected  bigint      NOT NULL,
    rows_upserted  bigint      NOT NULL,
    started_at     timestamptz NOT NULL,
    committed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (query_id, batch_id)
);

-- Template of the staging tables: each streaming query gets its own UNLOGGED copy
-- ({table_ingest_staging}_<query id prefix>, created by the job with LIKE), into which executors COPY
-- a micro-batch in parallel (no WAL, no index); the driver moves it into sales and empties it in one
-- transaction. Rows left by a crashed attempt are removed before the batch is staged again.
CREATE UNLOGGED TABLE IF NOT EXISTS {table_ingest_staging} (
    batch_id         bigint   NOT NULL,
    topic            text     NOT NULL,
    kafka_partition  integer  NOT NULL,
    kafka_offset     bigint   NOT NULL,
    kafka_timestamp  timestamptz,
    reason           text,
    store            integer,
    date             date,
    day_of_week      smallint,
    sales            integer,
    customers        integer,
    open             smallint,
    promo            smallint,
    state_holiday    char(1),
    school_holiday   smallint,
    kafka_key        bytea,
    payload          bytea,
    payload_bytes    integer
);

-- Dead letters are bounded (issue 13): `payload` and `kafka_key` hold at most
-- ingest_dead_letter_payload_bytes bytes; `payload_bytes` is the full length of the payload and
-- `payload_sha256` the SHA-256 of all of it, so a truncated payload can still be matched to its record.
ALTER TABLE {table_dead_letter} ADD COLUMN IF NOT EXISTS payload_sha256 bytea;
ALTER TABLE {table_ingest_staging} ADD COLUMN IF NOT EXISTS payload_sha256 bytea;
