-- National cryptography (docs/decisions/0072-national-cryptography.md, docs/security.md):
-- SM3 hash chains over every audited table, and SM4-GCM envelopes for notification secrets.

-- security_audit (0066) joins alert_audit's chain scheme: hash_alg, prev_hash and hash, computed
-- by cityops.kernel.crypto.append_chained, the one writer of every chained table. Nullable, so
-- that a row written without the chain is reported by `cityops audit verify` as unchained
-- instead of being refused.
ALTER TABLE security_audit
    ADD COLUMN hash_alg  text,
    ADD COLUMN prev_hash text,
    ADD COLUMN hash      text;

-- The last link of each chain, written in the same transaction as the entries (under the
-- chain's lock). A chain alone cannot show that its newest entries were deleted; the head can,
-- unless it is rewritten too (which takes the same privileges as disabling the triggers).
CREATE TABLE audit_chain_heads (
    table_name text PRIMARY KEY,
    entry_id   bigint NOT NULL,
    hash       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_chain_heads (table_name, entry_id, hash)
SELECT 'alert_audit', audit_id, hash FROM alert_audit ORDER BY audit_id DESC LIMIT 1;

CREATE FUNCTION audit_chain_heads_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.entry_id < OLD.entry_id THEN
        RAISE EXCEPTION 'audit_chain_heads only moves forward (% refused)', TG_OP;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_chain_heads_forward BEFORE UPDATE OR DELETE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION audit_chain_heads_forward_only();

-- Secrets at rest: these columns hold 'sm4gcm:v1:<key id>:<base64url nonce|ciphertext|tag>'
-- (alerts.stores.notifications encrypts on write, decrypts on read). SQL cannot encrypt with
-- SM4 (pgcrypto has no SM4), so values written before this release stay plain text, still
-- readable, until `cityops keys reencrypt` converts them (docs/security.md, "Keys").
COMMENT ON COLUMN notification_routes.target IS
    'SM4-GCM envelope of the webhook/SMS gateway URL or smtp(s)://user:pass@host:port';
COMMENT ON COLUMN notification_routes.recipient IS
    'SM4-GCM envelope of the e-mail address(es) or phone number';
COMMENT ON COLUMN notification_routes.secret IS
    'SM4-GCM envelope of the HMAC-SHA256 key of webhook and SMS-gateway signatures';
