-- Organisations (the tenants), memberships, invitations, projects, the wallet ledger and
-- idempotency keys. Every tenant table: org_id leads the primary key and every child foreign
-- key, ENABLE + FORCE row level security with a fail-closed policy on app.org_id.

create table orgs (
    org_id       uuid primary key,
    name         text not null check (length(name) between 1 and 100),
    slug         text not null unique check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$'),
    plan         text not null default 'free' check (plan in ('free', 'pro', 'team', 'enterprise')),
    require_mfa  boolean not null default false,
    audit_retention_days integer check (audit_retention_days between 1 and 3650),
    created_at   timestamptz not null default now(),
    deleted_at   timestamptz
);

create table memberships (
    org_id     uuid not null references orgs (org_id),
    user_id    uuid not null,
    role       text not null check (role in ('owner', 'admin', 'member', 'viewer')),
    email      text,
    created_at timestamptz not null default now(),
    primary key (org_id, user_id)
);
create index memberships_user on memberships (user_id);

create table invitations (
    org_id      uuid not null references orgs (org_id),
    id          uuid not null,
    email       text not null,
    role        text not null check (role in ('admin', 'member', 'viewer')),
    token_hash  bytea not null unique,
    invited_by  uuid not null,
    expires_at  timestamptz not null,
    accepted_at timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz not null default now(),
    primary key (org_id, id)
);

create table projects (
    org_id     uuid not null references orgs (org_id),
    id         uuid not null,
    name       text not null check (length(name) between 1 and 100),
    created_by uuid not null,
    created_at timestamptz not null default now(),
    primary key (org_id, id)
);

create table wallets (
    org_id        uuid primary key references orgs (org_id),
    balance_cents bigint not null default 0,
    updated_at    timestamptz not null default now()
);

create table ledger_entries (
    org_id       uuid not null references wallets (org_id),
    id           uuid not null,
    kind         text not null check (kind in ('deposit', 'charge')),
    amount_cents bigint not null,
    description  text not null default '' check (length(description) <= 200),
    actor        text not null,
    created_at   timestamptz not null default now(),
    primary key (org_id, id),
    constraint signed_by_kind check (
        (kind = 'deposit' and amount_cents > 0) or (kind = 'charge' and amount_cents < 0))
);
create index ledger_entries_time on ledger_entries (org_id, created_at, id);

create function refuse_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only: % refused', tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
end $$;

create trigger ledger_entries_append_only before update or delete on ledger_entries
    for each row execute function refuse_change();
create trigger ledger_entries_no_truncate before truncate on ledger_entries
    for each statement execute function refuse_change();

create table idempotency_keys (
    org_id       uuid not null references orgs (org_id),
    endpoint     text not null,
    key          text not null check (length(key) between 1 and 200),
    request_hash bytea not null,
    status       integer not null,
    response     jsonb not null,
    created_at   timestamptz not null default now(),
    primary key (org_id, endpoint, key)
);

call enable_tenant_rls('orgs');
call enable_tenant_rls('memberships');
call enable_tenant_rls('invitations');
call enable_tenant_rls('projects');
call enable_tenant_rls('wallets');
call enable_tenant_rls('ledger_entries');
call enable_tenant_rls('idempotency_keys');

-- Cross-org reads the runtime role needs, each a narrow definer function (FORCE RLS binds the
-- owner too, so the owner gets read-only policies only these functions exercise).
create policy owner_reads on memberships for select to argus_owner using (true);
create policy owner_reads on orgs for select to argus_owner using (true);
create policy owner_reads on invitations for select to argus_owner using (true);
create policy owner_reads on wallets for select to argus_owner using (true);
create policy owner_reads on ledger_entries for select to argus_owner using (true);

create function orgs_of_user(p_user uuid)
returns table (org_id uuid, name text, slug text, plan text, role text)
language sql stable security definer set search_path = tenant_api, pg_temp as $$
    select o.org_id, o.name, o.slug, o.plan, m.role
    from tenant_api.memberships m join tenant_api.orgs o on o.org_id = m.org_id
    where m.user_id = p_user and o.deleted_at is null order by o.created_at
$$;

create function invitation_by_token(p_hash bytea)
returns table (org_id uuid, id uuid, email text, role text, expires_at timestamptz,
               accepted_at timestamptz, revoked_at timestamptz)
language sql stable security definer set search_path = tenant_api, pg_temp as $$
    select org_id, id, email, role, expires_at, accepted_at, revoked_at
    from tenant_api.invitations where token_hash = p_hash
$$;

create function reconcile_wallets()
returns table (org_id uuid, balance_cents bigint, entries_cents bigint)
language sql stable security definer set search_path = tenant_api, pg_temp as $$
    select w.org_id, w.balance_cents, coalesce(sum(e.amount_cents), 0)::bigint
    from tenant_api.wallets w left join tenant_api.ledger_entries e on e.org_id = w.org_id
    group by w.org_id, w.balance_cents
    having w.balance_cents <> coalesce(sum(e.amount_cents), 0)
$$;

-- Append-only and idempotency records: the runtime role may add and read, never change.
revoke update, delete, truncate on ledger_entries from argus_tenant_api;
revoke update, delete, truncate on idempotency_keys from argus_tenant_api;
