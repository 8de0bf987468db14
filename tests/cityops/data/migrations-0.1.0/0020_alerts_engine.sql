-- Alert engine: one active alert per condition, detector state that survives restarts, and an
-- outbox of alert events published after commit (docs/alerts.md, docs/decisions/0020).

-- "At most one open alert" becomes "at most one *active* alert" (condition not yet cleared):
-- once staff acknowledge an alert its state leaves 'open' but the condition may still be
-- active, and a restarted engine must still not raise it a second time.
DROP INDEX IF EXISTS alerts_one_open_idx;
CREATE UNIQUE INDEX alerts_one_active_idx ON alerts (sensor_id, quantity, kind)
    WHERE cleared_at IS NULL;
CREATE INDEX alerts_sensor_idx ON alerts (sensor_id, raised_at DESC);

-- the newest reading each detector evaluated, per sensor and quantity: readings redelivered
-- after a restart (or arriving late) are not evaluated twice
CREATE TABLE alert_detector_state (
    sensor_id  text NOT NULL,
    quantity   text NOT NULL,
    last_ts    timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, quantity)
);

-- transactional outbox: written in the transaction that changes the alert, published to MQTT
-- (and later to notification channels) after commit, marked published after the broker's PUBACK
CREATE TABLE alert_events (
    event_id     bigserial PRIMARY KEY,
    alert_id     bigint NOT NULL REFERENCES alerts ON DELETE CASCADE,
    event        text NOT NULL,
    topic        text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX alert_events_unpublished_idx ON alert_events (event_id) WHERE published_at IS NULL;
CREATE INDEX alert_events_alert_idx ON alert_events (alert_id, event_id);
