-- Readers in control, categories: the tool categories a reader chose on their manage page (no
-- row: everything). A send snapshots each reader's choice into the ledger as the set of the
-- issue's comparisons they get (`deliveries.variant`: positions such as '0,2'; NULL: the whole
-- issue), and renders each distinct set once (`issue_variants`), whichever worker needs it.
CREATE TABLE subscriber_categories (
    subscriber_id  BIGINT  NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    category       TEXT    NOT NULL,
    PRIMARY KEY (subscriber_id, category)
);

ALTER TABLE deliveries ADD COLUMN variant TEXT;

-- One rendering of an issue for a set of its comparisons: subject, HTML and text with the
-- same slot markers as the issue's own. `renders` counts how often it was rendered (more than
-- once only when two workers raced for it after a crash; the first one stored is the one sent).
CREATE TABLE issue_variants (
    issue_id    BIGINT  NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    variant     TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    html        TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    renders     BIGINT  NOT NULL DEFAULT 1,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (issue_id, variant)
);
