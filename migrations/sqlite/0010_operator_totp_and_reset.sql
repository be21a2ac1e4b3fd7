-- Two-factor sign-in (RFC 6238) for operators. The TOTP secret is stored sealed (AES-256-GCM
-- with a key derived from security.secret_key), so a copy of the database alone does not give
-- it. `confirmed_at` is NULL while an enrolment started on the console waits for its first
-- code; only a confirmed secret is asked for at sign-in. `last_step` is the last 30-second
-- step a code was accepted for: a code is never accepted twice.
CREATE TABLE operator_totp (
    operator_id   BIGINT  PRIMARY KEY REFERENCES operators (id) ON DELETE CASCADE,
    secret_sealed TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    confirmed_at  BIGINT,
    last_step     BIGINT  NOT NULL DEFAULT 0
);

-- Single-use recovery codes: HMAC-SHA256 (keyed with security.secret_key) of the code.
CREATE TABLE operator_recovery_codes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    operator_id  BIGINT  NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    code_hash    TEXT    NOT NULL,
    used_at      BIGINT,
    UNIQUE (operator_id, code_hash)
);

-- One-time sign-in links mailed by /admin/reset: SHA-256 (hex) of the link's token, its
-- expiry, and when it was used (a link works once).
CREATE TABLE operator_reset_tokens (
    token_hash   TEXT    PRIMARY KEY,
    operator_id  BIGINT  NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    used_at      BIGINT
);
CREATE INDEX operator_reset_tokens_by_operator ON operator_reset_tokens (operator_id, created_at);
