-- Maintenance windows and notification suppression (chattering, floods); docs/alerts.md.
CREATE TABLE maintenance_windows (
    window_id       bigserial PRIMARY KEY,
    sensor_id       text,         -- NULL: any sensor (then utility and/or district narrow it)
    utility         text CHECK (utility IN ('water', 'power', 'gas')),
    district_adcode integer,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    reason          text NOT NULL CHECK (reason <> ''),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (sensor_id IS NOT NULL OR utility IS NOT NULL OR district_adcode IS NOT NULL)
);
CREATE INDEX maintenance_windows_time_idx ON maintenance_windows (ends_at, starts_at);

-- an alert raised inside a maintenance window is stored and published, but neither escalated
-- nor notified: 'maintenance:<window_id>'
ALTER TABLE alerts ADD COLUMN suppressed_by text;

ALTER TABLE notification_deliveries
    DROP CONSTRAINT notification_deliveries_status_check,
    ADD CONSTRAINT notification_deliveries_status_check
        CHECK (status IN ('pending', 'delivered', 'failed', 'suppressed')),
    ADD COLUMN suppressed_reason text;  -- maintenance | chattering | flood
CREATE INDEX notification_deliveries_route_recent_idx ON notification_deliveries (route_id, created_at);
