-- Planning data (issue 17.5): the known-future inputs a retailer knows in advance - openings and closures,
-- promotions, state and school holidays - per store and day, uploaded through POST /v1/planning (JSON rows),
-- POST /v1/planning/csv (Kaggle test.csv columns) or `sfmlops plan upload FILE.csv` (app/forecasting/planning.py).
-- Every upload is one version (a number from {table_planning}_version_seq, taken under a lock so that versions
-- follow commit order) and keeps its rows; for a (store, date) the row of the newest version wins. The batch
-- forecast uses these rows where they exist and projects the inputs elsewhere ({table_forecasts}.inputs says
-- which). Idempotent.
CREATE TABLE IF NOT EXISTS {table_planning} (
    store           integer     NOT NULL CHECK (store > 0),
    date            date        NOT NULL,
    open            smallint    NOT NULL CHECK (open IN (0, 1)),
    promo           smallint    NOT NULL CHECK (promo IN (0, 1)),
    state_holiday   text        NOT NULL CHECK (state_holiday IN ('0', 'a', 'b', 'c')),
    school_holiday  smallint    NOT NULL CHECK (school_holiday IN (0, 1)),
    version         bigint      NOT NULL,
    uploaded_at     timestamptz NOT NULL DEFAULT now(),
    client          text        NOT NULL,
    -- (store, date, version): the newest version of a store-day is the last entry of its range of this index.
    PRIMARY KEY (store, date, version)
);
CREATE SEQUENCE IF NOT EXISTS {table_planning}_version_seq OWNED BY {table_planning}.version;
CREATE INDEX IF NOT EXISTS {table_planning}_version_idx ON {table_planning} (version);
