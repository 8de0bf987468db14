-- One definition of the data-trust figures (decision 0016, docs/ingestion.md "Data trust"),
-- read by the wall, the data-trust page and anyone else: data_trust() per sensor and quantity.
-- Changes from 0010:
--   late       no longer counts backfilled history: readings flagged QUALITY_HISTORY (bit 2 of
--              readings.quality, ingestion/trust.py) were loaded as history, not delivered late
--   backfilled new: readings in the window flagged as history
--   counted    new: least(received, expected), what completeness counts; a group's completeness
--              is sum(counted) / sum(expected), so that a sensor that sends more than it should
--              never hides one that is silent
--   expected   still follows the sensor type's declared interval (sensor_types.expected_interval_s)
--              from the later of the window's start and the sensor's beginning: its
--              registration, or its first reading in the window if earlier (history loaded
--              for a sensor registered afterwards is expected, not a surplus)
DROP VIEW data_trust_24h;
DROP FUNCTION data_trust(timestamptz, timestamptz);

CREATE FUNCTION data_trust(since timestamptz, until timestamptz DEFAULT now())
RETURNS TABLE (
    sensor_id text, quantity text, sensor_type text, utility text,
    expected bigint, received bigint, completeness double precision,
    seq_gaps bigint, duplicates bigint, late bigint,
    lag_p50_s double precision, lag_max_s double precision,
    last_ts timestamptz, silent_s double precision,
    backfilled bigint, counted bigint
) LANGUAGE sql STABLE AS $$
    SELECT s.sensor_id, tq.quantity, s.sensor_type, s.utility,
           e.expected, coalesce(a.received, 0),
           CASE WHEN e.expected > 0 THEN least(1.0, coalesce(a.received, 0)::double precision / e.expected) END,
           coalesce(a.seq_gaps, 0), coalesce(d.duplicates, 0), coalesce(a.late, 0),
           a.lag_p50_s, a.lag_max_s, l.ts,
           extract(epoch FROM until - l.ts)::double precision,
           coalesce(a.backfilled, 0), least(coalesce(a.received, 0), e.expected)
    FROM sensors s
    JOIN sensor_types t ON t.type_id = s.sensor_type
    JOIN sensor_type_quantities tq ON tq.type_id = s.sensor_type
    -- the sensor began at its registration, or at its first reading in the window before it
    -- (history loaded for a sensor registered later; an index probe within the window only)
    CROSS JOIN LATERAL (
        SELECT least(s.created_at, (
            SELECT min(r.ts) FROM readings r
            WHERE r.sensor_id = s.sensor_id AND r.quantity = tq.quantity
              AND r.ts >= since AND r.ts < least(until, s.created_at))) AS began
    ) b
    CROSS JOIN LATERAL (
        SELECT greatest(0, floor(extract(epoch FROM until - greatest(since, b.began))
                                 / t.expected_interval_s))::bigint AS expected
    ) e
    LEFT JOIN LATERAL (
        SELECT count(*) AS received,
               count(*) FILTER (WHERE x.lag_s > t.expected_interval_s AND NOT x.history) AS late,
               count(*) FILTER (WHERE x.history) AS backfilled,
               coalesce(sum(CASE WHEN x.dseq > 1 THEN x.dseq - 1 ELSE 0 END), 0)::bigint AS seq_gaps,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY x.lag_s) FILTER (WHERE NOT x.history) AS lag_p50_s,
               max(x.lag_s) FILTER (WHERE NOT x.history) AS lag_max_s
        FROM (
            SELECT extract(epoch FROM r.received_at - r.ts)::double precision AS lag_s,
                   (r.quality & 2) <> 0 AS history,
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
