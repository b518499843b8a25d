-- Alerts received from Alertmanager (POST /v1/alerts/webhook, issue 18), shown by the UI's health view.
-- One row per alert occurrence (fingerprint = Alertmanager's hash of the labels, starts_at = when it began to
-- fire); a repeated or resolved notification updates its row. Idempotent.
CREATE TABLE IF NOT EXISTS {table_alerts} (
    fingerprint    text        NOT NULL,
    starts_at      timestamptz NOT NULL,
    alertname      text        NOT NULL,
    severity       text,
    status         text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    ends_at        timestamptz,
    labels         jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
    annotations    jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
    generator_url  text,
    receiver       text,
    received_at    timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fingerprint, starts_at)
);
CREATE INDEX IF NOT EXISTS {table_alerts}_status_idx ON {table_alerts} (status, updated_at DESC);
