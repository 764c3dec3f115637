//! Limits kept in this process: governor's GCRA for request rates; token buckets and
//! in-flight counts under one mutex, so a request's checks across its key and its tenant are
//! all-or-nothing.
//!
//! Order of a decision: concurrency and tokens first (both can be given back if a later check
//! refuses), request rates last. governor cannot return a cell, so when the tenant's rate
//! refuses a request that the key's rate had allowed, that request still counts against the
//! key's rate: the error is always on the side of admitting less, never more.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;
use moka::sync::Cache;

use super::{refused, Decision, Gauge, Plan, RateHeaders, Refusal, Window};

type Gcra = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One scope's rate limiter for one window, with the limit it was built for (a changed limit
/// builds a new one).
struct Rate {
    limit: u32,
    gcra: Gcra,
}

/// A token bucket: `capacity` tokens, refilled at `capacity` per minute. The level may go below
/// zero when a settlement charges more than was reserved: that debt delays the next requests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: u64, now: Instant) -> Bucket {
        Bucket {
            capacity: capacity as f64,
            level: capacity as f64,
            at: now,
        }
    }

    fn per_ms(&self) -> f64 {
        self.capacity / 60_000.0
    }

    fn refill(&mut self, capacity: u64, now: Instant) {
        if self.capacity != capacity as f64 {
            // The limit changed: keep what was used, against the new capacity.
            let used = self.capacity - self.level;
            self.capacity = capacity as f64;
            self.level = self.capacity - used;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64() * 1000.0;
        self.level = (self.level + elapsed * self.per_ms()).min(self.capacity);
        self.at = now;
    }

    fn full_in(&self) -> Duration {
        Duration::from_millis(((self.capacity - self.level) / self.per_ms()).ceil() as u64)
    }

    fn gauge(&self) -> Gauge {
        Gauge {
            limit: self.capacity as u64,
            remaining: self.level.max(0.0) as u64,
            reset: self.full_in(),
        }
    }
}

#[derive(Debug, Default)]
struct ScopeState {
    bucket: Option<Bucket>,
    in_flight: u32,
}

pub(super) struct Local {
    rates: Cache<(String, Window), Arc<Rate>>,
    scopes: Mutex<HashMap<String, ScopeState>>,
    clock: DefaultClock,
}

impl Local {
    pub(super) fn new() -> Local {
        Local {
            rates: Cache::builder()
                .max_capacity(1_000_000)
                // Longer than the longest window: an idle limiter is full again anyway.
                .time_to_idle(Duration::from_secs(2 * 3600))
                .build(),
            scopes: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    fn scopes(&self) -> std::sync::MutexGuard<'_, HashMap<String, ScopeState>> {
        // The state is plain numbers: still consistent if a holder panicked.
        self.scopes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn admit(&self, plan: &Plan, tokens: u64, _slot: &str) -> Decision {
        let mut headers = RateHeaders::default();
        let now = Instant::now();
        {
            let mut scopes = self.scopes();
            // Check every scope before changing any.
            for scope in &plan.scopes {
                let state = scopes.entry(scope.id.clone()).or_default();
                if let Some(limit) = scope.limits.max_concurrency {
                    if state.in_flight >= limit {
                        return Err(refused(
                            Refusal::Concurrency {
                                scope: scope.kind,
                                label: scope.label.clone(),
                                limit,
                            },
                            headers,
                        ));
                    }
                }
                if let Some(tpm) = scope.limits.tpm {
                    let bucket = state.bucket.get_or_insert_with(|| Bucket::new(tpm, now));
                    bucket.refill(tpm, now);
                    if tokens > tpm {
                        return Err(refused(
                            Refusal::TooLarge {
                                scope: scope.kind,
                                label: scope.label.clone(),
                                limit: tpm,
                                requested: tokens,
                            },
                            RateHeaders {
                                tokens: Some(bucket.gauge()),
                                ..headers
                            },
                        ));
                    }
                    if bucket.level < tokens as f64 {
                        let missing = tokens as f64 - bucket.level;
                        return Err(refused(
                            Refusal::Tokens {
                                scope: scope.kind,
                                label: scope.label.clone(),
                                limit: tpm,
                                requested: tokens,
                                remaining: bucket.level.max(0.0) as u64,
                                retry_after: Duration::from_millis(
                                    (missing / bucket.per_ms()).ceil() as u64,
                                ),
                            },
                            RateHeaders {
                                tokens: Some(bucket.gauge()),
                                ..headers
                            },
                        ));
                    }
                }
            }
            for scope in &plan.scopes {
                let Some(state) = scopes.get_mut(&scope.id) else {
                    continue;
                };
                if scope.limits.max_concurrency.is_some() {
                    state.in_flight += 1;
                }
                if let Some(bucket) = state.bucket.as_mut().filter(|_| scope.limits.tpm.is_some()) {
                    bucket.level -= tokens as f64;
                    headers.tokens = Gauge::tighter(headers.tokens, bucket.gauge());
                }
            }
            if scopes.len() > 100_000 {
                prune(&mut scopes, now);
            }
        }

        for scope in &plan.scopes {
            for (window, limit) in scope.limits.windows() {
                let Some(nonzero) = NonZeroU32::new(limit) else {
                    continue;
                };
                let rate = self.rate(&scope.id, window, nonzero);
                match rate.gcra.check() {
                    Ok(snapshot) => {
                        let remaining = snapshot.remaining_burst_capacity();
                        let per_cell = window.period() / limit;
                        headers.requests = Gauge::tighter(
                            headers.requests,
                            Gauge {
                                limit: u64::from(limit),
                                remaining: u64::from(remaining),
                                reset: per_cell * (limit - remaining),
                            },
                        );
                    }
                    Err(not_until) => {
                        let retry_after = not_until.wait_time_from(self.clock.now());
                        // Give back what was taken above: this request does not run.
                        self.settle(plan, -(tokens as i64));
                        headers.requests = Some(Gauge {
                            limit: u64::from(limit),
                            remaining: 0,
                            reset: retry_after,
                        });
                        return Err(refused(
                            Refusal::Requests {
                                scope: scope.kind,
                                label: scope.label.clone(),
                                window,
                                limit,
                                retry_after,
                            },
                            headers,
                        ));
                    }
                }
            }
        }
        Ok(headers)
    }

    fn rate(&self, id: &str, window: Window, limit: NonZeroU32) -> Arc<Rate> {
        let key = (id.to_string(), window);
        if let Some(rate) = self.rates.get(&key).filter(|r| r.limit == limit.get()) {
            return rate;
        }
        // Built under moka's per-key lock: racing first requests share one limiter.
        let build = || {
            Arc::new(Rate {
                limit: limit.get(),
                gcra: RateLimiter::direct_with_clock(window.quota(limit), self.clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
            })
        };
        let rate = self.rates.get_with(key.clone(), build);
        if rate.limit == limit.get() {
            return rate;
        }
        let fresh = build();
        self.rates.insert(key, fresh.clone());
        fresh
    }

    /// Takes `more` tokens from every token-limited scope, or none.
    pub(super) fn take_tokens(&self, plan: &Plan, more: u64) -> bool {
        let now = Instant::now();
        let mut scopes = self.scopes();
        for scope in &plan.scopes {
            let (Some(tpm), Some(state)) = (scope.limits.tpm, scopes.get_mut(&scope.id)) else {
                continue;
            };
            let bucket = state.bucket.get_or_insert_with(|| Bucket::new(tpm, now));
            bucket.refill(tpm, now);
            if bucket.level < more as f64 {
                return false;
            }
        }
        for scope in &plan.scopes {
            if let (Some(_), Some(state)) = (scope.limits.tpm, scopes.get_mut(&scope.id)) {
                if let Some(bucket) = state.bucket.as_mut() {
                    bucket.level -= more as f64;
                }
            }
        }
        true
    }

    /// Charges `delta` more tokens (negative: gives them back) and releases the request's
    /// concurrency slots.
    pub(super) fn settle(&self, plan: &Plan, delta: i64) {
        let now = Instant::now();
        let mut scopes = self.scopes();
        for scope in &plan.scopes {
            let Some(state) = scopes.get_mut(&scope.id) else {
                continue;
            };
            if scope.limits.max_concurrency.is_some() {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
            if let (Some(tpm), Some(bucket)) = (scope.limits.tpm, state.bucket.as_mut()) {
                bucket.refill(tpm, now);
                bucket.level = (bucket.level - delta as f64).min(bucket.capacity);
            }
        }
    }
}

/// Drops scopes with nothing in flight whose bucket is full again (or that have none).
fn prune(scopes: &mut HashMap<String, ScopeState>, now: Instant) {
    scopes.retain(|_, s| {
        s.in_flight > 0
            || s.bucket.is_some_and(|mut b| {
                let capacity = b.capacity as u64;
                b.refill(capacity, now);
                b.level < b.capacity
            })
    });
}

#[cfg(test)]
mod tests {
    use super::super::{LimitSet, Refused, Scope, ScopeKind};
    use super::*;

    fn plan(key: LimitSet, tenant: LimitSet) -> Plan {
        Plan {
            scopes: vec![
                Scope {
                    kind: ScopeKind::Key,
                    id: "key_1".into(),
                    label: "pc_1".into(),
                    limits: key,
                },
                Scope {
                    kind: ScopeKind::Tenant,
                    id: "ten_1".into(),
                    label: "acme".into(),
                    limits: tenant,
                },
            ],
        }
    }

    #[test]
    fn requests_per_minute_admit_exactly_the_limit() {
        let local = Local::new();
        let p = plan(
            LimitSet {
                rpm: Some(10),
                ..LimitSet::default()
            },
            LimitSet::default(),
        );
        let mut admitted = 0;
        let mut remaining = Vec::new();
        for _ in 0..15 {
            if let Ok(h) = local.admit(&p, 0, "s") {
                admitted += 1;
                remaining.push(h.requests.unwrap().remaining);
            }
        }
        assert_eq!(admitted, 10);
        assert_eq!(remaining, (0..10).rev().collect::<Vec<u64>>());
    }

    #[test]
    fn a_refusal_by_the_tenant_takes_back_the_keys_tokens_and_slot() {
        let local = Local::new();
        let p = plan(
            LimitSet {
                tpm: Some(1000),
                max_concurrency: Some(5),
                ..LimitSet::default()
            },
            LimitSet {
                rpm: Some(1),
                ..LimitSet::default()
            },
        );
        assert!(local.admit(&p, 100, "a").is_ok());
        let refusal = local.admit(&p, 100, "b").unwrap_err().refusal;
        assert!(matches!(
            refusal,
            Refusal::Requests {
                scope: ScopeKind::Tenant,
                ..
            }
        ));
        let scopes = local.scopes();
        let key = &scopes["key_1"];
        assert_eq!(key.in_flight, 1);
        assert!((key.bucket.unwrap().level - 900.0).abs() < 1.0);
    }

    #[test]
    fn tokens_are_reserved_then_settled() {
        let local = Local::new();
        let p = plan(
            LimitSet {
                tpm: Some(1000),
                ..LimitSet::default()
            },
            LimitSet::default(),
        );
        assert!(local.admit(&p, 600, "a").is_ok());
        let Refused { refusal, headers } = *local.admit(&p, 600, "b").unwrap_err();
        assert!(matches!(refusal, Refusal::Tokens { requested: 600, .. }));
        assert!(headers.tokens.unwrap().remaining <= 401);
        // The first request used 100 of its 600: 500 come back.
        local.settle(&p, 100 - 600);
        assert!(local.admit(&p, 600, "c").is_ok());
        assert!(matches!(
            local.admit(&p, 1001, "d").unwrap_err().refusal,
            Refusal::TooLarge { .. }
        ));
    }

    #[test]
    fn concurrency_slots_are_held_until_settled() {
        let local = Local::new();
        let p = plan(
            LimitSet {
                max_concurrency: Some(2),
                ..LimitSet::default()
            },
            LimitSet::default(),
        );
        assert!(local.admit(&p, 0, "a").is_ok());
        assert!(local.admit(&p, 0, "b").is_ok());
        assert!(matches!(
            local.admit(&p, 0, "c").unwrap_err().refusal,
            Refusal::Concurrency { limit: 2, .. }
        ));
        local.settle(&p, 0);
        assert!(local.admit(&p, 0, "d").is_ok());
    }

    #[test]
    fn extending_takes_from_every_scope_or_none() {
        let local = Local::new();
        let p = plan(
            LimitSet {
                tpm: Some(1000),
                ..LimitSet::default()
            },
            LimitSet {
                tpm: Some(500),
                ..LimitSet::default()
            },
        );
        assert!(local.admit(&p, 400, "a").is_ok());
        assert!(!local.take_tokens(&p, 200));
        assert!(local.take_tokens(&p, 50));
        let scopes = local.scopes();
        assert!((scopes["key_1"].bucket.unwrap().level - 550.0).abs() < 1.0);
    }
}
