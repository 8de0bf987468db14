-- Plain PostgreSQL keeps its storage itself: cityops_apply_retention(keep_days), called by the
-- ingestion workers' maintenance, drops day partitions older than keep_days (0 = keep for ever)
-- and returns how many went. Same name as the TimescaleDB variant, where it sets a policy.
CREATE FUNCTION cityops_apply_retention(keep_days integer)
RETURNS integer LANGUAGE sql AS $$
    SELECT CASE WHEN keep_days <= 0 THEN 0 ELSE cityops_drop_old_partitions(keep_days) END
$$;
