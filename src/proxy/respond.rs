//! Writing complete responses to the client with correct framing. Every response carries a
//! `Content-Length` (or is chunked when streamed): an unframed HTTP/1.1 response would force
//! the connection closed after each request.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::error::GatewayError;

pub const JSON: &str = "application/json";

/// Writes a whole response (header + body) in one go.
pub async fn write_full(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    content_type: &str,
    body: Bytes,
    extra: &[(String, &str)],
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(status, Some(4 + extra.len()))?;
    header.insert_header("content-type", content_type)?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("x-request-id", &ctx.request_id)?;
    for (name, value) in extra {
        header.insert_header(name.clone(), *value)?;
    }
    for (name, value) in ctx.limits.headers.to_pairs() {
        header.insert_header(name, value)?;
    }
    ctx.outcome.status = status;
    ctx.sent(&body);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// Writes an OpenAI-shaped error. Errors answered before the request body was read close the
/// connection, so an unread body can never be mistaken for the next request.
pub async fn write_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    error: &GatewayError,
) -> pingora::Result<()> {
    ctx.outcome.error_code = Some(error.code());
    if matches!(
        error,
        GatewayError::BodyTooLarge { .. } | GatewayError::ClientRead(_)
    ) {
        session.set_keepalive(None);
    }
    let mut extra: Vec<(String, String)> = Vec::new();
    if let GatewayError::MethodNotAllowed { allow, .. } = error {
        extra.push(("allow".to_string(), allow.to_string()));
    }
    if let Some(wait) = match error {
        GatewayError::RateLimited(refusal) => refusal.retry_after(),
        _ => None,
    } {
        // Whole seconds for HTTP; milliseconds for the OpenAI SDKs, which honour both.
        let seconds = wait.as_millis().div_ceil(1000).max(1);
        extra.push(("retry-after".to_string(), seconds.to_string()));
        extra.push(("retry-after-ms".to_string(), wait.as_millis().to_string()));
    }
    let extra: Vec<(String, &str)> = extra.iter().map(|(n, v)| (n.clone(), v.as_str())).collect();
    write_full(
        session,
        ctx,
        error.status(),
        JSON,
        Bytes::from(error.body()),
        &extra,
    )
    .await
}
