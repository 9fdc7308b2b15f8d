-- PostgreSQL twin of ../sqlite/0002_oncall.sql.
CREATE TABLE oncall_people (
    id     TEXT PRIMARY KEY,
    name   TEXT NOT NULL,
    email  TEXT NOT NULL,
    phones TEXT NOT NULL
);

CREATE TABLE oncall_entries (
    grp           TEXT NOT NULL,
    position      INTEGER NOT NULL,
    schedule_id   TEXT NOT NULL,
    schedule_name TEXT NOT NULL,
    role          TEXT NOT NULL,
    person_id     TEXT NOT NULL,
    until         TEXT,
    PRIMARY KEY (grp, position)
);

CREATE TABLE oncall_refresh (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_ok       TEXT,
    failing_since TEXT,
    error         TEXT
);
