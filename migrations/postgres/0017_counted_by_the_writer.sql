-- Inserts into subscribers and consents are counted by the statement that inserts them, once per
-- batch (an import's batch of 10,000 rows bumps each counter once, in the same statement),
-- instead of by statement triggers that collect every inserted row again (docs/benchmarks.md).
-- Status changes (confirm, unsubscribe, bounce) and deletions stay with the triggers of 0014.
DROP TRIGGER subscriber_counts_insert ON subscribers;
DROP TRIGGER consent_counts_insert ON consents;

-- The deliveries' status changes are counted by the statement that settles, fails or retries
-- them (a data-modifying CTE: the rows and their count commit together). The statement trigger
-- ran for every UPDATE of the ledger, claims and lease renewals included, and built transition
-- tables of every row they touched. The snapshot's insert and an issue's deletion keep theirs.
DROP TRIGGER delivery_counts_update ON deliveries;

-- Search by domain: `@example.org` (or `example`) is a range of this index, not a scan.
CREATE INDEX subscribers_by_domain ON subscribers ((substr(email, strpos(email, '@') + 1)) COLLATE "C", id);
