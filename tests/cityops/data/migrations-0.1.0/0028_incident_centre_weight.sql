-- Incident centres weighted by how strongly each member sensor shows the symptom
-- (alerts/incidents.py symptom_weight): the sum of the members' weights.
ALTER TABLE incidents ADD COLUMN centre_weight double precision NOT NULL DEFAULT 1
    CHECK (centre_weight > 0);
UPDATE incidents SET centre_weight = alert_count;
