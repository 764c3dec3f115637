//! API keys: generation (shown once), hashing, and verification with a short-lived cache.
//!
//! Keys are `pc_` + 32 CSPRNG bytes in base62 (43 characters). Only a hash is stored:
//! SHA-256, or HMAC-SHA-256 with a server pepper when `auth.key_pepper` is set. bcrypt is for
//! human passwords; keys carry 256 bits of entropy, so a fast hash is safe and keeps the data
//! plane fast. Verified keys (and unknown ones) are cached for `auth.key_cache_ttl_ms`
//! (default 5 s): a warm request does no database I/O, and a revoked key stops working within
//! that bound.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, Principal};
use crate::config::{AuthConfig, Secret};
use crate::ids::{self, RandomError};
use crate::routing::ModelPattern;
use crate::store::{now_millis, ApiKeyRecord, Store};

pub const KEY_PREFIX: &str = "pc_";
const SECRET_BYTES: usize = 32;
/// 32 bytes need 43 base62 digits (62^43 > 2^256).
const SECRET_CHARS: usize = 43;
/// `pc_` + 8 characters: enough to recognise a key in a list, useless to an attacker.
const DISPLAY_CHARS: usize = 8;

/// A freshly generated key. `secret` is shown to the user exactly once and never stored.
pub struct GeneratedKey {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

#[derive(Clone)]
pub struct KeyHasher {
    pepper: Option<Secret>,
}

impl KeyHasher {
    pub fn new(pepper: Option<Secret>) -> KeyHasher {
        KeyHasher { pepper }
    }

    pub fn from_config(auth: &AuthConfig) -> KeyHasher {
        KeyHasher::new(auth.key_pepper.clone())
    }

    pub fn generate(&self) -> Result<GeneratedKey, RandomError> {
        let bytes = ids::random_bytes::<SECRET_BYTES>()?;
        let secret = format!("{KEY_PREFIX}{}", ids::base62(&bytes, SECRET_CHARS));
        Ok(GeneratedKey {
            prefix: display_prefix(&secret),
            hash: self.hash(&secret),
            secret,
        })
    }

    /// Lowercase hex of SHA-256(key) or HMAC-SHA-256(pepper, key).
    pub fn hash(&self, key: &str) -> String {
        let digest: [u8; 32] = match &self.pepper {
            Some(pepper) => match Hmac::<Sha256>::new_from_slice(pepper.expose().as_bytes()) {
                Ok(mut mac) => {
                    mac.update(key.as_bytes());
                    mac.finalize().into_bytes().into()
                }
                // HMAC accepts keys of any length; this arm cannot be reached in practice.
                Err(_) => Sha256::digest(key.as_bytes()).into(),
            },
            None => Sha256::digest(key.as_bytes()).into(),
        };
        crate::ids::hex(&digest)
    }
}

pub fn display_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + DISPLAY_CHARS).collect()
}

/// Shape check before any hashing or lookup: rejects garbage cheaply and with its own code.
pub fn is_well_formed(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + SECRET_CHARS
        && key.starts_with(KEY_PREFIX)
        && ids::is_base62(&key[KEY_PREFIX.len()..])
}

/// The key as sent: `Authorization: Bearer <key>` wins over `x-api-key`.
pub fn presented_key(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::MalformedKey)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::MalformedKey)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::MalformedKey);
        }
        return Ok(token.trim());
    }
    match headers.get("x-api-key") {
        Some(value) => value
            .to_str()
            .map(str::trim)
            .map_err(|_| AuthError::MalformedKey),
        None => Err(AuthError::MissingKey),
    }
}

/// A cache entry: the stored record, or `None` for a hash the store does not know.
type CachedLookup = Option<Arc<ApiKeyRecord>>;

pub struct KeyVerifier {
    hasher: KeyHasher,
    store: Arc<Store>,
    cache: Cache<String, CachedLookup>,
}

impl KeyVerifier {
    pub fn new(auth: &AuthConfig, store: Arc<Store>) -> KeyVerifier {
        KeyVerifier {
            hasher: KeyHasher::from_config(auth),
            store,
            cache: Cache::builder()
                .max_capacity(auth.key_cache_capacity)
                .time_to_live(auth.key_cache_ttl)
                .build(),
        }
    }

    /// Authenticate a request from its headers.
    pub async fn verify_headers(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        self.verify(presented_key(headers)?).await
    }

    pub async fn verify(&self, key: &str) -> Result<Principal, AuthError> {
        if !is_well_formed(key) {
            return Err(AuthError::MalformedKey);
        }
        let hash = self.hasher.hash(key);
        let record = match self.cache.get(&hash) {
            Some(hit) => hit,
            None => {
                let found = self
                    .store
                    .find_api_key_by_hash(&hash)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, code = e.code(), "API key lookup failed");
                        AuthError::StoreUnavailable
                    })?
                    .map(Arc::new);
                self.cache.insert(hash.clone(), found.clone());
                found
            }
        };
        let prefix = display_prefix(key);
        let record = record.ok_or_else(|| AuthError::UnknownKey(prefix.clone()))?;
        // The lookup was by hash; compare again in constant time so that a cache or index
        // quirk can never turn into a timing side channel or a wrong match.
        if !bool::from(record.key_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(AuthError::UnknownKey(prefix));
        }
        if record.revoked_at.is_some() {
            return Err(AuthError::RevokedKey(prefix));
        }
        if record.expires_at.is_some_and(|at| at <= now_millis()) {
            return Err(AuthError::ExpiredKey(prefix));
        }
        Ok(principal(&record))
    }
}

fn principal(record: &ApiKeyRecord) -> Principal {
    Principal {
        key_id: record.id.clone(),
        key_prefix: record.prefix.clone(),
        tenant_id: record.tenant_id.clone(),
        tenant: record.tenant.clone(),
        allowed_models: record
            .allowed_models
            .iter()
            .filter_map(|m| ModelPattern::parse(m).ok())
            .collect(),
        guardrail_policy: record
            .guardrail_policy
            .clone()
            .or_else(|| record.tenant_guardrail_policy.clone()),
        key_limits: record.limits,
        logging_policy: record.tenant_logging_policy,
        tenant_limits: record.tenant_limits,
        role: None,
        scopes: Arc::from(Vec::new()),
        permissions: Arc::new(record.permissions.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_unique() {
        let h = KeyHasher::new(None);
        let a = h.generate().unwrap();
        let b = h.generate().unwrap();
        assert!(is_well_formed(&a.secret), "{}", a.secret);
        assert_eq!(a.secret.len(), 46);
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.prefix.len(), 11);
        assert_eq!(a.hash, h.hash(&a.secret));
        assert!(!a.hash.contains(&a.secret[3..]));
    }

    #[test]
    fn pepper_changes_the_hash() {
        let plain = KeyHasher::new(None);
        let secret = crate::config::SecretRef::Env("PATH".into())
            .resolve()
            .unwrap();
        let peppered = KeyHasher::new(Some(secret));
        let key = plain.generate().unwrap().secret;
        assert_ne!(plain.hash(&key), peppered.hash(&key));
        assert_eq!(plain.hash(&key).len(), 64);
        // Known SHA-256 vector.
        assert_eq!(
            plain.hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_keys_are_rejected_by_shape() {
        assert!(!is_well_formed("pc_short"));
        assert!(!is_well_formed(&format!("sk_{}", "a".repeat(43))));
        assert!(!is_well_formed(&format!("pc_{}-", "a".repeat(42))));
        assert!(is_well_formed(&format!("pc_{}", "a".repeat(43))));
    }

    #[test]
    fn presented_key_sources() {
        let mut h = http::HeaderMap::new();
        assert_eq!(presented_key(&h), Err(AuthError::MissingKey));
        h.insert("x-api-key", "pc_x".parse().unwrap());
        assert_eq!(presented_key(&h), Ok("pc_x"));
        h.insert("authorization", "Bearer pc_y".parse().unwrap());
        assert_eq!(presented_key(&h), Ok("pc_y"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), Err(AuthError::MalformedKey));
    }
}
