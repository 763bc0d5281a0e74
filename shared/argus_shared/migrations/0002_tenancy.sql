-- The tenancy rule of DESIGN.md, written once for every schema: the current org of a request
-- (transaction-local `app.org_id`, NULL when unset so every policy fails closed), and the one
-- way a tenant table is put under row-level security (ENABLE + FORCE + the org policy).
create function current_org() returns uuid language sql stable as $$
    select nullif(current_setting('app.org_id', true), '')::uuid
$$;

create procedure enable_tenant_rls(p_table text) language plpgsql as $$
begin
    execute format('alter table %I enable row level security', p_table);
    execute format('alter table %I force row level security', p_table);
    execute format('create policy tenant on %I using (org_id = (select current_org()))'
                   ' with check (org_id = (select current_org()))', p_table);
end $$;
