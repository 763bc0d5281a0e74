-- Least privilege: argus_files holds exactly what the service's code runs (queries.py), nothing
-- by default (see shared/0003_runtime_grants.sql; tests/test_privileges.py declares the same
-- set). Cross-org work (sweeps, rewrapping, data-subject lookups, the gauge) is definer functions.
call reset_runtime_grants();
grant select, insert, update, delete on objects to argus_files;
grant execute on function unfinished_objects(timestamptz, integer), keys_to_rewrap(text, integer),
    orgs_of_owner(uuid), stored_object_count() to argus_files;
