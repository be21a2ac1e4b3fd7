-- Bounces and complaints from every intake (file import, IMAP, provider webhooks): one row per
-- report, kept with its raw reason. The same report twice has the same dedup_key and is stored
-- once. subscriber_id and issue_id are NULL when the report could not be attributed (or the
-- subscriber was erased since).
CREATE TABLE bounce_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key      TEXT    NOT NULL UNIQUE,
    kind           TEXT    NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint', 'ignored')),
    source         TEXT    NOT NULL,
    subscriber_id  BIGINT  REFERENCES subscribers (id) ON DELETE SET NULL,
    issue_id       BIGINT  REFERENCES issues (id) ON DELETE SET NULL,
    matched_by     TEXT,
    status_code    TEXT,
    reason         TEXT    NOT NULL,
    received_at    BIGINT  NOT NULL
);
-- Soft bounces of one subscriber within the window; bounces and complaints of one issue.
CREATE INDEX bounce_events_by_subscriber ON bounce_events (subscriber_id, kind, received_at);
CREATE INDEX bounce_events_by_issue ON bounce_events (issue_id, kind);

-- Single-use values of signed webhook calls (Mailgun's token): a replayed call is refused.
CREATE TABLE webhook_nonces (
    provider  TEXT    NOT NULL,
    nonce     TEXT    NOT NULL,
    seen_at   BIGINT  NOT NULL,
    PRIMARY KEY (provider, nonce)
);
