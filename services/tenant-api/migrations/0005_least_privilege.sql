-- Least privilege: argus_tenant_api holds exactly what the service's code runs (queries.py and
-- the scoped_* reads), nothing by default (see shared/0003_runtime_grants.sql;
-- tests/test_privileges.py declares the same set). Cross-org reads are definer functions.
call reset_runtime_grants();
-- an org is soft-deleted and purged by UPDATE; wallets move by UPDATE; deletion requests are
-- confirmed by UPDATE: none of them is ever deleted by the service
grant select, insert, update on orgs, wallets, user_deletions to argus_tenant_api;
grant select, insert, update, delete on memberships, invitations to argus_tenant_api;
grant select, insert, delete on projects to argus_tenant_api;
-- append-only financial and idempotency records
grant select, insert on ledger_entries, idempotency_keys to argus_tenant_api;
grant execute on function orgs_of_user(uuid), invitation_by_token(bytea), reconcile_wallets(),
    deleted_orgs_due(timestamptz, integer) to argus_tenant_api;
-- SECURITY INVOKER list reads (0004): they run as the caller, under its RLS and grants
grant execute on function scope_to(uuid, uuid), scoped_projects(uuid, uuid),
    scoped_members(uuid, uuid), scoped_invitations(uuid, uuid) to argus_tenant_api;
