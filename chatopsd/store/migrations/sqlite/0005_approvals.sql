-- Approval and confirmation requests: pending ones survive a restart (the sweep job and the
-- approve/reject paths read them from here; nothing is kept only in memory).
CREATE TABLE approvals (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,      -- approval | confirm
    command        TEXT NOT NULL,      -- grammar text run when granted
    summary        TEXT NOT NULL,
    platform       TEXT NOT NULL,
    channel        TEXT NOT NULL,
    thread         TEXT,
    requester      TEXT NOT NULL,
    requester_name TEXT NOT NULL,
    requester_email TEXT,
    role           TEXT,
    needed         INTEGER NOT NULL,
    state          TEXT NOT NULL,      -- pending | approved | rejected | expired
    created_at     REAL NOT NULL,
    expires_at     REAL NOT NULL,
    message_id     TEXT,
    decided_at     REAL,
    decided_by     TEXT,
    dispatched     INTEGER NOT NULL DEFAULT 0,
    result         TEXT
) WITHOUT ROWID;
CREATE INDEX approvals_state ON approvals (state, expires_at);
CREATE INDEX approvals_message ON approvals (platform, message_id);

CREATE TABLE approval_votes (
    approval_id TEXT NOT NULL REFERENCES approvals (id),
    platform    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    vote        TEXT NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (approval_id, platform, actor)
) WITHOUT ROWID;

-- Tamper evidence: each audit row carries the hash of the row before it (store/audit.py).
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;

-- Append-only: the code has no update/delete path, and the database refuses one too.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
