-- High availability. The lease row: the fencing token of the current leader (a
-- singleton write checks it in its own transaction) and who holds it. On SQLite the one
-- process is always the leader; the table exists so both schemas match (migrate-state).
CREATE TABLE lease (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    token      INTEGER NOT NULL,
    holder     TEXT,
    renewed_at REAL NOT NULL
);
INSERT INTO lease (id, token, holder, renewed_at) VALUES (1, 0, NULL, 0);

-- Instances sharing the database, with their last heartbeat (`ctl health`).
CREATE TABLE instances (
    id         TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    seen_at    REAL NOT NULL
) WITHOUT ROWID;
