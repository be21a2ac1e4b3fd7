-- Counts the console, the API and /metrics read instead of counting whole tables on every
-- request (1,000,000 subscribers: 200–600 ms a page, see docs/benchmarks.md). Statement-level
-- triggers keep them as rows change, one counter update per statement and (issue, status)
-- rather than per row, in the transaction that changes the rows, so they are exact whenever
-- that transaction commits.

-- Subscribers by status (the four rows always exist).
CREATE TABLE subscriber_counts (
    status  TEXT    PRIMARY KEY,
    n       BIGINT  NOT NULL
);
INSERT INTO subscriber_counts (status, n)
SELECT s.status, (SELECT COUNT(*) FROM subscribers WHERE subscribers.status = s.status)
  FROM (VALUES ('pending'), ('confirmed'), ('unsubscribed'), ('bounced')) AS s (status);

CREATE FUNCTION subscriber_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE subscriber_counts c SET n = c.n + d.n
          FROM (SELECT status, COUNT(*) AS n FROM new_rows GROUP BY status) d
         WHERE c.status = d.status;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE subscriber_counts c SET n = c.n - d.n
          FROM (SELECT status, COUNT(*) AS n FROM old_rows GROUP BY status) d
         WHERE c.status = d.status;
    ELSE
        UPDATE subscriber_counts c SET n = c.n + d.n
          FROM (SELECT status, SUM(k) AS n
                  FROM (SELECT status, 1 AS k FROM new_rows
                        UNION ALL SELECT status, -1 FROM old_rows) t
                 GROUP BY status HAVING SUM(k) <> 0) d
         WHERE c.status = d.status;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER subscriber_counts_insert AFTER INSERT ON subscribers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION subscriber_counts_apply();
CREATE TRIGGER subscriber_counts_delete AFTER DELETE ON subscribers
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION subscriber_counts_apply();
CREATE TRIGGER subscriber_counts_update AFTER UPDATE ON subscribers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subscriber_counts_apply();

-- Deliveries by issue and status.
CREATE TABLE delivery_counts (
    issue_id  BIGINT  NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    status    TEXT    NOT NULL,
    n         BIGINT  NOT NULL,
    PRIMARY KEY (issue_id, status)
);
INSERT INTO delivery_counts (issue_id, status, n)
SELECT issue_id, status, COUNT(*) FROM deliveries GROUP BY issue_id, status;

CREATE FUNCTION delivery_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO delivery_counts AS c (issue_id, status, n)
        SELECT issue_id, status, COUNT(*) FROM new_rows GROUP BY issue_id, status
            ON CONFLICT (issue_id, status) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE delivery_counts c SET n = c.n - d.n
          FROM (SELECT issue_id, status, COUNT(*) AS n FROM old_rows GROUP BY issue_id, status) d
         WHERE c.issue_id = d.issue_id AND c.status = d.status;
    ELSE
        -- Only rows whose status changed move a count (claims and lease renewals do not).
        INSERT INTO delivery_counts AS c (issue_id, status, n)
        SELECT issue_id, status, SUM(k)
          FROM (SELECT n.issue_id, n.status, 1 AS k
                  FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE o.status <> n.status
                UNION ALL
                SELECT o.issue_id, o.status, -1
                  FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE o.status <> n.status) t
         GROUP BY issue_id, status HAVING SUM(k) <> 0
        -- Sorted, so concurrent statements lock the counters in one order (no deadlock).
         ORDER BY issue_id, status
            ON CONFLICT (issue_id, status) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER delivery_counts_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION delivery_counts_apply();
CREATE TRIGGER delivery_counts_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION delivery_counts_apply();
CREATE TRIGGER delivery_counts_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION delivery_counts_apply();

-- Consent events by kind (signup, confirm, unsubscribe, import, …).
CREATE TABLE consent_counts (
    event  TEXT    PRIMARY KEY,
    n      BIGINT  NOT NULL
);
INSERT INTO consent_counts (event, n) SELECT event, COUNT(*) FROM consents GROUP BY event;

CREATE FUNCTION consent_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO consent_counts AS c (event, n)
        SELECT event, COUNT(*) FROM new_rows GROUP BY event ORDER BY event
            ON CONFLICT (event) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        UPDATE consent_counts c SET n = c.n - d.n
          FROM (SELECT event, COUNT(*) AS n FROM old_rows GROUP BY event) d
         WHERE c.event = d.event;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER consent_counts_insert AFTER INSERT ON consents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION consent_counts_apply();
CREATE TRIGGER consent_counts_delete AFTER DELETE ON consents
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION consent_counts_apply();

-- Messages sent in the last minute (the rate and the ETA): only sent rows carry sent_at.
CREATE INDEX deliveries_sent_recently ON deliveries (sent_at, issue_id) WHERE sent_at IS NOT NULL;
-- The bounces page's failed deliveries, newest first, without reading the pending ones.
CREATE INDEX deliveries_failed ON deliveries (updated_at, id) WHERE status = 'failed';
-- Subscriber search by the start of the address, whatever the database's collation.
CREATE INDEX subscribers_by_email_bytes ON subscribers (email COLLATE "C");
-- One reader's deliveries (the console's reader page; erasing a reader sets theirs to NULL).
CREATE INDEX deliveries_by_subscriber ON deliveries (subscriber_id);
