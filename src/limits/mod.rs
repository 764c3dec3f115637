//! Admit phase: request, token and concurrency limits per tenant and per key.
//!
//! A request is admitted only when every limit of its key *and* of its tenant has room:
//! - **requests** per second / minute / hour: GCRA (governor locally, the same arithmetic in a
//!   Lua script on Redis) — a burst of up to the limit, then one more every period / limit;
//! - **tokens** per minute: a bucket of `tpm` tokens refilled continuously. Admission reserves
//!   the prompt's tokens (counted with the model family's BPE) plus `max_tokens` (or
//!   `limits.default_completion_tokens`); a stream that outruns its reservation takes more as
//!   it goes ([`Limiter::extend`]); when the answer is done the reservation is settled against
//!   the provider's reported `usage` — unused tokens go back, an overshoot is charged;
//! - **concurrency**: requests in flight.
//!
//! Backends: this process (`local`) or Redis shared by every replica (`redis`), where one
//! atomic script makes the whole decision in one round trip. When Redis cannot be reached the
//! decision falls back to this process's limits, or is refused (`on_redis_error = "deny"`).
//! The per-client-IP limit for requests without valid credentials is always local.

mod local;
mod redis;
pub mod tokens;
pub mod usage;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::Principal;
use crate::config::{LimitsBackend, LimitsConfig, OnRedisError};
use crate::telemetry::metrics::Metrics;

/// The limits of one scope. `None`: no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitSet {
    pub rps: Option<u32>,
    pub rpm: Option<u32>,
    pub rph: Option<u32>,
    pub tpm: Option<u64>,
    pub max_concurrency: Option<u32>,
}

impl LimitSet {
    /// Field by field: this set's value, else `fallback`'s.
    pub fn or(&self, fallback: &LimitSet) -> LimitSet {
        LimitSet {
            rps: self.rps.or(fallback.rps),
            rpm: self.rpm.or(fallback.rpm),
            rph: self.rph.or(fallback.rph),
            tpm: self.tpm.or(fallback.tpm),
            max_concurrency: self.max_concurrency.or(fallback.max_concurrency),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == LimitSet::default()
    }

    fn windows(&self) -> impl Iterator<Item = (Window, u32)> {
        [
            (Window::Second, self.rps),
            (Window::Minute, self.rpm),
            (Window::Hour, self.rph),
        ]
        .into_iter()
        .filter_map(|(w, l)| Some((w, l?)))
    }

    /// `rpm=10 tpm=5000`, for the CLI.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("rps", self.rps.map(u64::from)),
            ("rpm", self.rpm.map(u64::from)),
            ("rph", self.rph.map(u64::from)),
            ("tpm", self.tpm),
            ("max_concurrency", self.max_concurrency.map(u64::from)),
        ]
        .into_iter()
        .filter_map(|(name, v)| Some(format!("{name}={}", v?)))
        .collect();
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(" ")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Second,
    Minute,
    Hour,
}

impl Window {
    pub fn period(self) -> Duration {
        match self {
            Window::Second => Duration::from_secs(1),
            Window::Minute => Duration::from_secs(60),
            Window::Hour => Duration::from_secs(3600),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
        }
    }

    fn quota(self, limit: NonZeroU32) -> Quota {
        match self {
            Window::Second => Quota::per_second(limit),
            Window::Minute => Quota::per_minute(limit),
            Window::Hour => Quota::per_hour(limit),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Key,
    Tenant,
}

impl ScopeKind {
    pub fn name(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::Tenant => "tenant",
        }
    }
}

/// One scope a request is counted in, with its effective limits.
#[derive(Debug, Clone)]
pub struct Scope {
    pub kind: ScopeKind,
    /// Stable id (`key_…`, `ten_…`): names the state.
    pub id: String,
    /// What an error message may show: the key's display prefix or the tenant's name.
    pub label: String,
    pub limits: LimitSet,
}

/// The scopes of one request: its key, then its tenant (a key's limits restrict further).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub scopes: Vec<Scope>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Whether any scope limits tokens: only then are tokens counted.
    pub fn counts_tokens(&self) -> bool {
        self.scopes.iter().any(|s| s.limits.tpm.is_some())
    }

    fn holds_concurrency(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s.limits.max_concurrency.is_some())
    }
}

/// One `x-ratelimit-*` family: the tightest limit of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge {
    pub limit: u64,
    pub remaining: u64,
    /// Until the limit is back to full.
    pub reset: Duration,
}

impl Gauge {
    /// Keeps the gauge with less room left.
    fn tighter(a: Option<Gauge>, b: Gauge) -> Option<Gauge> {
        match a {
            Some(a) if a.remaining <= b.remaining => Some(a),
            _ => Some(b),
        }
    }
}

/// What the `x-ratelimit-*` headers of a response say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Gauge>,
    pub tokens: Option<Gauge>,
}

impl RateHeaders {
    /// The headers as OpenAI sends them.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(g) = self.requests {
            out.push(("x-ratelimit-limit-requests", g.limit.to_string()));
            out.push(("x-ratelimit-remaining-requests", g.remaining.to_string()));
            out.push(("x-ratelimit-reset-requests", format_reset(g.reset)));
        }
        if let Some(g) = self.tokens {
            out.push(("x-ratelimit-limit-tokens", g.limit.to_string()));
            out.push(("x-ratelimit-remaining-tokens", g.remaining.to_string()));
            out.push(("x-ratelimit-reset-tokens", format_reset(g.reset)));
        }
        out
    }
}

/// OpenAI's reset format: `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let secs = if rest % 1000 == 0 {
        format!("{}s", rest / 1000)
    } else {
        let s = format!("{:.3}", rest as f64 / 1000.0);
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Why a request was refused. Every variant becomes a 429 `rate_limit_exceeded` (or 503 when
/// the shared limiter is unavailable and configured to fail closed).
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Requests {
        scope: ScopeKind,
        label: String,
        window: Window,
        limit: u32,
        retry_after: Duration,
    },
    Tokens {
        scope: ScopeKind,
        label: String,
        limit: u64,
        requested: u64,
        remaining: u64,
        retry_after: Duration,
    },
    /// The request alone needs more tokens than the whole per-minute budget: waiting cannot
    /// help.
    TooLarge {
        scope: ScopeKind,
        label: String,
        limit: u64,
        requested: u64,
    },
    Concurrency {
        scope: ScopeKind,
        label: String,
        limit: u32,
    },
    /// Too many requests without valid credentials from one client IP.
    Unauthenticated { limit: u32, retry_after: Duration },
    /// Redis is unreachable and `limits.on_redis_error = "deny"`.
    Unavailable,
}

impl Refusal {
    /// Metric label: which kind of limit.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Requests { .. } => "requests",
            Refusal::Tokens { .. } | Refusal::TooLarge { .. } => "tokens",
            Refusal::Concurrency { .. } => "concurrency",
            Refusal::Unauthenticated { .. } => "unauthenticated",
            Refusal::Unavailable => "unavailable",
        }
    }

    /// Metric label: whose limit.
    pub fn scope(&self) -> &'static str {
        match self {
            Refusal::Requests { scope, .. }
            | Refusal::Tokens { scope, .. }
            | Refusal::TooLarge { scope, .. }
            | Refusal::Concurrency { scope, .. } => scope.name(),
            Refusal::Unauthenticated { .. } => "client_ip",
            Refusal::Unavailable => "none",
        }
    }

    /// When a retry can succeed (`Retry-After`); `None` when waiting cannot help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::Requests { retry_after, .. }
            | Refusal::Tokens { retry_after, .. }
            | Refusal::Unauthenticated { retry_after, .. } => Some(*retry_after),
            Refusal::Concurrency { .. } | Refusal::Unavailable => Some(Duration::from_secs(1)),
            Refusal::TooLarge { .. } => None,
        }
    }

    pub fn message(&self) -> String {
        let wait = |d: &Duration| format_reset(*d);
        match self {
            Refusal::Requests {
                scope,
                label,
                window,
                limit,
                retry_after,
            } => format!(
                "Rate limit reached for requests per {} of {} {label}: limit {limit}. Please try again in {}.",
                window.name(),
                scope.name(),
                wait(retry_after)
            ),
            Refusal::Tokens {
                scope,
                label,
                limit,
                requested,
                remaining,
                retry_after,
            } => format!(
                "Rate limit reached for tokens per minute of {} {label}: limit {limit}, remaining {remaining}, requested {requested}. Please try again in {}.",
                scope.name(),
                wait(retry_after)
            ),
            Refusal::TooLarge {
                scope,
                label,
                limit,
                requested,
            } => format!(
                "Request too large for the tokens per minute limit of {} {label}: limit {limit}, requested {requested}. Send fewer tokens or lower max_tokens.",
                scope.name()
            ),
            Refusal::Concurrency {
                scope,
                label,
                limit,
            } => format!(
                "Too many concurrent requests for {} {label}: limit {limit} in flight. Please try again when one has finished.",
                scope.name()
            ),
            Refusal::Unauthenticated { limit, retry_after } => format!(
                "Too many requests without valid credentials from this address: limit {limit} per minute. Please try again in {}.",
                wait(retry_after)
            ),
            Refusal::Unavailable => {
                "The rate limiter is unavailable and this gateway is configured to refuse requests until it is back.".to_string()
            }
        }
    }

    /// OpenAI's `type` for a rate-limit error: what ran out.
    pub fn error_type(&self) -> &'static str {
        match self {
            Refusal::Tokens { .. } | Refusal::TooLarge { .. } => "tokens",
            _ => "requests",
        }
    }
}

/// A refusal with the headers that describe the state that refused it.
#[derive(Debug)]
pub struct Refused {
    pub refusal: Refusal,
    pub headers: RateHeaders,
}

/// A backend's answer: admitted with these headers, or refused.
pub type Decision = Result<RateHeaders, Box<Refused>>;

fn refused(refusal: Refusal, headers: RateHeaders) -> Box<Refused> {
    Box::new(Refused { refusal, headers })
}

/// Which state an admitted request's reservation lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Local,
    Redis,
}

/// An admitted request: what it holds until [`Limiter::settle`].
#[derive(Debug)]
pub struct Admitted {
    plan: Plan,
    via: Via,
    /// Tokens held in every token-limited scope (prompt estimate + completion, + top-ups).
    pub reserved: u64,
    /// Member name of the concurrency slots (unique per request).
    slot: String,
    pub headers: RateHeaders,
}

impl Admitted {
    pub fn counts_tokens(&self) -> bool {
        self.plan.counts_tokens()
    }
}

/// What one request asks of the limiter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Demand {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Demand {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Settlement outcome, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settled {
    pub reserved: u64,
    pub used: u64,
}

/// The data plane's limiter.
pub struct Limiter {
    config: LimitsConfig,
    local: local::Local,
    redis: Option<redis::Shared>,
    unauthenticated: Option<(u32, DefaultKeyedRateLimiter<std::net::IpAddr>)>,
    metrics: Arc<Metrics>,
}

impl Limiter {
    pub fn new(config: &LimitsConfig, metrics: Arc<Metrics>) -> Limiter {
        let redis = match &config.backend {
            LimitsBackend::Local => None,
            LimitsBackend::Redis(settings) => Some(redis::Shared::new(settings.clone())),
        };
        let unauthenticated = config
            .unauthenticated_rpm
            .and_then(NonZeroU32::new)
            .map(|n| (n.get(), RateLimiter::keyed(Quota::per_minute(n))));
        Limiter {
            config: config.clone(),
            local: local::Local::new(),
            redis,
            unauthenticated,
            metrics,
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// The scopes and effective limits of a caller: the key's own limits (else
    /// `[limits.key_defaults]`) and its tenant's (stored by `tenants set-limits`, else
    /// `[limits.tenants.NAME]`, else `[limits.tenant_defaults]`).
    pub fn plan(&self, principal: &Principal) -> Plan {
        let key = principal.key_limits.or(&self.config.key_defaults);
        let tenant = principal
            .tenant_limits
            .or(&self.config.tenant_base(&principal.tenant));
        let mut scopes = Vec::with_capacity(2);
        if !key.is_empty() {
            scopes.push(Scope {
                kind: ScopeKind::Key,
                id: principal.key_id.clone(),
                label: principal.key_prefix.clone(),
                limits: key,
            });
        }
        if !tenant.is_empty() {
            scopes.push(Scope {
                kind: ScopeKind::Tenant,
                id: principal.tenant_id.clone(),
                label: principal.tenant.clone(),
                limits: tenant,
            });
        }
        Plan { scopes }
    }

    /// Admits a request or says which limit refused it. `slot` must be unique per request.
    /// On refusal the headers describe the state that refused it.
    pub async fn admit(
        &self,
        plan: Plan,
        demand: Demand,
        slot: &str,
    ) -> Result<Admitted, Box<Refused>> {
        let tokens = if plan.counts_tokens() {
            demand.total()
        } else {
            0
        };
        let (via, result) = match &self.redis {
            Some(shared) => match shared.admit(&plan, tokens, slot, &self.metrics).await {
                Ok(result) => (Via::Redis, result),
                Err(()) => self.fallback(&plan, tokens, slot)?,
            },
            None => (Via::Local, self.local.admit(&plan, tokens, slot)),
        };
        let headers = result?;
        Ok(Admitted {
            plan,
            via,
            reserved: tokens,
            slot: slot.to_string(),
            headers,
        })
    }

    fn fallback(
        &self,
        plan: &Plan,
        tokens: u64,
        slot: &str,
    ) -> Result<(Via, Decision), Box<Refused>> {
        self.metrics.ratelimit_fallbacks.inc();
        match self.config.on_redis_error {
            OnRedisError::Local => Ok((Via::Local, self.local.admit(plan, tokens, slot))),
            OnRedisError::Deny => Err(refused(Refusal::Unavailable, RateHeaders::default())),
        }
    }

    /// A stream needs `more` tokens than it reserved: takes them if every token-limited scope
    /// has them. `false` leaves everything as it was.
    pub async fn extend(&self, admitted: &mut Admitted, more: u64) -> bool {
        if more == 0 || !admitted.plan.counts_tokens() {
            return true;
        }
        let taken = match (admitted.via, &self.redis) {
            // Redis gone mid-stream: the stream goes on; the overshoot is charged at settlement.
            (Via::Redis, Some(shared)) => shared
                .take_tokens(&admitted.plan, more, &self.metrics)
                .await
                .unwrap_or(true),
            _ => self.local.take_tokens(&admitted.plan, more),
        };
        if taken {
            admitted.reserved += more;
        }
        taken
    }

    /// The request is over: `used` tokens (the provider's usage, or what was counted) replace
    /// the reservation — unused tokens go back, an overshoot is charged — and concurrency slots
    /// are released.
    pub async fn settle(&self, admitted: Admitted, used: u64) -> Settled {
        let counts = admitted.plan.counts_tokens();
        let delta = if counts {
            used as i64 - admitted.reserved as i64
        } else {
            0
        };
        let release = admitted.plan.holds_concurrency();
        if delta != 0 || release {
            match (admitted.via, &self.redis) {
                (Via::Redis, Some(shared)) => {
                    shared
                        .settle(&admitted.plan, delta, &admitted.slot, &self.metrics)
                        .await
                }
                _ => self.local.settle(&admitted.plan, delta),
            }
        }
        Settled {
            reserved: if counts { admitted.reserved } else { 0 },
            used: if counts { used } else { 0 },
        }
    }

    /// Counts a request that came without valid credentials against its client IP.
    pub fn unauthenticated(&self, ip: Option<std::net::IpAddr>) -> Result<(), Refusal> {
        let (Some((limit, limiter)), Some(ip)) = (&self.unauthenticated, ip) else {
            return Ok(());
        };
        // Forget addresses that have been quiet long enough to be back at full burst.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).map_err(|not_until| {
            let now = governor::clock::Clock::now(limiter.clock());
            Refusal::Unauthenticated {
                limit: *limit,
                retry_after: not_until.wait_time_from(now),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_format_matches_openai() {
        assert_eq!(format_reset(Duration::from_millis(20)), "20ms");
        assert_eq!(format_reset(Duration::from_secs(1)), "1s");
        assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_reset(Duration::from_secs(3723)), "1h2m3s");
    }

    #[test]
    fn limit_sets_merge_field_by_field() {
        let own = LimitSet {
            rpm: Some(10),
            ..LimitSet::default()
        };
        let defaults = LimitSet {
            rpm: Some(100),
            tpm: Some(5000),
            ..LimitSet::default()
        };
        let merged = own.or(&defaults);
        assert_eq!(merged.rpm, Some(10));
        assert_eq!(merged.tpm, Some(5000));
        assert_eq!(merged.describe(), "rpm=10 tpm=5000");
        assert!(LimitSet::default().is_empty());
    }
}
