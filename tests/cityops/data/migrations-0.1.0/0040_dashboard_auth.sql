-- Dashboard users, roles, sessions, login attempts and an append-only login audit
-- (dashboards/accounts.py; docs/decisions/0040-dashboard-auth.md).
CREATE TABLE dashboard_users (
    username      text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    display_name  text NOT NULL DEFAULT '',
    role          text NOT NULL CHECK (role IN ('operator', 'planner', 'emergency', 'admin')),
    password_hash text NOT NULL,  -- argon2id (argon2-cffi), never the password
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- only the SHA-256 of the cookie's token is stored: a copy of this table opens no session
CREATE TABLE dashboard_sessions (
    token_hash   text PRIMARY KEY,
    username     text NOT NULL REFERENCES dashboard_users ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_user_idx ON dashboard_sessions (username);
CREATE INDEX dashboard_sessions_expiry_idx ON dashboard_sessions (expires_at);

CREATE TABLE dashboard_login_attempts (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL,
    username text NOT NULL,
    client   text NOT NULL,
    ok       boolean NOT NULL
);
CREATE INDEX dashboard_login_attempts_user_idx ON dashboard_login_attempts (username, at DESC);
CREATE INDEX dashboard_login_attempts_client_idx ON dashboard_login_attempts (client, at DESC);

CREATE TABLE dashboard_audit (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL,
    username text NOT NULL,
    action   text NOT NULL,  -- login, login_failed, login_limited, logout, refused:<permission>
    client   text NOT NULL DEFAULT '',
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX dashboard_audit_at_idx ON dashboard_audit (at DESC);

CREATE FUNCTION dashboard_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'dashboard_audit is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER dashboard_audit_no_update BEFORE UPDATE OR DELETE ON dashboard_audit
    FOR EACH ROW EXECUTE FUNCTION dashboard_audit_append_only();
CREATE TRIGGER dashboard_audit_no_truncate BEFORE TRUNCATE ON dashboard_audit
    FOR EACH STATEMENT EXECUTE FUNCTION dashboard_audit_append_only();
