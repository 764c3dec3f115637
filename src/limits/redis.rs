//! Limits shared by every replica through Redis. Each decision is one Lua script, run
//! atomically by Redis on its own clock (`TIME`), so two gateways never both take the last
//! slot: one round trip to admit a request, one to settle it afterwards (off the response's
//! path). Every key expires once its state is back to "full", so idle scopes cost nothing.
//!
//! Keys (`limits.redis_key_prefix`, default `portcullis`):
//! - `P:r:<scope id>:<s|m|h>`: GCRA theoretical arrival time, Unix ms (string);
//! - `P:t:<scope id>`: token bucket, hash `{level, at}`;
//! - `P:c:<scope id>`: in-flight requests, sorted set member = request slot, score = lease end.
//!
//! Redis Cluster is not supported: a request's keys would live in different slots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;

use super::{refused, Decision, Gauge, Plan, RateHeaders, Refusal, ScopeKind, Window};
use crate::config::RedisSettings;
use crate::telemetry::metrics::Metrics;

/// Checks every limit first, then commits every one: a refusal changes nothing but expired
/// concurrency leases. ARGV: slot, lease ms, then per key `kind, a, b`:
/// `r` (rate) a = limit, b = period ms; `t` (tokens) a = tpm, b = tokens to take;
/// `c` (concurrency) a = limit.
/// Returns `{"ok", per key: remaining, reset ms}` or `{kind, key index, retry ms, remaining}`.
const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = ARGV[1]
local lease = tonumber(ARGV[2])
local new = {}
for i = 1, #KEYS do
  local kind, a, b = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  local key = KEYS[i]
  if kind == 'r' then
    local interval = b / a
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local next_tat = tat + interval
    if next_tat - now > b then
      return {'r', tostring(i), tostring(math.ceil(next_tat - b - now)), '0'}
    end
    new[i] = next_tat
  elseif kind == 't' then
    local per_ms = a / 60000
    local level = a
    local v = redis.call('HMGET', key, 'level', 'at')
    if v[1] then level = math.min(a, tonumber(v[1]) + (now - tonumber(v[2])) * per_ms) end
    if b > a then
      return {'T', tostring(i), '0', tostring(math.floor(math.max(level, 0)))}
    end
    if level < b then
      return {'t', tostring(i), tostring(math.ceil((b - level) / per_ms)),
              tostring(math.floor(math.max(level, 0)))}
    end
    new[i] = level - b
  elseif kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) >= a then
      return {'c', tostring(i), '1000', '0'}
    end
  end
end
local out = {'ok'}
for i = 1, #KEYS do
  local kind, a, b = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  local key = KEYS[i]
  if kind == 'r' then
    local ahead = new[i] - now
    redis.call('SET', key, string.format('%.3f', new[i]), 'PX', math.ceil(ahead) + 1000)
    table.insert(out, tostring(math.floor((b - ahead) / (b / a))))
    table.insert(out, tostring(math.ceil(ahead)))
  elseif kind == 't' then
    local per_ms = a / 60000
    local full_in = math.ceil((a - new[i]) / per_ms)
    redis.call('HSET', key, 'level', string.format('%.3f', new[i]), 'at', tostring(now))
    redis.call('PEXPIRE', key, full_in + 1000)
    table.insert(out, tostring(math.floor(math.max(new[i], 0))))
    table.insert(out, tostring(full_in))
  elseif kind == 'c' then
    redis.call('ZADD', key, now + lease, slot)
    redis.call('PEXPIRE', key, lease + 1000)
    table.insert(out, '0')
    table.insert(out, '0')
  end
end
return out
"#;

/// Settles a request: per token key charges `delta` more tokens (negative: gives them back;
/// the level may go below zero), per concurrency key releases the slot.
/// ARGV: slot, delta, then per key `kind, tpm`.
const SETTLE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = ARGV[1]
local delta = tonumber(ARGV[2])
for i = 1, #KEYS do
  local kind, a = ARGV[1 + 2 * i], tonumber(ARGV[2 + 2 * i])
  local key = KEYS[i]
  if kind == 't' then
    local per_ms = a / 60000
    local level = a
    local v = redis.call('HMGET', key, 'level', 'at')
    if v[1] then level = math.min(a, tonumber(v[1]) + (now - tonumber(v[2])) * per_ms) end
    level = math.min(a, level - delta)
    redis.call('HSET', key, 'level', string.format('%.3f', level), 'at', tostring(now))
    redis.call('PEXPIRE', key, math.ceil((a - level) / per_ms) + 1000)
  elseif kind == 'c' then
    redis.call('ZREM', key, slot)
  end
end
return 'ok'
"#;

/// After a failure, Redis is left alone this long (decisions fall back meanwhile), so a dead
/// Redis does not cost every request a timeout.
const BACKOFF: Duration = Duration::from_secs(1);
/// Fallbacks are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

pub(super) struct Shared {
    settings: RedisSettings,
    connection: OnceLock<Result<ConnectionManager, String>>,
    admit: Script,
    settle: Script,
    started: Instant,
    /// Milliseconds since `started` until which Redis is not tried.
    down_until: AtomicU64,
    last_logged: AtomicU64,
}

/// One check of the admit script, in KEYS order.
#[derive(Debug, Clone, Copy)]
enum Check {
    Rate(usize, Window, u32),
    Tokens(usize, u64),
    Concurrency(usize, u32),
}

impl Shared {
    pub(super) fn new(settings: RedisSettings) -> Shared {
        Shared {
            settings,
            connection: OnceLock::new(),
            admit: Script::new(ADMIT),
            settle: Script::new(SETTLE),
            started: Instant::now(),
            down_until: AtomicU64::new(0),
            last_logged: AtomicU64::new(0),
        }
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{id}", self.settings.key_prefix)
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The connection, unless Redis failed less than [`BACKOFF`] ago.
    fn connection(&self) -> Result<ConnectionManager, String> {
        if self.elapsed_ms() < self.down_until.load(Ordering::Relaxed) {
            return Err("backing off after a recent failure".to_string());
        }
        // Created lazily, inside the data plane's runtime (it spawns its driver task there);
        // it connects on first use and reconnects by itself.
        self.connection
            .get_or_init(|| {
                let client =
                    redis::Client::open(self.settings.url.as_str()).map_err(|e| e.to_string())?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.settings.timeout))
                    .set_response_timeout(Some(self.settings.timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())
            })
            .clone()
    }

    fn failed(&self, op: &'static str, error: &str, metrics: &Metrics) {
        metrics
            .ratelimit_redis_errors
            .with_label_values(&[op])
            .inc();
        let now = self.elapsed_ms();
        self.down_until
            .store(now + BACKOFF.as_millis() as u64, Ordering::Relaxed);
        let last = self.last_logged.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last_logged
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                op,
                error,
                "Redis rate limiter unavailable; deciding per limits.on_redis_error (logged at most once a minute)"
            );
        }
    }

    async fn run(
        &self,
        op: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
        metrics: &Metrics,
    ) -> Result<Vec<String>, ()> {
        let mut connection = match self.connection() {
            Ok(c) => c,
            Err(e) => {
                self.failed(op, &e, metrics);
                return Err(());
            }
        };
        let start = Instant::now();
        let result = tokio::time::timeout(
            self.settings.timeout,
            invocation.invoke_async::<Vec<String>>(&mut connection),
        )
        .await;
        metrics
            .ratelimit_redis_duration
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        match result {
            Ok(Ok(values)) => Ok(values),
            Ok(Err(e)) => {
                self.failed(op, &e.to_string(), metrics);
                Err(())
            }
            Err(_) => {
                self.failed(op, "timed out (limits.redis_timeout_ms)", metrics);
                Err(())
            }
        }
    }

    /// `Err(())`: Redis could not decide (the caller falls back).
    pub(super) async fn admit(
        &self,
        plan: &Plan,
        tokens: u64,
        slot: &str,
        metrics: &Metrics,
    ) -> Result<Decision, ()> {
        let mut checks = Vec::new();
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .arg(slot)
            .arg(self.settings.concurrency_lease.as_millis() as u64);
        for (i, scope) in plan.scopes.iter().enumerate() {
            if let Some(limit) = scope.limits.max_concurrency {
                invocation
                    .key(self.key("c", &scope.id))
                    .arg("c")
                    .arg(limit)
                    .arg(0);
                checks.push(Check::Concurrency(i, limit));
            }
            if let Some(tpm) = scope.limits.tpm {
                invocation
                    .key(self.key("t", &scope.id))
                    .arg("t")
                    .arg(tpm)
                    .arg(tokens);
                checks.push(Check::Tokens(i, tpm));
            }
        }
        for (i, scope) in plan.scopes.iter().enumerate() {
            for (window, limit) in scope.limits.windows() {
                let suffix = match window {
                    Window::Second => "s",
                    Window::Minute => "m",
                    Window::Hour => "h",
                };
                invocation
                    .key(self.key("r", &format!("{}:{suffix}", scope.id)))
                    .arg("r")
                    .arg(limit)
                    .arg(window.period().as_millis() as u64);
                checks.push(Check::Rate(i, window, limit));
            }
        }
        if checks.is_empty() {
            return Ok(Ok(RateHeaders::default()));
        }
        let reply = self.run("admit", &invocation, metrics).await?;
        parse_admit(&reply, &checks, plan, tokens).map_err(|e| {
            self.failed("admit", &e, metrics);
        })
    }

    /// Takes `more` tokens from every token-limited scope, or none. `Err(())`: Redis failed.
    pub(super) async fn take_tokens(
        &self,
        plan: &Plan,
        more: u64,
        metrics: &Metrics,
    ) -> Result<bool, ()> {
        let mut invocation = self.admit.prepare_invoke();
        invocation.arg("").arg(0);
        let mut any = false;
        for scope in &plan.scopes {
            if let Some(tpm) = scope.limits.tpm {
                invocation
                    .key(self.key("t", &scope.id))
                    .arg("t")
                    .arg(tpm)
                    .arg(more);
                any = true;
            }
        }
        if !any {
            return Ok(true);
        }
        let reply = self.run("extend", &invocation, metrics).await?;
        Ok(reply.first().is_some_and(|s| s == "ok"))
    }

    pub(super) async fn settle(&self, plan: &Plan, delta: i64, slot: &str, metrics: &Metrics) {
        let mut invocation = self.settle.prepare_invoke();
        invocation.arg(slot).arg(delta);
        for scope in &plan.scopes {
            if let Some(tpm) = scope.limits.tpm.filter(|_| delta != 0) {
                invocation.key(self.key("t", &scope.id)).arg("t").arg(tpm);
            }
            if scope.limits.max_concurrency.is_some() {
                invocation.key(self.key("c", &scope.id)).arg("c").arg(0);
            }
        }
        // A failed settlement is counted and logged; leases expire concurrency slots anyway.
        let _ = self.run("settle", &invocation, metrics).await;
    }
}

fn parse_admit(
    reply: &[String],
    checks: &[Check],
    plan: &Plan,
    tokens: u64,
) -> Result<Decision, String> {
    let number = |i: usize| -> Result<u64, String> {
        reply
            .get(i)
            .and_then(|s| s.parse::<i64>().ok())
            .map(|n| n.max(0) as u64)
            .ok_or_else(|| format!("unexpected reply from the admit script: {reply:?}"))
    };
    let status = reply.first().map(String::as_str).unwrap_or("");
    if status == "ok" {
        let mut headers = RateHeaders::default();
        for (n, check) in checks.iter().enumerate() {
            let (remaining, reset) = (number(1 + 2 * n)?, number(2 + 2 * n)?);
            let reset = Duration::from_millis(reset);
            match *check {
                Check::Rate(_, _, limit) => {
                    headers.requests = Gauge::tighter(
                        headers.requests,
                        Gauge {
                            limit: u64::from(limit),
                            remaining,
                            reset,
                        },
                    )
                }
                Check::Tokens(_, tpm) => {
                    headers.tokens = Gauge::tighter(
                        headers.tokens,
                        Gauge {
                            limit: tpm,
                            remaining,
                            reset,
                        },
                    )
                }
                Check::Concurrency(..) => {}
            }
        }
        return Ok(Ok(headers));
    }
    let index = number(1)? as usize;
    let retry_after = Duration::from_millis(number(2)?);
    let remaining = number(3)?;
    let check = index
        .checked_sub(1)
        .and_then(|i| checks.get(i))
        .ok_or_else(|| format!("admit script named check {index} of {}", checks.len()))?;
    let scope_of = |i: usize| -> (ScopeKind, String) {
        plan.scopes
            .get(i)
            .map_or((ScopeKind::Key, String::new()), |s| {
                (s.kind, s.label.clone())
            })
    };
    let mut headers = RateHeaders::default();
    let refusal = match (status, *check) {
        ("r", Check::Rate(i, window, limit)) => {
            let (scope, label) = scope_of(i);
            headers.requests = Some(Gauge {
                limit: u64::from(limit),
                remaining: 0,
                reset: retry_after,
            });
            Refusal::Requests {
                scope,
                label,
                window,
                limit,
                retry_after,
            }
        }
        ("t", Check::Tokens(i, tpm)) => {
            let (scope, label) = scope_of(i);
            headers.tokens = Some(Gauge {
                limit: tpm,
                remaining,
                reset: retry_after,
            });
            Refusal::Tokens {
                scope,
                label,
                limit: tpm,
                requested: tokens,
                remaining,
                retry_after,
            }
        }
        ("T", Check::Tokens(i, tpm)) => {
            let (scope, label) = scope_of(i);
            Refusal::TooLarge {
                scope,
                label,
                limit: tpm,
                requested: tokens,
            }
        }
        ("c", Check::Concurrency(i, limit)) => {
            let (scope, label) = scope_of(i);
            Refusal::Concurrency {
                scope,
                label,
                limit,
            }
        }
        _ => return Err(format!("unexpected reply from the admit script: {reply:?}")),
    };
    Ok(Err(refused(refusal, headers)))
}
