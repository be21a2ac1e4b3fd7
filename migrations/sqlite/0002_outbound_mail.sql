-- Transactional mail (confirmation, welcome) queued by web requests in the same transaction as the
-- change, and composed and sent in the background, never inside the request. A confirmation row
-- carries the raw token until it is sent; it is cleared then (the link is a secret).
CREATE TABLE outbound_mail (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL CHECK (kind IN ('confirm', 'welcome')),
    subscriber_id    BIGINT  REFERENCES subscribers (id) ON DELETE CASCADE,
    to_email         TEXT    NOT NULL,
    token            TEXT,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT  NOT NULL,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT  NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX outbound_mail_due ON outbound_mail (status, next_attempt_at);
