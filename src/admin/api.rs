//! The admin API under `/admin/v1/`: one route table ([`ROUTES`]) that both the dispatcher and
//! the OpenAPI document (`/admin/v1/openapi.json`) are built from, so the document cannot drift
//! from what is served. A request is matched to its route, authenticated (every route but
//! login), checked against the caller's role and session restrictions, then handled.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;

use super::error::AdminError;
use super::{records, resources, security, session, sso};
use crate::audit::Auditor;
use crate::auth::oidc::OidcClient;
use crate::auth::{KeyHasher, Permission};
use crate::config::Config;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

/// Admin requests are small JSON documents.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct AdminApi {
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    pub hasher: KeyHasher,
    pub metrics: Arc<Metrics>,
    pub auditor: Option<Arc<Auditor>>,
    /// bcrypt of a random password at the configured cost: a login for an unknown account is
    /// checked against it, so it takes as long as a wrong password for a real one.
    pub dummy_hash: String,
    /// `[[users.sso]]`, in config order.
    pub sso: Vec<OidcClient>,
}

impl AdminApi {
    /// Computes the dummy hash now (one bcrypt, ~0.25 s at cost 12) so that the first login
    /// for an unknown account is not faster than the rest.
    pub fn new(
        store: Arc<Store>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        auditor: Option<Arc<Auditor>>,
    ) -> Result<AdminApi, AdminError> {
        let random = crate::ids::hex(
            &crate::ids::random_bytes::<16>().map_err(|e| AdminError::Internal(e.to_string()))?,
        );
        let dummy_hash = bcrypt::non_truncating_hash(random, config.users.bcrypt_cost)
            .map_err(|e| AdminError::Internal(format!("bcrypt: {e}")))?;
        let sso = config
            .users
            .sso
            .iter()
            .map(|p| OidcClient::new(p.clone()).map_err(|e| AdminError::Internal(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(AdminApi {
            sso,
            hasher: KeyHasher::from_config(&config.auth),
            store,
            config,
            metrics,
            auditor,
            dummy_hash,
        })
    }

    /// Records an admin-plane event (see `logging::admin_event`).
    pub fn event(
        &self,
        kind: crate::audit::Kind,
        tenant: &str,
        action: &str,
        actor: &str,
        detail: serde_json::Value,
    ) {
        crate::logging::admin_event(
            &self.metrics,
            self.auditor.as_deref(),
            kind,
            tenant,
            action,
            actor,
            detail,
        );
    }
}

/// One admin request, read in full.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub client_ip: String,
}

impl Request {
    pub fn new(
        method: Method,
        uri: &http::Uri,
        headers: HeaderMap,
        body: Bytes,
        client_ip: String,
    ) -> Request {
        let query = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Request {
            method,
            path: uri.path().to_string(),
            query,
            headers,
            body,
            client_ip,
        }
    }

    /// The body as `T`; a missing body reads as `{}` so that all-optional bodies may be left out.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, AdminError> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| AdminError::BadRequest {
            message: format!("The request body is not valid JSON for this endpoint: {e}."),
            code: "invalid_json",
        })
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn user_agent(&self) -> String {
        self.headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect())
            .unwrap_or_default()
    }
}

/// A successful answer: JSON with a status (and, for SSO redirects, headers).
pub struct Reply {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub headers: Vec<(http::HeaderName, String)>,
}

impl Reply {
    pub fn ok(body: serde_json::Value) -> Result<Reply, AdminError> {
        Ok(Reply {
            status: StatusCode::OK,
            body,
            headers: Vec::new(),
        })
    }

    pub fn created(body: serde_json::Value) -> Result<Reply, AdminError> {
        Ok(Reply {
            status: StatusCode::CREATED,
            body,
            headers: Vec::new(),
        })
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: password and SSO login only.
    Public,
    /// A valid session whose role has this permission.
    Signed(Permission),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Login,
    SsoProviders,
    SsoLogin,
    SsoCallback,
    Logout,
    LogoutAll,
    Reauth,
    Me,
    ChangePassword,
    ListSessions,
    RevokeSession,
    ListTenants,
    CreateTenant,
    ListKeys,
    CreateKey,
    RevokeKey,
    RotateKey,
    ListUsers,
    CreateUser,
    SetRole,
    ResetMfa,
    ListRoles,
    GetSecurity,
    PutSecurity,
    LoginFailures,
    AuditRecords,
    Usage,
    MfaEnroll,
    MfaConfirm,
    OpenApi,
}

pub struct Route {
    pub method: &'static str,
    /// `{name}` segments match one path segment each.
    pub path: &'static str,
    pub op: Op,
    pub access: Access,
    /// Needs the password (and TOTP) entered within `reauth_window_seconds`.
    pub sensitive: bool,
    /// Allowed while the session is restricted (expired password, overdue MFA enrolment).
    pub while_restricted: bool,
    pub summary: &'static str,
    /// The request body's schema in the OpenAPI document's components, if it takes one.
    pub request: Option<&'static str>,
}

const fn route(
    method: &'static str,
    path: &'static str,
    op: Op,
    access: Access,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        op,
        access,
        sensitive: false,
        while_restricted: false,
        summary,
        request: None,
    }
}

impl Route {
    const fn body(mut self, schema: &'static str) -> Route {
        self.request = Some(schema);
        self
    }
    const fn sensitive(mut self) -> Route {
        self.sensitive = true;
        self
    }
    const fn while_restricted(mut self) -> Route {
        self.while_restricted = true;
        self
    }
}

use Access::{Public, Signed};
use Permission as P;

pub const ROUTES: &[Route] = &[
    route("POST", "/admin/v1/login", Op::Login, Public,
        "Log in with e-mail and password (and TOTP): returns a bearer token bound to a new session.")
        .body("LoginRequest"),
    route("GET", "/admin/v1/sso", Op::SsoProviders, Public,
        "The SSO providers administrators may log in with."),
    route("GET", "/admin/v1/sso/{id}/login", Op::SsoLogin, Public,
        "Start an SSO login: 302 to the provider (authorization code + PKCE, state, nonce)."),
    route("GET", "/admin/v1/sso/{id}/callback", Op::SsoCallback, Public,
        "Finish an SSO login: checks state and the ID token, maps claims to a role, returns a token like /login."),
    route("POST", "/admin/v1/logout", Op::Logout, Signed(P::OwnAccount),
        "End the session of the token used.").while_restricted(),
    route("POST", "/admin/v1/logout-all", Op::LogoutAll, Signed(P::OwnAccount),
        "End every session of the caller, this one included.").while_restricted(),
    route("POST", "/admin/v1/reauth", Op::Reauth, Signed(P::OwnAccount),
        "Confirm the password (and TOTP) to unlock sensitive actions for reauth_window_seconds.")
        .body("ReauthRequest").while_restricted(),
    route("GET", "/admin/v1/me", Op::Me, Signed(P::OwnAccount),
        "The caller: user, role, permissions, session and any restriction on it.").while_restricted(),
    route("PUT", "/admin/v1/me/password", Op::ChangePassword, Signed(P::OwnAccount),
        "Change the caller's password (policy and history apply); ends their other sessions.")
        .body("ChangePasswordRequest").while_restricted(),
    route("POST", "/admin/v1/me/mfa/totp", Op::MfaEnroll, Signed(P::OwnAccount),
        "Start TOTP enrolment: a new secret as an otpauth URI and a QR code (SVG).").while_restricted(),
    route("POST", "/admin/v1/me/mfa/totp/confirm", Op::MfaConfirm, Signed(P::OwnAccount),
        "Finish TOTP enrolment with a first code: returns 10 single-use recovery codes, once.")
        .body("MfaConfirmRequest").while_restricted(),
    route("GET", "/admin/v1/sessions", Op::ListSessions, Signed(P::OwnAccount),
        "Live sessions: the caller's own; admins may pass ?user_id= or ?all=true."),
    route("DELETE", "/admin/v1/sessions/{id}", Op::RevokeSession, Signed(P::OwnAccount),
        "End a session: one's own, or (admins) anyone's."),
    route("GET", "/admin/v1/tenants", Op::ListTenants, Signed(P::TenantsRead),
        "Tenants the caller can see."),
    route("POST", "/admin/v1/tenants", Op::CreateTenant, Signed(P::TenantsWrite),
        "Create a tenant.").body("CreateTenantRequest"),
    route("GET", "/admin/v1/keys", Op::ListKeys, Signed(P::KeysRead),
        "API keys the caller can see (prefixes only, never secrets); ?tenant= filters."),
    route("POST", "/admin/v1/keys", Op::CreateKey, Signed(P::KeysWrite),
        "Create an API key: the secret is in this response and nowhere else.")
        .body("CreateKeyRequest").sensitive(),
    route("DELETE", "/admin/v1/keys/{id}", Op::RevokeKey, Signed(P::KeysWrite),
        "Revoke an API key.").sensitive(),
    route("POST", "/admin/v1/keys/{id}/rotate", Op::RotateKey, Signed(P::KeysWrite),
        "Rotate an API key: a new key like it now, and the old one expires after overlap_seconds.")
        .body("RotateKeyRequest").sensitive(),
    route("GET", "/admin/v1/users", Op::ListUsers, Signed(P::UsersRead),
        "Users the caller can see."),
    route("POST", "/admin/v1/users", Op::CreateUser, Signed(P::UsersWrite),
        "Create a user with a password that meets the password policy.")
        .body("CreateUserRequest").sensitive(),
    route("PUT", "/admin/v1/users/{id}/role", Op::SetRole, Signed(P::UsersWrite),
        "Change a user's role; ends their sessions.").body("SetRoleRequest").sensitive(),
    route("POST", "/admin/v1/users/{id}/reset-mfa", Op::ResetMfa, Signed(P::UsersWrite),
        "Remove a user's TOTP and recovery codes (lost device); ends their sessions.").sensitive(),
    route("GET", "/admin/v1/roles", Op::ListRoles, Signed(P::RolesRead),
        "Roles and the permissions of each."),
    route("GET", "/admin/v1/security-settings", Op::GetSecurity, Signed(P::SecurityRead),
        "Effective security settings: password policy, sessions, MFA."),
    route("PUT", "/admin/v1/security-settings", Op::PutSecurity, Signed(P::SecurityWrite),
        "Change session and MFA settings (fields left out keep their value).")
        .body("SecuritySettingsRequest").sensitive(),
    route("GET", "/admin/v1/login-failures", Op::LoginFailures, Signed(P::SecurityRead),
        "Failed-login counters per account and per client IP."),
    route("GET", "/admin/v1/audit/records", Op::AuditRecords, Signed(P::AuditRead),
        "Audit records, oldest first: ?tenant= &since= &until= (2026-11-01, Unix ms or 7d) &actor= &action= &kind= &status= &limit= (≤ 1000)."),
    route("GET", "/admin/v1/usage", Op::Usage, Signed(P::UsageRead),
        "Requests and tokens per tenant and key from the audit trail: ?tenant= &since= &until=."),
    route("GET", "/admin/v1/openapi.json", Op::OpenApi, Signed(P::OwnAccount),
        "This API's OpenAPI 3.1 document."),
];

/// The route for a method and path with its `{…}` parameters, or the error to answer.
pub fn find_route<'p>(
    method: &Method,
    path: &'p str,
) -> Result<(&'static Route, Vec<&'p str>), AdminError> {
    let mut path_matched = false;
    for route in ROUTES {
        if let Some(params) = match_path(route.path, path) {
            if route.method == method.as_str() {
                return Ok((route, params));
            }
            path_matched = true;
        }
    }
    if path_matched {
        Err(AdminError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
        })
    } else {
        Err(AdminError::NotFound(format!(
            "Unknown admin API path {path}."
        )))
    }
}

fn match_path<'p>(pattern: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => params.push(g),
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// Answers one admin API request.
pub async fn handle(api: &AdminApi, req: &Request) -> Result<Reply, AdminError> {
    let (route, params) = find_route(&req.method, &req.path)?;
    let param = params.first().copied().unwrap_or_default();
    let Signed(permission) = route.access else {
        return match route.op {
            Op::SsoProviders => sso::list(api),
            Op::SsoLogin => sso::login(api, param).await,
            Op::SsoCallback => sso::callback(api, req, param).await,
            _ => session::login(api, req).await,
        };
    };
    let caller = session::authenticate(api, req).await?;
    if let Some(restriction) = &caller.restriction {
        if !route.while_restricted {
            return Err(AdminError::Restricted(restriction.message()));
        }
    }
    if !caller.user.role.allows(permission) {
        return Err(AdminError::Forbidden(format!(
            "The {} role may not {} {}.",
            caller.user.role, route.method, route.path
        )));
    }
    if route.sensitive {
        caller.require_recent_auth()?;
    }
    match route.op {
        Op::Login | Op::SsoProviders | Op::SsoLogin | Op::SsoCallback => Err(AdminError::Internal(
            "a public route reached the signed dispatch".into(),
        )),
        Op::Logout => session::logout(api, &caller).await,
        Op::LogoutAll => session::logout_all(api, &caller).await,
        Op::Reauth => session::reauth(api, req, &caller).await,
        Op::Me => session::me(&caller),
        Op::ChangePassword => session::change_password(api, req, &caller).await,
        Op::ListSessions => session::list_sessions(api, req, &caller).await,
        Op::RevokeSession => session::revoke_session(api, &caller, param).await,
        Op::ListTenants => resources::list_tenants(api, &caller).await,
        Op::CreateTenant => resources::create_tenant(api, req, &caller).await,
        Op::ListKeys => resources::list_keys(api, req, &caller).await,
        Op::CreateKey => resources::create_key(api, req, &caller).await,
        Op::RevokeKey => resources::revoke_key(api, &caller, param).await,
        Op::RotateKey => resources::rotate_key(api, req, &caller, param).await,
        Op::ListUsers => resources::list_users(api, &caller).await,
        Op::CreateUser => resources::create_user(api, req, &caller).await,
        Op::SetRole => resources::set_role(api, req, &caller, param).await,
        Op::ResetMfa => security::reset_mfa(api, &caller, param).await,
        Op::ListRoles => resources::list_roles(),
        Op::GetSecurity => {
            caller.require_unscoped("read the security settings")?;
            security::get_settings(api).await
        }
        Op::PutSecurity => {
            caller.require_unscoped("change the security settings")?;
            security::put_settings(api, req, &caller).await
        }
        Op::LoginFailures => {
            caller.require_unscoped("read every account's failed logins")?;
            security::login_failures(api).await
        }
        Op::AuditRecords => records::audit_records(api, req, &caller).await,
        Op::Usage => records::usage(api, req, &caller).await,
        Op::MfaEnroll => security::mfa_enroll(api, &caller).await,
        Op::MfaConfirm => security::mfa_confirm(api, req, &caller).await,
        Op::OpenApi => Reply::ok(super::openapi::document()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_parameters() {
        assert_eq!(
            match_path("/admin/v1/keys/{id}/rotate", "/admin/v1/keys/key_1/rotate"),
            Some(vec!["key_1"])
        );
        assert_eq!(match_path("/admin/v1/keys/{id}", "/admin/v1/keys/"), None);
        assert_eq!(match_path("/admin/v1/keys", "/admin/v1/keys/x"), None);
        assert!(matches!(
            find_route(&Method::PATCH, "/admin/v1/keys"),
            Err(AdminError::MethodNotAllowed { .. })
        ));
        assert!(matches!(
            find_route(&Method::GET, "/admin/v1/nope"),
            Err(AdminError::NotFound(_))
        ));
    }

    #[test]
    fn only_logins_are_public_and_every_route_is_unique() {
        for r in ROUTES {
            let public = matches!(
                r.op,
                Op::Login | Op::SsoProviders | Op::SsoLogin | Op::SsoCallback
            );
            assert_eq!(r.access == Public, public, "{}", r.path);
            assert_eq!(
                ROUTES
                    .iter()
                    .filter(|o| o.path == r.path && o.method == r.method)
                    .count(),
                1
            );
        }
    }
}
