-- Audit rows say why in a few words ("PagerDuty server error (500)"), beside an outcome from
-- the closed set in core/outcome.py. NULL on rows written before: their hash does not cover it.
ALTER TABLE audit ADD COLUMN cause TEXT;
CREATE INDEX audit_outcome ON audit (outcome, at);
