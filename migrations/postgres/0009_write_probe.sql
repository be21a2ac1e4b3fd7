-- A single row that /readyz and `issue status` rewrite to see whether the database takes
-- writes (a full disk, a read-only file, a database in recovery).
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY,
    at BIGINT NOT NULL
);
