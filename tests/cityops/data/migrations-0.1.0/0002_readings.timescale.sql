-- readings on TimescaleDB: a hypertable with one-day chunks. Same relation name and columns as
-- the plain variant; partition functions exist so that callers need not know which path is in use.
CREATE EXTENSION IF NOT EXISTS timescaledb;
INSERT INTO cityops_meta VALUES ('storage', 'timescaledb');

CREATE TABLE readings (
    sensor_id   text NOT NULL,
    quantity    text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    seq         bigint,
    quality     smallint NOT NULL DEFAULT 0,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, quantity, ts)
);
SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'));

CREATE FUNCTION cityops_ensure_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;  -- TimescaleDB creates chunks itself

CREATE FUNCTION cityops_drop_old_partitions(keep_days integer)
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM drop_chunks('readings', older_than => make_interval(days => keep_days))
$$;
