-- Incidents: related alerts grouped by place and time (alerts/incidents.py; docs/alerts.md).
-- Columns for the network-topology parts (likely location, affected area, valve set, facilities,
-- population) exist so that the GIS-based grouping can fill them without another migration.
CREATE TABLE incidents (
    incident_id     bigserial PRIMARY KEY,
    utility         text NOT NULL CHECK (utility IN ('water', 'power', 'gas')),
    kind            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'major', 'critical')),
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved', 'closed')),
    opened_at       timestamptz NOT NULL,
    last_alert_at   timestamptz NOT NULL,
    resolved_at     timestamptz,
    alert_count     integer NOT NULL DEFAULT 1,
    kinds           text[] NOT NULL DEFAULT '{}',
    centre          geometry(Point, 4326) NOT NULL,
    radius_m        double precision NOT NULL DEFAULT 0,
    district_adcode integer,
    likely_location text,             -- pipe / segment / bus id, from the network graph (later)
    affected        jsonb NOT NULL DEFAULT '{}',  -- area, valves, facilities, population (later)
    explanation_zh  text NOT NULL,
    explanation_en  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incidents_open_idx ON incidents (utility, last_alert_at DESC) WHERE state = 'open';
CREATE INDEX incidents_centre_idx ON incidents USING gist (centre);

ALTER TABLE alerts ADD COLUMN incident_id bigint REFERENCES incidents ON DELETE SET NULL;
CREATE INDEX alerts_incident_idx ON alerts (incident_id);
