-- Notification routes and deliveries (alerts/notify.py, alerts/dispatch.py; docs/alerts.md).
CREATE TABLE notification_routes (
    route_id     serial PRIMARY KEY,
    name         text NOT NULL,
    channel      text NOT NULL CHECK (channel IN ('webhook', 'email', 'sms')),
    target       text NOT NULL,   -- webhook / SMS gateway URL, or smtp[s]://[user:pass@]host:port
    recipient    text,            -- e-mail address(es), comma separated, or phone number
    secret       text,            -- HMAC-SHA256 key for webhook and SMS gateway signatures
    min_severity text NOT NULL DEFAULT 'warning'
        CHECK (min_severity IN ('info', 'warning', 'major', 'critical')),
    utilities    text[],          -- NULL: every utility
    districts    integer[],       -- NULL: every district (adcode)
    events       text[] NOT NULL DEFAULT '{raised,escalated}',
    enabled      boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- one row per (event, route): the unique key is what makes a retry never a second delivery
CREATE TABLE notification_deliveries (
    delivery_id     bigserial PRIMARY KEY,
    event_id        bigint NOT NULL REFERENCES alert_events ON DELETE CASCADE,
    route_id        integer NOT NULL REFERENCES notification_routes ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_by       text,         -- the worker (alerts client id) that claimed it last
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, route_id)
);
CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (next_attempt_at)
    WHERE status = 'pending';

-- when the event's deliveries were planned (NULL: not yet routed)
ALTER TABLE alert_events ADD COLUMN routed_at timestamptz;
CREATE INDEX alert_events_unrouted_idx ON alert_events (event_id) WHERE routed_at IS NULL;
