-- Batch forecasts (issue 5). One row per (model, version, store, day); re-running a forecast with the same
-- model version overwrites its rows instead of adding new ones. Idempotent.
CREATE TABLE IF NOT EXISTS {table_forecasts} (
    model_name     text             NOT NULL,
    model_version  text             NOT NULL,
    store          integer          NOT NULL CHECK (store > 0),
    date           date             NOT NULL,
    value          double precision NOT NULL CHECK (value >= 0),
    lower          double precision NOT NULL CHECK (lower >= 0),
    upper          double precision NOT NULL CHECK (upper >= lower),
    run_id         text             NOT NULL,
    created_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, model_version, store, date)
);

CREATE INDEX IF NOT EXISTS {table_forecasts}_store_date_idx ON {table_forecasts} (store, date);
CREATE INDEX IF NOT EXISTS {table_forecasts}_created_idx ON {table_forecasts} (created_at);
