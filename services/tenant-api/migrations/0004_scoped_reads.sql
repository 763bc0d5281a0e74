-- List reads in one round trip. Each function scopes its own transaction to the org and user
-- exactly as tenant_tx does (transaction-local settings, so they end with the statement when
-- called outside a transaction block) and then selects under the same RLS policies: SECURITY
-- INVOKER, so it runs as the caller (the runtime role, FORCE RLS). Called inside a transaction
-- already scoped to another org, it refuses rather than re-scope that transaction.

create function scope_to(p_org uuid, p_user uuid) returns void language plpgsql as $$
begin
    if coalesce(current_setting('app.org_id', true), '') not in ('', p_org::text) then
        raise exception 'this transaction is scoped to another org';
    end if;
    perform set_config('app.org_id', p_org::text, true),
            set_config('app.user_id', coalesce(p_user::text, ''), true);
end
$$;

create function scoped_projects(p_org uuid, p_user uuid) returns setof projects
language plpgsql as $$
begin
    perform scope_to(p_org, p_user);
    return query select * from projects where org_id = p_org order by created_at, id;
end
$$;

create function scoped_members(p_org uuid, p_user uuid)
returns table (user_id uuid, role text, email text, created_at timestamptz)
language plpgsql as $$
begin
    perform scope_to(p_org, p_user);
    return query select m.user_id, m.role, m.email, m.created_at from memberships m
                 where m.org_id = p_org order by m.created_at, m.user_id;
end
$$;

create function scoped_invitations(p_org uuid, p_user uuid)
returns table (org_id uuid, id uuid, email text, role text, expires_at timestamptz,
               accepted_at timestamptz, revoked_at timestamptz, created_at timestamptz)
language plpgsql as $$
begin
    perform scope_to(p_org, p_user);
    return query select i.org_id, i.id, i.email, i.role, i.expires_at, i.accepted_at,
                        i.revoked_at, i.created_at
                 from invitations i where i.org_id = p_org order by i.created_at;
end
$$;
