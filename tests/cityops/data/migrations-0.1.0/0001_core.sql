-- Core catalogue, latest values, alerts and quarantine. Storage-independent.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE cityops_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Chengdu's 20 county-level units (layer details: docs/contracts/schema.md)
CREATE TABLE districts (
    adcode  integer PRIMARY KEY,
    name_zh text NOT NULL,
    name_en text NOT NULL,
    geom    geometry(MultiPolygon, 4326) NOT NULL
);
CREATE INDEX districts_geom_idx ON districts USING gist (geom);

CREATE TABLE sensor_types (
    type_id             text PRIMARY KEY,
    utility             text NOT NULL CHECK (utility IN ('water', 'power', 'gas')),
    name_zh             text NOT NULL,
    name_en             text NOT NULL,
    expected_interval_s double precision NOT NULL CHECK (expected_interval_s > 0)
);

-- process alarm limits per sensor type and quantity, in the quantity's canonical unit
CREATE TABLE sensor_type_quantities (
    type_id    text NOT NULL REFERENCES sensor_types ON DELETE CASCADE,
    quantity   text NOT NULL,
    alarm_low  double precision,
    alarm_high double precision,
    deadband   double precision NOT NULL DEFAULT 0 CHECK (deadband >= 0),
    PRIMARY KEY (type_id, quantity)
);

CREATE TABLE sensors (
    sensor_id       text PRIMARY KEY CHECK (sensor_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    utility         text NOT NULL CHECK (utility IN ('water', 'power', 'gas')),
    sensor_type     text NOT NULL REFERENCES sensor_types,
    name            text NOT NULL,
    district_adcode integer,
    asset_id        text,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    geom            geometry(Point, 4326) NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensors_geom_idx ON sensors USING gist (geom);
CREATE INDEX sensors_district_idx ON sensors (district_adcode);

-- the newest reading per sensor and quantity, kept by ingestion in the same transaction
CREATE TABLE sensor_latest (
    sensor_id   text NOT NULL,
    quantity    text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    seq         bigint,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (sensor_id, quantity)
);

CREATE TABLE alerts (
    alert_id    bigserial PRIMARY KEY,
    sensor_id   text NOT NULL,
    utility     text NOT NULL,
    quantity    text NOT NULL,
    kind        text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'major', 'critical')),
    state       text NOT NULL DEFAULT 'open',
    raised_at   timestamptz NOT NULL,
    cleared_at  timestamptz,
    value       double precision NOT NULL,
    limit_value double precision,
    last_value  double precision,
    message_zh  text NOT NULL,
    message_en  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- at most one open alert per sensor, quantity and kind: a redelivered reading raises nothing twice
CREATE UNIQUE INDEX alerts_one_open_idx ON alerts (sensor_id, quantity, kind) WHERE state = 'open';
CREATE INDEX alerts_state_idx ON alerts (state, raised_at DESC);

CREATE TABLE quarantine (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    payload_size integer NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    sensor_id    text
);
CREATE INDEX quarantine_received_idx ON quarantine (received_at DESC);
CREATE INDEX quarantine_reason_idx ON quarantine (reason, received_at DESC);
