-- Chat identity -> PagerDuty email links, and PagerDuty incidents mirrored in chat.

-- `!pd link <email>` (Discord has no email to read); config links are not stored here.
CREATE TABLE pd_links (
    platform TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    email    TEXT NOT NULL,
    at       REAL NOT NULL,
    PRIMARY KEY (platform, user_id)
) WITHOUT ROWID;

-- The last state of each followed incident we decided to show (PdIncident.digest()).
CREATE TABLE pd_incidents (
    incident_id TEXT PRIMARY KEY,
    number      INTEGER NOT NULL,
    status      TEXT NOT NULL,
    state       TEXT NOT NULL,
    updated     REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX pd_incidents_number ON pd_incidents (number);

-- One card per incident and destination. `wanted` is the state to show; `shown` what the
-- message shows now. A row with message_id NULL is a post still owed (decided, not yet sent,
-- e.g. a restart came between poll and post); wanted <> shown an edit still owed.
CREATE TABLE pd_cards (
    incident_id TEXT NOT NULL,
    platform    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    message_id  TEXT,
    wanted      TEXT NOT NULL,
    shown       TEXT,
    PRIMARY KEY (incident_id, platform, channel)
) WITHOUT ROWID;
