-- Readers talk back (issue 24): votes from the inbox and click counts, without tracking people.
-- A vote names no subscriber: `voter` is HMAC(secret, subscriber, comparison), so a reader has
-- one vote per tool of a comparison (a second one replaces the first) and the table cannot be
-- joined to the subscribers, nor one reader's votes on two comparisons to each other. No time
-- is kept either.
CREATE TABLE votes (
    comparison_id  BIGINT  NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    -- Which of the comparison's two tools (0 or 1).
    tool           BIGINT  NOT NULL CHECK (tool IN (0, 1)),
    voter          TEXT    NOT NULL,
    choice         TEXT    NOT NULL CHECK (choice IN ('ship', 'skip')),
    PRIMARY KEY (comparison_id, tool, voter)
);

-- Clicks on an issue's comparison links (`/r/TOKEN`, the same for every recipient): one counter
-- per issue and comparison position, nothing about who clicked or when.
CREATE TABLE link_clicks (
    issue_id  BIGINT  NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    position  BIGINT  NOT NULL,
    clicks    BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (issue_id, position)
);
