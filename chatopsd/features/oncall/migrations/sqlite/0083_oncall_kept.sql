-- What the bot last wrote to each channel topic and Slack user group it keeps true.
-- Compared with what it would write now: equal means no call at all (so a topic a person
-- edited is left alone until who is on call changes).
CREATE TABLE oncall_kept (
    target  TEXT PRIMARY KEY,   -- "topic:slack:C1", "usergroup:S0123ABC"
    written TEXT NOT NULL,
    at      REAL NOT NULL
) WITHOUT ROWID;
