-- Dashboard hardening (access/accounts.py; docs/decisions/0045-dashboard-hardening.md):
-- a race-free login limit per account and address, and sessions that know their role.

-- One row per (user name, client address) and one per client address (username '*', which no
-- account can have). An attempt claims its row under a row lock before the password is checked
-- (failures + 1, a back-off set once the limit is reached), so parallel attempts can never
-- check more passwords than the limit; a successful login gives the claim back.
CREATE TABLE dashboard_login_guard (
    username      text NOT NULL,
    client        text NOT NULL,
    failures      integer NOT NULL DEFAULT 0,  -- in the current streak, attempts in flight included
    last_at       timestamptz NOT NULL,
    blocked_until timestamptz,  -- no attempt checked before this (exponential back-off)
    PRIMARY KEY (username, client)
);
CREATE INDEX dashboard_login_guard_last_idx ON dashboard_login_guard (last_at);

-- the role a session was opened with (a session ends when its user's role changes), where it
-- was opened from and a short id the admin page can name it by (never the token's hash)
ALTER TABLE dashboard_sessions ADD COLUMN id bigserial UNIQUE;
ALTER TABLE dashboard_sessions ADD COLUMN role text;
ALTER TABLE dashboard_sessions ADD COLUMN client text NOT NULL DEFAULT '';
ALTER TABLE dashboard_users ADD COLUMN last_login_at timestamptz;
