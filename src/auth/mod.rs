//! Authenticate phase: who is calling. Today: Portcullis API keys (`pc_…`), presented as
//! `Authorization: Bearer <key>` or `x-api-key: <key>`. The result is a [`Principal`] that
//! later phases (limits, guardrails, audit) read from the request context.

pub mod api_keys;

use std::sync::Arc;

pub use api_keys::{GeneratedKey, KeyHasher, KeyVerifier};

use crate::routing::ModelPattern;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    /// Display prefix (`pc_AbCdEfGh`): safe to log, identifies the key to its owner.
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
    #[error("Cannot verify API keys right now: the key store is unavailable.")]
    StoreUnavailable,
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
            AuthError::StoreUnavailable => "auth_unavailable",
        }
    }
}
