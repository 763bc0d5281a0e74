-- A deleted org is purged once its grace period (purge_by in the org.deleted event) is over:
-- memberships, invitations (emails) and projects are removed and its slug is freed. The wallet,
-- the ledger and the idempotency records stay: they are financial records (append-only here;
-- their retention is a bookkeeping rule, not a data-subject one).
alter table orgs add column purged_at timestamptz;

create function deleted_orgs_due(p_before timestamptz, p_limit integer)
returns table (org_id uuid)
language sql stable security definer set search_path = tenant_api, pg_temp as $$
    select org_id from tenant_api.orgs
    where deleted_at < p_before and purged_at is null
    order by deleted_at limit p_limit
$$;
