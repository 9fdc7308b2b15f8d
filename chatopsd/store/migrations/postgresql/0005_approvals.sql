-- PostgreSQL twin of ../sqlite/0005_approvals.sql.
CREATE TABLE approvals (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    command        TEXT NOT NULL,
    summary        TEXT NOT NULL,
    platform       TEXT NOT NULL,
    channel        TEXT NOT NULL,
    thread         TEXT,
    requester      TEXT NOT NULL,
    requester_name TEXT NOT NULL,
    requester_email TEXT,
    role           TEXT,
    needed         INTEGER NOT NULL,
    state          TEXT NOT NULL,
    created_at     DOUBLE PRECISION NOT NULL,
    expires_at     DOUBLE PRECISION NOT NULL,
    message_id     TEXT,
    decided_at     DOUBLE PRECISION,
    decided_by     TEXT,
    dispatched     INTEGER NOT NULL DEFAULT 0,
    result         TEXT
);
CREATE INDEX approvals_state ON approvals (state, expires_at);
CREATE INDEX approvals_message ON approvals (platform, message_id);

CREATE TABLE approval_votes (
    approval_id TEXT NOT NULL REFERENCES approvals (id),
    platform    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    vote        TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (approval_id, platform, actor)
);

ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;

-- Append-only, as on SQLite: the database refuses UPDATE and DELETE on audit rows.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit rows are append-only';
END;
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
