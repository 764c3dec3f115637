//! The `logging` phase: the ONE place that turns a finished request's context into metrics and
//! the access log line, guardrail findings and rate-limit outcomes included. (Audit records
//! will be emitted here too.)

use pingora::proxy::Session;
use pingora::Error;

use crate::proxy::RequestCtx;
use crate::telemetry::metrics::Metrics;

/// Status recorded for a client that disconnected before its response completed (nginx's 499).
const CLIENT_CLOSED_REQUEST: u16 = 499;

pub fn record(metrics: &Metrics, session: &Session, error: Option<&Error>, ctx: &RequestCtx) {
    let total = ctx.timing.start.elapsed();
    let upstream = match (ctx.timing.upstream_start, ctx.timing.upstream_end) {
        (Some(start), Some(end)) => end.saturating_duration_since(start),
        _ => std::time::Duration::ZERO,
    };
    let status = if ctx.outcome.client_disconnected {
        CLIENT_CLOSED_REQUEST
    } else {
        status_sent(session, ctx)
    };
    let route = ctx.request.route;
    let tenant = ctx.principal.as_ref().map_or("", |p| p.tenant.as_str());
    let model = ctx.request.model_label.as_deref().unwrap_or("");
    let provider = ctx.request.provider.as_deref().unwrap_or("");

    metrics
        .request_duration
        .with_label_values(&[route])
        .observe(total.as_secs_f64());
    if ctx.timing.upstream_start.is_some() {
        metrics
            .upstream_duration
            .with_label_values(&[provider])
            .observe(upstream.as_secs_f64());
        metrics
            .gateway_overhead
            .with_label_values(&[route])
            .observe(total.saturating_sub(upstream).as_secs_f64());
    }
    if ctx.request.stream {
        if let Some(first) = ctx.timing.first_byte {
            metrics
                .stream_first_byte
                .with_label_values(&[provider])
                .observe(
                    first
                        .saturating_duration_since(ctx.timing.start)
                        .as_secs_f64(),
                );
        }
    }
    if let Some(kind) = ctx.outcome.upstream_error {
        metrics
            .upstream_errors
            .with_label_values(&[provider, kind])
            .inc();
    }
    if let Some(code) = ctx
        .outcome
        .error_code
        .filter(|_| (401..=403).contains(&status))
    {
        metrics.auth_failures.with_label_values(&[code]).inc();
    }

    let report = &ctx.guard.report;
    for ((direction, entity, action), count) in &report.counts {
        metrics
            .guardrail_findings
            .with_label_values(&[entity.name(), action.name(), direction.name()])
            .inc_by(u64::from(*count));
    }
    for (direction, action) in &report.financial_advice {
        metrics
            .guardrail_findings
            .with_label_values(&["FINANCIAL_ADVICE", action.name(), direction.name()])
            .inc();
    }

    let limits = &ctx.limits;
    if let Some(refusal) = &limits.refused {
        metrics
            .ratelimit_rejections
            .with_label_values(&[refusal.kind(), refusal.scope()])
            .inc();
    }
    if let Some(settled) = limits.settled.filter(|s| s.reserved > 0 || s.used > 0) {
        metrics
            .ratelimit_tokens_reserved
            .with_label_values(&[tenant])
            .inc_by(settled.reserved);
        metrics
            .ratelimit_tokens_settled
            .with_label_values(&[tenant])
            .inc_by(settled.used);
    }
    if let Some(cut) = limits.overrun {
        metrics
            .ratelimit_stream_overruns
            .with_label_values(&[if cut { "cut" } else { "finish" }])
            .inc();
    }

    // Counted last: once a request shows in portcullis_requests_total, all its metrics do.
    metrics
        .requests
        .with_label_values(&[route, model, &status.to_string(), tenant])
        .inc();

    // The access log: identifiers and outcomes only — never keys, prompts or responses.
    tracing::info!(
        target: "portcullis::access",
        request_id = %ctx.request_id,
        client_ip = ?ctx.client.ip,
        method = %session.req_header().method,
        route,
        model = ctx.request.model.as_deref().unwrap_or(""),
        provider,
        tenant,
        key = ctx.principal.as_ref().map_or("", |p| p.key_prefix.as_str()),
        status,
        error_code = ctx.outcome.error_code.unwrap_or(""),
        upstream_error = ctx.outcome.upstream_error.unwrap_or(""),
        stream = ctx.request.stream,
        guardrail_policy = ctx.guard.policy.as_ref().map_or("", |p| p.name.as_str()),
        guardrail_findings = %findings_summary(report),
        ratelimit = limits.refused.as_ref().map_or("", |r| r.kind()),
        tokens_reserved = limits.settled.map_or(0, |s| s.reserved),
        tokens_used = limits.settled.map_or(0, |s| s.used),
        request_bytes = ctx.request.body_bytes,
        response_bytes = ctx.outcome.response_bytes,
        total_ms = total.as_secs_f64() * 1000.0,
        upstream_ms = upstream.as_secs_f64() * 1000.0,
        error = error.map(|e| e.to_string()).unwrap_or_default(),
        "request"
    );
}

/// The status written to the client (0 when nothing was).
pub fn status_sent(session: &Session, ctx: &RequestCtx) -> u16 {
    if ctx.outcome.status != 0 {
        ctx.outcome.status
    } else {
        session.response_written().map_or(0, |h| h.status.as_u16())
    }
}

/// `request:EMAIL:redact=2 response:API_SECRET:block=1`: types, actions and counts, no values.
fn findings_summary(report: &guardrails::policy::Report) -> String {
    let mut parts: Vec<String> = report
        .counts
        .iter()
        .map(|((d, t, a), n)| format!("{}:{}:{}={n}", d.name(), t.name(), a.name()))
        .collect();
    parts.extend(
        report
            .financial_advice
            .iter()
            .map(|(d, a)| format!("{}:FINANCIAL_ADVICE:{}=1", d.name(), a.name())),
    );
    parts.join(" ")
}
