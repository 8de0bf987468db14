-- The sensors inside each metered area (its inlet meters and everything downstream of them):
-- the network topology that incident grouping uses, so that a burst's symptoms anywhere in its
-- area belong to the burst's incident however far from the inlet (alerts/store.py).
CREATE TABLE metered_area_sensors (
    area_id   text NOT NULL REFERENCES metered_areas ON DELETE CASCADE,
    sensor_id text NOT NULL REFERENCES sensors ON DELETE CASCADE,
    PRIMARY KEY (area_id, sensor_id)
);
CREATE INDEX metered_area_sensors_sensor_idx ON metered_area_sensors (sensor_id);
INSERT INTO metered_area_sensors (area_id, sensor_id)
SELECT area_id, sensor_id FROM metered_area_meters ON CONFLICT DO NOTHING;
