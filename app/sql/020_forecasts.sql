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

-- Forecast runs (issues 13.9 and 15): every batch forecast run takes a number from {table_forecasts}_run_seq and
-- stamps it on the rows it writes, all in one transaction (so a visible run is a complete run). A re-run of
-- the same version overwrites the days it shares with the previous run and leaves the older days behind under
-- the older number. The API serves, per store, the rows of the newest run of the champion version; rows
-- written before runs were numbered carry run 0. The sequence belongs to the column: it goes with the table.
ALTER TABLE {table_forecasts} ADD COLUMN IF NOT EXISTS forecast_run bigint NOT NULL DEFAULT 0;
CREATE SEQUENCE IF NOT EXISTS {table_forecasts}_run_seq OWNED BY {table_forecasts}.forecast_run;
-- The route's lookup: equality on (model, version, store), the newest run first, then its days in order,
-- all from this one index (no casts, no sort).
CREATE INDEX IF NOT EXISTS {table_forecasts}_serve_idx ON {table_forecasts} (model_name, model_version, store, forecast_run, date);

-- Which known-future inputs a forecast row used (issue 17.5): 'plan' - the store's newest planning data for that
-- day ({table_planning}, 060_planning.sql), 'projected' - projected from the recent past
-- (app/forecasting/batch.py). Rows written before planning data existed were all projected.
ALTER TABLE {table_forecasts} ADD COLUMN IF NOT EXISTS inputs text NOT NULL DEFAULT 'projected'
    CHECK (inputs IN ('plan', 'projected'));
