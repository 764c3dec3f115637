-- OIDC single sign-on for administrators (docs/security.md).

-- A login started at /admin/v1/sso/{provider}/login and not yet finished: the `state` it sent
-- (as SHA-256), and the nonce and PKCE verifier its callback needs. Single use; ten minutes.
CREATE TABLE sso_logins (
    state_hash     TEXT PRIMARY KEY,
    provider       TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- The provider account a user is linked to, on their first SSO login: later logins must come
-- from the same subject, so an e-mail address re-assigned at the provider does not inherit
-- the account.
ALTER TABLE users ADD COLUMN sso_provider TEXT;
ALTER TABLE users ADD COLUMN sso_subject TEXT;
-- One account per provider identity (NULLs, i.e. unlinked users, do not collide).
CREATE UNIQUE INDEX users_sso_identity ON users (sso_provider, sso_subject);
