-- PostgreSQL twin of ../sqlite/0125_identity_links.sql.
ALTER TABLE pd_links ADD COLUMN confirmed_by TEXT;
ALTER TABLE pd_links ADD COLUMN request TEXT;
ALTER TABLE pd_links ADD COLUMN expires DOUBLE PRECISION;
CREATE INDEX pd_links_email ON pd_links (email);
CREATE UNIQUE INDEX pd_links_request ON pd_links (request);
