-- High availability: a claimed command is not lost when its instance dies.
-- `instance` claimed the event; `payload` is the command (JSON) until it was answered
-- (`done_at`), so a survivor can take over what a dead instance claimed but never answered.
ALTER TABLE events ADD COLUMN instance TEXT;
ALTER TABLE events ADD COLUMN payload TEXT;
ALTER TABLE events ADD COLUMN done_at DOUBLE PRECISION;
-- the survivor's sweep looks only at unanswered claims
CREATE INDEX events_open ON events (seen_at) WHERE done_at IS NULL AND payload IS NOT NULL;
