-- audit_meta (which rows predate the chain, from which row it is keyed) is append-only like
-- audit itself: widening the legacy range or moving the keyed marker takes a dropped trigger,
-- and `chatopsd audit verify` checks both against the chained rows anyway (store/audit.py).
CREATE TRIGGER audit_meta_no_update BEFORE UPDATE ON audit_meta
BEGIN SELECT RAISE(ABORT, 'audit_meta rows are append-only'); END;
CREATE TRIGGER audit_meta_no_delete BEFORE DELETE ON audit_meta
BEGIN SELECT RAISE(ABORT, 'audit_meta rows are append-only'); END;
