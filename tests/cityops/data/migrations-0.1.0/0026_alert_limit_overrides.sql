-- Per-sensor alarm limits: a site whose normal range differs from its type's (a main that runs
-- at 650 kPa, a bus that carries 650 A at peak) gets its own limits instead of a standing or a
-- chattering alert. The engine uses them in place of sensor_type_quantities (alerts/store.py).
CREATE TABLE sensor_limit_overrides (
    sensor_id  text NOT NULL REFERENCES sensors ON DELETE CASCADE,
    quantity   text NOT NULL,
    alarm_low  double precision,
    alarm_high double precision,
    deadband   double precision NOT NULL DEFAULT 0 CHECK (deadband >= 0),
    reason     text NOT NULL CHECK (reason <> ''),
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, quantity),
    CHECK (alarm_low IS NULL OR alarm_high IS NULL OR alarm_low < alarm_high)
);
