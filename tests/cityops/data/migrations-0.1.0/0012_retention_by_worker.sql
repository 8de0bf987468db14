-- Retention of raw readings follows CITYOPS_RETENTION_DAYS on both storage paths: the ingestion
-- workers' hourly maintenance calls cityops_drop_old_partitions(retention_days), which drops day
-- partitions (plain) or chunks (TimescaleDB). The fixed 400-day TimescaleDB retention policy of
-- 0011 would otherwise override a longer setting (and ignore 0 = keep for ever), so it goes.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM cityops_meta WHERE key = 'storage' AND value = 'timescaledb') THEN
        PERFORM remove_retention_policy('readings', if_exists => true);
    END IF;
END $$;
