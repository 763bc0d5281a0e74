-- Least privilege: argus_auth holds exactly what the service's code runs (queries.py), nothing by
-- default (see shared/0003_runtime_grants.sql; tests/test_privileges.py declares the same set).
-- Rows that go with a user (sessions, tokens, factors, codes) are removed by ON DELETE CASCADE,
-- which runs as the owner; introspection reads across orgs through its definer function.
call reset_runtime_grants();
grant select, insert, update, delete on users, login_throttle, totp_factors, recovery_codes,
    api_keys to argus_auth;
-- no DELETE: spent or expired, these rows are kept (or cascade with their user)
grant select, insert, update on email_tokens, sessions, refresh_tokens, mfa_challenges,
    signing_keys to argus_auth;
grant execute on function introspect_api_key(bytea) to argus_auth;
