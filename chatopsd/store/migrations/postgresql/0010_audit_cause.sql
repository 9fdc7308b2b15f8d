-- PostgreSQL twin of ../sqlite/0010_audit_cause.sql.
ALTER TABLE audit ADD COLUMN cause TEXT;
CREATE INDEX audit_outcome ON audit (outcome, at);
