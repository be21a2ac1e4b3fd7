-- Readers in control, second part.
--
-- Transactional mail kinds of their own: the pending readers' reminder ('reminder', which used
-- the confirmation's), the confirmation of a new address ('email_change') and the "still want
-- this?" mail ('repermission'). SQLite cannot alter a CHECK constraint: the table is rebuilt
-- with the same columns, rows and index.
CREATE TABLE outbound_mail_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL
        CHECK (kind IN ('confirm', 'welcome', 'reminder', 'email_change', 'repermission')),
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
INSERT INTO outbound_mail_new (id, kind, subscriber_id, to_email, token, status, attempts,
                               next_attempt_at, lease_until, last_error, created_at, sent_at)
SELECT id, kind, subscriber_id, to_email, token, status, attempts, next_attempt_at, lease_until,
       last_error, created_at, sent_at FROM outbound_mail;
DROP TABLE outbound_mail;
ALTER TABLE outbound_mail_new RENAME TO outbound_mail;
CREATE INDEX outbound_mail_due ON outbound_mail (status, next_attempt_at);

-- A change of address asked on the manage page: the address changes only when the link mailed
-- to the new address is confirmed. Tokens are stored as SHA-256 hashes; single use.
CREATE TABLE email_changes (
    token_hash     TEXT    PRIMARY KEY,
    subscriber_id  BIGINT  NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    new_email      TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT
);
CREATE INDEX email_changes_by_subscriber ON email_changes (subscriber_id);

-- `subscribers repermission`: when a confirmed reader was asked "still want this?", and the
-- deadline by which they keep their subscription (NULL: not asked, or kept). At the deadline
-- the worker unsubscribes those still asked, with consent event `lapsed`.
ALTER TABLE subscribers ADD COLUMN repermission_asked_at BIGINT;
ALTER TABLE subscribers ADD COLUMN repermission_deadline BIGINT;
CREATE INDEX subscribers_repermission_due ON subscribers (repermission_deadline)
    WHERE repermission_deadline IS NOT NULL;
