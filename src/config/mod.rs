//! Configuration: `config.toml` → [`RawConfig`] (serde, unknown keys rejected) → validated
//! [`Config`]. Validation collects *every* problem with its key path, so an operator fixes a
//! broken file in one pass instead of one error per restart.

mod audit;
mod guardrails;
mod jwt;
mod limits;
mod raw;
mod secret;
mod sso;
mod users;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use audit::{AuditConfig, Retention, SpoolFsync};
pub use guardrails::{GuardrailsConfig, BUILTIN_POLICY};
pub use jwt::{ClaimNames, JwtConfig, JwtIssuer};
pub use limits::{Backend as LimitsBackend, LimitsConfig, OnExceed, OnRedisError, RedisSettings};
pub use raw::RawConfig;
pub use secret::{Secret, SecretRef};
pub use sso::SsoProvider;
pub use users::{MfaPolicy, PasswordPolicy, SessionPolicy, UsersConfig, MAX_PASSWORD_BYTES};

use crate::providers::{MockProvider, OpenAiProvider, Provider, ProviderKind};
use crate::routing::{ModelPattern, Route, Router};

/// Every problem found in a config file, each with the key path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML for Portcullis:\n  {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path} has {} problem(s):\n{}", .problems.len(), format_problems(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "config_unreadable",
            ConfigError::Parse { .. } => "config_parse_error",
            ConfigError::Invalid { .. } => "config_invalid",
        }
    }
}

/// One validation problem: the dotted key path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {}: {}", p.key, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub router: Router,
    pub logging: LoggingConfig,
    pub guardrails: GuardrailsConfig,
    pub limits: LimitsConfig,
    pub audit: AuditConfig,
    pub users: UsersConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub grace_period: Duration,
    pub graceful_shutdown_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` we believe when deciding the client IP.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// How long a verified (or rejected) key stays cached: the bound on how long a revoked key
    /// keeps working.
    pub key_cache_ttl: Duration,
    pub key_cache_capacity: u64,
    /// Optional server secret: keys are stored as HMAC-SHA-256(pepper, key) instead of SHA-256.
    pub key_pepper: Option<Secret>,
    /// `None`: only API keys are accepted.
    pub jwt: Option<JwtConfig>,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        raw.validate(dir).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Accumulates problems while validating, so every one is reported at once.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn socket_addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.push(key, format!("{value:?} is not an IP:port address"));
                None
            }
        }
    }

    fn positive(&mut self, key: &str, value: u64) -> u64 {
        if value == 0 {
            self.push(key, "must be greater than 0");
        }
        value
    }

    fn secret(&mut self, key: &str, value: &str) -> Option<Secret> {
        match SecretRef::parse(value).and_then(|r| r.resolve()) {
            Ok(secret) => Some(secret),
            Err(message) => {
                self.push(key, message);
                None
            }
        }
    }
}

impl RawConfig {
    /// Check every field; return all problems or the validated config.
    /// `config_dir` anchors relative paths in the file (rule packs).
    pub fn validate(self, config_dir: &Path) -> Result<Config, Vec<Problem>> {
        let mut p = Problems::default();

        let listen = p.socket_addr("server.listen", &self.server.listen);
        let admin_listen = p.socket_addr("admin.listen", &self.admin.listen);
        if listen.is_some() && listen == admin_listen {
            p.push(
                "admin.listen",
                "must differ from server.listen (the admin listener is separate)",
            );
        }
        let threads = p.positive("server.threads", self.server.threads as u64) as usize;
        let max_body_bytes =
            p.positive("server.max_body_bytes", self.server.max_body_bytes) as usize;
        let mut trusted_proxies = Vec::new();
        for (i, ip) in self.server.trusted_proxies.iter().enumerate() {
            match ip.parse() {
                Ok(ip) => trusted_proxies.push(ip),
                Err(_) => p.push(
                    format!("server.trusted_proxies[{i}]"),
                    format!("{ip:?} is not an IP address"),
                ),
            }
        }

        let db_url = self.database.url.trim().to_string();
        if !(db_url.starts_with("sqlite:")
            || db_url.starts_with("postgres://")
            || db_url.starts_with("postgresql://"))
        {
            p.push(
                "database.url",
                format!("{db_url:?} must start with sqlite: or postgres://"),
            );
        }
        let max_connections = p.positive(
            "database.max_connections",
            u64::from(self.database.max_connections),
        ) as u32;

        let key_cache_ttl =
            Duration::from_millis(p.positive("auth.key_cache_ttl_ms", self.auth.key_cache_ttl_ms));
        let key_pepper = self
            .auth
            .key_pepper
            .as_deref()
            .and_then(|v| p.secret("auth.key_pepper", v));
        let jwt = self.auth.jwt.as_ref().map(|raw| jwt::validate(raw, &mut p));

        let providers = self.validate_providers(&mut p);
        let routes = self.validate_routes(&mut p, &providers);

        let format = match self.logging.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                p.push(
                    "logging.format",
                    format!("{other:?} is not one of \"text\", \"json\""),
                );
                LogFormat::Text
            }
        };
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err() {
            p.push(
                "logging.level",
                format!("{:?} is not a valid log filter", self.logging.level),
            );
        }

        let guardrails = guardrails::validate(&self.guardrails, config_dir, &mut p);
        let limits = limits::validate(&self.limits, &mut p);
        let audit = audit::validate(&self.audit, config_dir, &mut p);
        if audit.enabled
            && db_url.starts_with("sqlite:")
            && (db_url.contains(":memory:") || db_url.contains("mode=memory"))
        {
            p.push(
                "database.url",
                "an in-memory SQLite database cannot keep the audit trail (its writer opens a \
                 connection of its own): use a database file, or set audit.enabled = false",
            );
        }
        let users = users::validate(&self.users, &mut p);

        if !p.0.is_empty() {
            return Err(p.0);
        }
        let (Some(listen), Some(admin_listen), Some(guardrails)) =
            (listen, admin_listen, guardrails)
        else {
            return Err(p.0);
        };
        Ok(Config {
            server: ServerConfig {
                listen,
                threads,
                max_body_bytes,
                grace_period: Duration::from_secs(self.server.grace_period_seconds),
                graceful_shutdown_timeout: Duration::from_secs(
                    self.server.graceful_shutdown_timeout_seconds,
                ),
                trusted_proxies,
            },
            admin: AdminConfig {
                listen: admin_listen,
            },
            database: DatabaseConfig {
                url: db_url,
                max_connections,
                connect_timeout: Duration::from_millis(self.database.connect_timeout_ms),
            },
            auth: AuthConfig {
                key_cache_ttl,
                key_cache_capacity: self.auth.key_cache_capacity,
                key_pepper,
                jwt,
            },
            router: Router::new(routes),
            logging: LoggingConfig {
                format,
                level: self.logging.level,
            },
            guardrails,
            limits,
            audit,
            users,
        })
    }

    fn validate_providers(&self, p: &mut Problems) -> Vec<std::sync::Arc<Provider>> {
        let mut seen = HashSet::new();
        let mut providers = Vec::new();
        if self.providers.is_empty() {
            p.push("providers", "at least one [[providers]] entry is required");
        }
        for (i, raw) in self.providers.iter().enumerate() {
            let key = |field: &str| format!("providers[{i}].{field}");
            if raw.name.trim().is_empty() {
                p.push(key("name"), "must not be empty");
            } else if !seen.insert(raw.name.clone()) {
                p.push(key("name"), format!("{:?} is defined twice", raw.name));
            }
            let timeouts = crate::providers::Timeouts {
                connect: Duration::from_millis(
                    p.positive(&key("connect_timeout_ms"), raw.connect_timeout_ms),
                ),
                first_byte: Duration::from_millis(
                    p.positive(&key("first_byte_timeout_ms"), raw.first_byte_timeout_ms),
                ),
                idle: Duration::from_millis(
                    p.positive(&key("idle_timeout_ms"), raw.idle_timeout_ms),
                ),
                pool_idle: Duration::from_millis(raw.pool_idle_timeout_ms),
            };
            let kind = match raw.kind.as_str() {
                "openai" => {
                    let base_url = match &raw.base_url {
                        Some(url) => match crate::providers::BaseUrl::parse(url) {
                            Ok(u) => Some(u),
                            Err(msg) => {
                                p.push(key("base_url"), msg);
                                None
                            }
                        },
                        None => {
                            p.push(key("base_url"), "is required for kind = \"openai\"");
                            None
                        }
                    };
                    let api_key = match &raw.api_key {
                        Some(v) => p.secret(&key("api_key"), v),
                        None => {
                            p.push(
                                key("api_key"),
                                "is required for kind = \"openai\" (e.g. \"env:OPENAI_API_KEY\")",
                            );
                            None
                        }
                    };
                    match (base_url, api_key) {
                        (Some(base_url), Some(api_key)) => Some(ProviderKind::OpenAi(Box::new(
                            OpenAiProvider::new(base_url, api_key, timeouts),
                        ))),
                        _ => None,
                    }
                }
                "mock" => {
                    if raw.base_url.is_some() {
                        p.push(key("base_url"), "is not used by kind = \"mock\"; remove it");
                    }
                    if raw.api_key.is_some() {
                        p.push(key("api_key"), "is not used by kind = \"mock\"; remove it");
                    }
                    Some(ProviderKind::Mock(MockProvider))
                }
                other => {
                    p.push(
                        key("kind"),
                        format!("{other:?} is not one of \"openai\", \"mock\""),
                    );
                    None
                }
            };
            if let Some(kind) = kind {
                providers.push(std::sync::Arc::new(Provider {
                    name: raw.name.clone(),
                    kind,
                }));
            }
        }
        providers
    }

    fn validate_routes(
        &self,
        p: &mut Problems,
        providers: &[std::sync::Arc<Provider>],
    ) -> Vec<Route> {
        let mut routes = Vec::new();
        if self.routes.is_empty() {
            p.push(
                "routes",
                "at least one [[routes]] entry is required (model = \"*\" routes everything)",
            );
        }
        for (i, raw) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{i}].{field}");
            let pattern = match ModelPattern::parse(&raw.model) {
                Ok(pattern) => Some(pattern),
                Err(msg) => {
                    p.push(key("model"), msg);
                    None
                }
            };
            let provider = providers.iter().find(|pr| pr.name == raw.provider).cloned();
            let known_name = self.providers.iter().any(|pr| pr.name == raw.provider);
            if !known_name {
                p.push(
                    key("provider"),
                    format!(
                        "{:?} is not the name of any [[providers]] entry",
                        raw.provider
                    ),
                );
            }
            if let Some(upstream) = &raw.upstream_model {
                if upstream.trim().is_empty() {
                    p.push(key("upstream_model"), "must not be empty when set");
                }
            }
            if let (Some(pattern), Some(provider)) = (pattern, provider) {
                routes.push(Route {
                    pattern,
                    provider,
                    upstream_model: raw.upstream_model.clone(),
                });
            }
        }
        routes
    }
}

#[cfg(test)]
mod tests;
