-- Inserts into subscribers and consents are counted by the statement that inserts them, once per
-- batch (an import of 10,000 rows bumps each counter once), instead of by a trigger per row:
-- the two row triggers cost a fifth of a 1,000,000-row import's CPU (docs/benchmarks.md).
-- Status changes (confirm, unsubscribe, bounce) and deletions stay with the triggers of 0014;
-- so do the deliveries' on SQLite, where a status change costs the row trigger ~1.6 µs and a
-- count per batch would cost the single writer two more round trips a batch.
DROP TRIGGER subscriber_counts_insert;
DROP TRIGGER consent_counts_insert;

-- Search by domain: `@example.org` (or `example`) is a range of this index, not a scan.
CREATE INDEX subscribers_by_domain ON subscribers (substr(email, instr(email, '@') + 1), id);
