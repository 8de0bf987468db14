-- Streaming detectors beyond the threshold, enabled per sensor type and quantity
-- (alerts/engine.py, defaults in alerts/params.py; docs/alerts.md "Detectors").
-- Opt-in: no rows are seeded, so a fresh installation raises threshold alerts only until the
-- operators decide which other detectors their sensors are good enough for.
CREATE TABLE alert_detector_settings (
    type_id  text NOT NULL REFERENCES sensor_types ON DELETE CASCADE,
    quantity text NOT NULL,
    detector text NOT NULL
        CHECK (detector IN ('rate_of_change', 'stuck', 'silent', 'gas_levels')),
    enabled  boolean NOT NULL DEFAULT true,
    severity text NOT NULL DEFAULT 'warning'
        CHECK (severity IN ('info', 'warning', 'major', 'critical')),
    params   jsonb NOT NULL DEFAULT '{}',  -- overrides of the defaults in alerts/params.py
    PRIMARY KEY (type_id, quantity, detector)
);
