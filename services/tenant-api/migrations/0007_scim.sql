-- SCIM 2.0 provisioning (RFC 7643/7644), per org: bearer tokens (only their SHA-256 kept),
-- the users and groups an identity provider pushes, and which group names give which role.
-- A SCIM user is linked to an Argus account (`user_id`) once one with its email is known: an
-- existing member of the org at once, anyone else by accepting the invitation provisioning
-- mails. Every table is a tenant table (org_id leads every key, RLS forced).

create table scim_tokens (
    org_id     uuid not null references orgs (org_id),
    id         uuid not null,
    prefix     text not null,
    token_hash bytea not null unique,
    created_by uuid not null,
    created_at timestamptz not null default now(),
    revoked_at timestamptz,
    primary key (org_id, id)
);

create table scim_users (
    org_id        uuid not null references orgs (org_id),
    id            uuid not null,
    user_name     text not null check (length(user_name) between 1 and 320),
    email         text not null,
    external_id   text check (length(external_id) <= 500),
    active        boolean not null default true,
    resource      jsonb not null,
    user_id       uuid,
    invitation_id uuid,
    version       integer not null default 1,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    primary key (org_id, id)
);
create unique index scim_users_name on scim_users (org_id, lower(user_name));
create unique index scim_users_account on scim_users (org_id, user_id) where user_id is not null;
create index scim_users_email on scim_users (org_id, email);

create table scim_groups (
    org_id       uuid not null references orgs (org_id),
    id           uuid not null,
    display_name text not null check (length(display_name) between 1 and 256),
    external_id  text check (length(external_id) <= 500),
    version      integer not null default 1,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    primary key (org_id, id)
);
create unique index scim_groups_name on scim_groups (org_id, lower(display_name));

create table scim_group_members (
    org_id   uuid not null,
    group_id uuid not null,
    user_id  uuid not null,
    primary key (org_id, group_id, user_id),
    foreign key (org_id, group_id) references scim_groups (org_id, id) on delete cascade,
    foreign key (org_id, user_id) references scim_users (org_id, id) on delete cascade
);
create index scim_group_members_user on scim_group_members (org_id, user_id);

-- group display name (lower case) -> role; with no row for an org the defaults apply
-- (argus_tenant_api/scim_roles.py)
create table scim_role_mappings (
    org_id       uuid not null references orgs (org_id),
    display_name text not null check (display_name = lower(display_name)
                                      and length(display_name) between 1 and 256),
    role         text not null check (role in ('admin', 'member', 'viewer')),
    primary key (org_id, display_name)
);

call enable_tenant_rls('scim_tokens');
call enable_tenant_rls('scim_users');
call enable_tenant_rls('scim_groups');
call enable_tenant_rls('scim_group_members');
call enable_tenant_rls('scim_role_mappings');

-- the one cross-org read: which org a presented SCIM token belongs to (a live one only)
create policy owner_reads on scim_tokens for select to argus_owner using (true);
create function scim_token_by_hash(p_hash bytea)
returns table (org_id uuid, id uuid, created_by uuid)
language sql stable security definer set search_path = tenant_api, pg_temp as $$
    select t.org_id, t.id, t.created_by from tenant_api.scim_tokens t join tenant_api.orgs o using (org_id)
    where t.token_hash = p_hash and t.revoked_at is null and o.deleted_at is null
$$;

grant select, insert, update, delete on scim_tokens to argus_tenant_api;
grant select, insert, update, delete on scim_users, scim_groups, scim_group_members,
    scim_role_mappings to argus_tenant_api;
grant execute on function scim_token_by_hash(bytea) to argus_tenant_api;
