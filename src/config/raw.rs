//! The config file exactly as written. Every table rejects unknown keys so a typo is an error,
//! not a silently ignored setting.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub guardrails: RawGuardrails,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub users: RawUsers,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub threads: usize,
    pub max_body_bytes: u64,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub trusted_proxies: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            threads: 2,
            max_body_bytes: 10 * 1024 * 1024,
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatabase {
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            url: "sqlite://portcullis.db".into(),
            max_connections: 8,
            connect_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub key_cache_ttl_ms: u64,
    pub key_cache_capacity: u64,
    pub key_pepper: Option<String>,
    pub jwt: Option<RawJwt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwt {
    pub hs256_secret: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub tenant_claim: String,
    pub role_claim: String,
    pub scopes_claim: String,
    pub models_claim: String,
    pub required_scope: Option<String>,
    pub leeway_seconds: u64,
    pub jwks_cache_ttl_seconds: u64,
    pub jwks_min_refresh_seconds: u64,
    pub issuers: Vec<RawJwtIssuer>,
}

impl Default for RawJwt {
    fn default() -> Self {
        RawJwt {
            hs256_secret: None,
            issuer: None,
            audience: None,
            tenant_claim: "tenant".into(),
            role_claim: "role".into(),
            scopes_claim: "scope".into(),
            models_claim: "models".into(),
            required_scope: None,
            leeway_seconds: 30,
            jwks_cache_ttl_seconds: 600,
            jwks_min_refresh_seconds: 30,
            issuers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtIssuer {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Option<String>,
    #[serde(default = "default_jwt_algorithms")]
    pub algorithms: Vec<String>,
    pub tenant_claim: Option<String>,
    pub role_claim: Option<String>,
    pub scopes_claim: Option<String>,
    pub models_claim: Option<String>,
    pub required_scope: Option<String>,
}

fn default_jwt_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            key_cache_ttl_ms: 5_000,
            key_cache_capacity: 100_000,
            key_pepper: None,
            jwt: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogging {
    pub format: String,
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    #[serde(default = "default_pool_idle_timeout_ms")]
    pub pool_idle_timeout_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}
// A non-streaming completion of a long answer can take minutes before its first byte.
fn default_first_byte_timeout_ms() -> u64 {
    300_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_pool_idle_timeout_ms() -> u64 {
    60_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub model: String,
    pub provider: String,
    pub upstream_model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGuardrails {
    pub default_policy: String,
    pub stream_holdback_bytes: u64,
    pub max_response_bytes: u64,
    pub rule_packs: Vec<String>,
    pub advice_pack: Option<String>,
    pub policies: BTreeMap<String, RawPolicy>,
}

impl Default for RawGuardrails {
    fn default() -> Self {
        RawGuardrails {
            default_policy: "default".into(),
            stream_holdback_bytes: 256,
            max_response_bytes: 32 * 1024 * 1024,
            rule_packs: Vec::new(),
            advice_pack: None,
            policies: BTreeMap::new(),
        }
    }
}

/// Entity type (or `default`, or `FINANCIAL_ADVICE`) → action, per direction.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    pub request: BTreeMap<String, String>,
    pub response: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub backend: String,
    pub redis_url: String,
    pub redis_timeout_ms: u64,
    pub redis_key_prefix: String,
    pub on_redis_error: String,
    pub on_exceed: String,
    pub default_completion_tokens: u64,
    pub unauthenticated_rpm: u64,
    pub concurrency_lease_seconds: u64,
    pub tenant_defaults: RawLimitSet,
    pub key_defaults: RawLimitSet,
    pub tenants: BTreeMap<String, RawLimitSet>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            backend: "local".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_timeout_ms: 100,
            redis_key_prefix: "portcullis".into(),
            on_redis_error: "local".into(),
            on_exceed: "finish".into(),
            default_completion_tokens: 1024,
            unauthenticated_rpm: 100,
            concurrency_lease_seconds: 900,
            tenant_defaults: RawLimitSet::default(),
            key_defaults: RawLimitSet::default(),
            tenants: BTreeMap::new(),
        }
    }
}

/// Limits of one scope (a tenant or a key); a missing field means no limit of that kind.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimitSet {
    pub rps: Option<u64>,
    pub rpm: Option<u64>,
    pub rph: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrency: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    pub enabled: bool,
    pub default_logging: String,
    pub signing_key: Option<String>,
    pub subject_header: Option<String>,
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub flush_interval_ms: u64,
    pub retry_interval_ms: u64,
    pub checkpoint_interval_seconds: u64,
    pub max_content_bytes: usize,
    pub spool_path: String,
    pub spool_fsync: String,
    pub retention: RawRetention,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            enabled: true,
            default_logging: "metadata".into(),
            signing_key: None,
            subject_header: None,
            queue_capacity: 20_000,
            batch_size: 1_000,
            flush_interval_ms: 200,
            retry_interval_ms: 1_000,
            checkpoint_interval_seconds: 60,
            max_content_bytes: 64 * 1024,
            spool_path: "portcullis-audit.spool".into(),
            spool_fsync: "always".into(),
            retention: RawRetention::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetention {
    pub requests_days: Option<u64>,
    pub events_days: Option<u64>,
    pub content_days: Option<u64>,
    pub purge_interval_seconds: u64,
    pub purge_batch: u64,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            requests_days: None,
            events_days: None,
            content_days: None,
            purge_interval_seconds: 3_600,
            purge_batch: 5_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUsers {
    pub bcrypt_cost: u32,
    pub password_policy: RawPasswordPolicy,
    pub sessions: RawSessions,
    pub mfa: RawMfa,
    pub sso: Vec<RawSso>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSso {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    pub redirect_url: String,
    #[serde(default = "default_sso_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    #[serde(default)]
    pub role_mapping: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub default_role: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    #[serde(default = "default_true")]
    pub require_verified_email: bool,
}

fn default_true() -> bool {
    true
}

fn default_sso_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_email_claim() -> String {
    "email".into()
}

fn default_role_claim() -> String {
    "groups".into()
}

impl Default for RawUsers {
    fn default() -> Self {
        RawUsers {
            bcrypt_cost: 12,
            password_policy: RawPasswordPolicy::default(),
            sessions: RawSessions::default(),
            mfa: RawMfa::default(),
            sso: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSessions {
    pub token_lifetime_seconds: u64,
    pub idle_timeout_seconds: u64,
    pub max_duration_seconds: u64,
    pub max_concurrent: u32,
    pub reauth_window_seconds: u64,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            token_lifetime_seconds: 24 * 3600,
            idle_timeout_seconds: 30 * 60,
            max_duration_seconds: 12 * 3600,
            max_concurrent: 3,
            reauth_window_seconds: 5 * 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMfa {
    pub issuer: String,
    pub required_for_roles: Vec<String>,
    pub grace_period_days: u64,
}

impl Default for RawMfa {
    fn default() -> Self {
        RawMfa {
            issuer: "Portcullis".into(),
            required_for_roles: Vec::new(),
            grace_period_days: 7,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPasswordPolicy {
    pub min_length: usize,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_digit: bool,
    pub require_special: bool,
    pub history: usize,
    pub max_age_days: u64,
}

impl Default for RawPasswordPolicy {
    fn default() -> Self {
        RawPasswordPolicy {
            min_length: 12,
            require_uppercase: true,
            require_lowercase: true,
            require_digit: true,
            require_special: true,
            history: 5,
            max_age_days: 90,
        }
    }
}
