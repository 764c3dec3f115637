//! Call upstream: send the request through pingora's pooled connector (keep-alive, rustls)
//! and stream the provider's answer back to the client chunk by chunk, as it arrives.
//! Status codes and error bodies pass through unchanged; hop-by-hop headers do not.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use guardrails::policy::Direction;

use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::{metering, Failure, Gateway};
use crate::guard::{Blocked, SseGuard};
use crate::limits::usage::{self, StreamMeter};
use crate::providers::{Endpoint, OpenAiProvider};

/// Response headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// framing headers the gateway sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "content-length",
];

pub async fn forward(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    provider_name: &str,
    provider: &OpenAiProvider,
    endpoint: Endpoint,
    body: Bytes,
) -> Result<(), Failure> {
    let peer = provider.peer().await.map_err(|e| {
        tracing::warn!(request_id = %ctx.request_id, provider = provider_name, error = %e, "upstream resolve failed");
        ctx.outcome.upstream_error = Some("resolve");
        GatewayError::UpstreamUnreachable { provider: provider_name.to_string() }
    })?;
    let request = provider
        .request_header(
            endpoint,
            session.req_header().uri.query(),
            &session.req_header().headers,
            body.len(),
            &ctx.request_id,
        )
        .map_err(|e| {
            tracing::error!(request_id = %ctx.request_id, error = %e, "cannot build upstream request");
            GatewayError::Internal { request_id: ctx.request_id.clone() }
        })?;

    ctx.timing.upstream_start = Some(Instant::now());
    let mut upstream = match send(gw, &peer, provider, &request, &body).await {
        Ok(s) => s,
        // A pooled connection may have been closed by the provider while idle: the request
        // never reached it, so one retry on a fresh connection is safe.
        Err((e, true)) if is_stale_connection(&e) => {
            send_fresh(gw, &peer, provider, &request, &body)
                .await
                .map_err(|e| upstream_failure(ctx, provider_name, &e))?
        }
        Err((e, _)) => return Err(upstream_failure(ctx, provider_name, &e).into()),
    };

    let Some(upstream_header) = upstream.response_header() else {
        return Err(upstream_failure(
            ctx,
            provider_name,
            &Error::new(ErrorType::InvalidHTTPHeader),
        )
        .into());
    };
    // Answers are looked at when the guardrails check them or their tokens are counted.
    // Embeddings cost exactly their input, already counted: their (large) answers are not read
    // for a usage that would say the same.
    let counts_tokens = ctx.limits.counts_tokens() && endpoint != Endpoint::Embeddings;
    let inspection = inspection(
        upstream_header,
        ctx.guard.checks_response() || counts_tokens,
    );
    if let Inspection::Refuse(encoding) = inspection.clone() {
        upstream.shutdown().await;
        ctx.timing.upstream_end = Some(Instant::now());
        return Err(GatewayError::ResponseUninspectable { encoding }.into());
    }
    if inspection == Inspection::Whole {
        return relay_whole(gw, session, ctx, upstream, &peer, provider, provider_name).await;
    }
    let framing = match inspection {
        Inspection::Stream => Framing::Rewritten,
        _ => Framing::AsUpstream,
    };
    let header = downstream_header(upstream_header, framing, session.is_http2(), ctx)
        .map_err(|e| upstream_failure(ctx, provider_name, &e))?;
    ctx.outcome.status = header.status.as_u16();
    if let Err(e) = session.write_response_header(Box::new(header), false).await {
        upstream.shutdown().await;
        return Err(client_gone(ctx, e));
    }
    let streamed = inspection == Inspection::Stream;
    let mut sse_guard = (streamed && ctx.guard.checks_response()).then(|| {
        let endpoint = ctx.request.endpoint.unwrap_or(endpoint);
        SseGuard::new(endpoint, gw.config.guardrails.stream_holdback)
    });
    let mut meter = (streamed && counts_tokens).then(|| new_meter(ctx, endpoint));
    let engine = gw.config.guardrails.engine.as_ref();

    upstream.set_read_timeout(Some(provider.timeouts.idle));
    let mut next = upstream.read_response_body().await;
    loop {
        match next {
            Ok(Some(chunk)) => {
                ctx.timing.first_byte.get_or_insert_with(Instant::now);
                let (chunk, after) = take_ready(&mut upstream, chunk);
                let chunk = match sse_guard.as_mut() {
                    Some(g) => Bytes::from(g.push(&chunk, engine, &mut ctx.guard)),
                    None => chunk,
                };
                let (chunk, cut) = match meter.as_mut() {
                    Some(m) => {
                        let (bytes, cut) = metering::pass(gw, ctx, m, &chunk, false).await;
                        (Bytes::from(bytes), cut)
                    }
                    None => (chunk, false),
                };
                ctx.sent(&chunk);
                if !chunk.is_empty() {
                    if let Err(e) = session.write_response_body(Some(chunk), false).await {
                        // The client left: drop the upstream connection so the provider stops
                        // generating (and billing) tokens nobody will read.
                        upstream.shutdown().await;
                        return Err(client_gone(ctx, e));
                    }
                }
                let blocked = sse_guard.as_ref().is_some_and(SseGuard::is_blocked);
                if blocked || cut {
                    // The answer was cut by a `block` or by its token budget: stop the
                    // provider's generation too.
                    if blocked {
                        ctx.outcome.error_code = Some("guardrail_blocked");
                    }
                    upstream.shutdown().await;
                    ctx.timing.upstream_end = Some(Instant::now());
                    return session
                        .write_response_body(None, true)
                        .await
                        .map_err(|e| client_gone(ctx, e));
                }
                next = match after {
                    Some(outcome) => outcome,
                    None => upstream.read_response_body().await,
                };
            }
            Ok(None) => break,
            Err(e) => {
                ctx.timing.upstream_end = Some(Instant::now());
                ctx.outcome.upstream_error = Some(error_kind(&e));
                tracing::warn!(request_id = %ctx.request_id, provider = provider_name, error = %e, "upstream failed mid-response");
                upstream.shutdown().await;
                return Err(Failure::UpstreamBroken(e));
            }
        }
    }
    ctx.timing.upstream_end = Some(Instant::now());
    if upstream.response_done() {
        gw.connector
            .release_http_session(upstream, &peer, Some(provider.timeouts.pool_idle))
            .await;
    }
    let mut rest = Vec::new();
    if let Some(g) = sse_guard.as_mut() {
        rest = g.finish(engine, &mut ctx.guard);
        if g.is_blocked() {
            ctx.outcome.error_code = Some("guardrail_blocked");
        }
    }
    if let Some(m) = meter.as_mut() {
        rest = metering::pass(gw, ctx, m, &rest, true).await.0;
    }
    if !rest.is_empty() {
        ctx.sent(&rest);
        session
            .write_response_body(Some(Bytes::from(rest)), false)
            .await
            .map_err(|e| client_gone(ctx, e))?;
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(|e| client_gone(ctx, e))
}

/// How the guardrails look at an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inspection {
    /// Passed through untouched: nothing to check, or not a successful answer (provider
    /// errors pass through faithfully).
    None,
    /// An SSE stream, checked event by event with a hold-back.
    Stream,
    /// A JSON body, read whole and checked.
    Whole,
    /// Compressed: it cannot be checked, so it is not let through.
    Refuse(String),
}

fn inspection(upstream: &ResponseHeader, checks_response: bool) -> Inspection {
    if !checks_response || !upstream.status.is_success() {
        return Inspection::None;
    }
    let header = |name: http::header::HeaderName| {
        upstream
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let encoding = header(http::header::CONTENT_ENCODING);
    if !encoding.is_empty() && encoding != "identity" {
        return Inspection::Refuse(encoding);
    }
    let content_type = header(http::header::CONTENT_TYPE);
    if content_type.starts_with("text/event-stream") {
        Inspection::Stream
    } else if content_type.contains("json") {
        Inspection::Whole
    } else {
        Inspection::None
    }
}

/// Reads a whole JSON answer (up to `guardrails.max_response_bytes`), checks it and sends it
/// with its new length — or the `guardrail_blocked` error in its place.
async fn relay_whole(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut upstream: HttpSession,
    peer: &HttpPeer,
    provider: &OpenAiProvider,
    provider_name: &str,
) -> Result<(), Failure> {
    let limit = gw.config.guardrails.max_response_bytes;
    let mut body = BytesMut::new();
    upstream.set_read_timeout(Some(provider.timeouts.idle));
    loop {
        match upstream.read_response_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    upstream.shutdown().await;
                    ctx.timing.upstream_end = Some(Instant::now());
                    return Err(GatewayError::ResponseTooLarge { limit }.into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                upstream.shutdown().await;
                return Err(upstream_failure(ctx, provider_name, &e).into());
            }
        }
    }
    ctx.timing.upstream_end = Some(Instant::now());
    let status = upstream
        .response_header()
        .map_or(200, |h| h.status.as_u16());
    let extra: Vec<(String, String)> = upstream
        .response_header()
        .map(|h| {
            h.headers
                .iter()
                .filter(|(name, _)| relayed(name.as_str(), ctx) && name.as_str() != "content-type")
                .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if upstream.response_done() {
        gw.connector
            .release_http_session(upstream, peer, Some(provider.timeouts.pool_idle))
            .await;
    }
    let endpoint = ctx
        .request
        .endpoint
        .unwrap_or(crate::providers::Endpoint::ChatCompletions);
    let body = guard_whole(gw, ctx, endpoint, body.freeze())?;
    ctx.timing.first_byte = Some(Instant::now());
    let headers: Vec<(String, &str)> = extra.iter().map(|(n, v)| (n.clone(), v.as_str())).collect();
    super::respond::write_full(session, ctx, status, super::respond::JSON, body, &headers)
        .await
        .map_err(|e| client_gone(ctx, e))
}

/// Checks a whole JSON answer: the rewritten body, or the `guardrail_blocked` error.
pub fn guard_whole(
    gw: &Gateway,
    ctx: &mut RequestCtx,
    endpoint: crate::providers::Endpoint,
    body: Bytes,
) -> Result<Bytes, Failure> {
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        // Declared JSON but is not: nothing here can be checked, so it does not pass.
        return Err(GatewayError::UpstreamProtocol {
            provider: ctx.request.provider.clone().unwrap_or_default(),
        }
        .into());
    };
    ctx.limits.usage = usage::from_json(&json);
    if !ctx.guard.checks_response() {
        return Ok(body);
    }
    let engine = gw.config.guardrails.engine.as_ref();
    match crate::guard::check_response(engine, &mut ctx.guard, endpoint, &mut json) {
        Ok(false) => Ok(body),
        Ok(true) => Ok(Bytes::from(json.to_string())),
        Err(Blocked) => Err(GatewayError::GuardrailBlocked(
            ctx.guard.blocked_message(Direction::Response),
        )
        .into()),
    }
}

/// Most bytes merged into one client write.
const COALESCE_LIMIT: usize = 64 * 1024;

/// After a chunk has arrived, merges every further chunk that is *already* readable — without
/// waiting — so a burst of SSE events costs one client write instead of one per event. The
/// first chunk is never delayed. When the read that stopped the merge ended the body or failed,
/// that outcome is returned for the caller to handle next.
fn take_ready(
    upstream: &mut HttpSession,
    first: Bytes,
) -> (Bytes, Option<pingora::Result<Option<Bytes>>>) {
    let mut merged: Option<BytesMut> = None;
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if merged.as_ref().map_or(first.len(), BytesMut::len) >= COALESCE_LIMIT {
            break;
        }
        // Polled once with a no-op waker: a pending read is dropped before it consumed
        // anything (pingora's body readers commit their state before awaiting I/O).
        let poll = std::pin::pin!(upstream.read_response_body()).poll(&mut cx);
        match poll {
            Poll::Ready(Ok(Some(more))) => merged
                .get_or_insert_with(|| BytesMut::from(&first[..]))
                .extend_from_slice(&more),
            Poll::Ready(outcome) => {
                return (merged.map_or(first, BytesMut::freeze), Some(outcome));
            }
            Poll::Pending => break,
        }
    }
    (merged.map_or(first, BytesMut::freeze), None)
}

/// Sends the request and reads the response header: `Err((error, reused))` tells whether the
/// failing connection came from the pool.
async fn send(
    gw: &Gateway,
    peer: &HttpPeer,
    provider: &OpenAiProvider,
    request: &pingora::http::RequestHeader,
    body: &Bytes,
) -> Result<HttpSession, (Box<Error>, bool)> {
    let (mut upstream, reused) = gw
        .connector
        .get_http_session(peer)
        .await
        .map_err(|e| (e, false))?;
    match exchange(&mut upstream, provider, request, body).await {
        Ok(()) => Ok(upstream),
        Err(e) => {
            upstream.shutdown().await;
            Err((e, reused))
        }
    }
}

async fn send_fresh(
    gw: &Gateway,
    peer: &HttpPeer,
    provider: &OpenAiProvider,
    request: &pingora::http::RequestHeader,
    body: &Bytes,
) -> Result<HttpSession, Box<Error>> {
    // Fresh connections are never taken from the pool, so a second failure is genuine.
    let mut peer = peer.clone();
    peer.options.idle_timeout = None;
    let (mut upstream, _) = gw.connector.get_http_session(&peer).await?;
    match exchange(&mut upstream, provider, request, body).await {
        Ok(()) => Ok(upstream),
        Err(e) => {
            upstream.shutdown().await;
            Err(e)
        }
    }
}

async fn exchange(
    upstream: &mut HttpSession,
    provider: &OpenAiProvider,
    request: &pingora::http::RequestHeader,
    body: &Bytes,
) -> pingora::Result<()> {
    upstream.set_write_timeout(Some(provider.timeouts.idle));
    upstream.set_read_timeout(Some(provider.timeouts.first_byte));
    upstream
        .write_request_header(Box::new(request.clone()))
        .await?;
    upstream.write_request_body(body.clone(), true).await?;
    upstream.finish_request_body().await?;
    // Skip informational (1xx) responses.
    loop {
        upstream.read_response_header().await?;
        match upstream.response_header() {
            Some(h) if h.status.is_informational() => continue,
            _ => return Ok(()),
        }
    }
}

fn is_stale_connection(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectionClosed
            | ErrorType::ReadError
            | ErrorType::WriteError
            | ErrorType::InvalidHTTPHeader
    )
}

fn error_kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            "timeout"
        }
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::BindError
        | ErrorType::SocketError
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError
        | ErrorType::ConnectProxyFailure => "connect",
        ErrorType::ConnectionClosed => "closed",
        _ => "protocol",
    }
}

fn upstream_failure(ctx: &mut RequestCtx, provider: &str, e: &Error) -> GatewayError {
    let kind = error_kind(e);
    ctx.outcome.upstream_error = Some(kind);
    ctx.timing.upstream_end = Some(Instant::now());
    tracing::warn!(request_id = %ctx.request_id, provider, error = %e, kind, "upstream call failed");
    let provider = provider.to_string();
    match (kind, e.etype()) {
        (_, ErrorType::ConnectTimedout) => GatewayError::UpstreamTimeout {
            provider,
            phase: "connect",
        },
        ("timeout", _) => GatewayError::UpstreamTimeout {
            provider,
            phase: "first byte",
        },
        ("connect", _) => GatewayError::UpstreamUnreachable { provider },
        _ => GatewayError::UpstreamProtocol { provider },
    }
}

fn client_gone(ctx: &mut RequestCtx, e: Box<Error>) -> Failure {
    ctx.outcome.client_disconnected = true;
    ctx.timing.upstream_end.get_or_insert_with(Instant::now);
    Failure::ClientGone(e)
}

/// How the client's response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// The body is relayed unchanged: the provider's length, if it gave one, still holds.
    AsUpstream,
    /// The guard rewrites the body as it streams: chunked.
    Rewritten,
}

/// Whether a provider's response header reaches the client: end-to-end headers do, except
/// `x-ratelimit-*` when the gateway's own limits replace them.
fn relayed(name: &str, ctx: &RequestCtx) -> bool {
    let replaced = ctx.limits.replaces_provider_limits() && name.starts_with("x-ratelimit-");
    !HOP_BY_HOP.contains(&name) && !replaced
}

/// The client's response header: the provider's status and end-to-end headers, our framing.
fn downstream_header(
    upstream: &ResponseHeader,
    framing: Framing,
    http2: bool,
    ctx: &RequestCtx,
) -> pingora::Result<ResponseHeader> {
    let mut header = ResponseHeader::build(upstream.status, Some(upstream.headers.len() + 2))?;
    for (name, value) in upstream.headers.iter() {
        if relayed(name.as_str(), ctx) {
            header.append_header(name.clone(), value.clone())?;
        }
    }
    for (name, value) in ctx.limits.headers.to_pairs() {
        header.insert_header(name, value)?;
    }
    // Unchanged body → the provider's length still holds; otherwise stream it chunked.
    let length = upstream
        .headers
        .get(http::header::CONTENT_LENGTH)
        .filter(|_| framing == Framing::AsUpstream);
    match length {
        Some(len) => header.insert_header("content-length", len.clone())?,
        None if !http2 => header.insert_header("transfer-encoding", "chunked")?,
        None => {}
    }
    header.insert_header("x-request-id", &ctx.request_id)?;
    Ok(header)
}

/// A meter for a streamed answer whose tokens are counted.
fn new_meter(ctx: &RequestCtx, endpoint: Endpoint) -> StreamMeter {
    let endpoint = ctx.request.endpoint.unwrap_or(endpoint);
    let model = ctx.request.model.as_deref().unwrap_or("");
    StreamMeter::new(endpoint, model, ctx.limits.usage_added)
}

/// Writes a locally produced answer (the demo provider): one body → `Content-Length`; several
/// (SSE events) → chunked, each event written as its own chunk so the client sees them one by
/// one. The guardrails check it exactly as they check a provider's answer.
pub async fn write_events(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    content_type: &str,
    chunks: Vec<Bytes>,
) -> Result<(), Failure> {
    let success = (200..300).contains(&status);
    let checks = ctx.guard.checks_response() && success;
    let counts_tokens = ctx.limits.counts_tokens() && success;
    if chunks.len() == 1 && content_type != "text/event-stream" {
        let mut body = chunks.into_iter().next().unwrap_or_default();
        if checks || counts_tokens {
            let endpoint = ctx.request.endpoint.unwrap_or(Endpoint::ChatCompletions);
            body = guard_whole(gw, ctx, endpoint, body)?;
        }
        ctx.timing.first_byte = Some(Instant::now());
        return super::respond::write_full(session, ctx, status, content_type, body, &[])
            .await
            .map_err(|e| client_gone(ctx, e));
    }
    let build = || -> pingora::Result<ResponseHeader> {
        let mut header = ResponseHeader::build(status, Some(4))?;
        header.insert_header("content-type", content_type)?;
        header.insert_header("cache-control", "no-cache")?;
        if !session.is_http2() {
            header.insert_header("transfer-encoding", "chunked")?;
        }
        header.insert_header("x-request-id", &ctx.request_id)?;
        for (name, value) in ctx.limits.headers.to_pairs() {
            header.insert_header(name, value)?;
        }
        Ok(header)
    };
    let header = build().map_err(|_| GatewayError::Internal {
        request_id: ctx.request_id.clone(),
    })?;
    ctx.outcome.status = status;
    session
        .write_response_header(Box::new(header), false)
        .await
        .map_err(|e| client_gone(ctx, e))?;
    let engine = gw.config.guardrails.engine.as_ref();
    let mut sse_guard = checks.then(|| {
        let endpoint = ctx.request.endpoint.unwrap_or(Endpoint::ChatCompletions);
        SseGuard::new(endpoint, gw.config.guardrails.stream_holdback)
    });
    let mut meter = counts_tokens.then(|| new_meter(ctx, Endpoint::ChatCompletions));
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let last = i + 1 == count;
        let chunk = match sse_guard.as_mut() {
            Some(g) => {
                let mut out = g.push(&chunk, engine, &mut ctx.guard);
                if last {
                    out.extend(g.finish(engine, &mut ctx.guard));
                }
                Bytes::from(out)
            }
            None => chunk,
        };
        let (chunk, cut) = match meter.as_mut() {
            Some(m) => {
                let (bytes, cut) = metering::pass(gw, ctx, m, &chunk, last).await;
                (Bytes::from(bytes), cut)
            }
            None => (chunk, false),
        };
        ctx.timing.first_byte.get_or_insert_with(Instant::now);
        ctx.sent(&chunk);
        if !chunk.is_empty() {
            session
                .write_response_body(Some(chunk), false)
                .await
                .map_err(|e| client_gone(ctx, e))?;
        }
        if sse_guard.as_ref().is_some_and(SseGuard::is_blocked) {
            ctx.outcome.error_code = Some("guardrail_blocked");
            break;
        }
        if cut {
            break;
        }
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(|e| client_gone(ctx, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_framing_recomputed() {
        let mut ctx = RequestCtx::new();
        ctx.request_id = "req_1".into();
        let mut up = ResponseHeader::build(429, None).unwrap();
        up.insert_header("connection", "keep-alive").unwrap();
        up.insert_header("keep-alive", "timeout=5").unwrap();
        up.insert_header("transfer-encoding", "chunked").unwrap();
        up.insert_header("content-type", "application/json")
            .unwrap();
        up.insert_header("x-ratelimit-remaining-requests", "0")
            .unwrap();
        let down = downstream_header(&up, Framing::AsUpstream, false, &ctx).unwrap();
        assert_eq!(down.status.as_u16(), 429);
        assert!(down.headers.get("connection").is_none());
        assert!(down.headers.get("keep-alive").is_none());
        assert_eq!(down.headers.get("transfer-encoding").unwrap(), "chunked");
        assert_eq!(
            down.headers.get("x-ratelimit-remaining-requests").unwrap(),
            "0"
        );
        assert_eq!(down.headers.get("x-request-id").unwrap(), "req_1");

        let mut up = ResponseHeader::build(200, None).unwrap();
        up.insert_header("content-length", "42").unwrap();
        let down = downstream_header(&up, Framing::AsUpstream, false, &ctx).unwrap();
        assert_eq!(down.headers.get("content-length").unwrap(), "42");
        assert!(down.headers.get("transfer-encoding").is_none());
    }

    #[test]
    fn error_kinds() {
        assert_eq!(
            error_kind(&Error::new(ErrorType::ConnectRefused)),
            "connect"
        );
        assert_eq!(error_kind(&Error::new(ErrorType::ReadTimedout)), "timeout");
        assert_eq!(
            error_kind(&Error::new(ErrorType::ConnectionClosed)),
            "closed"
        );
    }
}
