//! The `logging` phase: the ONE place that turns a finished request's context into metrics,
//! the access log line and the audit record, guardrail findings and rate-limit outcomes
//! included.

use pingora::proxy::Session;
use pingora::Error;

use crate::audit::detail::JsonObject;
use crate::audit::{AuditRecord, Kind, LoggingPolicy};
use crate::proxy::{Gateway, RequestCtx};

/// Status recorded for a client that disconnected before its response completed (nginx's 499).
const CLIENT_CLOSED_REQUEST: u16 = 499;

pub fn record(gw: &Gateway, session: &Session, error: Option<&Error>, ctx: &RequestCtx) {
    let metrics = &gw.metrics;
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

    // Last: the record goes to the writer's queue; nothing here waits on the database.
    if let Some(auditor) = &gw.auditor {
        if let Some(record) = audit_record(gw, session, ctx, status, total, upstream) {
            auditor.submit(record);
        }
    }
}

/// The request's audit record, if the tenant's policy keeps one. Requests that never got past
/// authentication are security events (`auth.failed`) on the chain of no tenant.
fn audit_record(
    gw: &Gateway,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    total: std::time::Duration,
    upstream: std::time::Duration,
) -> Option<AuditRecord> {
    let (kind, action, policy) = match (&ctx.principal, ctx.audit.policy) {
        (Some(_), Some(LoggingPolicy::None)) | (Some(_), None) => return None,
        (Some(_), Some(policy)) => (Kind::Request, "request", policy),
        (None, _) if (401..=403).contains(&status) => {
            (Kind::Security, "auth.failed", LoggingPolicy::Metadata)
        }
        // Unknown paths, and callers refused by the per-IP limit: metrics only.
        (None, _) => return None,
    };
    // What the record says besides its indexed columns. Values only — never keys, never raw
    // prompt or answer text; fields without a value are left out.
    let report = &ctx.guard.report;
    let mut findings: Vec<JsonObject> = Vec::new();
    let mut finding = |direction: &str, entity: &str, action: &str, count: u32| {
        let mut f = JsonObject::new();
        f.text("direction", direction)
            .text("type", entity)
            .text("action", action)
            .count("count", Some(u64::from(count)));
        findings.push(f);
    };
    for ((d, t, a), n) in &report.counts {
        finding(d.name(), t.name(), a.name(), *n);
    }
    for (d, a) in &report.financial_advice {
        finding(d.name(), "FINANCIAL_ADVICE", a.name(), 1);
    }
    let usage = ctx.limits.usage;
    let mut detail = JsonObject::new();
    detail
        .text(
            "key_id",
            ctx.principal.as_ref().map_or("", |p| p.key_id.as_str()),
        )
        .ip("client_ip", ctx.client.ip)
        .text("method", session.req_header().method.as_str())
        .text("route", ctx.request.route)
        .text("model", ctx.request.model.as_deref().unwrap_or(""))
        .text("provider", ctx.request.provider.as_deref().unwrap_or(""))
        .bool("stream", ctx.request.stream)
        .text("error_code", ctx.outcome.error_code.unwrap_or(""))
        .text("upstream_error", ctx.outcome.upstream_error.unwrap_or(""))
        .millis("latency_ms", total)
        .millis("upstream_ms", upstream)
        .count("request_bytes", Some(ctx.request.body_bytes as u64))
        .count("response_bytes", Some(ctx.outcome.response_bytes as u64))
        .text(
            "guardrail_policy",
            ctx.guard.policy.as_ref().map_or("", |p| p.name.as_str()),
        )
        .objects("findings", findings)
        .text(
            "ratelimit",
            ctx.limits.refused.as_ref().map_or("", |r| r.kind()),
        )
        .count("prompt_tokens", usage.map(|u| u.prompt))
        .count("completion_tokens", usage.map(|u| u.completion))
        .count("total_tokens", usage.map(|u| u.total))
        .text("logging", policy.name());
    let detail = detail.finish();
    let auditor = gw.auditor.as_ref()?;
    let content = match (&ctx.audit.capture, ctx.request.endpoint) {
        (Some(capture), Some(endpoint)) if policy == LoggingPolicy::Redacted => {
            Some(crate::audit::content::redact(
                &gw.config.guardrails.engine,
                endpoint,
                capture,
                gw.config.audit.max_content_bytes,
            ))
        }
        _ => None,
    };
    Some(AuditRecord {
        id: ctx.request_id.clone(),
        time: crate::store::now_millis() - total.as_millis() as i64,
        kind,
        tenant: ctx
            .principal
            .as_ref()
            .map_or(String::new(), |p| p.tenant.clone()),
        action: action.to_string(),
        actor: ctx
            .principal
            .as_ref()
            .map_or(String::new(), |p| p.key_prefix.clone()),
        status,
        subject: ctx.audit.subject.as_deref().map(|s| auditor.subject(s)),
        detail,
        content,
    })
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

/// An admin-plane event (login, failed login, key/user/setting change): counted, logged without
/// secrets, and recorded on the tenant's events chain (`""`: no tenant) when auditing is on.
pub fn admin_event(
    metrics: &crate::telemetry::metrics::Metrics,
    auditor: Option<&crate::audit::Auditor>,
    kind: Kind,
    tenant: &str,
    action: &str,
    actor: &str,
    detail: serde_json::Value,
) {
    metrics.admin_events.with_label_values(&[action]).inc();
    tracing::info!(action, actor, tenant, "admin event");
    let Some(auditor) = auditor else { return };
    match AuditRecord::event(kind, tenant, action, actor, detail) {
        Ok(record) => auditor.submit(record),
        Err(e) => {
            tracing::error!(error = %e, action, "cannot create the audit record of an admin event")
        }
    }
}
