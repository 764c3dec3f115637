//! Administrators' passwords: the policy a new password must meet, and bcrypt hashing. bcrypt
//! is deliberately slow (~0.25 s at cost 12), so it runs on tokio's blocking pool, never on
//! the threads that serve requests.

use crate::config::{PasswordPolicy, MAX_PASSWORD_BYTES};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password does not meet the password policy: it {}", .0.join("; it "))]
    Weak(Vec<String>),
    #[error("the password was used recently; choose one not among the last {0}")]
    Reused(usize),
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

impl PasswordError {
    pub fn code(&self) -> &'static str {
        match self {
            PasswordError::Weak(_) => "weak_password",
            PasswordError::Reused(_) => "password_reused",
            PasswordError::Hashing(_) => "password_hashing_failed",
        }
    }
}

/// Every rule of `policy` the password breaks, in words (empty: it meets them all). The e-mail
/// address is not a password: a password containing its local part is refused.
pub fn policy_violations(policy: &PasswordPolicy, password: &str, email: &str) -> Vec<String> {
    let mut broken = Vec::new();
    let chars = password.chars().count();
    if chars < policy.min_length {
        broken.push(format!(
            "must be at least {} characters long (it has {chars})",
            policy.min_length
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        broken.push(format!(
            "must be at most {MAX_PASSWORD_BYTES} bytes long (bcrypt ignores the rest)"
        ));
    }
    if policy.require_uppercase && !password.chars().any(char::is_uppercase) {
        broken.push("must contain an upper-case letter".into());
    }
    if policy.require_lowercase && !password.chars().any(char::is_lowercase) {
        broken.push("must contain a lower-case letter".into());
    }
    if policy.require_digit && !password.chars().any(|c| c.is_ascii_digit()) {
        broken.push("must contain a digit".into());
    }
    if policy.require_special && password.chars().all(char::is_alphanumeric) {
        broken.push("must contain a special character (not a letter or digit)".into());
    }
    let local = email.split('@').next().unwrap_or("").to_lowercase();
    if local.chars().count() >= 3 && password.to_lowercase().contains(&local) {
        broken.push("must not contain the e-mail address".into());
    }
    broken
}

/// Checks the policy, then hashes with bcrypt at `cost`.
pub async fn hash_new(
    policy: &PasswordPolicy,
    cost: u32,
    password: &str,
    email: &str,
) -> Result<String, PasswordError> {
    let broken = policy_violations(policy, password, email);
    if !broken.is_empty() {
        return Err(PasswordError::Weak(broken));
    }
    let password = password.to_string();
    tokio::task::spawn_blocking(move || bcrypt::non_truncating_hash(password, cost))
        .await
        .map_err(|e| PasswordError::Hashing(e.to_string()))?
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Does `password` match the bcrypt `hash`? A malformed hash matches nothing.
pub async fn verify(password: &str, hash: &str) -> bool {
    let password = password.to_string();
    let hash = hash.to_string();
    tokio::task::spawn_blocking(move || {
        bcrypt::non_truncating_verify(password, &hash).unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Refuses a password equal to one of `previous` (bcrypt hashes, newest first).
pub async fn check_not_reused(
    password: &str,
    previous: &[String],
    history: usize,
) -> Result<(), PasswordError> {
    for hash in previous.iter().take(history) {
        if verify(password, hash).await {
            return Err(PasswordError::Reused(history));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy {
            min_length: 12,
            require_uppercase: true,
            require_lowercase: true,
            require_digit: true,
            require_special: true,
            history: 5,
            max_age: None,
        }
    }

    #[test]
    fn each_rule_is_reported() {
        let p = policy();
        assert!(policy_violations(&p, "Correct-Horse-9-Battery", "ann@x.io").is_empty());
        let broken = policy_violations(&p, "short", "ann@x.io");
        assert_eq!(broken.len(), 4, "{broken:?}"); // length, upper, digit, special
        assert!(broken[0].contains("at least 12"));
        assert_eq!(
            policy_violations(&p, "alllowercase-9", "ann@x.io"),
            vec!["must contain an upper-case letter"]
        );
        assert_eq!(
            policy_violations(&p, "NoSpecialChars99", "ann@x.io"),
            vec!["must contain a special character (not a letter or digit)"]
        );
        assert_eq!(
            policy_violations(&p, "Margaret-2024!x", "margaret@bank.test"),
            vec!["must not contain the e-mail address"]
        );
        let long = format!("Aa1!{}", "x".repeat(70));
        assert!(policy_violations(&p, &long, "a@b.c")[0].contains("at most 71 bytes"));
        let lax = PasswordPolicy {
            min_length: 4,
            require_uppercase: false,
            require_lowercase: false,
            require_digit: false,
            require_special: false,
            ..p
        };
        assert!(policy_violations(&lax, "abcd", "a@b.c").is_empty());
    }

    #[tokio::test]
    async fn bcrypt_round_trip_and_history() {
        let p = policy();
        let hash = hash_new(&p, 4, "Correct-Horse-9-Battery", "ann@x.io")
            .await
            .unwrap();
        assert!(hash.starts_with("$2b$04$"), "{hash}");
        assert!(verify("Correct-Horse-9-Battery", &hash).await);
        assert!(!verify("Correct-Horse-9-Batter", &hash).await);
        assert!(!verify("anything", "not-a-hash").await);
        assert_eq!(
            hash_new(&p, 4, "weak", "ann@x.io")
                .await
                .unwrap_err()
                .code(),
            "weak_password"
        );
        let previous = vec![hash];
        assert_eq!(
            check_not_reused("Correct-Horse-9-Battery", &previous, 5).await,
            Err(PasswordError::Reused(5))
        );
        assert!(check_not_reused("Another-Horse-9-Battery", &previous, 5)
            .await
            .is_ok());
        assert!(check_not_reused("Correct-Horse-9-Battery", &previous, 0)
            .await
            .is_ok());
    }
}
