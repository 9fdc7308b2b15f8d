-- Shift reminders by direct message. One row per (shift, threshold) handled, written
-- in the same transaction as the DMs it owes (oncall_posts rows with dm = 1, whose channel is
-- the user id: the DM channel is opened when the post is sent).
CREATE TABLE oncall_reminded (
    key TEXT PRIMARY KEY,
    at  REAL NOT NULL
) WITHOUT ROWID;

ALTER TABLE oncall_posts ADD COLUMN dm INTEGER NOT NULL DEFAULT 0;
