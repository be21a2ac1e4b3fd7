-- Every signup request, by mailbox: an HMAC of the address with plus-tags and case removed
-- (no personal data), kept for an hour. `mailed` = 1 when the request queued a confirmation
-- mail. The per-mailbox limit on confirmation mails counts these rows, so `victim+1@`,
-- `Victim+2@`, … share one budget across every process and restart.
CREATE TABLE signup_attempts (
    id           INTEGER PRIMARY KEY,
    mailbox_key  TEXT    NOT NULL,
    at           BIGINT  NOT NULL,
    mailed       BIGINT  NOT NULL
);
CREATE INDEX signup_attempts_by_mailbox ON signup_attempts (mailbox_key, at);
CREATE INDEX signup_attempts_by_time ON signup_attempts (at);
