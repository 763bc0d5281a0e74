-- Least privilege: argus_audit holds exactly what the service's code runs (queries.py),
-- nothing by default (see shared/0003_runtime_grants.sql; tests/test_privileges.py declares the
-- same set). It only reads the trail and its checkpoints: appends, chain heads, seen ids,
-- periodic checkpoints and org plans are written by definer functions, so the role holds no
-- UPDATE or DELETE on any audit table, partition or schema_migrations.

-- the plan and retention of an org, from org.created / org.updated (was an upsert that needed
-- UPDATE on org_plans)
create function upsert_org_plan(p_org uuid, p_plan text, p_retention_days integer) returns void
language sql security definer set search_path = audit, pg_temp as $$
    insert into audit.org_plans as p (org_id, plan, retention_days)
    values (p_org, coalesce(p_plan, 'free'), p_retention_days)
    on conflict (org_id) do update set plan = coalesce(p_plan, p.plan),
        retention_days = coalesce(p_retention_days, p.retention_days)
$$;

call reset_runtime_grants();
grant select on audit_events, checkpoints to argus_audit;
grant select, insert on quarantine to argus_audit;
grant execute on function lock_chains(uuid[], uuid[]), append_events(uuid[], text),
    all_chain_heads(), record_checkpoint(uuid, bigint, bytea, text, bytea),
    events_of_user(text), ensure_partitions(timestamptz, integer),
    upsert_org_plan(uuid, text, integer) to argus_audit;
