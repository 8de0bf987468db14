-- Rollups at 1 minute and 1 hour on plain PostgreSQL, kept by ingestion in the same transaction
-- as the readings they summarise. Each stored reading is added exactly once (the readings
-- insert is ON CONFLICT DO NOTHING and only rows actually inserted are rolled up), so the
-- aggregates stay exact for late and out-of-order data. value_last is the value of the reading
-- with the greatest timestamp (last_ts) in the bucket, not the one that arrived last.
-- Same relation and column names as the TimescaleDB continuous aggregates.
CREATE TABLE readings_1m (
    sensor_id  text NOT NULL,
    quantity   text NOT NULL,
    bucket     timestamptz NOT NULL,
    value_min  double precision NOT NULL,
    value_max  double precision NOT NULL,
    value_sum  double precision NOT NULL,
    n          bigint NOT NULL,
    value_last double precision NOT NULL,
    last_ts    timestamptz NOT NULL,
    value_mean double precision GENERATED ALWAYS AS (value_sum / n) STORED,
    PRIMARY KEY (sensor_id, quantity, bucket)
);

CREATE TABLE readings_1h (LIKE readings_1m INCLUDING ALL);
