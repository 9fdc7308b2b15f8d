-- The PagerDuty on-call cache, rewritten by the refresh job; read by every `!ic` command.
CREATE TABLE oncall_people (
    id     TEXT PRIMARY KEY,
    name   TEXT NOT NULL,
    email  TEXT NOT NULL,
    phones TEXT NOT NULL   -- JSON list of "+CC number" strings (blacklisted/disabled skipped)
) WITHOUT ROWID;

CREATE TABLE oncall_entries (
    grp           TEXT NOT NULL,   -- "ic" | "responders"
    position      INTEGER NOT NULL,
    schedule_id   TEXT NOT NULL,
    schedule_name TEXT NOT NULL,
    role          TEXT NOT NULL,
    person_id     TEXT NOT NULL,
    until         TEXT,
    PRIMARY KEY (grp, position)
) WITHOUT ROWID;

-- One row: when the last good refresh was, and since when refreshes have been failing.
CREATE TABLE oncall_refresh (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_ok       TEXT,
    failing_since TEXT,
    error         TEXT
);
