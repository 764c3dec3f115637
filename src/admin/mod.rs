//! The admin listener (separate from the data plane): `/metrics` for Prometheus, `/healthz`
//! (the process is up), `/readyz` (config loaded and the store reachable), and the admin API
//! under `/admin/v1/` (`api`).

pub mod api;
pub mod error;
pub mod openapi;
pub mod records;
pub mod resources;
pub mod security;
pub mod session;
pub mod sso;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use error::AdminError;

/// `/readyz` must answer quickly even when the database hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub struct AdminApp {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    pub api: api::AdminApi,
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        if path.starts_with("/admin/") {
            return self.admin_api(session).await;
        }
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

impl AdminApp {
    async fn admin_api(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut response = self.admin_api_response(session).await;
        // Answers carry tokens, key secrets and recovery codes: never cached anywhere.
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        response
    }

    async fn admin_api_response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = match read_body(session).await {
            Ok(body) => body,
            Err(e) => return error_response(&e),
        };
        let header = session.req_header();
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let req = api::Request::new(
            header.method.clone(),
            &header.uri,
            header.headers.clone(),
            body,
            client_ip,
        );
        match api::handle(&self.api, &req).await {
            Ok(reply) => {
                let mut response = respond(
                    reply.status,
                    "application/json",
                    reply.body.to_string().into_bytes(),
                );
                for (name, value) in reply.headers {
                    if let Ok(value) = value.parse() {
                        response.headers_mut().append(name, value);
                    }
                }
                response
            }
            Err(e) => error_response(&e),
        }
    }
}

async fn read_body(session: &mut ServerSession) -> Result<bytes::Bytes, AdminError> {
    let mut body = bytes::BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > api::MAX_BODY_BYTES {
                    return Err(AdminError::BodyTooLarge(api::MAX_BODY_BYTES));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                return Err(AdminError::bad_request(format!(
                    "cannot read the request body: {e}"
                )))
            }
        }
    }
}

fn error_response(e: &AdminError) -> Response<Vec<u8>> {
    let mut response = respond(
        e.status(),
        "application/json",
        e.body().to_string().into_bytes(),
    );
    if e.status() == StatusCode::UNAUTHORIZED {
        if let Ok(v) = "Bearer realm=\"portcullis-admin\"".parse() {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, v);
        }
    }
    response
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
