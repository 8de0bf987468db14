-- Incidents follow the alerts (alerts/store.py group_new_alerts): the engine stores and
-- publishes an alert first and groups it into its incident right after, so that the grouping's
-- queries are not on the alert's path to emergency staff. grouped_at marks the alerts done;
-- an engine that stopped in between groups the rest when it starts.
ALTER TABLE alerts ADD COLUMN grouped_at timestamptz;
UPDATE alerts SET grouped_at = created_at;
CREATE INDEX alerts_ungrouped_idx ON alerts (raised_at, alert_id) WHERE grouped_at IS NULL;

-- Which sensors an incident holds, and whether each showed a process alarm or a fault of its
-- own: what grouping asks for every alert, kept as it goes instead of counted from the alerts
-- (an alert storm's incident holds thousands).
CREATE TABLE incident_sensors (
    incident_id bigint NOT NULL REFERENCES incidents ON DELETE CASCADE,
    sensor_id   text NOT NULL,
    health      boolean NOT NULL DEFAULT false,  -- a silent, stuck, spike or sensor_fault alert
    process     boolean NOT NULL DEFAULT false,  -- any other alert
    PRIMARY KEY (incident_id, sensor_id)
);
INSERT INTO incident_sensors (incident_id, sensor_id, health, process)
SELECT incident_id, sensor_id,
       bool_or(kind IN ('silent', 'stuck', 'sensor_fault', 'spike')),
       bool_or(kind NOT IN ('silent', 'stuck', 'sensor_fault', 'spike'))
FROM alerts WHERE incident_id IS NOT NULL GROUP BY incident_id, sensor_id;
