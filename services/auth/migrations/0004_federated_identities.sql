-- Single sign-on (OpenID Connect): federated identities, the one-time login states of sign-ins
-- in flight, and what a session was signed in through.
--
-- An identity is the provider's issuer and subject (`iss`, `sub`), never an email: the email is
-- kept as the provider last asserted it, for display. An account made by a first SSO sign-in has
-- no password (password_hash is null): it signs in through its identities only, and the last of
-- them cannot be unlinked.
alter table users alter column password_hash drop not null;

create table federated_identities (
    id           uuid primary key,
    user_id      uuid not null references users (id) on delete cascade,
    provider     text not null,
    issuer       text not null,
    subject      text not null,
    email        text,
    created_at   timestamptz not null default now(),
    last_used_at timestamptz not null default now(),
    constraint federated_identities_issuer_subject unique (issuer, subject),
    constraint subject_length check (length(subject) between 1 and 255),
    constraint issuer_length check (length(issuer) between 1 and 512)
);
create index federated_identities_user on federated_identities (user_id);

-- A sign-in started at GET /sso/{provider}/start: its `state` (hashed), spent once by the
-- callback (deleted), so the same callback cannot be played twice. The nonce, PKCE verifier and
-- return path ride in the sealed __Host- cookie bound to this state.
create table sso_states (
    state_hash bytea primary key,
    provider   text not null,
    expires_at timestamptz not null
);
create index sso_states_expiry on sso_states (expires_at);

-- Sessions signed in through a provider: its issuer (the token's `iss`, tenant-specific for a
-- multi-tenant Microsoft sign-in) and the configured provider's name; null for a password login.
alter table sessions add column idp text;
alter table sessions add column idp_provider text;

grant select, insert, update, delete on federated_identities to argus_auth;
grant select, insert, delete on sso_states to argus_auth;
