-- A command with outside effects (an ops run, a channel created, a status page publish, a
-- ticket export) is recorded as started before it acts (`started_at`, with the command in
-- `payload` and the process in `instance`) until it was answered (`done_at`). One its
-- instance died running is reported in its channel and audited, never run again.
-- (The survivor's sweep finds it through events_open: a started command keeps its payload.)
ALTER TABLE events ADD COLUMN started_at DOUBLE PRECISION;
