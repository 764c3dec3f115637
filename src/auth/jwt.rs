//! JWT bearer tokens (`[auth.jwt]`): HS256 with a shared secret, RS256 / ES256 with the keys
//! an issuer publishes (JWKS, found by OIDC discovery unless configured). The checks, in order:
//!
//! 1. the header names an algorithm we accept for that kind of key — never `none`, and HS256
//!    only with the configured secret, so a token "signed" with an issuer's public key as an
//!    HMAC secret (algorithm confusion) fails;
//! 2. RS/ES tokens: the (unverified) `iss` picks the issuer; its key is looked up by `kid`
//!    (an unknown `kid` refetches the issuer's keys, at most once per `jwks_min_refresh`);
//! 3. signature, `exp`, `nbf`, `iss`, `aud` (with `leeway`), then the claims: the tenant must
//!    exist, the required scope must be granted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, Principal};
use crate::config::{ClaimNames, JwtConfig, JwtIssuer};
use crate::routing::ModelPattern;
use crate::store::{Store, Tenant};

/// Does this bearer credential look like a JWT (three base64url parts) rather than a key?
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

pub struct JwtVerifier {
    config: JwtConfig,
    hs256: Option<DecodingKey>,
    issuers: Vec<IssuerKeys>,
    store: Arc<Store>,
    /// Tenant name → tenant (or `None`: no such tenant), for `key_cache_ttl`.
    tenants: Cache<String, Option<Arc<Tenant>>>,
    /// SHA-256 of a token that passed every check → its caller and `exp`, for `key_cache_ttl`:
    /// clients send the same token with every request until it expires, and checking it again
    /// costs ~4× an API key. Only accepted tokens are cached; `exp` is checked on every hit.
    verified: Cache<[u8; 32], (Arc<Principal>, i64)>,
    http: reqwest::Client,
}

/// An issuer and the keys fetched from it.
struct IssuerKeys {
    config: JwtIssuer,
    keys: RwLock<KeySet>,
    /// Held while fetching, so concurrent misses cause one fetch.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, (Algorithm, Arc<DecodingKey>)>,
    fetched: Option<Instant>,
}

impl JwtVerifier {
    pub fn new(
        config: &JwtConfig,
        store: Arc<Store>,
        tenant_cache_ttl: Duration,
    ) -> Result<JwtVerifier, AuthError> {
        let http = reqwest::Client::builder()
            // Key URLs come from config or the issuer's discovery document; never follow a
            // redirect to somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| AuthError::KeysUnavailable(format!("HTTP client: {e}")))?;
        Ok(JwtVerifier {
            hs256: config
                .hs256_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose().as_bytes())),
            issuers: config
                .issuers
                .iter()
                .map(|i| IssuerKeys {
                    config: i.clone(),
                    keys: RwLock::new(KeySet::default()),
                    fetching: Mutex::new(()),
                })
                .collect(),
            config: config.clone(),
            store,
            tenants: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(tenant_cache_ttl)
                .build(),
            verified: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(tenant_cache_ttl)
                .build(),
            http,
        })
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = crate::store::now_millis() / 1000;
        if let Some((principal, exp)) = self.verified.get(&digest) {
            if now <= exp.saturating_add(self.config.leeway.as_secs() as i64) {
                return Ok((*principal).clone());
            }
            self.verified.invalidate(&digest);
        }
        let (principal, exp) = self.verify_uncached(token).await?;
        self.verified
            .insert(digest, (Arc::new(principal.clone()), exp));
        Ok(principal)
    }

    /// Every check; the caller and the token's `exp`.
    async fn verify_uncached(&self, token: &str) -> Result<(Principal, i64), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("the token's header cannot be read ({e})")))?;
        let (claims, names, required_scope, issuer) = match header.alg {
            Algorithm::HS256 => {
                let key = self
                    .hs256
                    .as_ref()
                    .ok_or_else(|| invalid("HS256 tokens are not accepted here".into()))?;
                let mut v = self.validation(Algorithm::HS256);
                match &self.config.issuer {
                    Some(iss) => v.set_issuer(&[iss]),
                    None => v.iss = None,
                }
                match &self.config.audience {
                    Some(aud) => v.set_audience(&[aud]),
                    None => v.validate_aud = false,
                }
                let mut required = vec!["exp", "sub"];
                if self.config.issuer.is_some() {
                    required.push("iss");
                }
                if self.config.audience.is_some() {
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                let claims = decode(token, key, &v)?;
                (
                    claims,
                    &self.config.claims,
                    self.config.required_scope.as_deref(),
                    "hs256",
                )
            }
            alg @ (Algorithm::RS256 | Algorithm::ES256) => {
                let issuer = self.issuer_of(token)?;
                if !issuer.config.algorithms.contains(&alg) {
                    return Err(invalid(format!(
                        "the issuer {} is not trusted for {alg:?} tokens",
                        issuer.config.issuer
                    )));
                }
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("the token has no key id (kid)".into()))?;
                let key = self.key(issuer, kid, alg).await?;
                let mut v = self.validation(alg);
                v.set_issuer(&[&issuer.config.issuer]);
                v.set_audience(&[&issuer.config.audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                let claims = decode(token, &key, &v)?;
                (
                    claims,
                    &issuer.config.claims,
                    issuer.config.required_scope.as_deref(),
                    issuer.config.issuer.as_str(),
                )
            }
            other => {
                return Err(invalid(format!(
                    "tokens signed with {other:?} are not accepted"
                )))
            }
        };
        // `exp` is required and validated above, so it is a number here.
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        let principal = self
            .principal(&claims, names, required_scope, issuer)
            .await?;
        Ok((principal, exp))
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        // One algorithm per validation: jsonwebtoken then refuses any other in the header.
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway.as_secs();
        v.validate_nbf = true;
        v
    }

    /// The configured issuer named by the token's (not yet verified) `iss`.
    fn issuer_of(&self, token: &str) -> Result<&IssuerKeys, AuthError> {
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Value>(token)
            .map_err(|e| invalid(format!("the token's claims cannot be read ({e})")))?;
        let iss = unverified
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("the token has no issuer (iss)".into()))?;
        self.issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| invalid(format!("the issuer {iss:?} is not trusted")))
    }

    /// The issuer's key `kid`, fetching its keys when they are old or do not have it.
    async fn key(
        &self,
        issuer: &IssuerKeys,
        kid: &str,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, AuthError> {
        let ttl = self.config.jwks_cache_ttl;
        if let Some(found) = lookup(&*issuer.keys.read().await, kid, alg, ttl)? {
            return Ok(found);
        }
        let _fetching = issuer.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let last = {
            let keys = issuer.keys.read().await;
            if let Some(found) = lookup(&keys, kid, alg, ttl)? {
                return Ok(found);
            }
            keys.fetched
        };
        let stale = last.is_none_or(|t| t.elapsed() >= ttl);
        let may_refetch = last.is_none_or(|t| t.elapsed() >= self.config.jwks_min_refresh);
        if stale || may_refetch {
            match self.fetch_keys(&issuer.config).await {
                Ok(by_kid) => {
                    tracing::info!(issuer = %issuer.config.issuer, keys = by_kid.len(), "fetched the issuer's signing keys");
                    *issuer.keys.write().await = KeySet {
                        by_kid,
                        fetched: Some(Instant::now()),
                    };
                }
                Err(e) => {
                    tracing::warn!(issuer = %issuer.config.issuer, error = %e, "cannot fetch the issuer's signing keys");
                    // Keep serving the keys we have; without any, callers cannot be checked.
                    let keys = issuer.keys.read().await;
                    if keys.by_kid.is_empty() {
                        return Err(AuthError::KeysUnavailable(issuer.config.issuer.clone()));
                    }
                    return lookup_any_age(&keys, kid, alg);
                }
            }
        }
        lookup_any_age(&*issuer.keys.read().await, kid, alg)
    }

    async fn fetch_keys(
        &self,
        issuer: &JwtIssuer,
    ) -> Result<HashMap<String, (Algorithm, Arc<DecodingKey>)>, String> {
        let jwks_url = match &issuer.jwks_url {
            Some(url) => url.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.issuer.trim_end_matches('/')
                );
                let doc = self.get_json(&url).await?;
                // Discovery must describe the issuer we trust (OpenID Connect Discovery §4.3).
                if doc.get("issuer").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
                    return Err(format!("{url} names a different issuer"));
                }
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{url} has no jwks_uri"))?
                    .to_string()
            }
        };
        let doc = self.get_json(&jwks_url).await?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{jwks_url} has no \"keys\" array"))?;
        // Key by key: one key of a type we do not know must not hide the others.
        let mut by_kid = HashMap::new();
        for value in keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
                continue;
            };
            if let Some((kid, alg, key)) = usable_key(&jwk) {
                by_kid.insert(kid, (alg, Arc::new(key)));
            }
        }
        Ok(by_kid)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        response
            .json::<Value>()
            .await
            .map_err(|e| format!("GET {url}: not JSON ({e})"))
    }

    async fn principal(
        &self,
        claims: &Value,
        names: &ClaimNames,
        required_scope: Option<&str>,
        issuer: &str,
    ) -> Result<Principal, AuthError> {
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        let tenant_name = claims
            .get(&names.tenant)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid(format!("the token has no {:?} claim", names.tenant)))?;
        let scopes = string_list(claims.get(&names.scopes));
        if let Some(required) = required_scope {
            if !scopes.iter().any(|s| s == required) {
                return Err(AuthError::ScopeMissing(required.to_string()));
            }
        }
        let mut allowed_models = Vec::new();
        for pattern in string_list(claims.get(&names.models)) {
            let parsed = ModelPattern::parse(&pattern)
                .map_err(|e| invalid(format!("the token's {:?} claim: {e}", names.models)))?;
            allowed_models.push(parsed);
        }
        let tenant = self.tenant(tenant_name).await?.ok_or_else(|| {
            invalid(format!(
                "the tenant {tenant_name:?} named by the token does not exist"
            ))
        })?;
        // A stable pseudonym for the caller: `sub` may be an e-mail address, which has no place
        // in rate-limit keys, logs or audit actors.
        let id = caller_id(issuer, sub);
        Ok(Principal {
            key_prefix: id.clone(),
            key_id: id,
            tenant_id: tenant.id.clone(),
            tenant: tenant.name.clone(),
            allowed_models: allowed_models.into(),
            guardrail_policy: tenant.guardrail_policy.clone(),
            key_limits: crate::limits::LimitSet::default(),
            tenant_limits: tenant.limits,
            logging_policy: tenant.logging_policy,
            role: claims
                .get(&names.role)
                .and_then(Value::as_str)
                .map(str::to_string),
            scopes: scopes.into(),
            permissions: Arc::new(crate::store::KeyPermissions::Full),
        })
    }

    async fn tenant(&self, name: &str) -> Result<Option<Arc<Tenant>>, AuthError> {
        if let Some(hit) = self.tenants.get(name) {
            return Ok(hit);
        }
        let found = self
            .store
            .tenant_by_name(name)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, code = e.code(), "tenant lookup failed");
                AuthError::StoreUnavailable
            })?
            .map(Arc::new);
        self.tenants.insert(name.to_string(), found.clone());
        Ok(found)
    }
}

fn invalid(reason: String) -> AuthError {
    AuthError::InvalidToken(reason)
}

fn decode(token: &str, key: &DecodingKey, v: &Validation) -> Result<Value, AuthError> {
    use jsonwebtoken::errors::ErrorKind;
    match jsonwebtoken::decode::<Value>(token, key, v) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(invalid(
            match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidAudience => "the token is for another audience (aud)",
                ErrorKind::InvalidIssuer => "the token's issuer (iss) is not the expected one",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                _ => "the token is malformed",
            }
            .to_string(),
        )),
    }
}

/// A fresh key for `kid` (`Ok(None)`: fetch first).
fn lookup(
    keys: &KeySet,
    kid: &str,
    alg: Algorithm,
    ttl: Duration,
) -> Result<Option<Arc<DecodingKey>>, AuthError> {
    match keys.fetched {
        Some(t) if t.elapsed() < ttl && keys.by_kid.contains_key(kid) => {
            lookup_any_age(keys, kid, alg).map(Some)
        }
        _ => Ok(None),
    }
}

fn lookup_any_age(keys: &KeySet, kid: &str, alg: Algorithm) -> Result<Arc<DecodingKey>, AuthError> {
    match keys.by_kid.get(kid) {
        Some((key_alg, key)) if *key_alg == alg => Ok(key.clone()),
        Some(_) => Err(invalid(format!(
            "the key {kid:?} is not for {alg:?} tokens"
        ))),
        None => Err(invalid(format!("the token's key id {kid:?} is unknown"))),
    }
}

/// A signing key of a kind we verify: RSA (RS256) or P-256 (ES256), with a `kid`.
fn usable_key(jwk: &Jwk) -> Option<(String, Algorithm, DecodingKey)> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let kid = jwk.common.key_id.clone()?;
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    // A key that names its algorithm must name this one.
    if let Some(named) = &jwk.common.key_algorithm {
        if named.to_string().parse::<Algorithm>().ok() != Some(alg) {
            return None;
        }
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, alg, key))
}

/// A claim holding a list: a JSON array of strings, or one space-separated string.
fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `jwt_` + 16 hex digits of SHA-256(issuer ‖ sub).
fn caller_id(issuer: &str, sub: &str) -> String {
    let mut h = Sha256::new();
    h.update(issuer.as_bytes());
    h.update([0]);
    h.update(sub.as_bytes());
    let digest = h.finalize();
    format!("jwt_{}", crate::ids::hex(&digest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOi.eyJzdWIi.sig"));
        assert!(!looks_like_jwt("pc_abc"));
        assert!(!looks_like_jwt("eyJhbGciOi.eyJzdWIi"));
    }

    #[test]
    fn lists_from_arrays_and_strings() {
        assert_eq!(
            string_list(Some(&serde_json::json!("a b  c"))),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            string_list(Some(&serde_json::json!(["x", 1, "y"]))),
            vec!["x", "y"]
        );
        assert!(string_list(None).is_empty());
    }

    #[test]
    fn caller_ids_are_stable_pseudonyms() {
        let a = caller_id("https://idp", "alice@example.com");
        assert_eq!(a, caller_id("https://idp", "alice@example.com"));
        assert_ne!(a, caller_id("https://other", "alice@example.com"));
        assert!(!a.contains("alice"));
        assert_eq!(a.len(), 20);
    }
}
