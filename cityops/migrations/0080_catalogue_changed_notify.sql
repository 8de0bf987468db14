-- The alert service applies a changed catalogue at once (decision 0025, amended): any statement
-- that changes what the engine loads (sensors, their types and limits, metered areas, the source
-- loss rule) sends NOTIFY cityops_catalogue, which the service LISTENs for on its own connection.
-- The periodic reload (30 s) stays as the fallback for a missed notification.
CREATE FUNCTION cityops_catalogue_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cityops_catalogue', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sensors', 'sensor_types', 'sensor_type_quantities',
                             'sensor_limit_overrides', 'metered_areas', 'metered_area_meters',
                             'metered_area_sensors', 'source_loss_rule']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION cityops_catalogue_changed()',
                       t || '_catalogue_changed', t);
    END LOOP;
END;
$$;
