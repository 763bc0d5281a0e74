-- Ingest stores a whole batch, whatever orgs it spans, in one transaction of two statements:
-- lock_chains() then append_events(). Per-org transactions cost four round trips per org per
-- batch, which made the database conversation, not the work, the cost of a busy multi-tenant
-- stream. Both are narrow definer functions (the runtime role's RLS admits one org at a time),
-- and append_events() refuses rows that do not continue their chain, so the database itself
-- now holds the linking rule: the next seq, and prev_hash equal to the link before.

create policy owner_all on seen_events to argus_owner using (true) with check (true);

-- Lock the heads of p_orgs (in the given order, so replicas lock alike and cannot deadlock;
-- created at the genesis link the first time), and say which of p_event_ids are stored
-- already: a row per org with its head (seq and hash null for an org not in p_orgs that holds
-- one of the ids) and the ids it holds.
create function lock_chains(p_orgs uuid[], p_event_ids uuid[])
returns table (org_id uuid, seq bigint, hash bytea, seen text[])
language sql security definer set search_path = audit, pg_temp as $$
    with heads as (
        insert into audit.chain_heads as h (org_id, seq, hash)
        select o, 0, decode(repeat('00', 32), 'hex')
        from unnest(p_orgs) with ordinality as u(o, n) order by n
        on conflict (org_id) do update set seq = h.seq
        returning h.org_id, h.seq, h.hash),
    seen as (
        select s.org_id, array_agg(s.event_id::text) as ids from audit.seen_events s
        where s.event_id = any(p_event_ids) group by s.org_id)
    select coalesce(heads.org_id, seen.org_id), heads.seq, heads.hash, coalesce(seen.ids, '{}')
    from heads full join seen on seen.org_id = heads.org_id
$$;

-- Append linked rows (a JSON array; `data` as JSON text, hashes as bytea hex) to the chains of
-- p_orgs, record their ids and move the heads, or raise if any row does not continue its chain.
create function append_events(p_orgs uuid[], p_rows text) returns void
language plpgsql security definer set search_path = audit, pg_temp as $$
declare
    broken bigint;
begin
    perform 1 from audit.chain_heads h where h.org_id = any(p_orgs) order by h.org_id
    for update;
    with r as materialized (
        select * from json_to_recordset(p_rows::json) as r(
            org_id uuid, seq bigint, event_id uuid, occurred_at timestamptz,
            received_at timestamptz, type text, actor_type text, actor_id text,
            resource_type text, resource_id text, ip text, user_agent text, request_id text,
            data text, prev_hash bytea, hash bytea)),
    linked as (
        select r.org_id, r.seq, r.prev_hash, h.seq as head_seq, h.hash as head_hash,
               lag(r.seq) over w as before_seq, lag(r.hash) over w as before_hash
        from r left join audit.chain_heads h on h.org_id = r.org_id
        window w as (partition by r.org_id order by r.seq)),
    stored as (
        insert into audit.audit_events (org_id, seq, event_id, occurred_at, received_at, type,
            actor_type, actor_id, resource_type, resource_id, ip, user_agent, request_id, data,
            prev_hash, hash)
        select org_id, seq, event_id, occurred_at, received_at, type, actor_type, actor_id,
               resource_type, resource_id, ip, user_agent, request_id, data::json, prev_hash,
               hash
        from r returning event_id, org_id, seq),
    seen as (
        insert into audit.seen_events (event_id, org_id, seq)
        select event_id, org_id, seq from stored),
    heads as (
        update audit.chain_heads h set seq = last.seq, hash = last.hash
        from (select distinct on (org_id) org_id, seq, hash from r
              order by org_id, seq desc) last
        where h.org_id = last.org_id)
    select count(*) into broken from linked
    where head_seq is null or not org_id = any(p_orgs)
       or (before_seq is null and (seq <> head_seq + 1 or prev_hash <> head_hash))
       or (before_seq is not null and (seq <> before_seq + 1 or prev_hash <> before_hash));
    if broken > 0 then
        raise exception 'audit: % rows do not continue their chain', broken
            using errcode = 'check_violation';
    end if;
end $$;
