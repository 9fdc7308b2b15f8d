-- Status page publication of incidents. Times are UTC epoch seconds.

-- One row per published incident: what the page shows (confirmed) and what was last asked for.
CREATE TABLE public_incidents (
    incident_id      TEXT PRIMARY KEY REFERENCES incidents (id),
    page_incident_id TEXT,                     -- Statuspage's id, once the create succeeded
    shortlink        TEXT,
    status           TEXT,                     -- confirmed on the page (investigating, ...)
    wanted           TEXT NOT NULL,            -- last status queued
    components       TEXT NOT NULL DEFAULT '[]', -- JSON list of component ids
    unpublished      INTEGER NOT NULL DEFAULT 0,
    updated_at       REAL NOT NULL
) WITHOUT ROWID;

-- The durable queue of calls to the status page, oldest first per incident.
CREATE TABLE public_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    action      TEXT NOT NULL CHECK (action IN ('create', 'update')),
    payload     TEXT NOT NULL,                 -- the JSON request body
    actor       TEXT NOT NULL,                 -- who caused it: "platform:user_id"
    actor_name  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,                 -- not before this time
    last_error  TEXT,
    maybe_done  INTEGER NOT NULL DEFAULT 0,    -- the last attempt may have taken effect
    state       TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'cancelled')),
    done_at     REAL
);
CREATE INDEX public_outbox_pending ON public_outbox (state, incident_id, id);

-- Follow-up actions of an incident, and the ticket each became.
CREATE TABLE incident_followups (
    incident_id  TEXT NOT NULL REFERENCES incidents (id),
    n            INTEGER NOT NULL,             -- 1, 2, ... per incident
    text         TEXT NOT NULL,
    owner        TEXT,
    added_by     TEXT NOT NULL,
    added_at     REAL NOT NULL,
    done_at      REAL,
    -- NULL: not exported; 'sending': decided and being sent (a crash leaves it unconfirmed);
    -- 'sent': ticket_url holds the ticket.
    export_state TEXT CHECK (export_state IN ('sending', 'sent')),
    ticket_key   TEXT,
    ticket_url   TEXT,
    PRIMARY KEY (incident_id, n)
) WITHOUT ROWID;
