//! `[users]`: how administrators' passwords are hashed and what they must look like, how long
//! their sessions last, and who must use MFA. Sessions and MFA are the defaults of the security
//! settings that administrators may change at run time (`PUT /admin/v1/security-settings`).

use std::time::Duration;

use super::raw::RawUsers;
use super::Problems;
use crate::auth::Role;

#[derive(Debug, Clone)]
pub struct UsersConfig {
    /// bcrypt work factor: each step doubles the time to hash (and to guess).
    pub bcrypt_cost: u32,
    pub password_policy: PasswordPolicy,
    pub sessions: SessionPolicy,
    pub mfa: MfaPolicy,
    pub sso: Vec<super::sso::SsoProvider>,
}

/// How long an administrator's login lasts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionPolicy {
    /// The token's own lifetime; the session ends at the earlier of this and `max_duration`.
    pub token_lifetime_seconds: u64,
    /// A session unused for this long is over.
    pub idle_timeout_seconds: u64,
    /// A session is over this long after login, however active.
    pub max_duration_seconds: u64,
    /// Sessions one user may hold at once; logging in once more ends the oldest.
    pub max_concurrent: u32,
    /// Sensitive actions (admin keys, security settings, role changes) need the password
    /// (and TOTP) to have been entered within this window.
    pub reauth_window_seconds: u64,
}

/// Who must use TOTP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MfaPolicy {
    /// The name authenticator apps show next to the account.
    pub issuer: String,
    pub required_for_roles: Vec<Role>,
    /// A user of such a role without MFA may still log in for this long after the requirement
    /// applies to them (their account's creation, or the setting's change), to enrol.
    pub grace_period_seconds: u64,
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
    let s = &raw.sessions;
    for (key, value) in [
        (
            "users.sessions.token_lifetime_seconds",
            s.token_lifetime_seconds,
        ),
        (
            "users.sessions.idle_timeout_seconds",
            s.idle_timeout_seconds,
        ),
        (
            "users.sessions.max_duration_seconds",
            s.max_duration_seconds,
        ),
        ("users.sessions.max_concurrent", u64::from(s.max_concurrent)),
        (
            "users.sessions.reauth_window_seconds",
            s.reauth_window_seconds,
        ),
    ] {
        if value == 0 {
            p.push(key, "must be at least 1");
        }
    }
    let mut required_for_roles = Vec::new();
    for (i, name) in raw.mfa.required_for_roles.iter().enumerate() {
        match Role::parse(name) {
            Some(role) => required_for_roles.push(role),
            None => p.push(
                format!("users.mfa.required_for_roles[{i}]"),
                format!("unknown role {name:?} (admin, manager, developer, viewer)"),
            ),
        }
    }
    if raw.mfa.issuer.trim().is_empty() {
        p.push("users.mfa.issuer", "must not be empty");
    }
    UsersConfig {
        sso: super::sso::validate(&raw.sso, p),
        sessions: SessionPolicy {
            token_lifetime_seconds: s.token_lifetime_seconds,
            idle_timeout_seconds: s.idle_timeout_seconds,
            max_duration_seconds: s.max_duration_seconds,
            max_concurrent: s.max_concurrent,
            reauth_window_seconds: s.reauth_window_seconds,
        },
        mfa: MfaPolicy {
            issuer: raw.mfa.issuer.clone(),
            required_for_roles,
            grace_period_seconds: raw.mfa.grace_period_days.saturating_mul(86_400),
        },
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
