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
-- A row is written (state SUBMITTING) before Ray hears of the job, and its id - derived from the client and
-- the Idempotency-Key when there is one - is the Ray submission id, so a job is never on Ray unrecorded and
-- a retried submission can never start a second one (Ray refuses a submission id it already has).
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

-- Key-set version: bumped (in the revoking transaction) whenever a key is revoked, deleted or moved, or a
-- client renamed or deleted. Each API process tags the keys it has validated with the version they were
-- validated under and trusts only those of the version it last read (app/api/auth.py). With
-- R = SFMLOPS_API_AUTH_RECHECK_S (default 1 s) it trusts a read for R from the moment the read started; a
-- request that finds the read older than R/2 starts a re-read in the background (one at a time) and is
-- answered with the known version, one that finds it older than R waits for the re-read. So a revoked key is
-- refused everywhere at most R after the revoking commit, and no request waits for this table under load.
CREATE TABLE IF NOT EXISTS {table_api_keys}_version (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    version  bigint NOT NULL DEFAULT 0
);
INSERT INTO {table_api_keys}_version (id, version) VALUES (true, 0) ON CONFLICT (id) DO NOTHING;

CREATE OR REPLACE FUNCTION {table_api_keys}_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {table_api_keys}_version SET version = version + 1;
    RETURN NULL;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{table_api_keys}_version_keys'
                   AND tgrelid = '{table_api_keys}'::regclass) THEN
        CREATE TRIGGER {table_api_keys}_version_keys
            AFTER UPDATE ON {table_api_keys} FOR EACH ROW
            WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.key_hash IS DISTINCT FROM NEW.key_hash
                  OR OLD.client_id IS DISTINCT FROM NEW.client_id)
            EXECUTE FUNCTION {table_api_keys}_bump_version();
        CREATE TRIGGER {table_api_keys}_version_keys_delete
            AFTER DELETE ON {table_api_keys} FOR EACH STATEMENT EXECUTE FUNCTION {table_api_keys}_bump_version();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{table_api_keys}_version_clients'
                   AND tgrelid = '{table_api_clients}'::regclass) THEN
        CREATE TRIGGER {table_api_keys}_version_clients
            AFTER UPDATE ON {table_api_clients} FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
            EXECUTE FUNCTION {table_api_keys}_bump_version();
        CREATE TRIGGER {table_api_keys}_version_clients_delete
            AFTER DELETE ON {table_api_clients} FOR EACH STATEMENT EXECUTE FUNCTION {table_api_keys}_bump_version();
    END IF;
END
$$;
