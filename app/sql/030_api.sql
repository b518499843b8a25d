-- API middle man: clients, their hashed keys, and the training jobs they submitted.
-- Applied in order by `sfmlops up`; table names come from Settings (format placeholders).

CREATE TABLE IF NOT EXISTS {table_api_clients} (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{{0,63}}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are stored as HMAC-SHA256(pepper, key); the plain key is shown once, when it is issued.
CREATE TABLE IF NOT EXISTS {table_api_keys} (
    id          bigserial PRIMARY KEY,
    client_id   bigint NOT NULL REFERENCES {table_api_clients} (id) ON DELETE CASCADE,
    key_prefix  text NOT NULL,
    key_hash    char(64) NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- One row per submission; the Ray submission id is the job id, so history survives a Ray restart.
-- (client_id, idempotency_key) is unique: a retried POST with the same key returns the same job.
CREATE TABLE IF NOT EXISTS {table_training_jobs} (
    id               text PRIMARY KEY,
    client_id        bigint NOT NULL REFERENCES {table_api_clients} (id),
    kind             text NOT NULL,
    store            integer,
    params           jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    entrypoint       text NOT NULL,
    ray_submission_id text NOT NULL,
    state            text NOT NULL DEFAULT 'PENDING',
    message          text,
    result           jsonb,
    idempotency_key  text,
    request_hash     char(64) NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    refreshed_at     timestamptz,
    UNIQUE (client_id, idempotency_key)
);

CREATE INDEX IF NOT EXISTS {table_training_jobs}_client_created_idx
    ON {table_training_jobs} (client_id, created_at DESC);
