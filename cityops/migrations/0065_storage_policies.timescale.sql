-- TimescaleDB keeps its own storage with policies run by its background scheduler
-- (docs/decisions/0014-timescaledb-policies.md):
--
-- * compression from a chunk's second day (was: after the 35-day accept window). TimescaleDB 2.28
--   stores a late reading into a compressed chunk with its unique key checked against the
--   compressed batches, so a reading inside the accept window is stored exactly once wherever it
--   falls; the policy recompresses such a chunk on its next run;
-- * the rollups' refresh: 1-minute every minute, 1-hour every 5 minutes (was 15), both over the
--   31 days in which readings are accepted; reads are real-time in between;
-- * the rollups compressed once no accepted reading can change them (after 35 days);
-- * retention of raw readings as a policy whose horizon follows CITYOPS_RETENTION_DAYS:
--   cityops_apply_retention(keep_days), called by the ingestion workers' maintenance, creates,
--   changes or removes it (0 = keep for ever); the policy's job does the dropping.
SELECT remove_compression_policy('readings', if_exists => true);
SELECT add_compression_policy('readings', compress_after => INTERVAL '2 days',
                              schedule_interval => INTERVAL '1 hour');

SELECT remove_continuous_aggregate_policy('readings_1h', if_exists => true);
SELECT add_continuous_aggregate_policy('readings_1h',
    start_offset => INTERVAL '31 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '5 minutes');

ALTER MATERIALIZED VIEW readings_1m SET (timescaledb.compress = true);
ALTER MATERIALIZED VIEW readings_1h SET (timescaledb.compress = true);
SELECT add_compression_policy('readings_1m', compress_after => INTERVAL '35 days',
                              schedule_interval => INTERVAL '1 hour');
SELECT add_compression_policy('readings_1h', compress_after => INTERVAL '35 days',
                              schedule_interval => INTERVAL '1 hour');

CREATE FUNCTION cityops_apply_retention(keep_days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    job integer;
    horizon interval;
BEGIN
    SELECT j.job_id, (j.config ->> 'drop_after')::interval INTO job, horizon
    FROM timescaledb_information.jobs j
    WHERE j.proc_name = 'policy_retention' AND j.hypertable_name = 'readings';
    IF keep_days <= 0 THEN
        PERFORM remove_retention_policy('readings', if_exists => true);
    ELSIF job IS NULL THEN
        PERFORM add_retention_policy('readings', drop_after => make_interval(days => keep_days),
                                     schedule_interval => INTERVAL '1 hour');
    ELSIF horizon IS DISTINCT FROM make_interval(days => keep_days) THEN
        PERFORM alter_job(job, config => jsonb_set(
            (SELECT config FROM timescaledb_information.jobs WHERE job_id = job),
            '{drop_after}', to_jsonb(make_interval(days => keep_days)::text)));
    END IF;
    RETURN 0;  -- the policy's job drops the chunks
END $$;
DROP FUNCTION cityops_drop_old_partitions(integer);
