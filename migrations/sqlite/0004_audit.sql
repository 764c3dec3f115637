-- The audit trail (docs/audit.md). One chain per tenant and kind of record ("acme:requests",
-- "acme:events", "*:events" for events of no tenant); `seq` numbers a chain from 1, and each
-- row's `hash` = SHA-256(prev_hash ‖ its canonical fields), so an edited, deleted or reordered
-- row breaks the chain. Content (the redacted prompt and answer) is covered through
-- `content_hash`, so it can be removed (retention, erasure) while the chain still verifies.
CREATE TABLE audit_records (
    id TEXT PRIMARY KEY,
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
    UNIQUE (chain, seq)
);
CREATE INDEX audit_records_tenant_time ON audit_records (tenant, time);
-- Only records that still carry content: what content retention looks for. (No index on time
-- alone: every index costs each insert, and searches go by tenant.)
CREATE INDEX audit_records_content_time ON audit_records (time) WHERE content IS NOT NULL;
CREATE INDEX audit_records_subject ON audit_records (subject) WHERE subject IS NOT NULL;

-- The last link of each chain, signed: cutting rows off the end is detectable.
CREATE TABLE audit_chain_heads (
    chain TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    time BIGINT NOT NULL,
    mac TEXT
);

-- Signed snapshots of chain heads, kept when records are purged: they anchor what remains.
CREATE TABLE audit_checkpoints (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    time BIGINT NOT NULL,
    mac TEXT,
    PRIMARY KEY (chain, seq)
);

-- none | metadata | redacted; NULL: config.toml's audit.default_logging.
ALTER TABLE tenants ADD COLUMN logging_policy TEXT;
