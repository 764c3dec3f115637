//! The admin listener (separate from the data plane): `/metrics` for Prometheus, `/healthz`
//! (the process is up) and `/readyz` (config loaded and the store reachable). The admin API
//! will be mounted here too.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::store::Store;
use crate::telemetry::metrics::Metrics;

/// `/readyz` must answer quickly even when the database hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub struct AdminApp {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match (method, path.as_str()) {
            (Method::GET, "/metrics") => match self.metrics.render() {
                Ok(body) => respond(StatusCode::OK, "text/plain; version=0.0.4", body),
                Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), e.code()),
            },
            (Method::GET, "/healthz") => respond(
                StatusCode::OK,
                "application/json",
                json!({"status": "ok"}).to_string().into_bytes(),
            ),
            (Method::GET, "/readyz") => {
                match tokio::time::timeout(READY_TIMEOUT, self.store.ping()).await {
                    Ok(Ok(())) => respond(
                        StatusCode::OK,
                        "application/json",
                        json!({"status": "ready"}).to_string().into_bytes(),
                    ),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "readiness check failed");
                        json_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the store is unreachable",
                            e.code(),
                        )
                    }
                    Err(_) => json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the store did not answer in time",
                        "store_timeout",
                    ),
                }
            }
            (_, "/metrics" | "/healthz" | "/readyz") => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET is allowed here",
                "method_not_allowed",
            ),
            _ => json_error(
                StatusCode::NOT_FOUND,
                &format!("unknown admin path {path}"),
                "unknown_url",
            ),
        }
    }
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, body.len().into());
    *response.body_mut() = body;
    response
}

fn json_error(status: StatusCode, message: &str, code: &str) -> Response<Vec<u8>> {
    let error_type = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let body = json!({"error": {"message": message, "type": error_type, "code": code}});
    respond(status, "application/json", body.to_string().into_bytes())
}
