-- Counts the console, the API and /metrics read instead of counting whole tables on every
-- request (1,000,000 subscribers: 200–600 ms a page, see docs/benchmarks.md). Triggers keep
-- them as rows change, in the transaction that changes the rows, so they are exact whenever
-- that transaction commits.

-- Subscribers by status (the four rows always exist).
CREATE TABLE subscriber_counts (
    status  TEXT    PRIMARY KEY,
    n       BIGINT  NOT NULL
);
INSERT INTO subscriber_counts (status, n)
SELECT s.status, (SELECT COUNT(*) FROM subscribers WHERE subscribers.status = s.status)
  FROM (SELECT 'pending' AS status UNION ALL SELECT 'confirmed' UNION ALL
        SELECT 'unsubscribed' UNION ALL SELECT 'bounced') s;
CREATE TRIGGER subscriber_counts_insert AFTER INSERT ON subscribers BEGIN
    UPDATE subscriber_counts SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER subscriber_counts_delete AFTER DELETE ON subscribers BEGIN
    UPDATE subscriber_counts SET n = n - 1 WHERE status = OLD.status;
END;
CREATE TRIGGER subscriber_counts_update AFTER UPDATE OF status ON subscribers
    WHEN OLD.status <> NEW.status BEGIN
    UPDATE subscriber_counts SET n = n - 1 WHERE status = OLD.status;
    UPDATE subscriber_counts SET n = n + 1 WHERE status = NEW.status;
END;

-- Deliveries by issue and status.
CREATE TABLE delivery_counts (
    issue_id  BIGINT  NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    status    TEXT    NOT NULL,
    n         BIGINT  NOT NULL,
    PRIMARY KEY (issue_id, status)
);
INSERT INTO delivery_counts (issue_id, status, n)
SELECT issue_id, status, COUNT(*) FROM deliveries GROUP BY issue_id, status;
CREATE TRIGGER delivery_counts_insert AFTER INSERT ON deliveries BEGIN
    INSERT INTO delivery_counts (issue_id, status, n) VALUES (NEW.issue_id, NEW.status, 1)
        ON CONFLICT (issue_id, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER delivery_counts_delete AFTER DELETE ON deliveries BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE issue_id = OLD.issue_id AND status = OLD.status;
END;
CREATE TRIGGER delivery_counts_update AFTER UPDATE OF status ON deliveries
    WHEN OLD.status <> NEW.status BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE issue_id = OLD.issue_id AND status = OLD.status;
    INSERT INTO delivery_counts (issue_id, status, n) VALUES (NEW.issue_id, NEW.status, 1)
        ON CONFLICT (issue_id, status) DO UPDATE SET n = n + 1;
END;

-- Consent events by kind (signup, confirm, unsubscribe, import, …).
CREATE TABLE consent_counts (
    event  TEXT    PRIMARY KEY,
    n      BIGINT  NOT NULL
);
INSERT INTO consent_counts (event, n) SELECT event, COUNT(*) FROM consents GROUP BY event;
CREATE TRIGGER consent_counts_insert AFTER INSERT ON consents BEGIN
    INSERT INTO consent_counts (event, n) VALUES (NEW.event, 1)
        ON CONFLICT (event) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER consent_counts_delete AFTER DELETE ON consents BEGIN
    UPDATE consent_counts SET n = n - 1 WHERE event = OLD.event;
END;

-- Messages sent in the last minute (the rate and the ETA): only sent rows carry sent_at.
CREATE INDEX deliveries_sent_recently ON deliveries (sent_at, issue_id) WHERE sent_at IS NOT NULL;
-- The bounces page's failed deliveries, newest first, without reading the pending ones.
CREATE INDEX deliveries_failed ON deliveries (updated_at, id) WHERE status = 'failed';
-- One reader's deliveries (the console's reader page; erasing a reader sets theirs to NULL).
CREATE INDEX deliveries_by_subscriber ON deliveries (subscriber_id);
