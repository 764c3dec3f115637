//! `[limits]`: where rate-limit state lives (this process, or Redis shared by every replica),
//! what happens when Redis is unreachable or a stream outruns its token budget, and the limits
//! tenants and keys get when nothing more specific is stored for them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::{RawLimitSet, RawLimits};
use super::Problems;
use crate::limits::LimitSet;

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub backend: Backend,
    pub on_redis_error: OnRedisError,
    pub on_exceed: OnExceed,
    /// Completion tokens reserved for a request that sets no `max_tokens`.
    pub default_completion_tokens: u64,
    /// Per client IP, for requests without valid credentials.
    pub unauthenticated_rpm: Option<u32>,
    pub tenant_defaults: LimitSet,
    pub key_defaults: LimitSet,
    /// `[limits.tenants.NAME]`: per-tenant limits written in the config file.
    pub tenants: BTreeMap<String, LimitSet>,
}

#[derive(Debug, Clone)]
pub enum Backend {
    Local,
    Redis(RedisSettings),
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Longest wait for one Redis call before the fallback decides.
    pub timeout: Duration,
    /// Prefix of every key Portcullis writes, so several deployments can share one Redis.
    pub key_prefix: String,
    /// How long a concurrency slot survives a gateway that died without releasing it.
    pub concurrency_lease: Duration,
}

/// Redis unreachable: decide with this process's own limits, or refuse (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    Local,
    Deny,
}

/// A stream runs past the token budget left: let it finish (the overshoot is charged), or cut
/// it at an event boundary with a final error event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExceed {
    Finish,
    Cut,
}

impl LimitsConfig {
    /// The limits of tenant `name` before what `tenants set-limits` stored: the config's
    /// `[limits.tenants.NAME]`, field by field over `[limits.tenant_defaults]`.
    pub fn tenant_base(&self, name: &str) -> LimitSet {
        match self.tenants.get(name) {
            Some(own) => own.or(&self.tenant_defaults),
            None => self.tenant_defaults,
        }
    }
}

pub(super) fn validate(raw: &RawLimits, p: &mut Problems) -> LimitsConfig {
    let backend = match raw.backend.as_str() {
        "local" => Backend::Local,
        "redis" => {
            if !(raw.redis_url.starts_with("redis://") || raw.redis_url.starts_with("rediss://")) {
                p.push(
                    "limits.redis_url",
                    format!("{:?} must start with redis:// or rediss://", raw.redis_url),
                );
            }
            Backend::Redis(RedisSettings {
                url: raw.redis_url.clone(),
                timeout: Duration::from_millis(
                    p.positive("limits.redis_timeout_ms", raw.redis_timeout_ms),
                ),
                key_prefix: raw.redis_key_prefix.clone(),
                concurrency_lease: Duration::from_secs(p.positive(
                    "limits.concurrency_lease_seconds",
                    raw.concurrency_lease_seconds,
                )),
            })
        }
        other => {
            p.push(
                "limits.backend",
                format!("{other:?} is not one of \"local\", \"redis\""),
            );
            Backend::Local
        }
    };
    let on_redis_error = match raw.on_redis_error.as_str() {
        "local" => OnRedisError::Local,
        "deny" => OnRedisError::Deny,
        other => {
            p.push(
                "limits.on_redis_error",
                format!("{other:?} is not one of \"local\", \"deny\""),
            );
            OnRedisError::Local
        }
    };
    let on_exceed = match raw.on_exceed.as_str() {
        "finish" => OnExceed::Finish,
        "cut" => OnExceed::Cut,
        other => {
            p.push(
                "limits.on_exceed",
                format!("{other:?} is not one of \"finish\", \"cut\""),
            );
            OnExceed::Finish
        }
    };
    let unauthenticated_rpm = match raw.unauthenticated_rpm {
        0 => None,
        n => match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                p.push("limits.unauthenticated_rpm", "is too large");
                None
            }
        },
    };
    let mut tenants = BTreeMap::new();
    for (name, set) in &raw.tenants {
        if !crate::store::is_valid_tenant_name(name) {
            p.push(
                format!("limits.tenants.{name}"),
                "is not a valid tenant name (1 to 64 letters, digits, '.', '_' or '-')",
            );
        }
        tenants.insert(
            name.clone(),
            limit_set(set, &format!("limits.tenants.{name}"), p),
        );
    }
    LimitsConfig {
        backend,
        on_redis_error,
        on_exceed,
        default_completion_tokens: p.positive(
            "limits.default_completion_tokens",
            raw.default_completion_tokens,
        ),
        unauthenticated_rpm,
        tenant_defaults: limit_set(&raw.tenant_defaults, "limits.tenant_defaults", p),
        key_defaults: limit_set(&raw.key_defaults, "limits.key_defaults", p),
        tenants,
    }
}

fn limit_set(raw: &RawLimitSet, key: &str, p: &mut Problems) -> LimitSet {
    let mut check = |field: &str, value: Option<u64>| -> Option<u64> {
        match value {
            Some(0) => {
                p.push(
                    format!("{key}.{field}"),
                    "must be at least 1 (leave it out for no limit)",
                );
                None
            }
            Some(v) if v > u64::from(u32::MAX) => {
                p.push(format!("{key}.{field}"), "is too large");
                None
            }
            v => v,
        }
    };
    let small = |v: Option<u64>| v.map(|v| v as u32);
    LimitSet {
        rps: small(check("rps", raw.rps)),
        rpm: small(check("rpm", raw.rpm)),
        rph: small(check("rph", raw.rph)),
        tpm: check("tpm", raw.tpm),
        max_concurrency: small(check("max_concurrency", raw.max_concurrency)),
    }
}
