-- Tenants and hashed API keys. Times are Unix milliseconds.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    -- SHA-256 or HMAC-SHA-256 of the secret, lowercase hex; the secret itself is never stored.
    key_hash        TEXT NOT NULL UNIQUE,
    -- JSON array of model names or globs; [] means every routed model.
    allowed_models  TEXT NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    revoked_at      BIGINT
);

CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
