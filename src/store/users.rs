//! Administrators (migrations/*/0005_users.sql): accounts, roles, password hashes and their
//! history. Hashing and the password policy live in `auth::passwords`; this is storage only.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{is_unique_violation, now_millis, Store, StoreError};
use crate::auth::Role;
use crate::ids;

/// A user as stored, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub role: Role,
    /// The tenant the user is scoped to; `None`: every tenant.
    pub tenant: Option<String>,
    pub created_at: i64,
    pub password_changed_at: Option<i64>,
    pub disabled_at: Option<i64>,
    /// When TOTP enrolment was confirmed; `None`: no MFA.
    pub mfa_enabled_at: Option<i64>,
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub role: Role,
    pub tenant: Option<&'a str>,
    /// bcrypt; `None` for users who sign in only through SSO.
    pub password_hash: Option<&'a str>,
}

const USER_COLUMNS: &str = "u.id, u.email, u.role, t.name AS tenant_name, u.created_at, \
     u.password_changed_at, u.disabled_at, u.mfa_enabled_at";

/// E-mail addresses are compared lower-cased and trimmed: one account per mailbox.
pub fn normalize_email(email: &str) -> Result<String, StoreError> {
    let email = email.trim().to_lowercase();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                && email.matches('@').count() == 1
                && email.len() <= 254
        }
        None => false,
    };
    if valid {
        Ok(email)
    } else {
        Err(StoreError::InvalidEmail(email))
    }
}

impl Store {
    pub async fn create_user(&self, new: NewUser<'_>) -> Result<User, StoreError> {
        let email = normalize_email(new.email)?;
        let tenant_id = match new.tenant {
            Some(name) => Some(
                self.tenant_by_name(name)
                    .await?
                    .ok_or_else(|| StoreError::TenantNotFound(name.to_string()))?
                    .id,
            ),
            None => None,
        };
        let now = now_millis();
        let user = User {
            id: ids::new_id("usr")?,
            email,
            role: new.role,
            tenant: new.tenant.map(str::to_string),
            created_at: now,
            password_changed_at: new.password_hash.map(|_| now),
            disabled_at: None,
            mfa_enabled_at: None,
        };
        let mut tx = self.pool().await?.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, role, tenant_id, password_hash, password_changed_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(user.role.name())
        .bind(tenant_id)
        .bind(new.password_hash)
        .bind(user.password_changed_at)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::UserExists(user.email)),
            Err(e) => return Err(e.into()),
        }
        if let Some(hash) = new.password_hash {
            sqlx::query(
                "INSERT INTO password_history (user_id, password_hash, created_at) VALUES ($1, $2, $3)",
            )
            .bind(&user.id)
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id ORDER BY u.email"
        ))
        .fetch_all(self.pool().await?)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// The user and their password hash (if they have a password).
    pub async fn user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let Ok(email) = normalize_email(email) else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id \
             WHERE u.email = $1"
        ))
        .bind(email)
        .fetch_optional(self.pool().await?)
        .await?;
        match row {
            Some(row) => Ok(Some((user_from_row(&row)?, row.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    /// The user and their password hash (if they have a password).
    pub async fn user_by_id(&self, id: &str) -> Result<Option<(User, Option<String>)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id \
             WHERE u.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool().await?)
        .await?;
        match row {
            Some(row) => Ok(Some((user_from_row(&row)?, row.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    /// The user's previous password hashes, newest first.
    pub async fn password_history(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT password_hash FROM password_history WHERE user_id = $1 \
             ORDER BY created_at DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit as i64)
        .fetch_all(self.pool().await?)
        .await?;
        rows.iter()
            .map(|r| r.try_get("password_hash").map_err(StoreError::from))
            .collect()
    }
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?,
        tenant: row.try_get("tenant_name")?,
        created_at: row.try_get("created_at")?,
        password_changed_at: row.try_get("password_changed_at")?,
        disabled_at: row.try_get("disabled_at")?,
        mfa_enabled_at: row.try_get("mfa_enabled_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  Ann.Lee@Bank.Example ").unwrap(),
            "ann.lee@bank.example"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@bank.example",
            "ann@bank",
            "a b@bank.example",
            "a@b@c.d",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}
