-- The audit trail: every event from ARGUS_EVENTS, append-only, partitioned by month, hash-chained
-- per org (and one chain for platform events, org 00000000-...), with signed checkpoints.

create table audit_events (
    org_id      uuid not null,
    seq         bigint not null,
    event_id    uuid not null,
    occurred_at timestamptz not null,
    received_at timestamptz not null default now(),
    type        text not null,
    actor_type  text not null,
    actor_id    text not null,
    resource_type text not null,
    resource_id text not null,
    ip          text,
    user_agent  text check (length(user_agent) <= 500),
    request_id  text,
    data        jsonb not null,
    prev_hash   bytea not null,
    hash        bytea not null,
    primary key (org_id, seq, received_at)
) partition by range (received_at);
-- pages walk the primary key (org, seq); time ranges prune partitions; only the filters that
-- select few rows get their own index (each index is paid for on every insert)
create index audit_events_actor on audit_events (org_id, actor_id);
create index audit_events_type on audit_events (org_id, type);

-- one partition per month, made ahead by the service (see ensure_partitions)
create function ensure_partitions(p_from timestamptz, p_months integer) returns void
language plpgsql security definer set search_path = audit, pg_temp as $$
declare
    month_start date;
    name text;
begin
    for i in 0 .. p_months loop
        month_start := (date_trunc('month', p_from) + make_interval(months => i))::date;
        name := format('audit_events_%s', to_char(month_start, 'YYYY_MM'));
        if to_regclass('audit.' || name) is null then
            execute format('create table audit.%I partition of audit.audit_events'
                           ' for values from (%L) to (%L)', name, month_start,
                           (month_start + interval '1 month')::date);
            execute format('alter table audit.%I enable row level security', name);
            execute format('alter table audit.%I force row level security', name);
        end if;
    end loop;
end $$;
select ensure_partitions(now() - interval '1 month', 3);

-- every event id once, whatever the partition
create table seen_events (
    event_id uuid primary key,
    org_id   uuid not null,
    seq      bigint not null
);

create table chain_heads (
    org_id uuid primary key,
    seq    bigint not null,
    hash   bytea not null
);

create table checkpoints (
    org_id     uuid not null,
    seq        bigint not null,
    hash       bytea not null,
    kid        text not null,
    signature  bytea not null,
    reason     text not null check (reason in ('periodic', 'retention')),
    created_at timestamptz not null default now(),
    primary key (org_id, seq, reason)
);

create table quarantine (
    id          bigint generated always as identity primary key,
    received_at timestamptz not null default now(),
    subject     text not null,
    reason      text not null,
    headers     jsonb not null,
    payload     bytea not null
);

create table org_plans (
    org_id uuid primary key,
    plan   text not null,
    retention_days integer
);

-- append-only for every role: retention goes through prune_before(), owner only, which records
-- a checkpoint first so verification still starts from a signed, known link
create function refuse_change() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' and current_setting('audit.pruning', true) = 'on'
       and session_user in ('argus_owner') then
        return old;
    end if;
    raise exception 'audit_events is append-only: % refused', tg_op
        using errcode = 'insufficient_privilege';
end $$;
create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function refuse_change();
create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function refuse_change();

call enable_tenant_rls('audit_events');
call enable_tenant_rls('seen_events');
call enable_tenant_rls('chain_heads');
call enable_tenant_rls('checkpoints');
create policy owner_all on audit_events to argus_owner using (true);
create policy owner_all on checkpoints to argus_owner using (true) with check (true);
create policy owner_all on chain_heads to argus_owner using (true);

revoke update, delete, truncate on audit_events, seen_events, checkpoints from argus_audit;

-- cross-org paths of the runtime role, each a narrow definer function
create function all_chain_heads() returns setof chain_heads
language sql stable security definer set search_path = audit, pg_temp as $$
    select * from audit.chain_heads
$$;

create function record_checkpoint(p_org uuid, p_seq bigint, p_hash bytea, p_kid text,
                                  p_signature bytea) returns void
language sql security definer set search_path = audit, pg_temp as $$
    insert into audit.checkpoints (org_id, seq, hash, kid, signature, reason)
    values (p_org, p_seq, p_hash, p_kid, p_signature, 'periodic')
    on conflict do nothing
$$;
