-- The audit table's keys, cheaper to insert into (docs/audit.md, "Schema"). Every index costs
-- each record's insert, so the table keeps only what the trail is read by:
--   (chain, seq)      the primary key: verification walks a chain in order, retention cuts
--                     its front, and a chain cannot fork;
--   (tenant, time)    search and export by tenant and time; also how the writer finds a
--                     replayed record it has stored already (same tenant, time and id).
-- The id is no longer indexed on its own (nothing looks a record up by id alone).
-- SQLite cannot change a table's keys in place: the table is rebuilt, its columns in the
-- same order.
CREATE TABLE audit_records_rebuilt (
    id TEXT NOT NULL,
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time BIGINT NOT NULL,
    kind TEXT NOT NULL,
    tenant TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    status INTEGER NOT NULL,
    subject TEXT,
    detail TEXT NOT NULL,
    content TEXT,
    content_hash TEXT,
    content_removed TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
INSERT INTO audit_records_rebuilt (id, chain, seq, time, kind, tenant, action, actor, status,
    subject, detail, content, content_hash, content_removed, prev_hash, hash)
SELECT id, chain, seq, time, kind, tenant, action, actor, status,
    subject, detail, content, content_hash, content_removed, prev_hash, hash
FROM audit_records ORDER BY chain, seq;
DROP TABLE audit_records;
ALTER TABLE audit_records_rebuilt RENAME TO audit_records;
CREATE INDEX audit_records_tenant_time ON audit_records (tenant, time);
CREATE INDEX audit_records_content_time ON audit_records (time) WHERE content IS NOT NULL;
CREATE INDEX audit_records_subject ON audit_records (subject) WHERE subject IS NOT NULL;
