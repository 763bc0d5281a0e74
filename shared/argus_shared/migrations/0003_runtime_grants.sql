-- Least privilege. The runtime role of a schema (argus_<schema>) used to receive every DML
-- privilege on whatever the owner created (default privileges), and PUBLIC could execute every
-- function. Now nothing is implicit: what the owner creates from here on grants nobody anything
-- (not even EXECUTE to PUBLIC), and each service's own least-privilege migration calls
-- reset_runtime_grants() and then grants its runtime role exactly what the service's code runs.
-- tests/test_privileges.py holds the declared set and compares it with the catalogue.

-- what this role creates later, anywhere: functions not PUBLIC-executable
alter default privileges revoke execute on functions from public;

-- Take every privilege of this schema's objects from PUBLIC and the runtime role (tables and
-- every audit_events_* partition, sequences, routines) and stop granting any by default, then
-- grant back what every service runs: the outbox (emit inserts, the relay claims with
-- UPDATE ... RETURNING and purges sent rows) and current_org(), which RLS policies call as the
-- querying role. schema_migrations keeps no runtime grant: no runtime code reads it.
create procedure reset_runtime_grants() language plpgsql as $$
declare
    s constant text := current_schema();
    runtime constant text := 'argus_' || current_schema();
begin
    execute format('alter default privileges in schema %I revoke all on tables from %I',
                   s, runtime);
    execute format('alter default privileges in schema %I revoke all on sequences from %I',
                   s, runtime);
    execute format('alter default privileges in schema %I revoke all on functions from %I',
                   s, runtime);
    execute format('revoke all on all tables in schema %I from public, %I', s, runtime);
    execute format('revoke all on all sequences in schema %I from public, %I', s, runtime);
    execute format('revoke all on all routines in schema %I from public, %I', s, runtime);
    execute format('grant select, insert, update, delete on %I.outbox to %I', s, runtime);
    execute format('grant execute on function %I.current_org() to %I', s, runtime);
end $$;
revoke all on procedure reset_runtime_grants() from public;
