-- Alerts, continued (0020-0029 are full; alerts go on at 0060-0069).
-- Two more streaming detectors in alert_detector_settings: the QARTOD spike test, and
-- 'threshold' rows that only tune the threshold's on-delay (alerts/params.py). The default
-- rows themselves are seeded with the sensor types (cityops/migrate.py, decision 0025).
ALTER TABLE alert_detector_settings DROP CONSTRAINT alert_detector_settings_detector_check;
ALTER TABLE alert_detector_settings ADD CONSTRAINT alert_detector_settings_detector_check
    CHECK (detector IN ('rate_of_change', 'stuck', 'silent', 'gas_levels', 'spike', 'threshold'));
