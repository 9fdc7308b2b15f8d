-- On-call awareness pushed out (handoff announcements, and the posts they owe).

-- One row per watched (schedule, role): who we last announced as on call there, and a change
-- seen once but not yet confirmed by a second refresh (so a one-refresh blip, or PagerDuty's
-- jitter around a handoff, is never announced). `announced`/`pending` are JSON.
CREATE TABLE oncall_announced (
    watch     TEXT PRIMARY KEY,
    announced TEXT NOT NULL,
    pending   TEXT,
    seq       INTEGER NOT NULL DEFAULT 0,  -- announcements made, part of each post's key
    updated   REAL NOT NULL
) WITHOUT ROWID;

-- Outbound posts decided in the same transaction as the state that caused them. `key` is the
-- idempotency key (one row per decision and destination); sent IS NULL means still owed.
CREATE TABLE oncall_posts (
    key        TEXT PRIMARY KEY,
    platform   TEXT NOT NULL,
    channel    TEXT NOT NULL,
    text       TEXT NOT NULL,
    decided    REAL NOT NULL,
    sent       REAL,
    message_id TEXT
) WITHOUT ROWID;
CREATE INDEX oncall_posts_owed ON oncall_posts (sent, decided);
