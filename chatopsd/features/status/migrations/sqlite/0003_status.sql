-- Channels (and threads) stalking the system status. `fingerprint` is the state last posted
-- there (verdict + firing alerts + unreadable sources), so a restart does not post it again.
CREATE TABLE stalkers (
    platform         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    thread           TEXT NOT NULL DEFAULT '',
    interval_seconds REAL NOT NULL,
    fingerprint      TEXT NOT NULL,
    verdict          TEXT NOT NULL,
    posted_at        REAL NOT NULL,
    created_at       REAL NOT NULL,
    created_by       TEXT NOT NULL,
    PRIMARY KEY (platform, channel, thread)
) WITHOUT ROWID;
