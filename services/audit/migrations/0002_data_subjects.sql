-- "Export my data": the events a user caused, across the orgs' chains (a narrow definer
-- function: the runtime role cannot otherwise read across orgs).
create function events_of_user(p_user text)
returns table (org_id uuid, seq bigint, type text, occurred_at timestamptz, resource_type text,
               resource_id text, ip text, user_agent text)
language sql stable security definer set search_path = audit, pg_temp as $$
    select org_id, seq, type, occurred_at, resource_type, resource_id, ip, user_agent
    from audit.audit_events where actor_type = 'user' and actor_id = p_user
    order by occurred_at limit 10000
$$;
