//! Logging in and staying logged in. A login checks the password with bcrypt (an unknown
//! account is checked against a dummy hash so both fail alike), then the TOTP code when the
//! user has MFA, and opens a server-side session; the token returned is random and stored only
//! as its SHA-256. Every request then finds the session by that hash and checks that it is not
//! revoked, past its end, or idle for too long.

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::api::{AdminApi, Reply, Request};
use super::error::AdminError;
use super::security::{self, Settings};
use crate::audit::Kind;
use crate::auth::{passwords, totp, Permission};
use crate::store::{now_millis, AdminSession, NewSession, User};

/// Admin tokens: `pcs_` + 256 random bits.
const TOKEN_PREFIX: &str = "pcs_";

/// The authenticated caller of an admin API request.
pub struct Caller {
    pub user: User,
    pub session: AdminSession,
    /// What the session may not do until the user fixes it.
    pub restriction: Option<Restriction>,
    pub settings: Settings,
}

/// A session that may only fix its account: change the expired password, or enrol in MFA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    PasswordExpired,
    MfaEnrollmentOverdue,
}

impl Restriction {
    pub fn code(self) -> &'static str {
        match self {
            Restriction::PasswordExpired => "password_expired",
            Restriction::MfaEnrollmentOverdue => "mfa_enrollment_required",
        }
    }

    pub fn message(self) -> String {
        match self {
            Restriction::PasswordExpired => "Your password has expired: change it with PUT /admin/v1/me/password before doing anything else.".into(),
            Restriction::MfaEnrollmentOverdue => "Your role requires multi-factor authentication: enrol with POST /admin/v1/me/mfa/totp before doing anything else.".into(),
        }
    }
}

impl Caller {
    /// The actor recorded in the audit trail.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user.id)
    }

    pub fn may(&self, permission: Permission) -> bool {
        self.user.role.allows(permission)
    }

    /// Gateway-wide settings and data (security settings, login failures of every account) are
    /// for unscoped admins: an admin of one tenant must not weaken every tenant's sessions.
    pub fn require_unscoped(&self, what: &str) -> Result<(), AdminError> {
        match &self.user.tenant {
            None => Ok(()),
            Some(t) => Err(AdminError::Forbidden(format!(
                "A user scoped to tenant {t} cannot {what}: it applies to every tenant."
            ))),
        }
    }

    /// Whether the caller may see this user (and their sessions): a tenant-scoped caller sees
    /// their tenant's users only, never unscoped ones.
    pub fn sees_user(&self, user: &User) -> bool {
        match &self.user.tenant {
            None => true,
            Some(scope) => user.tenant.as_ref() == Some(scope),
        }
    }

    /// Whether the caller may see this tenant's keys, users and records.
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.user.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    /// Sensitive actions need the password (and TOTP) entered within the re-authentication
    /// window: a stolen token alone cannot create keys or change roles and settings.
    pub fn require_recent_auth(&self) -> Result<(), AdminError> {
        let window = self.settings.sessions.reauth_window_seconds;
        if now_millis() - self.session.reauth_at > millis(window) {
            return Err(AdminError::ReauthRequired(window));
        }
        Ok(())
    }
}

/// Seconds (of a setting) as milliseconds (of the stored times), saturating.
pub(super) fn millis(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

pub fn token_hash(token: &str) -> String {
    crate::ids::hex(&Sha256::digest(token.as_bytes()))
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The caller of a request with an admin token, or 401.
pub async fn authenticate(api: &AdminApi, req: &Request) -> Result<Caller, AdminError> {
    let Some(token) = bearer(req) else {
        return Err(AdminError::unauthenticated(
            "Send an admin token as 'Authorization: Bearer pcs_...' (get one from POST /admin/v1/login).",
            "missing_token",
        ));
    };
    let invalid = || {
        AdminError::unauthenticated(
            "The admin token is not valid: log in again.",
            "invalid_token",
        )
    };
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(invalid());
    }
    let session = api
        .store
        .session_by_token_hash(&token_hash(token))
        .await?
        .ok_or_else(invalid)?;
    if session.revoked_at.is_some() {
        return Err(AdminError::unauthenticated(
            "This session has ended (logged out, revoked, or replaced by a newer login): log in again.",
            "session_ended",
        ));
    }
    let settings = security::effective(api).await?;
    let now = now_millis();
    let policy = &settings.sessions;
    let idle = now - session.last_seen_at > millis(policy.idle_timeout_seconds);
    let over = now >= session.expires_at
        || now - session.created_at >= millis(policy.max_duration_seconds);
    if idle || over {
        api.store.revoke_session(&session.id).await?;
        return Err(AdminError::unauthenticated(
            if idle {
                "This session was idle for too long: log in again."
            } else {
                "This session has reached its maximum duration: log in again."
            },
            "session_expired",
        ));
    }
    let Some((user, _)) = api.store.user_by_id(&session.user_id).await? else {
        return Err(invalid());
    };
    if user.disabled_at.is_some() {
        return Err(AdminError::unauthenticated(
            "This account is disabled.",
            "account_disabled",
        ));
    }
    api.store.touch_session(&session.id, now).await?;
    let restriction = restriction(api, &user, &session, &settings, now);
    Ok(Caller {
        user,
        session,
        restriction,
        settings,
    })
}

fn restriction(
    api: &AdminApi,
    user: &User,
    session: &AdminSession,
    settings: &Settings,
    now: i64,
) -> Option<Restriction> {
    let max_age = api.config.users.password_policy.max_age;
    let expired = match (max_age, user.password_changed_at) {
        (Some(age), Some(changed)) => now - changed > millis(age.as_secs()),
        _ => false,
    };
    // SSO logins use the identity provider's own password and MFA rules.
    if session.method == "sso" {
        return None;
    }
    if expired {
        return Some(Restriction::PasswordExpired);
    }
    security::mfa_deadline(user, settings)
        .filter(|deadline| now > *deadline)
        .map(|_| Restriction::MfaEnrollmentOverdue)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
    totp: Option<String>,
    recovery_code: Option<String>,
}

pub async fn login(api: &AdminApi, req: &Request) -> Result<Reply, AdminError> {
    let body: LoginRequest = req.json()?;
    // Counted and audited under the address typed, unless it is not one (a password typed
    // into the wrong field must not end up in the audit trail).
    let account = crate::store::normalize_email(&body.email)
        .unwrap_or_else(|_| "(not an e-mail address)".to_string());
    let found = api.store.user_by_email(&body.email).await?;
    // Unknown, disabled and password-less (SSO-only) accounts are checked against the dummy
    // hash and refused with the same answer as a wrong password.
    let (user, hash) = match found {
        Some((user, Some(hash))) if user.disabled_at.is_none() => (Some(user), hash),
        _ => (None, api.dummy_hash.clone()),
    };
    let matches = passwords::verify(&body.password, &hash).await;
    let Some(user) = user.filter(|_| matches) else {
        failed_login(api, req, Some(&account), "password", "invalid_credentials").await?;
        return Err(AdminError::InvalidCredentials);
    };
    let factor = match second_factor(
        api,
        &user,
        body.totp.as_deref(),
        body.recovery_code.as_deref(),
    )
    .await
    {
        Ok(factor) => factor,
        Err(e @ AdminError::InvalidMfaCode) => {
            failed_login(api, req, Some(&account), "password", "invalid_mfa_code").await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    api.store.clear_login_failures("account", &account).await?;
    open_session(api, req, &user, "password", factor).await
}

/// Opens a session for a user who has proven who they are; the login answer.
pub async fn open_session(
    api: &AdminApi,
    req: &Request,
    user: &User,
    method: &str,
    factor: Option<&'static str>,
) -> Result<Reply, AdminError> {
    let settings = security::effective(api).await?;
    let policy = &settings.sessions;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        crate::ids::base62(
            &crate::ids::random_bytes::<32>().map_err(|e| AdminError::Internal(e.to_string()))?,
            43
        )
    );
    let now = now_millis();
    let lifetime = policy
        .token_lifetime_seconds
        .min(policy.max_duration_seconds);
    let client_ip = req.client_ip.clone();
    let user_agent = req.user_agent();
    let (session, ended) = api
        .store
        .create_session(
            NewSession {
                token_hash: &token_hash(&token),
                user_id: &user.id,
                expires_at: now + millis(lifetime),
                method,
                client_ip: &client_ip,
                user_agent: &user_agent,
            },
            policy.max_concurrent,
            millis(policy.idle_timeout_seconds),
        )
        .await?;
    api.event(
        Kind::Security,
        user.tenant.as_deref().unwrap_or(""),
        "login.succeeded",
        &format!("user:{}", user.id),
        json!({"session_id": session.id, "method": method, "second_factor": factor,
               "client_ip": client_ip, "sessions_ended": ended}),
    );
    let restriction = restriction(api, user, &session, &settings, now);
    Reply::ok(json!({
        "token": token,
        "token_type": "Bearer",
        "session_id": session.id,
        "expires_at": session.expires_at,
        "idle_timeout_seconds": policy.idle_timeout_seconds,
        "user": user,
        "sessions_ended": ended,
        "restriction": restriction.map(|r| json!({"code": r.code(), "message": r.message()})),
        "mfa_enrollment_deadline": security::mfa_deadline(user, &settings),
    }))
}

/// Counts a failed login against the account and the client IP, and records it.
/// Counts a failed login against the account (when one was named) and the client IP, and
/// records it. `method`: `password`, or `sso:NAME`.
pub(super) async fn failed_login(
    api: &AdminApi,
    req: &Request,
    account: Option<&str>,
    method: &str,
    reason: &str,
) -> Result<(), AdminError> {
    if let Some(account) = account {
        api.store.record_login_failure("account", account).await?;
    }
    api.store.record_login_failure("ip", &req.client_ip).await?;
    api.event(
        Kind::Security,
        "",
        "login.failed",
        &format!("ip:{}", req.client_ip),
        json!({"account": account, "method": method, "reason": reason, "client_ip": req.client_ip}),
    );
    Ok(())
}

/// Checks the TOTP code or a recovery code of a user with MFA. `Ok(None)`: the user has no MFA.
pub async fn second_factor(
    api: &AdminApi,
    user: &User,
    code: Option<&str>,
    recovery_code: Option<&str>,
) -> Result<Option<&'static str>, AdminError> {
    let state = api.store.mfa_state(&user.id).await?;
    let Some(secret) = state.secret else {
        return Ok(None);
    };
    if let Some(recovery) = recovery_code {
        let hash = totp::hash_recovery_code(recovery);
        return match api.store.use_recovery_code(&user.id, &hash).await? {
            true => Ok(Some("recovery_code")),
            false => Err(AdminError::InvalidMfaCode),
        };
    }
    let Some(code) = code else {
        return Err(AdminError::MfaRequired);
    };
    let secret = totp::decode_secret(&secret)
        .ok_or_else(|| AdminError::Internal(format!("user {}: unreadable TOTP secret", user.id)))?;
    let last = state.last_step.and_then(|s| u64::try_from(s).ok());
    let step =
        totp::verify(&secret, code, unix_seconds(), last).ok_or(AdminError::InvalidMfaCode)?;
    // The conditional UPDATE is the replay check that holds under concurrency.
    match api.store.claim_mfa_step(&user.id, step as i64).await? {
        true => Ok(Some("totp")),
        false => Err(AdminError::InvalidMfaCode),
    }
}

pub fn unix_seconds() -> u64 {
    u64::try_from(now_millis() / 1000).unwrap_or(0)
}

pub async fn logout(api: &AdminApi, caller: &Caller) -> Result<Reply, AdminError> {
    api.store.revoke_session(&caller.session.id).await?;
    api.event(
        Kind::Security,
        caller.user.tenant.as_deref().unwrap_or(""),
        "logout",
        &caller.actor(),
        json!({"session_id": caller.session.id}),
    );
    Reply::ok(json!({"logged_out": true, "sessions_ended": 1}))
}

pub async fn logout_all(api: &AdminApi, caller: &Caller) -> Result<Reply, AdminError> {
    let ended = api
        .store
        .revoke_user_sessions(&caller.user.id, None)
        .await?;
    api.event(
        Kind::Security,
        caller.user.tenant.as_deref().unwrap_or(""),
        "logout.all",
        &caller.actor(),
        json!({"sessions_ended": ended}),
    );
    Reply::ok(json!({"logged_out": true, "sessions_ended": ended}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReauthRequest {
    password: String,
    totp: Option<String>,
    recovery_code: Option<String>,
}

pub async fn reauth(api: &AdminApi, req: &Request, caller: &Caller) -> Result<Reply, AdminError> {
    let body: ReauthRequest = req.json()?;
    let hash = match api.store.user_by_id(&caller.user.id).await? {
        Some((_, Some(hash))) => hash,
        _ => {
            return Err(AdminError::Forbidden(
                "This account has no password (it signs in through SSO): log in through SSO again to confirm it is you.".into(),
            ))
        }
    };
    if !passwords::verify(&body.password, &hash).await {
        failed_login(
            api,
            req,
            Some(&caller.user.email),
            "password",
            "reauth_invalid_password",
        )
        .await?;
        return Err(AdminError::InvalidCredentials);
    }
    if let Err(e) = second_factor(
        api,
        &caller.user,
        body.totp.as_deref(),
        body.recovery_code.as_deref(),
    )
    .await
    {
        if matches!(e, AdminError::InvalidMfaCode) {
            failed_login(
                api,
                req,
                Some(&caller.user.email),
                "password",
                "reauth_invalid_mfa_code",
            )
            .await?;
        }
        return Err(e);
    }
    let now = now_millis();
    api.store
        .reauthenticate_session(&caller.session.id, now)
        .await?;
    let window = caller.settings.sessions.reauth_window_seconds;
    Reply::ok(json!({"reauthenticated": true, "valid_until": now + millis(window)}))
}

pub fn me(caller: &Caller) -> Result<Reply, AdminError> {
    let s = &caller.session;
    let window = caller.settings.sessions.reauth_window_seconds;
    Reply::ok(json!({
        "user": caller.user,
        "permissions": caller.user.role.permissions(),
        "session": {
            "id": s.id, "method": s.method, "created_at": s.created_at, "expires_at": s.expires_at,
            "idle_timeout_seconds": caller.settings.sessions.idle_timeout_seconds,
            "reauthenticated_until": s.reauth_at + millis(window),
        },
        "restriction": caller.restriction.map(|r| json!({"code": r.code(), "message": r.message()})),
        "mfa_enrollment_deadline": security::mfa_deadline(&caller.user, &caller.settings),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

pub async fn change_password(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
) -> Result<Reply, AdminError> {
    let body: ChangePasswordRequest = req.json()?;
    let Some((user, Some(hash))) = api.store.user_by_id(&caller.user.id).await? else {
        return Err(AdminError::Forbidden(
            "This account signs in through SSO and has no password here.".into(),
        ));
    };
    if !passwords::verify(&body.current_password, &hash).await {
        failed_login(
            api,
            req,
            Some(&user.email),
            "password",
            "change_password_invalid_password",
        )
        .await?;
        return Err(AdminError::InvalidCredentials);
    }
    let users = &api.config.users;
    let history = users.password_policy.history;
    let previous = api.store.password_history(&user.id, history).await?;
    passwords::check_not_reused(&body.new_password, &previous, history).await?;
    let new_hash = passwords::hash_new(
        &users.password_policy,
        users.bcrypt_cost,
        &body.new_password,
        &user.email,
    )
    .await?;
    api.store.set_password(&user.id, &new_hash).await?;
    // Someone who knew the old password may hold a session: end all but this one.
    let ended = api
        .store
        .revoke_user_sessions(&user.id, Some(&caller.session.id))
        .await?;
    api.event(
        Kind::Security,
        user.tenant.as_deref().unwrap_or(""),
        "user.password_changed",
        &caller.actor(),
        json!({"user_id": user.id, "sessions_ended": ended}),
    );
    Reply::ok(json!({"password_changed": true, "sessions_ended": ended}))
}

pub async fn list_sessions(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
) -> Result<Reply, AdminError> {
    let all = req.query("all") == Some("true");
    let user_id = req.query("user_id").map(str::to_string);
    let others = all || user_id.as_deref().is_some_and(|u| u != caller.user.id);
    if others && !caller.may(Permission::SessionsAll) {
        return Err(AdminError::Forbidden(
            "Only admins may list other users' sessions.".into(),
        ));
    }
    let whose = match (all, user_id) {
        (true, _) => None,
        (false, Some(user)) => Some(user),
        (false, None) => Some(caller.user.id.clone()),
    };
    let idle = millis(caller.settings.sessions.idle_timeout_seconds);
    let mut sessions = api.store.list_sessions(whose.as_deref(), idle).await?;
    // A tenant-scoped admin sees the sessions of their tenant's users only.
    if caller.user.tenant.is_some() {
        let visible: std::collections::HashSet<String> = api
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| caller.sees_user(u))
            .map(|u| u.id)
            .collect();
        sessions.retain(|s| visible.contains(&s.user_id));
    }
    let list: Vec<_> = sessions
        .iter()
        .map(|s| {
            let mut v = json!(s);
            v["current"] = json!(s.id == caller.session.id);
            v
        })
        .collect();
    Reply::ok(json!({"data": list}))
}

pub async fn revoke_session(
    api: &AdminApi,
    caller: &Caller,
    id: &str,
) -> Result<Reply, AdminError> {
    let not_found = || AdminError::NotFound(format!("No session {id}."));
    let session = api.store.session_by_id(id).await?.ok_or_else(not_found)?;
    if session.user_id != caller.user.id {
        // Other users' sessions do not exist for those who may not manage them.
        if !caller.may(Permission::SessionsAll) {
            return Err(not_found());
        }
        let owner = api.store.user_by_id(&session.user_id).await?;
        if owner.is_none_or(|(u, _)| !caller.sees_user(&u)) {
            return Err(not_found());
        }
    }
    let ended = api.store.revoke_session(id).await?;
    if ended {
        api.event(
            Kind::Security,
            caller.user.tenant.as_deref().unwrap_or(""),
            "session.revoked",
            &caller.actor(),
            json!({"session_id": id, "user_id": session.user_id}),
        );
    }
    Reply::ok(json!({"id": id, "revoked": true, "already_ended": !ended}))
}
