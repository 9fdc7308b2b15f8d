-- Incidents declared in chat. Times are UTC epoch seconds.
CREATE TABLE incidents (
    id              TEXT PRIMARY KEY,          -- INC-2026-0042
    year            INTEGER NOT NULL,
    seq             INTEGER NOT NULL,          -- per-year sequence
    title           TEXT NOT NULL,
    severity        INTEGER NOT NULL CHECK (severity BETWEEN 1 AND 4),
    state           TEXT NOT NULL CHECK (state IN ('declared', 'acknowledged', 'resolved', 'closed')),
    service         TEXT,
    description     TEXT,
    declared_at     REAL NOT NULL,
    declared_by     TEXT NOT NULL,
    platform        TEXT NOT NULL,             -- where it was declared
    channel         TEXT NOT NULL,
    acknowledged_at REAL,
    resolved_at     REAL,
    closed_at       REAL,
    resolution      TEXT,
    last_update_at  REAL,
    last_pulse_at   REAL,                      -- last status reminder, so restarts do not re-fire
    roles           TEXT NOT NULL DEFAULT '{}', -- JSON {"commander": "...", ...}
    pagerduty       TEXT,                      -- the PagerDuty incident paged from its channel
    UNIQUE (year, seq)
);
CREATE INDEX incidents_state ON incidents (state);

-- Every command and state change, in order.
CREATE TABLE incident_timeline (
    id          INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    at          REAL NOT NULL,
    actor       TEXT NOT NULL,
    platform    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, id);

-- Where an incident lives: its own channel, or a thread under its announcement (thread <> '').
CREATE TABLE incident_channels (
    platform    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    thread      TEXT NOT NULL DEFAULT '',
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    PRIMARY KEY (platform, channel, thread)
) WITHOUT ROWID;
CREATE INDEX incident_channels_incident ON incident_channels (incident_id);

-- Messages we posted and edit later: the pinned status, the announcements (for reactions).
CREATE TABLE incident_messages (
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    purpose     TEXT NOT NULL CHECK (purpose IN ('status', 'announce')),
    platform    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    thread      TEXT NOT NULL DEFAULT '',
    message_id  TEXT NOT NULL,
    PRIMARY KEY (incident_id, purpose, platform, channel)
) WITHOUT ROWID;
CREATE INDEX incident_messages_message ON incident_messages (platform, message_id);
