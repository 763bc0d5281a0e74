-- Accounts, sessions, MFA, signing keys and API keys.
-- Users, sessions and credentials are platform-wide (a user belongs to many orgs); API keys belong
-- to an org's project and follow the tenant-table rules (org_id leads the key, RLS fails closed).

create table users (
    id                  uuid primary key,
    email               text not null,
    password_hash       text not null,
    email_verified_at   timestamptz,
    password_changed_at timestamptz not null default now(),
    created_at          timestamptz not null default now(),
    deactivated_at      timestamptz,
    constraint email_is_lowercase check (email = lower(email)),
    constraint email_length check (length(email) <= 254)
);
create unique index users_email on users (email);

-- Failed logins per email identifier (hashed), for every email typed, existing or not, so the
-- lockout itself reveals nothing about which accounts exist.
create table login_throttle (
    email_hash   bytea primary key,
    failures     integer not null default 0,
    locked_until timestamptz,
    updated_at   timestamptz not null default now()
);

create table email_tokens (
    token_hash bytea primary key,
    user_id    uuid not null references users (id) on delete cascade,
    purpose    text not null check (purpose in ('verify_email', 'reset_password', 'change_email')),
    new_email  text,
    expires_at timestamptz not null,
    used_at    timestamptz,
    created_at timestamptz not null default now()
);
create index email_tokens_user on email_tokens (user_id);

create table sessions (
    id            uuid primary key,
    user_id       uuid not null references users (id) on delete cascade,
    org_id        uuid,
    role          text,
    amr           text[] not null,
    auth_time     timestamptz not null,
    ip            text,
    user_agent    text,
    created_at    timestamptz not null default now(),
    last_used_at  timestamptz not null default now(),
    expires_at    timestamptz not null,
    revoked_at    timestamptz,
    revoked_why   text
);
create index sessions_user on sessions (user_id) where revoked_at is null;

create table refresh_tokens (
    token_hash   bytea primary key,
    session_id   uuid not null references sessions (id) on delete cascade,
    created_at   timestamptz not null default now(),
    used_at      timestamptz,
    successor    bytea,
    successor_ct bytea  -- the successor token sealed for the grace window of a double submit
);
create index refresh_tokens_session on refresh_tokens (session_id);

create table mfa_challenges (
    token_hash bytea primary key,
    user_id    uuid not null references users (id) on delete cascade,
    expires_at timestamptz not null,
    used_at    timestamptz,
    attempts   integer not null default 0,
    ip         text,
    user_agent text
);

create table totp_factors (
    user_id        uuid primary key references users (id) on delete cascade,
    secret_sealed  bytea not null,
    confirmed_at   timestamptz,
    last_step      bigint not null default 0,
    created_at     timestamptz not null default now()
);

create table recovery_codes (
    code_hash  bytea primary key,
    user_id    uuid not null references users (id) on delete cascade,
    used_at    timestamptz,
    created_at timestamptz not null default now()
);
create index recovery_codes_user on recovery_codes (user_id);

create table signing_keys (
    kid            text primary key,
    private_sealed bytea not null,
    public_jwk     jsonb not null,
    created_at     timestamptz not null default now(),
    retired_at     timestamptz
);

create table api_keys (
    org_id          uuid not null,
    id              uuid not null,
    project_id      uuid not null,
    name            text not null,
    prefix          text not null,
    key_hash        bytea not null unique,
    scopes          text[] not null,
    created_by      uuid not null,
    created_at      timestamptz not null default now(),
    expires_at      timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    rotated_from_id uuid,
    primary key (org_id, id),
    foreign key (org_id, rotated_from_id) references api_keys (org_id, id)
);
create index api_keys_project on api_keys (org_id, project_id);
call enable_tenant_rls('api_keys');

-- Introspection finds a key by its hash before it knows the org: a narrow definer function
-- returns that one row (the runtime role cannot otherwise read across orgs). FORCE RLS binds the
-- owner too, so the owner gets a read-only policy that only this function can exercise.
create policy api_keys_introspection on api_keys for select to argus_owner using (true);
create function introspect_api_key(p_hash bytea)
returns table (org_id uuid, id uuid, project_id uuid, scopes text[], expires_at timestamptz,
               revoked_at timestamptz)
language sql stable security definer set search_path = auth, pg_temp as $$
    select org_id, id, project_id, scopes, expires_at, revoked_at
    from auth.api_keys where key_hash = p_hash
$$;
