-- Telemetry messages the alert engine could not store for good (the database refused them for
-- another reason than a lost connection or a transient rollback; alerts/service.py): kept here,
-- visible, before the message is acknowledged. The payload is bounded (the first 64 KiB);
-- payload_bytes is the size received.
CREATE TABLE alert_dead_letters (
    dead_letter_id bigserial PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    topic          text NOT NULL CHECK (length(topic) <= 1024),
    payload        bytea NOT NULL CHECK (octet_length(payload) <= 65536),
    payload_bytes  integer NOT NULL,
    error          text NOT NULL CHECK (length(error) <= 2000)
);
CREATE INDEX alert_dead_letters_received_idx ON alert_dead_letters (received_at);
