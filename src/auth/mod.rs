//! Authenticate phase: who is calling. Portcullis API keys (`pc_…`), presented as
//! `Authorization: Bearer <key>` or `x-api-key: <key>`, or JWTs (`[auth.jwt]`) as
//! `Authorization: Bearer <token>`. The result is a [`Principal`] that later phases (limits,
//! guardrails, audit) read from the request context.

pub mod api_keys;
pub mod jwt;
pub mod oidc;
pub mod passwords;
pub mod roles;
pub mod totp;

use std::sync::Arc;

pub use api_keys::{GeneratedKey, KeyHasher, KeyVerifier};
pub use jwt::JwtVerifier;
pub use roles::{Permission, Role};

use crate::routing::ModelPattern;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The API key's id, or for a JWT `jwt_` + a hash of its issuer and subject.
    pub key_id: String,
    /// Display prefix (`pc_AbCdEfGh`, or the `jwt_…` id): safe to log, identifies the caller
    /// to its owner.
    pub key_prefix: String,
    pub tenant_id: String,
    pub tenant: String,
    /// Empty means every routed model.
    pub allowed_models: Arc<[ModelPattern]>,
    /// The guardrail policy named by the key, else by its tenant; `None`: the config default.
    pub guardrail_policy: Option<String>,
    /// The key's own stored limits (`keys create --rpm …`); unset fields fall back to config.
    pub key_limits: crate::limits::LimitSet,
    /// The tenant's stored limits (`tenants set-limits`); unset fields fall back to config.
    pub tenant_limits: crate::limits::LimitSet,
    /// What the audit trail keeps of this tenant's requests; `None`: `audit.default_logging`.
    pub logging_policy: Option<crate::audit::LoggingPolicy>,
    /// From a JWT's role claim; API keys have none.
    pub role: Option<String>,
    /// From a JWT's scopes claim; API keys have none.
    pub scopes: Arc<[String]>,
    /// Which endpoints an API key may call; JWTs may call every one (their scope is checked
    /// against `required_scope` instead).
    pub permissions: Arc<crate::store::KeyPermissions>,
}

impl Principal {
    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models.is_empty() || self.allowed_models.iter().any(|p| p.matches(model))
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "No API key provided. Send it as 'Authorization: Bearer pc_...' or 'x-api-key: pc_...'."
    )]
    MissingKey,
    #[error("The API key is malformed: Portcullis keys look like 'pc_' followed by 43 letters and digits.")]
    MalformedKey,
    #[error("Incorrect API key provided: {0}.")]
    UnknownKey(String),
    #[error("The API key {0} has expired.")]
    ExpiredKey(String),
    #[error("The API key {0} has been revoked.")]
    RevokedKey(String),
    #[error("The API key {prefix} is not allowed to use the model '{model}'.")]
    ModelNotAllowed { prefix: String, model: String },
    #[error("The API key {prefix} is not allowed to call {method} {path}.")]
    EndpointNotAllowed {
        prefix: String,
        method: String,
        path: String,
    },
    #[error("Cannot verify API keys right now: the key store is unavailable.")]
    StoreUnavailable,
    #[error("Invalid bearer token: {0}.")]
    InvalidToken(String),
    #[error("The token does not grant the scope '{0}' this gateway requires.")]
    ScopeMissing(String),
    #[error("Cannot verify the token right now: the signing keys of {0} are unavailable.")]
    KeysUnavailable(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingKey => "missing_api_key",
            AuthError::MalformedKey => "malformed_api_key",
            AuthError::UnknownKey(_) => "invalid_api_key",
            AuthError::ExpiredKey(_) => "expired_api_key",
            AuthError::RevokedKey(_) => "revoked_api_key",
            AuthError::ModelNotAllowed { .. } => "model_not_allowed",
            AuthError::EndpointNotAllowed { .. } => "endpoint_not_allowed",
            AuthError::StoreUnavailable => "auth_unavailable",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::ScopeMissing(_) => "insufficient_scope",
            AuthError::KeysUnavailable(_) => "jwks_unavailable",
        }
    }
}

/// API keys and, when `[auth.jwt]` is configured, JWTs.
pub struct Authenticator {
    pub keys: KeyVerifier,
    pub jwt: Option<JwtVerifier>,
}

impl Authenticator {
    /// Authenticate a request from its headers.
    pub async fn verify_headers(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        let credential = api_keys::presented_key(headers)?;
        if jwt::looks_like_jwt(credential) {
            return match &self.jwt {
                Some(jwt) => jwt.verify(credential).await,
                None => Err(AuthError::InvalidToken(
                    "JWTs are not accepted here (no [auth.jwt] in the gateway's config)".into(),
                )),
            };
        }
        self.keys.verify(credential).await
    }
}
