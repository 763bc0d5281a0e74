-- A provisioned user who signs in through the org's own IdP is a member at once (no invitation
-- to accept): the pending SCIM users of that email in the orgs whose connection is that issuer.
create policy owner_reads on scim_users for select to argus_owner using (true);

create function scim_pending_for(p_email text, p_issuer text)
returns table (org_id uuid, id uuid)
language sql stable security definer set search_path = tenant_api, pg_temp as $$
    select u.org_id, u.id from tenant_api.scim_users u
    join tenant_api.sso_connections c on c.org_id = u.org_id and c.issuer = p_issuer
    join tenant_api.orgs o on o.org_id = u.org_id and o.deleted_at is null
    where u.email = p_email and u.active and u.user_id is null
$$;

grant execute on function scim_pending_for(text, text) to argus_tenant_api;
