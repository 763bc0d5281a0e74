-- Outbound endpoints (secrets sealed under the master key), deliveries and their attempts, and
-- verified inbound events. Tenant tables lead with org_id and are under fail-closed RLS.

create table endpoints (
    org_id        uuid not null,
    id            uuid not null,
    url           text not null check (length(url) <= 2000),
    event_types   text[] not null,
    enabled       boolean not null default true,
    description   text not null default '' check (length(description) <= 500),
    disabled_reason text,
    failing_since timestamptz,
    created_at    timestamptz not null default now(),
    primary key (org_id, id)
);

create table endpoint_secrets (
    org_id      uuid not null,
    endpoint_id uuid not null,
    id          uuid not null,
    sealed      bytea not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz,
    primary key (org_id, endpoint_id, id),
    foreign key (org_id, endpoint_id) references endpoints (org_id, id) on delete cascade
);

create table deliveries (
    org_id          uuid not null,
    id              uuid not null,
    endpoint_id     uuid not null,
    event_id        uuid not null,
    event_type      text not null,
    payload         bytea not null,
    status          text not null default 'pending'
                    check (status in ('pending', 'in_flight', 'succeeded', 'exhausted',
                                      'cancelled')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    lease_until     timestamptz,
    created_at      timestamptz not null default now(),
    delivered_at    timestamptz,
    primary key (org_id, id),
    unique (org_id, endpoint_id, event_id),
    foreign key (org_id, endpoint_id) references endpoints (org_id, id) on delete cascade
);
create index deliveries_due on deliveries (next_attempt_at) where status = 'pending';
create index deliveries_leased on deliveries (lease_until) where status = 'in_flight';

create table attempts (
    org_id        uuid not null,
    delivery_id   uuid not null,
    n             integer not null,
    started_at    timestamptz not null,
    status_code   integer,
    latency_ms    integer not null,
    error         text,
    response_body text,
    primary key (org_id, delivery_id, n),
    foreign key (org_id, delivery_id) references deliveries (org_id, id) on delete cascade
);

create table inbound_events (
    provider    text not null,
    event_id    text not null,
    received_at timestamptz not null default now(),
    primary key (provider, event_id)
);

call enable_tenant_rls('endpoints');
call enable_tenant_rls('endpoint_secrets');
call enable_tenant_rls('deliveries');
call enable_tenant_rls('attempts');
create policy owner_all on deliveries to argus_owner using (true) with check (true);
create policy owner_all on endpoints to argus_owner using (true);
create policy owner_all on endpoint_secrets to argus_owner using (true);

-- Workers serve every org: they claim due deliveries (and ones whose worker died: an expired
-- lease) with SKIP LOCKED, through this one definer function.
create function claim_deliveries(p_limit integer, p_lease interval)
returns table (org_id uuid, id uuid, endpoint_id uuid, event_id uuid, event_type text,
               payload bytea, attempts integer, url text, secrets bytea[])
language sql security definer set search_path = webhooks, pg_temp as $$
    with due as (
        select d.org_id, d.id from webhooks.deliveries d
        where ((d.status = 'pending' and d.next_attempt_at <= now())
               or (d.status = 'in_flight' and d.lease_until < now()))
          and exists (select 1 from webhooks.endpoints e
                      where e.org_id = d.org_id and e.id = d.endpoint_id and e.enabled)
        order by d.next_attempt_at
        limit p_limit
        for update skip locked
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
                    order by s.created_at desc)
$$;

create function queue_stats()
returns table (pending bigint, oldest_seconds double precision, disabled bigint)
language sql stable security definer set search_path = webhooks, pg_temp as $$
    select (select count(*) from webhooks.deliveries where status in ('pending', 'in_flight')),
           (select coalesce(extract(epoch from now() - min(created_at)), 0)
              from webhooks.deliveries where status in ('pending', 'in_flight')),
           (select count(*) from webhooks.endpoints where not enabled)
$$;
