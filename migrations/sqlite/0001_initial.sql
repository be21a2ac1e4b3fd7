-- The initial schema: comparisons, subscribers (with consent and suppression records), issues
-- with their items, the per-recipient delivery ledger, schedule fires and the operator log.

CREATE TABLE comparisons (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    slug          TEXT    NOT NULL UNIQUE,
    title         TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    published_at  BIGINT  NOT NULL,
    -- The checked canonical JSON of the comparison.
    document      TEXT    NOT NULL,
    source        TEXT    NOT NULL CHECK (source IN ('json', 'page', 'api')),
    -- 1 on insert, +1 on every re-import of the slug.
    revision      BIGINT  NOT NULL DEFAULT 1,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
CREATE INDEX comparisons_by_published_at ON comparisons (published_at, id);

CREATE TABLE subscribers (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    email                     TEXT    NOT NULL UNIQUE,
    name                      TEXT,
    status                    TEXT    NOT NULL
        CHECK (status IN ('pending', 'confirmed', 'unsubscribed', 'bounced')),
    source                    TEXT    NOT NULL,
    created_at                BIGINT  NOT NULL,
    updated_at                BIGINT  NOT NULL,
    confirmed_at              BIGINT,
    unsubscribed_at           BIGINT,
    bounced_at                BIGINT,
    last_confirmation_sent_at BIGINT
);
CREATE INDEX subscribers_by_status ON subscribers (status, id);

-- Evidence of consent: every signup, confirmation, unsubscribe and import, with where it came from.
CREATE TABLE consents (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id         BIGINT  NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    event                 TEXT    NOT NULL,
    at                    BIGINT  NOT NULL,
    ip                    TEXT,
    user_agent            TEXT,
    source                TEXT    NOT NULL,
    consent_text_version  TEXT
);
CREATE INDEX consents_by_subscriber ON consents (subscriber_id, at);

-- Double opt-in tokens, stored as SHA-256 hashes; single use.
CREATE TABLE confirmation_tokens (
    token_hash     TEXT    PRIMARY KEY,
    subscriber_id  BIGINT  NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT
);
CREATE INDEX confirmation_tokens_by_subscriber ON confirmation_tokens (subscriber_id);

-- Addresses erased on request: only a keyed hash is kept so they are never mailed again.
CREATE TABLE suppressions (
    email_hash  TEXT    PRIMARY KEY,
    reason      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE issues (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- ISO week in schedule.timezone, e.g. 2026-W47: one issue per week.
    week           TEXT    NOT NULL UNIQUE,
    -- Public issue number (#12); NULL for a week with nothing new.
    number         BIGINT  UNIQUE,
    status         TEXT    NOT NULL
        CHECK (status IN ('empty', 'ready', 'scheduled', 'sending', 'paused', 'sent', 'cancelled')),
    status_reason  TEXT,
    cutoff_at      BIGINT  NOT NULL,
    subject        TEXT,
    html           TEXT,
    text           TEXT,
    created_at     BIGINT  NOT NULL,
    scheduled_for  BIGINT,
    started_at     BIGINT,
    finished_at    BIGINT
);

-- Which comparisons an issue carries; a comparison goes out in at most one issue.
CREATE TABLE issue_items (
    issue_id       BIGINT  NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    comparison_id  BIGINT  NOT NULL UNIQUE REFERENCES comparisons (id),
    position       BIGINT  NOT NULL,
    PRIMARY KEY (issue_id, comparison_id)
);

-- The ledger: one row per issue × subscriber, snapshotted when the send starts.
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id         BIGINT  NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    -- NULL once the subscriber's personal data was erased; the row still counts.
    subscriber_id    BIGINT  REFERENCES subscribers (id) ON DELETE SET NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts         BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT  NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    sent_at          BIGINT,
    updated_at       BIGINT  NOT NULL,
    UNIQUE (issue_id, subscriber_id)
);
-- Claims walk pending rows of an issue in id order (ORDER BY id LIMIT n) without sorting.
CREATE INDEX deliveries_to_claim ON deliveries (issue_id, status, id);

-- Each scheduler fire, claimed once by whichever process gets there first.
CREATE TABLE schedule_fires (
    fire_at     BIGINT  PRIMARY KEY,
    week        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- Who did what, from the CLI or the admin API.
CREATE TABLE operator_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        BIGINT  NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    issue_id  BIGINT,
    detail    TEXT
);
