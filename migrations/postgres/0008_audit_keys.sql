-- The audit table's keys, cheaper to insert into (docs/audit.md, "Schema"). Every index costs
-- each record's insert, so the table keeps only what the trail is read by:
--   (chain, seq)      the primary key: verification walks a chain in order, retention cuts
--                     its front, and a chain cannot fork;
--   (tenant, time)    search and export by tenant and time; also how the writer finds a
--                     replayed record it has stored already (same tenant, time and id).
-- The id is no longer indexed on its own (nothing looks a record up by id alone).
ALTER TABLE audit_records DROP CONSTRAINT audit_records_pkey;
ALTER TABLE audit_records DROP CONSTRAINT audit_records_chain_seq_key;
ALTER TABLE audit_records ADD PRIMARY KEY (chain, seq);
