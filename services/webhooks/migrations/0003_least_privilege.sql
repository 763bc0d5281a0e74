-- Least privilege: argus_webhooks holds exactly what the service's code runs (queries.py),
-- nothing by default (see shared/0003_runtime_grants.sql; tests/test_privileges.py declares the
-- same set). Deleting an endpoint removes its secrets, deliveries and attempts by ON DELETE
-- CASCADE, which runs as the owner; claims and settlements across orgs are definer functions.
call reset_runtime_grants();
grant select, insert, update, delete on endpoints to argus_webhooks;
grant select, insert, update on endpoint_secrets, deliveries to argus_webhooks;
grant select, insert on attempts to argus_webhooks;
-- inbound event ids are only ever inserted (ON CONFLICT DO NOTHING reads no row)
grant insert on inbound_events to argus_webhooks;
grant execute on function claim_deliveries(integer, interval), queue_stats(),
    settle_succeeded(uuid[], uuid[], integer[], timestamptz[], integer[], integer[], text[])
    to argus_webhooks;
