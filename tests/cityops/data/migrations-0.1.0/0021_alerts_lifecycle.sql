-- Alert lifecycle (alerts/lifecycle.py), escalation, and an append-only audit log with a hash
-- chain (docs/alerts.md, docs/decisions/0021).
ALTER TABLE alerts
    ADD CONSTRAINT alerts_state_check
        CHECK (state IN ('open', 'acknowledged', 'in_progress', 'resolved', 'closed')),
    ADD COLUMN acknowledged_at  timestamptz,
    ADD COLUMN acknowledged_by  text,
    ADD COLUMN assigned_to      text,
    ADD COLUMN assigned_at      timestamptz,
    ADD COLUMN started_at       timestamptz,
    ADD COLUMN shelved_until    timestamptz,
    ADD COLUMN shelved_by       text,
    ADD COLUMN shelve_reason    text,
    ADD COLUMN resolved_at      timestamptz,
    ADD COLUMN resolved_by      text,
    ADD COLUMN closed_at        timestamptz,
    ADD COLUMN closed_by        text,
    ADD COLUMN escalation_level integer NOT NULL DEFAULT 0,
    ADD COLUMN escalated_at     timestamptz;
CREATE INDEX alerts_escalation_idx ON alerts (raised_at) WHERE state = 'open';

-- every action on an alert, by whom and when; rows are never changed or removed. Each row
-- carries the hash of the previous one (SM3 where OpenSSL has it, else SHA-256), so an edit made
-- behind the database's back is visible to alerts.store.verify_audit_chain.
CREATE TABLE alert_audit (
    audit_id   bigserial PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts ON DELETE RESTRICT,
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    from_state text NOT NULL,
    to_state   text NOT NULL,
    comment    text NOT NULL DEFAULT '',
    detail     jsonb NOT NULL DEFAULT '{}',
    hash_alg   text NOT NULL,
    prev_hash  text NOT NULL,
    hash       text NOT NULL
);
CREATE INDEX alert_audit_alert_idx ON alert_audit (alert_id, audit_id);

CREATE FUNCTION alert_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_audit is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER alert_audit_no_update BEFORE UPDATE OR DELETE ON alert_audit
    FOR EACH ROW EXECUTE FUNCTION alert_audit_append_only();
CREATE TRIGGER alert_audit_no_truncate BEFORE TRUNCATE ON alert_audit
    FOR EACH STATEMENT EXECUTE FUNCTION alert_audit_append_only();
