//! Security settings and MFA. Session and MFA settings start from config.toml (`[users.sessions]`,
//! `[users.mfa]`) and may be changed at run time by an admin; a change is stored in the
//! database, applies to every gateway sharing it at once, and is audited. The password policy
//! stays in config.toml (it is shown here, read-only).

use serde::Deserialize;
use serde_json::json;

use super::api::{AdminApi, Reply, Request};
use super::error::AdminError;
use super::session::{self, Caller};
use crate::audit::Kind;
use crate::auth::{totp, Role};
use crate::config::{MfaPolicy, SessionPolicy};
use crate::store::{now_millis, User};

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sessions: SessionPolicy,
    pub mfa: MfaPolicy,
    /// When the MFA setting was last changed at run time: the grace period of users who
    /// became subject to it counts from there.
    pub mfa_changed_at: Option<i64>,
}

/// Names of the rows in `security_settings`.
const SESSIONS: &str = "sessions";
const MFA: &str = "mfa";

pub async fn effective(api: &AdminApi) -> Result<Settings, AdminError> {
    let mut settings = Settings {
        sessions: api.config.users.sessions.clone(),
        mfa: api.config.users.mfa.clone(),
        mfa_changed_at: None,
    };
    for (name, value) in api.store.security_settings().await? {
        let corrupt =
            |e: serde_json::Error| AdminError::Internal(format!("security_settings.{name}: {e}"));
        match name.as_str() {
            SESSIONS => settings.sessions = serde_json::from_str(&value).map_err(corrupt)?,
            MFA => {
                let stored: StoredMfa = serde_json::from_str(&value).map_err(corrupt)?;
                settings.mfa = stored.policy;
                settings.mfa_changed_at = Some(stored.changed_at);
            }
            _ => {}
        }
    }
    Ok(settings)
}

#[derive(serde::Serialize, Deserialize)]
struct StoredMfa {
    #[serde(flatten)]
    policy: MfaPolicy,
    changed_at: i64,
}

/// When a user whose role requires MFA and who has none must have enrolled; `None` when MFA
/// is not required of them or they have it.
pub fn mfa_deadline(user: &User, settings: &Settings) -> Option<i64> {
    if user.mfa_enabled_at.is_some() || !settings.mfa.required_for_roles.contains(&user.role) {
        return None;
    }
    let since = user.created_at.max(settings.mfa_changed_at.unwrap_or(0));
    Some(since.saturating_add(session::millis(settings.mfa.grace_period_seconds)))
}

pub async fn get_settings(api: &AdminApi) -> Result<Reply, AdminError> {
    let settings = effective(api).await?;
    let p = &api.config.users.password_policy;
    Reply::ok(json!({
        "password_policy": {
            "min_length": p.min_length, "require_uppercase": p.require_uppercase,
            "require_lowercase": p.require_lowercase, "require_digit": p.require_digit,
            "require_special": p.require_special, "history": p.history,
            "max_age_days": p.max_age.map(|d| d.as_secs() / 86_400),
            "bcrypt_cost": api.config.users.bcrypt_cost,
            "source": "config.toml [users.password_policy]",
        },
        "sessions": settings.sessions,
        "mfa": settings.mfa,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsRequest {
    sessions: Option<SessionsChange>,
    mfa: Option<MfaChange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsChange {
    token_lifetime_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
    max_duration_seconds: Option<u64>,
    max_concurrent: Option<u32>,
    reauth_window_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MfaChange {
    issuer: Option<String>,
    required_for_roles: Option<Vec<Role>>,
    grace_period_seconds: Option<u64>,
}

pub async fn put_settings(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
) -> Result<Reply, AdminError> {
    let body: SettingsRequest = req.json()?;
    let mut settings = effective(api).await?;
    let actor = caller.actor();
    let mut changed = Vec::new();
    if let Some(c) = body.sessions {
        let s = &mut settings.sessions;
        let fields = [
            (
                "token_lifetime_seconds",
                c.token_lifetime_seconds,
                &mut s.token_lifetime_seconds,
            ),
            (
                "idle_timeout_seconds",
                c.idle_timeout_seconds,
                &mut s.idle_timeout_seconds,
            ),
            (
                "max_duration_seconds",
                c.max_duration_seconds,
                &mut s.max_duration_seconds,
            ),
            (
                "reauth_window_seconds",
                c.reauth_window_seconds,
                &mut s.reauth_window_seconds,
            ),
        ];
        for (name, value, slot) in fields {
            if let Some(v) = value {
                if v == 0 {
                    return Err(AdminError::bad_request(format!(
                        "sessions.{name} must be at least 1"
                    )));
                }
                *slot = v;
            }
        }
        if let Some(v) = c.max_concurrent {
            if v == 0 {
                return Err(AdminError::bad_request(
                    "sessions.max_concurrent must be at least 1",
                ));
            }
            s.max_concurrent = v;
        }
        let value = serde_json::to_string(&settings.sessions)
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        api.store
            .put_security_setting(SESSIONS, &value, &actor)
            .await?;
        changed.push(json!({"sessions": settings.sessions}));
    }
    if let Some(c) = body.mfa {
        let m = &mut settings.mfa;
        if let Some(issuer) = c.issuer {
            if issuer.trim().is_empty() {
                return Err(AdminError::bad_request("mfa.issuer must not be empty"));
            }
            m.issuer = issuer;
        }
        if let Some(roles) = c.required_for_roles {
            m.required_for_roles = roles;
        }
        if let Some(grace) = c.grace_period_seconds {
            m.grace_period_seconds = grace;
        }
        let stored = StoredMfa {
            policy: settings.mfa.clone(),
            changed_at: now_millis(),
        };
        let value =
            serde_json::to_string(&stored).map_err(|e| AdminError::Internal(e.to_string()))?;
        api.store.put_security_setting(MFA, &value, &actor).await?;
        changed.push(json!({"mfa": settings.mfa}));
    }
    api.event(
        Kind::Security,
        "",
        "security_settings.changed",
        &actor,
        json!({"changes": changed}),
    );
    get_settings(api).await
}

pub async fn login_failures(api: &AdminApi) -> Result<Reply, AdminError> {
    Reply::ok(json!({"data": api.store.login_failures().await?}))
}

/// Starts TOTP enrolment: a new secret waits for its first code. Until confirmed, the user's
/// current MFA (if any) stays in force.
pub async fn mfa_enroll(api: &AdminApi, caller: &Caller) -> Result<Reply, AdminError> {
    // Replacing a working second factor needs it (a stolen token alone must not swap it).
    if caller.user.mfa_enabled_at.is_some() {
        caller.require_recent_auth()?;
    }
    let secret = totp::generate_secret().map_err(|e| AdminError::Internal(e.to_string()))?;
    let encoded = totp::encode_secret(&secret);
    api.store.set_pending_mfa(&caller.user.id, &encoded).await?;
    let uri = totp::otpauth_uri(&caller.settings.mfa.issuer, &caller.user.email, &secret);
    let svg = totp::qr_svg(&uri).map_err(|e| AdminError::Internal(e.to_string()))?;
    Reply::ok(json!({
        "secret": encoded,
        "otpauth_uri": uri,
        "qr_svg": svg,
        "next": "POST /admin/v1/me/mfa/totp/confirm with {\"code\": \"123456\"} from the app",
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    code: String,
}

pub async fn mfa_confirm(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
) -> Result<Reply, AdminError> {
    let body: ConfirmRequest = req.json()?;
    if caller.user.mfa_enabled_at.is_some() {
        caller.require_recent_auth()?;
    }
    let state = api.store.mfa_state(&caller.user.id).await?;
    let Some(pending) = state.pending_secret else {
        return Err(AdminError::bad_request(
            "No TOTP enrolment is in progress: start one with POST /admin/v1/me/mfa/totp.",
        ));
    };
    let secret = totp::decode_secret(&pending)
        .ok_or_else(|| AdminError::Internal("unreadable pending TOTP secret".into()))?;
    let last = state.last_step.and_then(|s| u64::try_from(s).ok());
    let step = totp::verify(&secret, &body.code, session::unix_seconds(), last)
        .ok_or(AdminError::InvalidMfaCode)?;
    let codes = totp::generate_recovery_codes().map_err(|e| AdminError::Internal(e.to_string()))?;
    let hashes: Vec<String> = codes.iter().map(|c| totp::hash_recovery_code(c)).collect();
    api.store
        .enable_mfa(&caller.user.id, &pending, step as i64, &hashes)
        .await?;
    api.event(
        Kind::Security,
        caller.user.tenant.as_deref().unwrap_or(""),
        "mfa.enabled",
        &caller.actor(),
        json!({"user_id": caller.user.id, "method": "totp"}),
    );
    Reply::ok(json!({
        "mfa_enabled": true,
        "recovery_codes": codes,
        "note": "Each recovery code works once, in place of a TOTP code. They are shown only now.",
    }))
}

pub async fn reset_mfa(
    api: &AdminApi,
    caller: &Caller,
    user_id: &str,
) -> Result<Reply, AdminError> {
    let target = visible_user(api, caller, user_id).await?;
    let ended = api.store.reset_mfa(&target.id).await?;
    api.event(
        Kind::Security,
        target.tenant.as_deref().unwrap_or(""),
        "mfa.reset",
        &caller.actor(),
        json!({"user_id": target.id, "sessions_ended": ended}),
    );
    Reply::ok(json!({"user_id": target.id, "mfa_enabled": false, "sessions_ended": ended}))
}

/// The user if the caller may see them; 404 otherwise (other tenants' users do not exist for
/// a tenant-scoped caller).
pub async fn visible_user(
    api: &AdminApi,
    caller: &Caller,
    user_id: &str,
) -> Result<User, AdminError> {
    match api.store.user_by_id(user_id).await? {
        Some((user, _)) if caller.sees_user(&user) => Ok(user),
        _ => Err(AdminError::NotFound(format!("No user {user_id}."))),
    }
}
