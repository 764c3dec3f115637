//! Single sign-on for the admin plane (`[[users.sso]]`). `GET /admin/v1/sso/{provider}/login`
//! sends the browser to the provider with a fresh `state`, `nonce` and PKCE challenge (kept in
//! the database for ten minutes, and the state also in a cookie that binds the callback to the
//! browser that started it); `GET …/callback` checks them, exchanges the code, verifies the ID
//! token, maps its claims to a role and opens a session like a password login.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::api::{AdminApi, Reply, Request};
use super::error::AdminError;
use super::session;
use crate::audit::Kind;
use crate::auth::oidc::OidcClient;
use crate::auth::Role;
use crate::store::{now_millis, NewUser, PendingSso};

/// How long a started login may take to come back.
const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;
const COOKIE: &str = "portcullis_sso_state";

fn provider<'a>(api: &'a AdminApi, name: &str) -> Result<&'a OidcClient, AdminError> {
    api.sso
        .iter()
        .find(|c| c.provider.name == name)
        .ok_or_else(|| AdminError::NotFound(format!("No SSO provider named {name}.")))
}

fn state_hash(state: &str) -> String {
    crate::ids::hex(&Sha256::digest(state.as_bytes()))
}

fn sso_error(message: impl Into<String>, code: &'static str) -> AdminError {
    AdminError::unauthenticated(message, code)
}

pub fn list(api: &AdminApi) -> Result<Reply, AdminError> {
    let providers: Vec<_> = api
        .sso
        .iter()
        .map(|c| {
            json!({"name": c.provider.name, "issuer": c.provider.issuer,
                   "login_url": format!("/admin/v1/sso/{}/login", c.provider.name)})
        })
        .collect();
    Reply::ok(json!({"data": providers}))
}

pub async fn login(api: &AdminApi, name: &str) -> Result<Reply, AdminError> {
    let client = provider(api, name)?;
    let started = client
        .start()
        .await
        .map_err(|e| AdminError::Upstream(e.to_string(), e.code()))?;
    api.store
        .put_sso_login(
            &state_hash(&started.state),
            &PendingSso {
                provider: name.to_string(),
                nonce: started.nonce,
                pkce_verifier: started.pkce_verifier,
                created_at: now_millis(),
            },
        )
        .await?;
    let secure = if client.provider.redirect_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path=/admin/v1/sso/{name}/; Max-Age=600; HttpOnly; SameSite=Lax{secure}",
        started.state
    );
    Ok(Reply {
        status: http::StatusCode::FOUND,
        body: json!({"authorization_url": started.authorization_url}),
        headers: vec![
            (http::header::LOCATION, started.authorization_url),
            (http::header::SET_COOKIE, cookie),
        ],
    })
}

fn cookie<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub async fn callback(api: &AdminApi, req: &Request, name: &str) -> Result<Reply, AdminError> {
    let client = provider(api, name)?;
    let method = format!("sso:{name}");
    let method = method.as_str();
    let refuse = |message: String, code: &'static str| async move {
        session::failed_login(api, req, None, method, code).await?;
        Err::<Reply, AdminError>(sso_error(message, code))
    };
    if let Some(error) = req.query("error") {
        let description = req.query("error_description").unwrap_or_default();
        return refuse(
            format!("The identity provider refused the login: {error} {description}"),
            "sso_denied",
        )
        .await;
    }
    let (Some(state), Some(code)) = (req.query("state"), req.query("code")) else {
        return Err(AdminError::bad_request(
            "The callback needs the 'code' and 'state' query parameters.",
        ));
    };
    // The state must come back to the browser that started the login (no login CSRF) …
    if cookie(req, COOKIE) != Some(state) {
        return refuse(
            "The SSO state does not match this browser's login: start again.".into(),
            "sso_state_mismatch",
        )
        .await;
    }
    // … and must be one this gateway issued, unused, recent, for this provider.
    let pending = api.store.take_sso_login(&state_hash(state)).await?;
    let Some(pending) =
        pending.filter(|p| p.provider == name && now_millis() - p.created_at <= LOGIN_TTL_MS)
    else {
        return refuse(
            "The SSO state is unknown, used or expired: start again.".into(),
            "sso_state_invalid",
        )
        .await;
    };
    let identity = match client
        .finish(code, &pending.nonce, &pending.pkce_verifier)
        .await
    {
        Ok(identity) => identity,
        Err(e) => return refuse(format!("SSO login failed: {e}"), e.code()).await,
    };
    let p = &client.provider;
    let claims = &identity.claims;
    let Some(email) = claims.get(&p.email_claim).and_then(|v| v.as_str()) else {
        return refuse(
            format!("The ID token has no '{}' claim.", p.email_claim),
            "sso_no_email",
        )
        .await;
    };
    let email = crate::store::normalize_email(email)?;
    let verified = claims.get("email_verified").and_then(|v| v.as_bool());
    if verified == Some(false) || (p.require_verified_email && verified != Some(true)) {
        return refuse(
            "The provider does not vouch for this e-mail address (email_verified).".into(),
            "sso_email_unverified",
        )
        .await;
    }
    let domain = email.rsplit('@').next().unwrap_or_default();
    if !p.allowed_domains.is_empty() && !p.allowed_domains.iter().any(|d| d == domain) {
        return refuse(
            format!("E-mail addresses of {domain} may not log in through {name}."),
            "sso_domain_not_allowed",
        )
        .await;
    }
    let Some(role) = mapped_role(claims.get(&p.role_claim), &p.role_mapping, p.default_role) else {
        return refuse(
            format!(
                "No role is mapped to this account's '{}' claim at {name}.",
                p.role_claim
            ),
            "sso_no_role",
        )
        .await;
    };

    // The provider identity already belongs to one account: it must be this address's.
    let linked = api.store.user_id_by_sso(name, &identity.subject).await?;
    let user = match api.store.user_by_email(&email).await? {
        Some((user, password_hash)) => {
            if user.disabled_at.is_some() {
                return refuse("This account is disabled.".into(), "account_disabled").await;
            }
            // A provider bound to a tenant only logs into that tenant's accounts.
            if p.tenant.is_some() && user.tenant != p.tenant {
                return refuse(
                    format!("{name} may not log into accounts outside its tenant."),
                    "sso_tenant_mismatch",
                )
                .await;
            }
            match api.store.sso_link(&user.id).await? {
                Some((linked_provider, subject))
                    if linked_provider != name || subject != identity.subject =>
                {
                    return refuse(
                        "This account is linked to another identity at the provider.".into(),
                        "sso_subject_mismatch",
                    )
                    .await;
                }
                Some(_) => {}
                None => {
                    // Linking a password account on the provider's word would let anyone who
                    // controls that address at the provider take it over (MFA included):
                    // SSO accounts are created by SSO, or provisioned without a password.
                    if password_hash.is_some() {
                        return refuse(
                            "This account logs in with a password; an admin must provision SSO accounts without one.".into(),
                            "sso_account_has_password",
                        )
                        .await;
                    }
                    if linked.is_some() {
                        return refuse(
                            "This provider identity is linked to another account.".into(),
                            "sso_subject_mismatch",
                        )
                        .await;
                    }
                    api.store
                        .link_sso(&user.id, name, &identity.subject)
                        .await?;
                }
            }
            // The provider's groups are the source of truth for the role.
            if user.role != role {
                api.store.set_user_role(&user.id, role).await?;
                api.event(
                    Kind::Security,
                    user.tenant.as_deref().unwrap_or(""),
                    "user.role_changed",
                    &format!("sso:{name}"),
                    json!({"user_id": user.id, "from": user.role, "to": role}),
                );
            }
            crate::store::User { role, ..user }
        }
        None => {
            if linked.is_some() {
                // The address changed at the provider: the old account is not handed over.
                return refuse(
                    "This provider identity is linked to another account (its e-mail address changed).".into(),
                    "sso_subject_mismatch",
                )
                .await;
            }
            let user = api
                .store
                .create_user(NewUser {
                    email: &email,
                    role,
                    tenant: p.tenant.as_deref(),
                    password_hash: None,
                })
                .await?;
            api.store
                .link_sso(&user.id, name, &identity.subject)
                .await?;
            api.event(
                Kind::Admin,
                user.tenant.as_deref().unwrap_or(""),
                "user.created",
                &format!("sso:{name}"),
                json!({"user_id": user.id, "role": user.role, "provider": name}),
            );
            user
        }
    };
    api.store.clear_login_failures("account", &email).await?;
    session::open_session(api, req, &user, "sso", None).await
}

/// The most privileged role mapped from the claim's value(s), else the default.
fn mapped_role(
    claim: Option<&serde_json::Value>,
    mapping: &[(String, Role)],
    default: Option<Role>,
) -> Option<Role> {
    let values: Vec<&str> = match claim {
        Some(serde_json::Value::String(s)) => vec![s.as_str()],
        Some(serde_json::Value::Array(list)) => list.iter().filter_map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    };
    mapping
        .iter()
        .filter(|(value, _)| values.contains(&value.as_str()))
        .map(|(_, role)| *role)
        .min_by_key(|role| Role::ALL.iter().position(|r| r == role))
        .or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_privileged_mapped_role_wins() {
        let mapping = vec![
            ("devs".to_string(), Role::Developer),
            ("admins".to_string(), Role::Admin),
            ("auditors".to_string(), Role::Viewer),
        ];
        let claim = json!(["auditors", "devs", "other"]);
        assert_eq!(
            mapped_role(Some(&claim), &mapping, None),
            Some(Role::Developer)
        );
        assert_eq!(
            mapped_role(Some(&json!("admins")), &mapping, None),
            Some(Role::Admin)
        );
        assert_eq!(mapped_role(Some(&json!(["other"])), &mapping, None), None);
        assert_eq!(
            mapped_role(None, &mapping, Some(Role::Viewer)),
            Some(Role::Viewer)
        );
    }
}
