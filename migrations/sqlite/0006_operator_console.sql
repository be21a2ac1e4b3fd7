-- Operator accounts of the console and their sessions. A session is kept server-side (only a
-- hash of its cookie token is stored), so logging out, changing a password or removing an
-- operator ends it at once. `csrf_token` is the session's token for every state-changing form.
CREATE TABLE operators (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    email                TEXT    NOT NULL UNIQUE,
    role                 TEXT    NOT NULL CHECK (role IN ('owner', 'editor')),
    -- Argon2id, as a PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash).
    password_hash        TEXT    NOT NULL,
    created_at           BIGINT  NOT NULL,
    password_changed_at  BIGINT  NOT NULL
);

CREATE TABLE operator_sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- SHA-256 (hex) of the random token in the cookie.
    token_hash   TEXT    NOT NULL UNIQUE,
    operator_id  BIGINT  NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    csrf_token   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator_id);
CREATE INDEX operator_log_by_at ON operator_log (at, id);
