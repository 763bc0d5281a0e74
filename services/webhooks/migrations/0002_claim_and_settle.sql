-- Claims that stay cheap with a backlog: due deliveries and expired leases are each taken from
-- their own partial index in order (the single OR'ed query of 0001 sorted every due row on each
-- claim: 14 ms per claim at 30,000 pending, 0.2 ms this way). Both functions are PL/pgSQL so
-- their plans are cached per connection (PostgreSQL 16 plans a SQL function on every call).

create or replace function claim_deliveries(p_limit integer, p_lease interval)
returns table (org_id uuid, id uuid, endpoint_id uuid, event_id uuid, event_type text,
               payload bytea, attempts integer, url text, secrets bytea[])
language plpgsql security definer set search_path = webhooks, pg_temp as $$
#variable_conflict use_column
begin
    return query
    with pending as (
        select d.org_id, d.id, d.next_attempt_at as due_at from webhooks.deliveries d
        where d.status = 'pending' and d.next_attempt_at <= now()
          and exists (select 1 from webhooks.endpoints e
                      where e.org_id = d.org_id and e.id = d.endpoint_id and e.enabled)
        order by d.next_attempt_at
        limit p_limit
        for update of d skip locked
    ), expired as (
        select d.org_id, d.id, d.lease_until as due_at from webhooks.deliveries d
        where d.status = 'in_flight' and d.lease_until < now()
          and exists (select 1 from webhooks.endpoints e
                      where e.org_id = d.org_id and e.id = d.endpoint_id and e.enabled)
        order by d.lease_until
        limit p_limit
        for update of d skip locked
    ), due as (
        select u.org_id, u.id from (select * from pending union all select * from expired) u
        order by u.due_at
        limit p_limit
    )
    update webhooks.deliveries d
    set status = 'in_flight', lease_until = now() + p_lease, attempts = d.attempts + 1
    from due, webhooks.endpoints e
    where d.org_id = due.org_id and d.id = due.id
      and e.org_id = d.org_id and e.id = d.endpoint_id
    returning d.org_id, d.id, d.endpoint_id, d.event_id, d.event_type, d.payload, d.attempts,
              e.url,
              array(select s.sealed from webhooks.endpoint_secrets s
                    where s.org_id = d.org_id and s.endpoint_id = d.endpoint_id
                      and (s.expires_at is null or s.expires_at > now())
                    order by s.created_at desc);
end
$$;

-- Successful attempts settled in one statement across orgs, like claim_deliveries claims them:
-- only deliveries still in flight (leased) are settled; their attempts are logged and their
-- endpoints' failure streaks ended. The owner (FORCE RLS binds it too) may insert attempts, which
-- only this function does.

create policy owner_insert on attempts for insert to argus_owner with check (true);

create function settle_succeeded(p_org uuid[], p_delivery uuid[], p_n integer[],
                                 p_started timestamptz[], p_status integer[],
                                 p_latency integer[], p_body text[])
returns void
language plpgsql security definer set search_path = webhooks, pg_temp as $$
begin
    with batch as (
        select * from unnest(p_org, p_delivery, p_n, p_started, p_status, p_latency, p_body)
            as b(org_id, delivery_id, n, started_at, status_code, latency_ms, response_body)
    ), done as (
        update webhooks.deliveries d
        set status = 'succeeded', lease_until = null, delivered_at = now()
        from batch b
        where d.org_id = b.org_id and d.id = b.delivery_id and d.status = 'in_flight'
        returning d.org_id, d.id, d.endpoint_id
    ), logged as (
        insert into webhooks.attempts (org_id, delivery_id, n, started_at, status_code,
                                       latency_ms, error, response_body)
        select b.org_id, b.delivery_id, b.n, b.started_at, b.status_code, b.latency_ms, null,
               b.response_body
        from batch b join done on done.org_id = b.org_id and done.id = b.delivery_id
        on conflict do nothing
    )
    update webhooks.endpoints e set failing_since = null
    from (select distinct org_id, endpoint_id from done) healthy
    where e.org_id = healthy.org_id and e.id = healthy.endpoint_id
      and e.failing_since is not null;
end
$$;
