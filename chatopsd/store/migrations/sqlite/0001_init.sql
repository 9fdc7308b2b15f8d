-- Events already handled, so redeliveries (Slack retries, Mattermost resync) are dropped.
CREATE TABLE events (
    platform TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at  REAL NOT NULL,
    PRIMARY KEY (platform, event_id)
) WITHOUT ROWID;
CREATE INDEX events_seen_at ON events (seen_at);

-- One row per command: who, where, what, how it ended, how long it took.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    platform    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    thread      TEXT,
    actor       TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    command     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    event_id    TEXT NOT NULL,
    ref         TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);

-- Small durable state: connector cursors, last-seen post times.
CREATE TABLE kv (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    updated REAL NOT NULL
) WITHOUT ROWID;
