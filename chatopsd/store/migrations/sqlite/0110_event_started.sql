-- A command with outside effects (an ops run, a channel created, a status page publish, a
-- ticket export) is recorded as started before it acts (`started_at`, with the command in
-- `payload` and the process in `instance`) until it was answered (`done_at`). One its
-- instance died running is reported in its channel and audited, never run again.
ALTER TABLE events ADD COLUMN started_at REAL;
-- what a restart (or a survivor) looks for: started, never finished
CREATE INDEX events_started ON events (seen_at) WHERE started_at IS NOT NULL AND done_at IS NULL;
