-- Object metadata and wrapped data keys. The bytes live in the storage backend under
-- <org>/<owner>/<id>; the primary key is that same path, led by org_id. ENABLE + FORCE row
-- level security with the fail-closed org policy (enable_tenant_rls).
--
-- An object is 'pending' while its upload streams (so a crashed upload is found and its bytes
-- removed), 'stored' once whole, and 'shredded' once deleted: its data key is gone (so the bytes
-- can never be read again, wherever copies of them are) and the row stays only until the bytes
-- are removed from the backend.

create table objects (
    org_id       uuid not null,
    owner_id     uuid not null,
    id           uuid not null,
    status       text not null default 'pending'
                 check (status in ('pending', 'stored', 'shredded')),
    name         text not null check (length(name) between 1 and 255),
    content_type text,
    size         bigint check (size >= 0),
    sha256       bytea check (length(sha256) = 32),
    uploaded_by  text not null,
    segment_size integer not null check (segment_size > 0),
    key_kid      text,
    wrapped_key  bytea,
    created_at   timestamptz not null default now(),
    stored_at    timestamptz,
    shredded_at  timestamptz,
    primary key (org_id, owner_id, id),
    constraint a_key_until_shredded check ((status = 'shredded') = (wrapped_key is null)),
    constraint complete_when_stored check (
        status <> 'stored' or (size is not null and sha256 is not null
                               and content_type is not null and stored_at is not null))
);
create index objects_by_time on objects (org_id, created_at, id) where status = 'stored';
create index objects_unfinished on objects (created_at) where status <> 'stored';
create index objects_by_kid on objects (key_kid) where wrapped_key is not null;

call enable_tenant_rls('objects');

-- Cross-org paths of the runtime role, each a narrow definer function (FORCE RLS binds the
-- owner too, so the owner gets a read-only policy that only these functions exercise).
create policy owner_reads on objects for select to argus_owner using (true);

-- what the sweeper must finish: shredded objects whose bytes may remain, and uploads that
-- never completed (a crashed process); it then works org by org under RLS
create function unfinished_objects(p_stale_before timestamptz, p_limit integer)
returns table (org_id uuid, owner_id uuid, id uuid, status text)
language sql stable security definer set search_path = files, pg_temp as $$
    select org_id, owner_id, id, status from files.objects
    where status = 'shredded' or (status = 'pending' and created_at < p_stale_before)
    order by created_at limit p_limit
$$;

-- master-key rotation: data keys still wrapped under another key than the current one
create function keys_to_rewrap(p_current_kid text, p_limit integer)
returns table (org_id uuid, owner_id uuid, id uuid)
language sql stable security definer set search_path = files, pg_temp as $$
    select org_id, owner_id, id from files.objects
    where wrapped_key is not null and key_kid <> p_current_kid limit p_limit
$$;

-- data-subject requests: the orgs in which a user owns objects
create function orgs_of_owner(p_owner uuid)
returns table (org_id uuid)
language sql stable security definer set search_path = files, pg_temp as $$
    select distinct org_id from files.objects where owner_id = p_owner
$$;

-- the objects gauge (stored objects across every org)
create function stored_object_count() returns bigint
language sql stable security definer set search_path = files, pg_temp as $$
    select count(*) from files.objects where status = 'stored'
$$;
