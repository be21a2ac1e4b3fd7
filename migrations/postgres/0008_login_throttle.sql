-- The console's failed-login throttle (per address and per client address), shared by every
-- process serving the console: with several `serve` processes behind one address, a guesser
-- gets no more tries than with one. A row is a leaky bucket: its level at `at_ms`, draining
-- one failure per period; `drained_ms` is when it is empty, and rows past it are deleted.
CREATE TABLE login_throttle (
    key         TEXT    PRIMARY KEY,
    level       DOUBLE PRECISION  NOT NULL,
    at_ms       BIGINT  NOT NULL,
    drained_ms  BIGINT  NOT NULL
);
CREATE INDEX login_throttle_drained ON login_throttle (drained_ms);
