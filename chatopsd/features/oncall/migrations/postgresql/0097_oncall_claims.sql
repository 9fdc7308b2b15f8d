-- PostgreSQL twin of ../sqlite/0097_oncall_claims.sql.
ALTER TABLE oncall_posts ADD COLUMN claimed_by TEXT;
ALTER TABLE oncall_posts ADD COLUMN claimed_at DOUBLE PRECISION;
ALTER TABLE oncall_posts ADD COLUMN claimed_token BIGINT;
