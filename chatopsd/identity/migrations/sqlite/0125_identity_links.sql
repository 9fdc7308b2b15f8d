-- `!pd link` claims grant nothing until confirmed (core/identity.py). confirmed_by: who
-- confirmed the link (NULL: nobody yet). Links made before this migration were never
-- confirmed by anyone, so they stay NULL: their owners link again and get them confirmed.
-- request: the id the person holding the address confirms a claim with, until `expires`.
ALTER TABLE pd_links ADD COLUMN confirmed_by TEXT;
ALTER TABLE pd_links ADD COLUMN request TEXT;
ALTER TABLE pd_links ADD COLUMN expires REAL;
CREATE INDEX pd_links_email ON pd_links (email);
CREATE UNIQUE INDEX pd_links_request ON pd_links (request);
