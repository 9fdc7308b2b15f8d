-- `!ic swap` requests. taker IS NULL while open; a take is one conditional UPDATE,
-- so two people clicking "Take it" at once cannot both get it.
CREATE TABLE oncall_swaps (
    id          INTEGER PRIMARY KEY,
    schedule_id TEXT NOT NULL,
    start       TEXT NOT NULL,
    until       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    requester   TEXT NOT NULL,   -- "platform:user_id"
    req_name    TEXT NOT NULL,
    platform    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    message_id  TEXT,
    expires     TEXT NOT NULL,
    taker       TEXT,
    taker_name  TEXT,
    closed      INTEGER NOT NULL DEFAULT 0  -- the request message shows the final state
);
