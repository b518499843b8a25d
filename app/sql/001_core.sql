-- Core tables: daily sales per store and store metadata. Idempotent.
CREATE TABLE IF NOT EXISTS {table_stores} (
    store                         integer PRIMARY KEY CHECK (store > 0),
    store_type                    char(1) NOT NULL,
    assortment                    char(1) NOT NULL,
    competition_distance          double precision,
    competition_open_since_month  smallint,
    competition_open_since_year   smallint,
    promo2                        smallint NOT NULL CHECK (promo2 IN (0, 1)),
    promo2_since_week             smallint,
    promo2_since_year             smallint,
    promo_interval                text,
    updated_at                    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {table_sales} (
    store           integer  NOT NULL CHECK (store > 0),
    date            date     NOT NULL,
    day_of_week     smallint NOT NULL CHECK (day_of_week BETWEEN 1 AND 7),
    sales           integer  NOT NULL CHECK (sales >= 0),
    customers       integer  NOT NULL CHECK (customers >= 0),
    open            smallint NOT NULL CHECK (open IN (0, 1)),
    promo           smallint NOT NULL CHECK (promo IN (0, 1)),
    state_holiday   char(1)  NOT NULL CHECK (state_holiday IN ('0', 'a', 'b', 'c')),
    school_holiday  smallint NOT NULL CHECK (school_holiday IN (0, 1)),
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store, date)
);

CREATE INDEX IF NOT EXISTS {table_sales}_date_idx ON {table_sales} (date);
