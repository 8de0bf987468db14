-- API tokens for machine clients, the security audit, and a data class per GIS layer
-- (access/tokens.py, access/classes.py; docs/decisions/0071-api-tokens-and-data-classes.md).

-- only the SHA-256 of a token is stored: a copy of this table opens nothing
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    token_hash   text NOT NULL UNIQUE,
    username     text NOT NULL REFERENCES dashboard_users ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role         text NOT NULL,  -- at most the owner's role (access.classes.role_within)
    layers       text[] NOT NULL DEFAULT '{}',  -- empty: every layer the role reads
    created_at   timestamptz NOT NULL,
    created_by   text NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    revoked_by   text,
    last_used_at timestamptz,
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '366 days')
);
CREATE INDEX api_tokens_user_idx ON api_tokens (username);

-- who did what to which object: token creation and revocation, exports of internal or
-- restricted data (access.tokens.record_security_event is the one writer)
CREATE TABLE security_audit (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text NOT NULL,
    action text NOT NULL,  -- token.create, token.revoke, export
    target text NOT NULL DEFAULT '',
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX security_audit_at_idx ON security_audit (at DESC);
CREATE INDEX security_audit_action_idx ON security_audit (action, at DESC);

CREATE FUNCTION security_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'security_audit is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER security_audit_no_update BEFORE UPDATE OR DELETE ON security_audit
    FOR EACH ROW EXECUTE FUNCTION security_audit_append_only();
CREATE TRIGGER security_audit_no_truncate BEFORE TRUNCATE ON security_audit
    FOR EACH STATEMENT EXECUTE FUNCTION security_audit_append_only();

-- public (may go to open data) < internal (city staff) < restricted (targets for an attacker)
ALTER TABLE gis_layers ADD COLUMN classification text NOT NULL DEFAULT 'internal'
    CHECK (classification IN ('public', 'internal', 'restricted'));
UPDATE gis_layers SET classification = 'public' WHERE name IN ('districts', 'grid_cells');
UPDATE gis_layers SET classification = 'restricted' WHERE name = 'facilities';
