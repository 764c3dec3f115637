//! The admin plane's tables (migrations/*/0006_admin_sessions.sql): login sessions, failed-login
//! counters, TOTP state and recovery codes, and security settings changed at run time. What
//! the rows mean is decided in `admin`; this is storage only.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_millis, Store, StoreError};
use crate::auth::Role;
use crate::ids;

/// A login session. The token is never stored, only its SHA-256 (`token_hash`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdminSession {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub reauth_at: i64,
    pub revoked_at: Option<i64>,
    /// `password` or `sso`.
    pub method: String,
    pub client_ip: String,
    pub user_agent: String,
}

pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub user_id: &'a str,
    pub expires_at: i64,
    pub method: &'a str,
    pub client_ip: &'a str,
    pub user_agent: &'a str,
}

/// A user's TOTP state.
#[derive(Debug, Clone, Default)]
pub struct MfaState {
    /// Base32; set once enrolment is confirmed with a first code.
    pub secret: Option<String>,
    /// Base32; issued by enrolment, waiting for its first code.
    pub pending_secret: Option<String>,
    pub enabled_at: Option<i64>,
    /// The last TOTP time step accepted: codes of this step and earlier are refused.
    pub last_step: Option<i64>,
}

/// Failed logins for one account or one client IP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoginFailures {
    /// `account` or `ip`.
    pub scope: String,
    pub subject: String,
    pub failures: i64,
    pub first_at: i64,
    pub last_at: i64,
}

const SESSION_COLUMNS: &str = "s.id, s.user_id, s.created_at, s.last_seen_at, s.expires_at, \
     s.reauth_at, s.revoked_at, s.method, s.client_ip, s.user_agent";

impl Store {
    /// Opens a session and ends the user's oldest live ones beyond `max_concurrent`, in one
    /// transaction. Returns the new session and the ids of the sessions it ended.
    pub async fn create_session(
        &self,
        new: NewSession<'_>,
        max_concurrent: u32,
        idle_timeout_ms: i64,
    ) -> Result<(AdminSession, Vec<String>), StoreError> {
        let now = now_millis();
        let session = AdminSession {
            id: ids::new_id("ses")?,
            user_id: new.user_id.to_string(),
            created_at: now,
            last_seen_at: now,
            expires_at: new.expires_at,
            reauth_at: now,
            revoked_at: None,
            method: new.method.to_string(),
            client_ip: new.client_ip.to_string(),
            user_agent: new.user_agent.to_string(),
        };
        let mut tx = self.pool().await?.begin().await?;
        // Concurrent logins of one user take turns, so the cap holds. (SQLite transactions
        // that write are already one at a time.)
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(&session.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO admin_sessions (id, token_hash, user_id, created_at, last_seen_at, \
             expires_at, reauth_at, revoked_at, method, client_ip, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10)",
        )
        .bind(&session.id)
        .bind(new.token_hash)
        .bind(&session.user_id)
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .bind(session.expires_at)
        .bind(session.reauth_at)
        .bind(&session.method)
        .bind(&session.client_ip)
        .bind(&session.user_agent)
        .execute(&mut *tx)
        .await?;
        // The user's other live sessions, newest first: the new one plus the newest
        // `max_concurrent - 1` of these stay.
        let others = sqlx::query(
            "SELECT id FROM admin_sessions WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL \
             AND expires_at > $3 AND last_seen_at > $4 ORDER BY created_at DESC, id DESC",
        )
        .bind(&session.user_id)
        .bind(&session.id)
        .bind(now)
        .bind(now - idle_timeout_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut ended = Vec::new();
        let keep = (max_concurrent as usize).saturating_sub(1);
        for row in others.iter().skip(keep) {
            let id: String = row.try_get("id")?;
            sqlx::query("UPDATE admin_sessions SET revoked_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            ended.push(id);
        }
        tx.commit().await?;
        Ok((session, ended))
    }

    /// The session a token belongs to, live or not: the caller decides.
    pub async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<AdminSession>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM admin_sessions s WHERE s.token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(self.pool().await?)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub async fn session_by_id(&self, id: &str) -> Result<Option<AdminSession>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM admin_sessions s WHERE s.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool().await?)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Marks the session used now (the idle timeout counts from here).
    pub async fn touch_session(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE admin_sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.pool().await?)
            .await?;
        Ok(())
    }

    /// Records that the password (and TOTP) was entered again in this session.
    pub async fn reauthenticate_session(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE admin_sessions SET reauth_at = $1, last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.pool().await?)
            .await?;
        Ok(())
    }

    /// Live sessions (not revoked, not past `expires_at`, used within `idle_timeout_ms`),
    /// newest first; of one user or all.
    pub async fn list_sessions(
        &self,
        user_id: Option<&str>,
        idle_timeout_ms: i64,
    ) -> Result<Vec<AdminSession>, StoreError> {
        let now = now_millis();
        let idle_since = now - idle_timeout_ms;
        let rows = match user_id {
            Some(user) => {
                sqlx::query(&format!(
                    "SELECT {SESSION_COLUMNS} FROM admin_sessions s WHERE s.user_id = $1 \
                     AND s.revoked_at IS NULL AND s.expires_at > $2 AND s.last_seen_at > $3 \
                     ORDER BY s.created_at DESC"
                ))
                .bind(user)
                .bind(now)
                .bind(idle_since)
                .fetch_all(self.pool().await?)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {SESSION_COLUMNS} FROM admin_sessions s WHERE s.revoked_at IS NULL \
                     AND s.expires_at > $1 AND s.last_seen_at > $2 ORDER BY s.created_at DESC"
                ))
                .bind(now)
                .bind(idle_since)
                .fetch_all(self.pool().await?)
                .await?
            }
        };
        rows.iter().map(session_from_row).collect()
    }

    /// Ends one session; `false` if it was already over or does not exist.
    pub async fn revoke_session(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE admin_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_millis())
        .bind(id)
        .execute(self.pool().await?)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every live session of a user but `except` (the caller's own, when they change
    /// their password); how many were ended.
    pub async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
    ) -> Result<u64, StoreError> {
        let pool = self.pool().await?;
        let done = match except {
            Some(keep) => {
                sqlx::query(
                    "UPDATE admin_sessions SET revoked_at = $1 WHERE user_id = $2 \
                     AND revoked_at IS NULL AND id <> $3",
                )
                .bind(now_millis())
                .bind(user_id)
                .bind(keep)
                .execute(pool)
                .await?
            }
            None => {
                sqlx::query(
                    "UPDATE admin_sessions SET revoked_at = $1 WHERE user_id = $2 \
                     AND revoked_at IS NULL",
                )
                .bind(now_millis())
                .bind(user_id)
                .execute(pool)
                .await?
            }
        };
        Ok(done.rows_affected())
    }

    /// Counts one failed login against `scope` (`account` or `ip`) and `subject`.
    pub async fn record_login_failure(&self, scope: &str, subject: &str) -> Result<(), StoreError> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO login_failures (scope, subject, failures, first_at, last_at) \
             VALUES ($1, $2, 1, $3, $3) ON CONFLICT (scope, subject) \
             DO UPDATE SET failures = login_failures.failures + 1, last_at = excluded.last_at",
        )
        .bind(scope)
        .bind(subject)
        .bind(now)
        .execute(self.pool().await?)
        .await?;
        Ok(())
    }

    /// A successful login clears the account's count (not the IP's: one good password from an
    /// address does not excuse the guesses it made at other accounts).
    pub async fn clear_login_failures(&self, scope: &str, subject: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE scope = $1 AND subject = $2")
            .bind(scope)
            .bind(subject)
            .execute(self.pool().await?)
            .await?;
        Ok(())
    }

    pub async fn login_failures(&self) -> Result<Vec<LoginFailures>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, subject, failures, first_at, last_at FROM login_failures \
             ORDER BY last_at DESC, scope, subject",
        )
        .fetch_all(self.pool().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LoginFailures {
                    scope: r.try_get("scope")?,
                    subject: r.try_get("subject")?,
                    failures: r.try_get("failures")?,
                    first_at: r.try_get("first_at")?,
                    last_at: r.try_get("last_at")?,
                })
            })
            .collect()
    }

    /// Settings changed at run time, as stored JSON text by name.
    pub async fn security_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, value FROM security_settings ORDER BY name")
            .fetch_all(self.pool().await?)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("value")?)))
            .collect()
    }

    pub async fn put_security_setting(
        &self,
        name: &str,
        value: &str,
        updated_by: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO security_settings (name, value, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(name)
        .bind(value)
        .bind(now_millis())
        .bind(updated_by)
        .execute(self.pool().await?)
        .await?;
        Ok(())
    }

    pub async fn mfa_state(&self, user_id: &str) -> Result<MfaState, StoreError> {
        let row = sqlx::query(
            "SELECT mfa_secret, mfa_pending_secret, mfa_enabled_at, mfa_last_step FROM users \
             WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.pool().await?)
        .await?;
        match row {
            Some(r) => Ok(MfaState {
                secret: r.try_get("mfa_secret")?,
                pending_secret: r.try_get("mfa_pending_secret")?,
                enabled_at: r.try_get("mfa_enabled_at")?,
                last_step: r.try_get("mfa_last_step")?,
            }),
            None => Err(StoreError::UserNotFound(user_id.to_string())),
        }
    }

    /// Starts (or restarts) enrolment: the secret waits for its first code.
    pub async fn set_pending_mfa(&self, user_id: &str, secret: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET mfa_pending_secret = $1 WHERE id = $2")
            .bind(secret)
            .bind(user_id)
            .execute(self.pool().await?)
            .await?;
        Ok(())
    }

    /// Confirms enrolment: the pending secret becomes the secret, the first code's step is
    /// used, and the recovery codes replace any earlier ones.
    pub async fn enable_mfa(
        &self,
        user_id: &str,
        secret: &str,
        step: i64,
        recovery_code_hashes: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().await?.begin().await?;
        sqlx::query(
            "UPDATE users SET mfa_secret = $1, mfa_pending_secret = NULL, mfa_enabled_at = $2, \
             mfa_last_step = $3 WHERE id = $4",
        )
        .bind(secret)
        .bind(now_millis())
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for hash in recovery_code_hashes {
            sqlx::query(
                "INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)",
            )
            .bind(user_id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claims a TOTP time step for the user: `false` if this step or a later one was already
    /// used. One conditional UPDATE, so two concurrent logins with the same code cannot both win.
    pub async fn claim_mfa_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET mfa_last_step = $1 WHERE id = $2 \
             AND (mfa_last_step IS NULL OR mfa_last_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(self.pool().await?)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Uses up a recovery code: `false` if there is no such unused code.
    pub async fn use_recovery_code(&self, user_id: &str, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 \
             AND used_at IS NULL",
        )
        .bind(now_millis())
        .bind(user_id)
        .bind(hash)
        .execute(self.pool().await?)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn unused_recovery_codes(&self, user_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(self.pool().await?)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Removes a user's MFA (lost device) and ends their sessions, in one transaction: they
    /// log in with their password and enrol again. How many sessions were ended.
    pub async fn reset_mfa(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool().await?.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET mfa_secret = NULL, mfa_pending_secret = NULL, \
             mfa_enabled_at = NULL, mfa_last_step = NULL WHERE id = $1",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UserNotFound(user_id.to_string()));
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let ended = sqlx::query(
            "UPDATE admin_sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now_millis())
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ended.rows_affected())
    }

    pub async fn set_user_role(&self, user_id: &str, role: Role) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.name())
            .bind(user_id)
            .execute(self.pool().await?)
            .await?;
        match done.rows_affected() {
            0 => Err(StoreError::UserNotFound(user_id.to_string())),
            _ => Ok(()),
        }
    }

    /// Sets a new password hash and adds it to the history, in one transaction.
    pub async fn set_password(&self, user_id: &str, hash: &str) -> Result<(), StoreError> {
        let now = now_millis();
        let mut tx = self.pool().await?.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE id = $3",
        )
        .bind(hash)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UserNotFound(user_id.to_string()));
        }
        sqlx::query(
            "INSERT INTO password_history (user_id, password_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(user_id)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn session_from_row(row: &AnyRow) -> Result<AdminSession, StoreError> {
    Ok(AdminSession {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
        reauth_at: row.try_get("reauth_at")?,
        revoked_at: row.try_get("revoked_at")?,
        method: row.try_get("method")?,
        client_ip: row.try_get("client_ip")?,
        user_agent: row.try_get("user_agent")?,
    })
}

/// An SSO login waiting for its callback.
#[derive(Debug, Clone)]
pub struct PendingSso {
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub created_at: i64,
}

impl Store {
    pub async fn put_sso_login(
        &self,
        state_hash: &str,
        login: &PendingSso,
    ) -> Result<(), StoreError> {
        let pool = self.pool().await?;
        // Abandoned logins (older than the ten minutes a callback is accepted) are cleared as
        // new ones start.
        sqlx::query("DELETE FROM sso_logins WHERE created_at < $1")
            .bind(now_millis() - 600_000)
            .execute(pool)
            .await?;
        sqlx::query(
            "INSERT INTO sso_logins (state_hash, provider, nonce, pkce_verifier, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(state_hash)
        .bind(&login.provider)
        .bind(&login.nonce)
        .bind(&login.pkce_verifier)
        .bind(login.created_at)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Takes (reads and deletes) a pending login: a `state` works once. One statement, so two
    /// callbacks racing with one state cannot both get it (and SQLite never has to upgrade a
    /// read transaction to a write one, which fails at once when another writer is busy).
    pub async fn take_sso_login(&self, state_hash: &str) -> Result<Option<PendingSso>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM sso_logins WHERE state_hash = $1 \
             RETURNING provider, nonce, pkce_verifier, created_at",
        )
        .bind(state_hash)
        .fetch_optional(self.pool().await?)
        .await?;
        row.map(|r| {
            Ok(PendingSso {
                provider: r.try_get("provider")?,
                nonce: r.try_get("nonce")?,
                pkce_verifier: r.try_get("pkce_verifier")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// The (provider, subject) a user is linked to, if any.
    pub async fn sso_link(&self, user_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT sso_provider, sso_subject FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.pool().await?)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::UserNotFound(user_id.to_string()));
        };
        let provider: Option<String> = row.try_get("sso_provider")?;
        let subject: Option<String> = row.try_get("sso_subject")?;
        Ok(provider.zip(subject))
    }

    /// The user linked to this provider identity, if any.
    pub async fn user_id_by_sso(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT id FROM users WHERE sso_provider = $1 AND sso_subject = $2")
            .bind(provider)
            .bind(subject)
            .fetch_optional(self.pool().await?)
            .await?;
        row.map(|r| r.try_get("id").map_err(StoreError::from))
            .transpose()
    }

    pub async fn link_sso(
        &self,
        user_id: &str,
        provider: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET sso_provider = $1, sso_subject = $2 WHERE id = $3")
            .bind(provider)
            .bind(subject)
            .bind(user_id)
            .execute(self.pool().await?)
            .await?;
        Ok(())
    }
}
