-- Rollups at 1 minute and 1 hour on TimescaleDB: continuous aggregates with real-time
-- aggregation (materialized_only = false), so recent and late readings are included when read;
-- the refresh policies re-materialise the window in which late readings are accepted (31 days).
-- Same relation and column names as the plain tables (0011_rollups.plain.sql).
CREATE MATERIALIZED VIEW readings_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT sensor_id, quantity, time_bucket(INTERVAL '1 minute', ts) AS bucket,
       min(value) AS value_min, max(value) AS value_max, sum(value) AS value_sum,
       count(*) AS n, last(value, ts) AS value_last, max(ts) AS last_ts, avg(value) AS value_mean
FROM readings
GROUP BY sensor_id, quantity, time_bucket(INTERVAL '1 minute', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW readings_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT sensor_id, quantity, time_bucket(INTERVAL '1 hour', ts) AS bucket,
       min(value) AS value_min, max(value) AS value_max, sum(value) AS value_sum,
       count(*) AS n, last(value, ts) AS value_last, max(ts) AS last_ts, avg(value) AS value_mean
FROM readings
GROUP BY sensor_id, quantity, time_bucket(INTERVAL '1 hour', ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('readings_1m',
    start_offset => INTERVAL '31 days', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '1 minute');
SELECT add_continuous_aggregate_policy('readings_1h',
    start_offset => INTERVAL '31 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');

-- compress chunks once no accepted reading can land in them any more (accept window 30 days)
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'sensor_id, quantity',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT add_compression_policy('readings', INTERVAL '35 days');
-- raw readings are kept 400 days (CITYOPS_RETENTION_DAYS default); rollups are kept
SELECT add_retention_policy('readings', INTERVAL '400 days');
