-- Readers in control, second part.
--
-- Transactional mail kinds of their own: the pending readers' reminder ('reminder', which used
-- the confirmation's), the confirmation of a new address ('email_change') and the "still want
-- this?" mail ('repermission').
ALTER TABLE outbound_mail DROP CONSTRAINT outbound_mail_kind_check;
ALTER TABLE outbound_mail ADD CONSTRAINT outbound_mail_kind_check
    CHECK (kind IN ('confirm', 'welcome', 'reminder', 'email_change', 'repermission'));

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
