//! Every Prometheus metric Portcullis exports, in one place. Names are
//! `portcullis_<what>_<unit>`. Labels are bounded: routes and providers come from config,
//! models are the route's pattern (never a free-form client string), tenants from the store.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Latency buckets from 0.5 ms to 5 min: gateway overhead lives at the bottom, long
/// completions at the top.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];
const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

#[derive(Debug, thiserror::Error)]
#[error("metrics error: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl MetricsError {
    pub fn code(&self) -> &'static str {
        "metrics_error"
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub stream_first_byte: HistogramVec,
    pub gateway_overhead: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub guardrail_findings: IntCounterVec,
    pub ratelimit_rejections: IntCounterVec,
    pub ratelimit_tokens_reserved: IntCounterVec,
    pub ratelimit_tokens_settled: IntCounterVec,
    pub ratelimit_stream_overruns: IntCounterVec,
    pub ratelimit_redis_errors: IntCounterVec,
    pub ratelimit_redis_duration: HistogramVec,
    pub ratelimit_fallbacks: IntCounter,
    pub in_flight: IntGauge,
    pub audit_queue_depth: IntGauge,
    pub audit_batch_size: Histogram,
    pub audit_batch_duration: Histogram,
    pub audit_records_written: IntCounter,
    pub audit_records_spooled: IntCounter,
    pub audit_records_replayed: IntCounter,
    pub audit_write_failures: IntCounterVec,
    pub audit_spool_bytes: IntGauge,
    pub audit_purged: IntCounterVec,
    pub admin_events: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "portcullis_requests_total",
                "Data-plane requests by route, model, status and tenant.",
            ),
            &["route", "model", "status", "tenant"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_request_duration_seconds",
                "Total time from request to last response byte.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_upstream_duration_seconds",
                "Time spent waiting on the provider, from sending the request to its last byte.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let stream_first_byte = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_stream_first_byte_seconds",
                "Streaming requests: time from request to the first body byte sent to the client.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let gateway_overhead = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_gateway_overhead_seconds",
                "Time added by the gateway: total request time minus upstream time.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "portcullis_upstream_errors_total",
                "Failed upstream calls by provider and kind (connect, timeout, protocol, resolve).",
            ),
            &["provider", "kind"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "portcullis_auth_failures_total",
                "Rejected authentication attempts by reason (the error code).",
            ),
            &["reason"],
        )?;
        let guardrail_findings = IntCounterVec::new(
            Opts::new(
                "portcullis_guardrail_findings_total",
                "Values found by the guardrails, by entity type (or FINANCIAL_ADVICE), the action \
                 taken and the direction (request or response).",
            ),
            &["entity", "action", "direction"],
        )?;
        let ratelimit_rejections = IntCounterVec::new(
            Opts::new(
                "portcullis_ratelimit_rejections_total",
                "Requests refused by a limit, by kind (requests, tokens, concurrency, \
                 unauthenticated, unavailable) and scope (key, tenant, client_ip).",
            ),
            &["kind", "scope"],
        )?;
        let ratelimit_tokens_reserved = IntCounterVec::new(
            Opts::new(
                "portcullis_ratelimit_tokens_reserved_total",
                "Tokens reserved against token limits (estimate at admission plus stream top-ups).",
            ),
            &["tenant"],
        )?;
        let ratelimit_tokens_settled = IntCounterVec::new(
            Opts::new(
                "portcullis_ratelimit_tokens_settled_total",
                "Tokens finally charged against token limits (the provider's usage).",
            ),
            &["tenant"],
        )?;
        let ratelimit_stream_overruns = IntCounterVec::new(
            Opts::new(
                "portcullis_ratelimit_stream_overruns_total",
                "Streams that ran past the token budget left, by what was done (finish, cut).",
            ),
            &["action"],
        )?;
        let ratelimit_redis_errors = IntCounterVec::new(
            Opts::new(
                "portcullis_ratelimit_redis_errors_total",
                "Failed or timed-out Redis limiter calls, by operation (admit, extend, settle).",
            ),
            &["op"],
        )?;
        let ratelimit_redis_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_ratelimit_redis_duration_seconds",
                "Round-trip time of Redis limiter calls, by operation.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
            &["op"],
        )?;
        let ratelimit_fallbacks = IntCounter::new(
            "portcullis_ratelimit_fallbacks_total",
            "Admission decisions made without Redis because it was unreachable.",
        )?;
        let in_flight = IntGauge::new(
            "portcullis_requests_in_flight",
            "Data-plane requests currently being served.",
        )?;
        let audit_queue_depth = IntGauge::new(
            "portcullis_audit_queue_depth",
            "Audit records waiting in the writer's queue.",
        )?;
        let audit_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "portcullis_audit_batch_size",
                "Audit records per database write.",
            )
            .buckets(vec![
                1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0,
            ]),
        )?;
        let audit_batch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "portcullis_audit_batch_duration_seconds",
                "Time to write one batch of audit records.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let audit_records_written = IntCounter::new(
            "portcullis_audit_records_written_total",
            "Audit records written to the database (replayed ones included).",
        )?;
        let audit_records_spooled = IntCounter::new(
            "portcullis_audit_records_spooled_total",
            "Audit records written to the spool file (database unreachable, queue full, shutdown).",
        )?;
        let audit_records_replayed = IntCounter::new(
            "portcullis_audit_records_replayed_total",
            "Spooled audit records replayed into the database.",
        )?;
        let audit_write_failures = IntCounterVec::new(
            Opts::new(
                "portcullis_audit_write_failures_total",
                "Failed audit operations, by operation (write, replay, checkpoint, purge, spool).",
            ),
            &["op"],
        )?;
        let audit_spool_bytes = IntGauge::new(
            "portcullis_audit_spool_bytes",
            "Bytes waiting in the audit spool file.",
        )?;
        let audit_purged = IntCounterVec::new(
            Opts::new(
                "portcullis_audit_purged_total",
                "Audit records deleted and contents removed by retention, by what.",
            ),
            &["what"],
        )?;
        let admin_events = IntCounterVec::new(
            Opts::new(
                "portcullis_admin_events_total",
                "Admin-plane events (logins and their failures, key, user and setting changes), by action.",
            ),
            &["action"],
        )?;
        registry.register(Box::new(admin_events.clone()))?;
        registry.register(Box::new(audit_queue_depth.clone()))?;
        registry.register(Box::new(audit_batch_size.clone()))?;
        registry.register(Box::new(audit_batch_duration.clone()))?;
        registry.register(Box::new(audit_records_written.clone()))?;
        registry.register(Box::new(audit_records_spooled.clone()))?;
        registry.register(Box::new(audit_records_replayed.clone()))?;
        registry.register(Box::new(audit_write_failures.clone()))?;
        registry.register(Box::new(audit_spool_bytes.clone()))?;
        registry.register(Box::new(audit_purged.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(stream_first_byte.clone()))?;
        registry.register(Box::new(gateway_overhead.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(guardrail_findings.clone()))?;
        registry.register(Box::new(ratelimit_rejections.clone()))?;
        registry.register(Box::new(ratelimit_tokens_reserved.clone()))?;
        registry.register(Box::new(ratelimit_tokens_settled.clone()))?;
        registry.register(Box::new(ratelimit_stream_overruns.clone()))?;
        registry.register(Box::new(ratelimit_redis_errors.clone()))?;
        registry.register(Box::new(ratelimit_redis_duration.clone()))?;
        registry.register(Box::new(ratelimit_fallbacks.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            stream_first_byte,
            gateway_overhead,
            upstream_errors,
            auth_failures,
            guardrail_findings,
            ratelimit_rejections,
            ratelimit_tokens_reserved,
            ratelimit_tokens_settled,
            ratelimit_stream_overruns,
            ratelimit_redis_errors,
            ratelimit_redis_duration,
            ratelimit_fallbacks,
            in_flight,
            audit_queue_depth,
            audit_batch_size,
            audit_batch_duration,
            audit_records_written,
            audit_records_spooled,
            audit_records_replayed,
            audit_write_failures,
            audit_spool_bytes,
            audit_purged,
            admin_events,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>, MetricsError> {
        let mut buf = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_prefixed_and_rendered() {
        let m = Metrics::new().unwrap();
        m.requests
            .with_label_values(&["chat_completions", "gpt-4o", "200", "acme"])
            .inc();
        m.request_duration
            .with_label_values(&["chat_completions"])
            .observe(0.01);
        m.upstream_duration
            .with_label_values(&["openai"])
            .observe(0.01);
        m.stream_first_byte
            .with_label_values(&["openai"])
            .observe(0.01);
        m.gateway_overhead
            .with_label_values(&["chat_completions"])
            .observe(0.0002);
        m.upstream_errors
            .with_label_values(&["openai", "connect"])
            .inc();
        m.auth_failures
            .with_label_values(&["invalid_api_key"])
            .inc();
        m.guardrail_findings
            .with_label_values(&["EMAIL", "redact", "request"])
            .inc();
        m.ratelimit_rejections
            .with_label_values(&["requests", "key"])
            .inc();
        m.ratelimit_tokens_reserved
            .with_label_values(&["acme"])
            .inc();
        m.ratelimit_tokens_settled
            .with_label_values(&["acme"])
            .inc();
        m.ratelimit_stream_overruns
            .with_label_values(&["cut"])
            .inc();
        m.ratelimit_redis_errors.with_label_values(&["admit"]).inc();
        m.ratelimit_redis_duration
            .with_label_values(&["admit"])
            .observe(0.0001);
        m.ratelimit_fallbacks.inc();
        m.audit_queue_depth.set(1);
        m.audit_batch_size.observe(10.0);
        m.audit_batch_duration.observe(0.01);
        m.audit_records_written.inc();
        m.audit_records_spooled.inc();
        m.audit_records_replayed.inc();
        m.audit_write_failures.with_label_values(&["write"]).inc();
        m.audit_spool_bytes.set(1);
        m.audit_purged.with_label_values(&["records"]).inc();
        let text = String::from_utf8(m.render().unwrap()).unwrap();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("portcullis_"), "{line}");
        }
        assert!(text.contains("portcullis_requests_total{model=\"gpt-4o\",route=\"chat_completions\",status=\"200\",tenant=\"acme\"} 1"));
    }
}
