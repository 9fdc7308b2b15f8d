-- Twin of ../sqlite/0099_audit_meta_append_only.sql: audit_meta is append-only like audit.
CREATE FUNCTION audit_meta_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_meta rows are append-only';
END;
$$;
CREATE TRIGGER audit_meta_no_update BEFORE UPDATE ON audit_meta
    FOR EACH ROW EXECUTE FUNCTION audit_meta_append_only();
CREATE TRIGGER audit_meta_no_delete BEFORE DELETE ON audit_meta
    FOR EACH ROW EXECUTE FUNCTION audit_meta_append_only();
-- TRUNCATE fires no row trigger: refuse it on both tables (SQLite has no TRUNCATE).
CREATE FUNCTION audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate();
CREATE TRIGGER audit_meta_no_truncate BEFORE TRUNCATE ON audit_meta
    FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate();
