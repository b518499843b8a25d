-- Live forecast accuracy (issue 18.4): the stored forecasts of {table_forecasts} scored against the actuals of
-- {table_sales} once they land, one row per (model, version, day, horizon bucket). `rmspe` is over the rows with
-- positive sales (`rows_scored`); `backtest_rmspe` is the version's backtest RMSPE (its registry tag) when the
-- scores were written, the yardstick of the drift flag (app/forecasting/live_accuracy.py). Re-scoring a day
-- overwrites its rows. Idempotent.
CREATE TABLE IF NOT EXISTS {table_accuracy} (
    model_name      text             NOT NULL,
    model_version   text             NOT NULL,
    date            date             NOT NULL,
    bucket          text             NOT NULL,
    rows            integer          NOT NULL CHECK (rows >= 0),
    rows_scored     integer          NOT NULL CHECK (rows_scored >= 0 AND rows_scored <= rows),
    rmspe           double precision,
    backtest_rmspe  double precision,
    scored_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, model_version, date, bucket)
);
