-- Several instances on one database: a handoff announcement or a reminder DM is
-- claimed before it is sent. claimed_by: that sending's own id (NULL: nobody is on it);
-- claimed_token: the lease token of the leader that claimed it, so a newer leader takes an
-- older leader's claim over at once; any other claim is taken over once `claimed_at` old.
ALTER TABLE oncall_posts ADD COLUMN claimed_by TEXT;
ALTER TABLE oncall_posts ADD COLUMN claimed_at REAL;
ALTER TABLE oncall_posts ADD COLUMN claimed_token INTEGER;
