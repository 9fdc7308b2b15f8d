-- PostgreSQL twin of ../sqlite/0095_ha_fencing.sql.
CREATE TABLE pd_click_claims (
    incident_id TEXT NOT NULL,
    action      TEXT NOT NULL,
    holder      TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    claimed_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (incident_id, action)
);

ALTER TABLE pd_cards ADD COLUMN claimed_by TEXT;
ALTER TABLE pd_cards ADD COLUMN claimed_at DOUBLE PRECISION;
ALTER TABLE pd_cards ADD COLUMN claimed_token BIGINT;
