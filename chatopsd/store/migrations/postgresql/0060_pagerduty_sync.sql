-- PostgreSQL twin of ../sqlite/0060_pagerduty_sync.sql.
CREATE TABLE pd_links (
    platform TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    email    TEXT NOT NULL,
    at       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (platform, user_id)
);

CREATE TABLE pd_incidents (
    incident_id TEXT PRIMARY KEY,
    number      INTEGER NOT NULL,
    status      TEXT NOT NULL,
    state       TEXT NOT NULL,
    updated     DOUBLE PRECISION NOT NULL
);
CREATE INDEX pd_incidents_number ON pd_incidents (number);

CREATE TABLE pd_cards (
    incident_id TEXT NOT NULL,
    platform    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    message_id  TEXT,
    wanted      TEXT NOT NULL,
    shown       TEXT,
    PRIMARY KEY (incident_id, platform, channel)
);
