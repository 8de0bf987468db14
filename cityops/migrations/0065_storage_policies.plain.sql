-- Plain PostgreSQL keeps its storage itself: cityops_apply_retention(keep_days), called by the
-- ingestion workers' maintenance, drops day partitions older than keep_days (0 = keep for ever)
-- and returns how many went. Same name as the TimescaleDB variant, where it sets a policy.
CREATE FUNCTION cityops_apply_retention(keep_days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    dropped integer := 0;
    cutoff text := to_char((now() AT TIME ZONE 'UTC')::date - keep_days, 'YYYYMMDD');
BEGIN
    IF keep_days <= 0 THEN
        RETURN 0;
    END IF;
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_p[0-9]{8}$'
    LOOP
        IF substr(r.relname, 11) < cutoff THEN
            EXECUTE format('DROP TABLE %I', r.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;
DROP FUNCTION cityops_drop_old_partitions(integer);
