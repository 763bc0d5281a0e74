-- `data` keeps the very JSON text the chain hashed. As jsonb, PostgreSQL rewrote numbers
-- (1e16 came back as 10000000000000000, -0.0 as 0.0) and refused "\u0000", so a legitimate
-- event could fail verification for ever or block its batch. Existing rows keep the text
-- jsonb gave back, which is what their links were checked against.
alter table audit_events alter column data type json using data::json;
