-- Planned operations (issue 15 item 6, decision 0074): a works calendar of valve operations,
-- network reconfigurations and maintenance, recorded by an operator (`cityops works add`) or by
-- the simulators for a scenario's planned incident. An alert raised while an entry is active on
-- its sensor (named, in a named metered area, or anywhere in the utility when neither is given)
-- is marked suppressed_by = 'works:<work_id>' and grouped as a planned_operation, not a leak.
CREATE TABLE works (
    work_id      bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('valve_operation', 'reconfiguration', 'maintenance')),
    utility      text NOT NULL CHECK (utility IN ('water', 'power', 'gas')),
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    area_ids     text[] NOT NULL DEFAULT '{}',   -- metered areas (metered_area_sensors)
    asset_ids    text[] NOT NULL DEFAULT '{}',   -- network elements operated (valves, pipes ...)
    sensor_ids   text[] NOT NULL DEFAULT '{}',   -- sensors named directly
    description  text NOT NULL CHECK (description <> ''),
    recorded_by  text NOT NULL CHECK (recorded_by <> ''),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    cancelled_by text,
    CHECK (ends_at > starts_at),
    CHECK ((cancelled_at IS NULL) = (cancelled_by IS NULL))
);
CREATE INDEX works_time_idx ON works (ends_at, starts_at) WHERE cancelled_at IS NULL;

-- the drift detector (alerts/detectors/drift.py) in alert_detector_settings
ALTER TABLE alert_detector_settings DROP CONSTRAINT alert_detector_settings_detector_check;
ALTER TABLE alert_detector_settings ADD CONSTRAINT alert_detector_settings_detector_check
    CHECK (detector IN ('rate_of_change', 'stuck', 'silent', 'gas_levels', 'spike', 'threshold',
                        'drift'));
