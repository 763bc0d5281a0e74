-- An org's own single sign-on: its OIDC connection (the client secret sealed under the master
-- key ring, AES-256-GCM bound to the org), the email domains it proved it owns (a DNS TXT
-- record `argus-verify=<token>`), and two org settings: `require_sso` (org tokens only for
-- sessions signed in through the org's connection) and `sso_mfa_from_idp` (the IdP's `amr`
-- saying MFA counts as MFA for the org's require_mfa policy).

alter table orgs
    add column require_sso boolean not null default false,
    add column sso_mfa_from_idp boolean not null default false;

create table sso_connections (
    org_id        uuid primary key references orgs (org_id),
    issuer        text not null check (length(issuer) between 1 and 500),
    client_id     text not null check (length(client_id) between 1 and 500),
    client_secret bytea not null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

create table sso_domains (
    org_id      uuid not null references orgs (org_id),
    domain      text not null check (domain = lower(domain) and length(domain) between 1 and 253),
    token       text not null,
    verified_at timestamptz,
    created_at  timestamptz not null default now(),
    primary key (org_id, domain)
);
-- a domain is verified for one org at most
create unique index sso_domains_verified on sso_domains (domain) where verified_at is not null;

call enable_tenant_rls('sso_connections');
call enable_tenant_rls('sso_domains');

create policy owner_reads on sso_connections for select to argus_owner using (true);
create policy owner_reads on sso_domains for select to argus_owner using (true);

-- the internal lookup: the org and connection for a verified domain
create function sso_domain_owner(p_domain text)
returns table (org_id uuid, issuer text, client_id text, require_sso boolean)
language sql stable security definer set search_path = tenant_api, pg_temp as $$
    select d.org_id, c.issuer, c.client_id, o.require_sso
    from tenant_api.sso_domains d
    join tenant_api.orgs o on o.org_id = d.org_id and o.deleted_at is null
    join tenant_api.sso_connections c on c.org_id = d.org_id
    where d.domain = p_domain and d.verified_at is not null
$$;

-- whether another org already verified the domain (a claim may still be made, not verified)
create function sso_domain_taken(p_domain text, p_org uuid) returns boolean
language sql stable security definer set search_path = tenant_api, pg_temp as $$
    select exists (select 1 from tenant_api.sso_domains
                   where domain = p_domain and org_id <> p_org and verified_at is not null)
$$;

grant select, insert, update, delete on sso_connections, sso_domains to argus_tenant_api;
grant execute on function sso_domain_owner(text), sso_domain_taken(text, uuid)
    to argus_tenant_api;
