-- Which audit rows may lack a hash: only those written before the chain existed (0005).
-- Recorded once, here: a NULL hash on any later row is tampering, even if every row is NULL.
-- (No row when there are none: an empty table, so `migrate-state` may copy into it.)
CREATE TABLE audit_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO audit_meta (key, value)
    SELECT 'legacy_max_id', CAST(MAX(id) AS TEXT) FROM audit WHERE hash IS NULL
    HAVING COUNT(*) > 0;
