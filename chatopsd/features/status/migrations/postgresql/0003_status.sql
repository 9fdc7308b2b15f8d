-- PostgreSQL twin of ../sqlite/0003_status.sql.
CREATE TABLE stalkers (
    platform         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    thread           TEXT NOT NULL DEFAULT '',
    interval_seconds DOUBLE PRECISION NOT NULL,
    fingerprint      TEXT NOT NULL,
    verdict          TEXT NOT NULL,
    posted_at        DOUBLE PRECISION NOT NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    created_by       TEXT NOT NULL,
    PRIMARY KEY (platform, channel, thread)
);
