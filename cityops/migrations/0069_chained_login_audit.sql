-- The dashboard's audit (logins, refusals, the admin page's changes: migration 0040) joins the
-- SM3 chains of alert_audit and security_audit (0067): hash_alg, prev_hash and hash, written
-- by cityops.kernel.crypto.append_chained (access.accounts.DASHBOARD_AUDIT_CHAIN), checked by
-- `cityops audit verify`. Rows from before this release stay unchained: verify names the first
-- chained entry's predecessor as the chain's start (their count is reported).
ALTER TABLE dashboard_audit
    ADD COLUMN hash_alg  text,
    ADD COLUMN prev_hash text,
    ADD COLUMN hash      text;
