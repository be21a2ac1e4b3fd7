-- Scale-out (issue 16): what several workers sharing one database coordinate through.
--
-- Every delivery worker registers itself and beats its heart while it runs; the heartbeat also
-- renews the leases of the rows it holds, so leases can be short and a dead worker's rows are
-- taken over soon after its heartbeat stops. `issue status` lists the workers of an issue.
CREATE TABLE workers (
    name          TEXT    PRIMARY KEY,
    host          TEXT    NOT NULL,
    pid           BIGINT  NOT NULL,
    started_at    BIGINT  NOT NULL,
    heartbeat_at  BIGINT  NOT NULL,
    issue_id      BIGINT,
    concurrency   BIGINT  NOT NULL,
    sent          BIGINT  NOT NULL DEFAULT 0,
    rate          REAL   NOT NULL DEFAULT 0
);
CREATE INDEX workers_by_issue ON workers (issue_id, heartbeat_at);

-- The installation-wide send rate (delivery.rate_per_second): the time, in microseconds, of the
-- next free sending slot. Workers reserve slots in small blocks in one locked update, so the
-- sum of every worker's messages stays within the rate.
CREATE TABLE send_pacer (
    name     TEXT    PRIMARY KEY,
    next_at  BIGINT  NOT NULL
);

-- The sliding window (delivery.window_limit per delivery.window): messages reserved for sending,
-- counted per time bucket (its start in milliseconds).
CREATE TABLE send_window (
    bucket  BIGINT  PRIMARY KEY,
    sent    BIGINT  NOT NULL
);

-- A send paused because the window was full resumes by itself at this time (milliseconds);
-- NULL for every other pause.
ALTER TABLE issues ADD COLUMN resume_at BIGINT;

-- The pacer's one row, so a reservation only locks it.
INSERT INTO send_pacer (name, next_at) VALUES ('delivery', 0);
