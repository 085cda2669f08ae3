-- Archiving old audit entries (`ca audit archive --remove`, pkg/audit/archive.go).
-- audit_log stays append-only, with one narrow exception: a DELETE of rows whose
-- seq is at most the transaction-local setting workload_ca.audit_archive_through.
-- Only the store's RemoveAuditPrefix sets it (set_config(..., true): it ends
-- with the transaction), after checking that a signed checkpoint closes the
-- archived range, and in the same transaction it appends the audit_archive
-- entry that records the removal. The runtime role has no DELETE privilege on
-- audit_log at all (GrantRuntime), so the setting gives it nothing; UPDATE and
-- TRUNCATE stay refused for everyone.
CREATE FUNCTION audit_log_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    through bigint := COALESCE(NULLIF(current_setting('workload_ca.audit_archive_through', true), '')::bigint, 0);
BEGIN
    IF TG_OP = 'DELETE' AND OLD.seq <= through THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP TRIGGER audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
