-- PostgreSQL twin of ../sqlite/0081_oncall_shifts.sql.
-- The on-call lookahead (GET /oncalls with since/until), rewritten after each
-- PagerDuty refresh; read by `!ic next`, `!ic schedule` and the shift reminders.
CREATE TABLE oncall_shifts (
    position      INTEGER PRIMARY KEY,
    schedule_id   TEXT NOT NULL,
    schedule_name TEXT NOT NULL,
    role          TEXT NOT NULL,
    person_id     TEXT NOT NULL,
    person_name   TEXT NOT NULL,
    start         TEXT NOT NULL,
    until         TEXT NOT NULL
);

-- One row: the lookahead's window and freshness (kept apart from oncall_refresh on purpose:
-- a lookahead failure must not mark the current on-call data as failing).
CREATE TABLE oncall_shifts_meta (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_ok       TEXT,
    horizon       TEXT,
    failing_since TEXT,
    error         TEXT
);
