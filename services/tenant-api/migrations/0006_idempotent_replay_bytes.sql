-- An idempotent replay returns the first answer byte for byte: the body as it was sent and its
-- Content-Type (the jsonb `response` reorders keys, so re-encoding it gives other bytes).
-- `response` is still written, so a replica running the code before this migration replays new
-- rows as it always did. Rows stored before have neither column and replay from `response`;
-- their request_hash is over the body as sent, newer rows' over the canonical form of the
-- parsed request (argus_tenant_api/wallet.py). The table grants (0005) cover the new columns.
alter table idempotency_keys
    add column response_body bytea,
    add column content_type text,
    add constraint response_body_typed check ((response_body is null) = (content_type is null));
