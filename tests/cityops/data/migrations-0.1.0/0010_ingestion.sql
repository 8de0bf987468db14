-- Ingestion bookkeeping (storage-independent): possible data gaps, duplicates, worker health,
-- and the data-trust figures per sensor and quantity (docs/ingestion.md).

-- a possible gap: the broker lost our session (CONNACK session present = 0 on a reconnect, or on
-- the start of a client id that had committed before), so messages queued for us may be gone
CREATE TABLE ingest_gaps (
    id          bigserial PRIMARY KEY,
    detected_at timestamptz NOT NULL DEFAULT now(),
    client_id   text NOT NULL,
    kind        text NOT NULL,
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX ingest_gaps_detected_idx ON ingest_gaps (detected_at DESC);

-- redelivered or repeated readings that were not stored again, per hour of their timestamp
CREATE TABLE ingest_duplicates_1h (
    sensor_id  text NOT NULL,
    quantity   text NOT NULL,
    bucket     timestamptz NOT NULL,
    duplicates bigint NOT NULL,
    PRIMARY KEY (sensor_id, quantity, bucket)
);

-- one row per ingestion worker (client id); heartbeat_at is written with every batch and every
-- few seconds when idle, so a stale heartbeat means a stopped or stalled worker
CREATE TABLE ingest_workers (
    client_id      text PRIMARY KEY,
    hostname       text NOT NULL DEFAULT '',
    pid            integer,
    started_at     timestamptz NOT NULL DEFAULT now(),
    heartbeat_at   timestamptz NOT NULL DEFAULT now(),
    last_commit_at timestamptz,
    state          text NOT NULL DEFAULT 'running',
    stored         bigint NOT NULL DEFAULT 0,
    quarantined    bigint NOT NULL DEFAULT 0
);

CREATE INDEX quarantine_sensor_idx ON quarantine (sensor_id, received_at DESC) WHERE sensor_id IS NOT NULL;

-- Data trust per active sensor and quantity of its type, over [since, until):
--   expected     readings due at the type's interval since the window (or the sensor) began
--   received     readings stored with a timestamp in the window
--   seq_gaps     sequence numbers skipped, in timestamp order (a reset to a lower number is a
--                reboot, not a gap)
--   duplicates   copies received again and not stored (from ingest_duplicates_1h, whole hours)
--   late         readings that arrived more than one interval after their timestamp
--   lag_p50_s / lag_max_s   receive time minus reading time [s]
--   silent_s     seconds since the newest reading of this sensor and quantity (NULL: never)
CREATE FUNCTION data_trust(since timestamptz, until timestamptz DEFAULT now())
RETURNS TABLE (
    sensor_id text, quantity text, sensor_type text, utility text,
    expected bigint, received bigint, completeness double precision,
    seq_gaps bigint, duplicates bigint, late bigint,
    lag_p50_s double precision, lag_max_s double precision,
    last_ts timestamptz, silent_s double precision
) LANGUAGE sql STABLE AS $$
    SELECT s.sensor_id, tq.quantity, s.sensor_type, s.utility,
           e.expected, coalesce(a.received, 0),
           CASE WHEN e.expected > 0 THEN least(1.0, coalesce(a.received, 0)::double precision / e.expected) END,
           coalesce(a.seq_gaps, 0), coalesce(d.duplicates, 0), coalesce(a.late, 0),
           a.lag_p50_s, a.lag_max_s, l.ts,
           extract(epoch FROM until - l.ts)::double precision
    FROM sensors s
    JOIN sensor_types t ON t.type_id = s.sensor_type
    JOIN sensor_type_quantities tq ON tq.type_id = s.sensor_type
    CROSS JOIN LATERAL (
        SELECT greatest(0, floor(extract(epoch FROM until - greatest(since, s.created_at))
                                 / t.expected_interval_s))::bigint AS expected
    ) e
    LEFT JOIN LATERAL (
        SELECT count(*) AS received,
               count(*) FILTER (WHERE x.lag_s > t.expected_interval_s) AS late,
               coalesce(sum(CASE WHEN x.dseq > 1 THEN x.dseq - 1 ELSE 0 END), 0)::bigint AS seq_gaps,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY x.lag_s) AS lag_p50_s,
               max(x.lag_s) AS lag_max_s
        FROM (
            SELECT extract(epoch FROM r.received_at - r.ts)::double precision AS lag_s,
                   r.seq - lag(r.seq) OVER (ORDER BY r.ts) AS dseq
            FROM readings r
            WHERE r.sensor_id = s.sensor_id AND r.quantity = tq.quantity
              AND r.ts >= since AND r.ts < until
        ) x
    ) a ON true
    LEFT JOIN LATERAL (
        SELECT sum(dd.duplicates)::bigint AS duplicates
        FROM ingest_duplicates_1h dd
        WHERE dd.sensor_id = s.sensor_id AND dd.quantity = tq.quantity
          AND dd.bucket >= date_trunc('hour', since) AND dd.bucket < until
    ) d ON true
    LEFT JOIN sensor_latest l ON l.sensor_id = s.sensor_id AND l.quantity = tq.quantity
    WHERE s.status = 'active'
$$;

CREATE VIEW data_trust_24h AS SELECT * FROM data_trust(now() - interval '24 hours', now());
