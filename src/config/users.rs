//! `[users]`: how administrators' passwords are hashed and what they must look like.

use std::time::Duration;

use super::raw::RawUsers;
use super::Problems;

#[derive(Debug, Clone)]
pub struct UsersConfig {
    /// bcrypt work factor: each step doubles the time to hash (and to guess).
    pub bcrypt_cost: u32,
    pub password_policy: PasswordPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// In characters. (At most 71 bytes: bcrypt ignores what follows byte 72.)
    pub min_length: usize,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_digit: bool,
    /// Anything that is not a letter or a digit.
    pub require_special: bool,
    /// A new password must differ from this many previous ones.
    pub history: usize,
    /// `None`: passwords never expire.
    pub max_age: Option<Duration>,
}

/// bcrypt reads at most 72 bytes, and the non-truncating API refuses 72 and more.
pub const MAX_PASSWORD_BYTES: usize = 71;

pub(super) fn validate(raw: &RawUsers, p: &mut Problems) -> UsersConfig {
    // 10 is OWASP's floor for bcrypt; 4 (the algorithm's minimum) is allowed for test setups
    // only when asked for explicitly, and 17+ takes seconds per login.
    if !(4..=16).contains(&raw.bcrypt_cost) {
        p.push(
            "users.bcrypt_cost",
            format!("{} is outside 4..=16 (default 12)", raw.bcrypt_cost),
        );
    }
    let policy = &raw.password_policy;
    if policy.min_length == 0 || policy.min_length > MAX_PASSWORD_BYTES {
        p.push(
            "users.password_policy.min_length",
            format!("must be between 1 and {MAX_PASSWORD_BYTES}"),
        );
    }
    if policy.history > 24 {
        p.push("users.password_policy.history", "must be at most 24");
    }
    UsersConfig {
        bcrypt_cost: raw.bcrypt_cost,
        password_policy: PasswordPolicy {
            min_length: policy.min_length,
            require_uppercase: policy.require_uppercase,
            require_lowercase: policy.require_lowercase,
            require_digit: policy.require_digit,
            require_special: policy.require_special,
            history: policy.history,
            max_age: (policy.max_age_days > 0)
                .then(|| Duration::from_secs(policy.max_age_days.saturating_mul(86_400))),
        },
    }
}
