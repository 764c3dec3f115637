//! `[auth.jwt]`: JSON Web Tokens accepted on the data plane beside API keys. HS256 tokens are
//! checked with a shared secret; RS256 / ES256 tokens with the public keys (JWKS) of the
//! configured issuers. Claims name the tenant, role, scopes and allowed models.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::raw::{RawJwt, RawJwtIssuer};
use super::{Problems, Secret};

#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Shared secret for HS256 tokens; `None`: HS256 tokens are refused.
    pub hs256_secret: Option<Secret>,
    /// The `iss` and `aud` HS256 tokens must carry, when set.
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Claim names and the required scope of HS256 tokens (and the defaults of issuers).
    pub claims: ClaimNames,
    pub required_scope: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// How long fetched keys are used before they are fetched again.
    pub jwks_cache_ttl: Duration,
    /// The least time between two fetches of an issuer's keys (an unknown `kid` triggers one).
    pub jwks_min_refresh: Duration,
    pub issuers: Vec<JwtIssuer>,
}

/// Where the principal's fields are read from in a token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub tenant: String,
    pub role: String,
    /// A space-separated string (OAuth `scope`) or an array.
    pub scopes: String,
    /// Model patterns the caller may use, as an array or a space-separated string; absent:
    /// every routed model.
    pub models: String,
}

/// An identity provider whose RS256 / ES256 tokens are accepted.
#[derive(Debug, Clone)]
pub struct JwtIssuer {
    /// Compared byte for byte with the token's `iss` (a trailing slash matters).
    pub issuer: String,
    pub audience: String,
    /// `None`: found through OIDC discovery (`{issuer}/.well-known/openid-configuration`).
    pub jwks_url: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub claims: ClaimNames,
    pub required_scope: Option<String>,
}

pub(super) fn validate(raw: &RawJwt, p: &mut Problems) -> JwtConfig {
    let hs256_secret = raw
        .hs256_secret
        .as_deref()
        .and_then(|v| p.secret("auth.jwt.hs256_secret", v));
    if let Some(secret) = &hs256_secret {
        // RFC 7518 §3.2: the key must be at least as long as the hash output.
        if secret.expose().len() < 32 {
            p.push(
                "auth.jwt.hs256_secret",
                "must be at least 32 bytes (e.g. `openssl rand -hex 32`)",
            );
        }
    }
    if hs256_secret.is_none() && raw.issuers.is_empty() {
        p.push(
            "auth.jwt",
            "needs hs256_secret or at least one [[auth.jwt.issuers]]; remove the table to accept API keys only",
        );
    }
    let claims = ClaimNames {
        tenant: claim_name(p, "auth.jwt.tenant_claim", &raw.tenant_claim),
        role: claim_name(p, "auth.jwt.role_claim", &raw.role_claim),
        scopes: claim_name(p, "auth.jwt.scopes_claim", &raw.scopes_claim),
        models: claim_name(p, "auth.jwt.models_claim", &raw.models_claim),
    };
    let issuers = raw
        .issuers
        .iter()
        .enumerate()
        .map(|(i, issuer)| validate_issuer(issuer, &format!("auth.jwt.issuers[{i}]"), &claims, p))
        .collect::<Vec<_>>();
    for (i, issuer) in issuers.iter().enumerate() {
        if issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
            p.push(
                format!("auth.jwt.issuers[{i}].issuer"),
                format!("{:?} is listed twice", issuer.issuer),
            );
        }
    }
    JwtConfig {
        hs256_secret,
        issuer: non_empty(&raw.issuer),
        audience: non_empty(&raw.audience),
        claims,
        required_scope: non_empty(&raw.required_scope),
        leeway: Duration::from_secs(raw.leeway_seconds),
        jwks_cache_ttl: Duration::from_secs(p.positive(
            "auth.jwt.jwks_cache_ttl_seconds",
            raw.jwks_cache_ttl_seconds,
        )),
        jwks_min_refresh: Duration::from_secs(raw.jwks_min_refresh_seconds),
        issuers,
    }
}

fn validate_issuer(
    raw: &RawJwtIssuer,
    key: &str,
    defaults: &ClaimNames,
    p: &mut Problems,
) -> JwtIssuer {
    check_url(p, &format!("{key}.issuer"), &raw.issuer);
    if let Some(url) = &raw.jwks_url {
        check_url(p, &format!("{key}.jwks_url"), url);
    }
    if raw.audience.trim().is_empty() {
        p.push(format!("{key}.audience"), "must not be empty");
    }
    let mut algorithms = Vec::new();
    for (j, name) in raw.algorithms.iter().enumerate() {
        match name.as_str() {
            "RS256" => algorithms.push(Algorithm::RS256),
            "ES256" => algorithms.push(Algorithm::ES256),
            other => p.push(
                format!("{key}.algorithms[{j}]"),
                format!(
                    "{other:?} is not one of \"RS256\", \"ES256\" (HS256 uses auth.jwt.hs256_secret)"
                ),
            ),
        }
    }
    if raw.algorithms.is_empty() {
        p.push(
            format!("{key}.algorithms"),
            "must name at least one algorithm",
        );
    }
    let pick = |p: &mut Problems, field: &str, v: &Option<String>, default: &str| match v {
        Some(v) => claim_name(p, &format!("{key}.{field}"), v),
        None => default.to_string(),
    };
    JwtIssuer {
        issuer: raw.issuer.clone(),
        audience: raw.audience.clone(),
        jwks_url: raw.jwks_url.clone(),
        algorithms,
        claims: ClaimNames {
            tenant: pick(p, "tenant_claim", &raw.tenant_claim, &defaults.tenant),
            role: pick(p, "role_claim", &raw.role_claim, &defaults.role),
            scopes: pick(p, "scopes_claim", &raw.scopes_claim, &defaults.scopes),
            models: pick(p, "models_claim", &raw.models_claim, &defaults.models),
        },
        required_scope: non_empty(&raw.required_scope),
    }
}

fn claim_name(p: &mut Problems, key: &str, name: &str) -> String {
    if name.trim().is_empty() {
        p.push(key, "must name a claim");
    }
    name.to_string()
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Keys are fetched over HTTPS; plain HTTP only to this machine (tests, a local sidecar).
pub(super) fn check_url(p: &mut Problems, key: &str, url: &str) {
    let Some((scheme, rest)) = url.split_once("://") else {
        p.push(key, format!("{url:?} is not an http(s) URL"));
        return;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    match scheme {
        "https" if !host.is_empty() => {}
        "http" if loopback => {}
        "http" => p.push(
            key,
            format!(
                "{url:?} must use https (plain http is allowed for 127.0.0.1 and localhost only)"
            ),
        ),
        _ => p.push(key, format!("{url:?} is not an https URL")),
    }
}
