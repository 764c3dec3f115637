//! `[[users.sso]]`: OpenID Connect providers administrators may log in with (docs/security.md
//! has presets for Google Workspace, Microsoft Entra ID, Okta and Auth0).

use super::jwt::check_url;
use super::raw::RawSso;
use super::secret::Secret;
use super::Problems;
use crate::auth::Role;

#[derive(Debug, Clone)]
pub struct SsoProvider {
    /// In URLs: `/admin/v1/sso/{name}/login`.
    pub name: String,
    /// Compared exactly with the discovery document's and the ID token's `iss`.
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<Secret>,
    /// This gateway's callback, as registered with the provider:
    /// `https://admin.example.com/admin/v1/sso/{name}/callback`.
    pub redirect_url: String,
    pub scopes: Vec<String>,
    /// The claim holding the e-mail address (`email`; Entra ID: `preferred_username` or `email`).
    pub email_claim: String,
    /// The claim holding group or role names (a string or a list), mapped by `role_mapping`.
    pub role_claim: String,
    /// Claim value → role. When several match, the most privileged role wins.
    pub role_mapping: Vec<(String, Role)>,
    /// The role of users no mapping matches; `None`: they are refused.
    pub default_role: Option<Role>,
    /// Users created by this provider are scoped to this tenant.
    pub tenant: Option<String>,
    /// Only e-mail addresses in these domains may log in (empty: any the provider vouches for).
    pub allowed_domains: Vec<String>,
    /// Refuse ID tokens without `email_verified: true`. Turn off only for providers that
    /// never send it and whose e-mail claim the organisation controls (docs/security.md).
    pub require_verified_email: bool,
}

pub(super) fn validate(raw: &[RawSso], p: &mut Problems) -> Vec<SsoProvider> {
    let mut out: Vec<SsoProvider> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("users.sso[{i}].{field}");
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 32
            && r.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            p.push(key("name"), "must be 1-32 characters of a-z, 0-9 and '-'");
        }
        if out.iter().any(|o| o.name == r.name) {
            p.push(key("name"), format!("{:?} is listed twice", r.name));
        }
        check_url(p, &key("issuer"), &r.issuer);
        check_url(p, &key("redirect_url"), &r.redirect_url);
        let callback = format!("/admin/v1/sso/{}/callback", r.name);
        if !r.redirect_url.ends_with(&callback) {
            p.push(key("redirect_url"), format!("must end with {callback}"));
        }
        if r.client_id.trim().is_empty() {
            p.push(key("client_id"), "must not be empty");
        }
        let client_secret = r
            .client_secret
            .as_deref()
            .and_then(|v| p.secret(&key("client_secret"), v));
        let mut scopes = r.scopes.clone();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let mut role_mapping = Vec::new();
        for (value, role) in &r.role_mapping {
            match Role::parse(role) {
                Some(role) => role_mapping.push((value.clone(), role)),
                None => p.push(
                    key(&format!("role_mapping.{value:?}")),
                    format!("unknown role {role:?} (admin, manager, developer, viewer)"),
                ),
            }
        }
        let default_role = r.default_role.as_deref().and_then(|d| {
            let role = Role::parse(d);
            if role.is_none() {
                p.push(key("default_role"), format!("unknown role {d:?}"));
            }
            role
        });
        if role_mapping.is_empty() && default_role.is_none() {
            p.push(
                key("role_mapping"),
                "map at least one claim value to a role, or set default_role",
            );
        }
        out.push(SsoProvider {
            name: r.name.clone(),
            issuer: r.issuer.clone(),
            client_id: r.client_id.clone(),
            client_secret,
            redirect_url: r.redirect_url.clone(),
            scopes,
            email_claim: r.email_claim.clone(),
            role_claim: r.role_claim.clone(),
            role_mapping,
            default_role,
            tenant: r.tenant.clone(),
            allowed_domains: r.allowed_domains.iter().map(|d| d.to_lowercase()).collect(),
            require_verified_email: r.require_verified_email,
        });
    }
    out
}
