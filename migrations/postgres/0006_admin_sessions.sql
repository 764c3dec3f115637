-- The admin plane (docs/security.md): login sessions, failed-login counters, TOTP MFA,
-- security settings changed at run time, and who created an API key with what permissions.
-- Times are Unix milliseconds.

-- One row per login. The token itself is never stored, only its SHA-256.
CREATE TABLE admin_sessions (
    id             TEXT PRIMARY KEY,
    token_hash     TEXT NOT NULL UNIQUE,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    -- The earlier of the token's lifetime and the session's maximum duration.
    expires_at     BIGINT NOT NULL,
    -- When the password (and TOTP) was last entered: login or re-authentication.
    reauth_at      BIGINT NOT NULL,
    revoked_at     BIGINT,
    -- 'password' or 'sso'.
    method         TEXT NOT NULL,
    client_ip      TEXT NOT NULL,
    user_agent     TEXT NOT NULL
);
CREATE INDEX admin_sessions_user ON admin_sessions (user_id, created_at);

-- Failed logins, per account (the e-mail as typed, normalized) and per client IP.
CREATE TABLE login_failures (
    scope          TEXT NOT NULL,
    subject        TEXT NOT NULL,
    failures       BIGINT NOT NULL,
    first_at       BIGINT NOT NULL,
    last_at        BIGINT NOT NULL,
    PRIMARY KEY (scope, subject)
);

-- TOTP: the confirmed secret (base32), a secret waiting for its first code, and the last time
-- step used (a code is never accepted twice).
ALTER TABLE users ADD COLUMN mfa_secret TEXT;
ALTER TABLE users ADD COLUMN mfa_pending_secret TEXT;
ALTER TABLE users ADD COLUMN mfa_enabled_at BIGINT;
ALTER TABLE users ADD COLUMN mfa_last_step BIGINT;

-- Single-use recovery codes, stored as SHA-256.
CREATE TABLE recovery_codes (
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash      TEXT NOT NULL,
    used_at        BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Security settings changed through the admin API; what is not here comes from config.toml.
CREATE TABLE security_settings (
    name           TEXT PRIMARY KEY,
    value          TEXT NOT NULL,
    updated_at     BIGINT NOT NULL,
    updated_by     TEXT NOT NULL
);

-- Who created a key (developers manage only their own) and what it may do:
-- 'full', 'read_only', or a JSON array of endpoint paths.
ALTER TABLE api_keys ADD COLUMN created_by TEXT;
ALTER TABLE api_keys ADD COLUMN permissions TEXT NOT NULL DEFAULT 'full';
