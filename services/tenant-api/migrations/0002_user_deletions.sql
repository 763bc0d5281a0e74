-- "Delete my account": one row per request, platform-wide (a user spans orgs, so this is not a
-- tenant table). Each service confirms its purge; the request completes when all have.
create table user_deletions (
    user_id       uuid primary key,
    requested_at  timestamptz not null default now(),
    due_at        timestamptz not null,
    confirmations jsonb not null default '{}'::jsonb,
    completed_at  timestamptz
);
create index user_deletions_pending on user_deletions (due_at) where completed_at is null;
