-- Administrators of the gateway (docs/security.md). E-mail addresses are stored lower-cased;
-- passwords only as bcrypt hashes. `tenant_id` NULL: the user is not scoped to one tenant.
CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    email                TEXT NOT NULL UNIQUE,
    role                 TEXT NOT NULL,
    tenant_id            TEXT REFERENCES tenants(id),
    -- NULL for users who sign in only through SSO.
    password_hash        TEXT,
    password_changed_at  BIGINT,
    created_at           BIGINT NOT NULL,
    disabled_at          BIGINT
);

-- Previous password hashes, so a new password can be refused when it was used recently.
CREATE TABLE password_history (
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX password_history_user ON password_history (user_id, created_at);
