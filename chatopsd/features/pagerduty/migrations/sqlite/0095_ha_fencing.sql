-- Several instances on one database: cross-instance claims for PagerDuty work.

-- A button click (or `!pd ack/resolve`) claims (incident, action) before it writes to
-- PagerDuty, so two clicks on two instances make one write. Freed when the write ends; a
-- claim left by an instance that died mid-write is taken over once it is `claimed_at` old.
CREATE TABLE pd_click_claims (
    incident_id TEXT NOT NULL,
    action      TEXT NOT NULL,
    holder      TEXT NOT NULL,   -- who clicked first (display name, told to the others)
    nonce       TEXT NOT NULL,   -- this claim's own id: only its maker frees it
    claimed_at  REAL NOT NULL,
    PRIMARY KEY (incident_id, action)
) WITHOUT ROWID;

-- An incident card being posted or edited by one instance (claimed_by NULL: nobody is on
-- it). claimed_by: that delivery's own id; claimed_token: the lease token of the leader's
-- poll that claimed it (NULL: a click's delivery), so a newer leader may take over an older
-- leader's claim at once; any other claim is taken over once it is `claimed_at` old.
ALTER TABLE pd_cards ADD COLUMN claimed_by TEXT;
ALTER TABLE pd_cards ADD COLUMN claimed_at REAL;
ALTER TABLE pd_cards ADD COLUMN claimed_token INTEGER;
