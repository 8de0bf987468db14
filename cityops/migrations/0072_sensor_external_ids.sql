-- A utility's own sensor id as it writes it ("T1", "PS 12/a"): sensors.sensor_id is the mapped
-- form the bus topics accept (sensors/ids.py, docs/decisions/0056); lookups take either.
ALTER TABLE sensors ADD COLUMN external_id text;
CREATE UNIQUE INDEX sensors_external_id_idx ON sensors (external_id) WHERE external_id IS NOT NULL;
