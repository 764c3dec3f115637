//! The data plane: one thin `ProxyHttp` implementation. Each pingora phase hands off to the
//! module named after the step of the request's journey it performs.

mod ctx;
mod error;
mod metering;
pub mod origin;
mod respond;
mod upstream;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType};

pub use ctx::RequestCtx;
pub use error::GatewayError;

use crate::audit::Auditor;
use crate::auth::{AuthError, Authenticator};
use crate::config::Config;
use crate::limits::Limiter;
use crate::telemetry::metrics::Metrics;

/// Shared, read-only state of the data plane.
pub struct Gateway {
    pub config: Arc<Config>,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub limiter: Limiter,
    /// `None` when `audit.enabled = false`.
    pub auditor: Option<Arc<Auditor>>,
    pub connector: Connector,
    request_ids: RequestIds,
}

impl Gateway {
    pub fn new(
        config: Arc<Config>,
        auth: Authenticator,
        metrics: Arc<Metrics>,
        auditor: Option<Arc<Auditor>>,
    ) -> Result<Gateway, crate::ids::RandomError> {
        Ok(Gateway {
            auditor,
            limiter: Limiter::new(&config.limits, metrics.clone()),
            config,
            auth,
            metrics,
            connector: Connector::new(None),
            request_ids: RequestIds::new()?,
        })
    }
}

/// Why the origin handler stopped early.
#[derive(Debug)]
pub enum Failure {
    /// Nothing has been sent yet: answer with this error.
    Respond(GatewayError),
    /// Writing to the client failed: it disconnected.
    ClientGone(Box<Error>),
    /// The provider failed after the response had started; the client's response is cut.
    UpstreamBroken(Box<Error>),
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Respond(e)
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        Failure::Respond(GatewayError::Auth(e))
    }
}

/// Request ids: a random per-process prefix plus a counter — unique, cheap, unguessable enough
/// for correlation (they are not secrets).
struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Result<RequestIds, crate::ids::RandomError> {
        Ok(RequestIds {
            prefix: crate::ids::base62(&crate::ids::random_bytes::<6>()?, 9),
            counter: AtomicU64::new(0),
        })
    }

    fn next(&self) -> String {
        format!(
            "req_{}{:x}",
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.request_id = self.request_ids.next();
        ctx.client.ip = client_ip(session, &self.config.server.trusted_proxies);
        self.metrics.in_flight.inc();
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        match origin::handle(self, session, ctx).await {
            Ok(()) => Ok(true),
            Err(Failure::Respond(error)) => {
                if let GatewayError::Auth(auth) = &error {
                    tracing::debug!(request_id = %ctx.request_id, code = auth.code(), "authentication failed");
                }
                respond::write_error(session, ctx, &error).await?;
                Ok(true)
            }
            // The response is already under way (or the client is gone): all that is left is
            // to make sure this connection is not reused.
            Err(Failure::ClientGone(e)) | Err(Failure::UpstreamBroken(e)) => Err(e),
        }
    }

    /// Never reached: every path is answered in `request_filter`.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        tracing::error!(request_id = %ctx.request_id, "request reached upstream_peer; origin mode should have answered it");
        Err(Error::new(ErrorType::InternalError))
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // Headers already sent (mid-stream failure): nothing can be said any more.
        if session.response_written().is_some() || ctx.outcome.client_disconnected {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        tracing::warn!(request_id = %ctx.request_id, error = %e, "request failed before a response");
        let error = GatewayError::Internal {
            request_id: ctx.request_id.clone(),
        };
        let _ = respond::write_error(session, ctx, &error).await;
        FailToProxy {
            error_code: error.status(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        self.metrics.in_flight.dec();
        // Settle token usage and release concurrency slots: after the response has been sent,
        // so a Redis round trip here never delays the client.
        if let Some(admitted) = ctx.limits.admitted.take() {
            let used = ctx
                .limits
                .used_tokens(crate::logging::status_sent(session, ctx));
            ctx.limits.settled = Some(self.limiter.settle(admitted, used).await);
        }
        crate::logging::record(self, session, e, ctx);
    }
}

/// The client's address: the TCP peer, or the first untrusted hop in `X-Forwarded-For` when
/// the peer is one of `server.trusted_proxies`.
fn client_ip(session: &Session, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = session
        .req_header()
        .headers
        .get("x-forwarded-for")?
        .to_str()
        .ok()?;
    forwarded_client(forwarded, trusted).or(Some(peer))
}

/// Walks `X-Forwarded-For` from the right, skipping trusted proxies.
fn forwarded_client(header: &str, trusted: &[IpAddr]) -> Option<IpAddr> {
    header
        .rsplit(',')
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_skips_trusted_hops_from_the_right() {
        let trusted: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        assert_eq!(
            forwarded_client("203.0.113.9, 198.51.100.7, 10.0.0.2", &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(forwarded_client("10.0.0.2", &trusted), None);
        assert_eq!(forwarded_client("garbage, 10.0.0.1", &trusted), None);
    }

    #[test]
    fn request_ids_are_unique() {
        let ids = RequestIds::new().unwrap();
        assert_ne!(ids.next(), ids.next());
    }
}
