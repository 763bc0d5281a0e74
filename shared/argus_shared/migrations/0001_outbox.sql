-- The transactional outbox: an event row commits with the state change that caused it, and the
-- relay publishes it to JetStream (Nats-Msg-Id = id), then marks it sent.
-- Not a tenant table: it is written inside tenant transactions but read only by the relay, which
-- works across orgs; no route reads it. org_id is nullable for platform events.
create table outbox (
    seq        bigint generated always as identity primary key,
    id         uuid not null unique,
    subject    text not null,
    org_id     uuid,
    payload    bytea not null,
    headers    jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now(),
    sent_at    timestamptz
);
create index outbox_pending on outbox (seq) where sent_at is null;
create index outbox_sent on outbox (sent_at) where sent_at is not null;

create function outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('argus_outbox_' || tg_table_schema, '');
    return null;
end $$;

create trigger outbox_notify after insert on outbox
    for each statement execute function outbox_notify();
