-- Twin of ../sqlite/0020_audit_meta.sql: which audit rows may lack a hash (store/audit.py).
CREATE TABLE audit_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO audit_meta (key, value)
    SELECT 'legacy_max_id', CAST(MAX(id) AS TEXT) FROM audit WHERE hash IS NULL
    HAVING COUNT(*) > 0;
