//! `kind = "openai"`: any OpenAI-compatible upstream. The request body is forwarded as the
//! client sent it (only `model` may be rewritten by the route); this file knows the URL, the
//! credentials and which client headers may travel upstream.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;

use super::{Endpoint, Timeouts};
use crate::config::Secret;

/// Resolved addresses are reused for this long, so DNS is not on every request's path.
const DNS_TTL: Duration = Duration::from_secs(30);

/// Client headers that may reach the provider. Everything else — above all `authorization`,
/// `x-api-key` and cookies — stays at the gateway.
const FORWARDED_CLIENT_HEADERS: &[&str] = &["accept", "user-agent", "openai-beta"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1`.
    pub path: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("{url:?} must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(format!("{url:?} must not contain a query or fragment"));
        }
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })
            .ok_or_else(|| format!("{url:?} has no valid host[:port]"))?;
        Ok(BaseUrl {
            tls,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    fn authority(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // [v6]:port
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority.to_string(), default_port)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    #[error("cannot resolve upstream host {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot build the upstream request: {0}")]
    RequestHeader(String),
}

pub struct OpenAiProvider {
    pub base_url: BaseUrl,
    api_key: Secret,
    authorization: String,
    pub timeouts: Timeouts,
    resolved: Mutex<Option<(Instant, SocketAddr)>>,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl OpenAiProvider {
    pub fn new(base_url: BaseUrl, api_key: Secret, timeouts: Timeouts) -> OpenAiProvider {
        let authorization = format!("Bearer {}", api_key.expose());
        OpenAiProvider {
            base_url,
            api_key,
            authorization,
            timeouts,
            resolved: Mutex::new(None),
        }
    }

    /// The pingora peer for this provider: resolved address, TLS/SNI and timeouts. Peers with
    /// equal address and TLS settings share pooled connections.
    pub async fn peer(&self) -> Result<HttpPeer, OpenAiError> {
        let addr = self.resolve().await?;
        let mut peer = HttpPeer::new(addr, self.base_url.tls, self.base_url.host.clone());
        peer.options.connection_timeout = Some(self.timeouts.connect);
        peer.options.total_connection_timeout = Some(self.timeouts.connect);
        peer.options.idle_timeout = Some(self.timeouts.pool_idle);
        Ok(peer)
    }

    async fn resolve(&self) -> Result<SocketAddr, OpenAiError> {
        if let Ok(ip) = self.base_url.host.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, self.base_url.port));
        }
        if let Ok(guard) = self.resolved.lock() {
            if let Some((at, addr)) = *guard {
                if at.elapsed() < DNS_TTL {
                    return Ok(addr);
                }
            }
        }
        let target = (self.base_url.host.as_str(), self.base_url.port);
        let resolve_error = |reason: String| OpenAiError::Resolve {
            host: self.base_url.host.clone(),
            reason,
        };
        let addr = tokio::net::lookup_host(target)
            .await
            .map_err(|e| resolve_error(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_error("no addresses".into()))?;
        if let Ok(mut guard) = self.resolved.lock() {
            *guard = Some((Instant::now(), addr));
        }
        Ok(addr)
    }

    /// The upstream request header: provider credentials in, client credentials out.
    pub fn request_header(
        &self,
        endpoint: Endpoint,
        query: Option<&str>,
        client_headers: &HeaderMap,
        body_len: usize,
        request_id: &str,
    ) -> Result<RequestHeader, OpenAiError> {
        let mut path = format!("{}{}", self.base_url.path, endpoint.upstream_suffix());
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            path.push('?');
            path.push_str(q);
        }
        let err = |e: pingora::BError| OpenAiError::RequestHeader(e.to_string());
        let mut req = RequestHeader::build("POST", path.as_bytes(), Some(8)).map_err(err)?;
        req.insert_header("host", self.base_url.authority())
            .map_err(err)?;
        req.insert_header("authorization", &self.authorization)
            .map_err(err)?;
        req.insert_header("content-type", "application/json")
            .map_err(err)?;
        req.insert_header("content-length", body_len.to_string())
            .map_err(err)?;
        // The gateway reads response text (guardrails, usage): ask for it uncompressed.
        req.insert_header("accept-encoding", "identity")
            .map_err(err)?;
        req.insert_header("x-request-id", request_id).map_err(err)?;
        for name in FORWARDED_CLIENT_HEADERS {
            if let Some(value) = client_headers.get(*name) {
                req.insert_header(*name, value.clone()).map_err(err)?;
            }
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let u = BaseUrl::parse("https://api.openai.com/v1").unwrap();
        assert_eq!(
            u,
            BaseUrl {
                tls: true,
                host: "api.openai.com".into(),
                port: 443,
                path: "/v1".into()
            }
        );
        let u = BaseUrl::parse("http://127.0.0.1:11434/v1/").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 11434, "/v1"));
        let u = BaseUrl::parse("http://[::1]:8000").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8000, "")
        );
        assert_eq!(u.authority(), "[::1]:8000");
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://").is_err());
        assert!(BaseUrl::parse("https://h:notaport/v1").is_err());
        assert!(BaseUrl::parse("https://user:pw@h/v1").is_err());
        assert!(BaseUrl::parse("https://h/v1?x=1").is_err());
    }

    fn provider() -> OpenAiProvider {
        let secret = crate::config::SecretRef::Env("PATH".into())
            .resolve()
            .unwrap();
        OpenAiProvider::new(
            BaseUrl::parse("https://api.example.com:8443/v1").unwrap(),
            secret,
            Timeouts {
                connect: Duration::from_secs(1),
                first_byte: Duration::from_secs(1),
                idle: Duration::from_secs(1),
                pool_idle: Duration::from_secs(1),
            },
        )
    }

    #[test]
    fn client_credentials_never_reach_the_provider() {
        let p = provider();
        let mut client = HeaderMap::new();
        client.insert("authorization", "Bearer pc_client_secret".parse().unwrap());
        client.insert("x-api-key", "pc_client_secret".parse().unwrap());
        client.insert("cookie", "session=1".parse().unwrap());
        client.insert("user-agent", "OpenAI/Python 1.0".parse().unwrap());
        let req = p
            .request_header(
                Endpoint::ChatCompletions,
                Some("api-version=1"),
                &client,
                10,
                "req_1",
            )
            .unwrap();
        assert_eq!(req.uri.to_string(), "/v1/chat/completions?api-version=1");
        let auth = req.headers.get("authorization").unwrap().to_str().unwrap();
        assert!(auth.starts_with("Bearer ") && !auth.contains("pc_client_secret"));
        assert!(req.headers.get("x-api-key").is_none());
        assert!(req.headers.get("cookie").is_none());
        assert_eq!(req.headers.get("host").unwrap(), "api.example.com:8443");
        assert_eq!(req.headers.get("user-agent").unwrap(), "OpenAI/Python 1.0");
        assert_eq!(req.headers.get("content-length").unwrap(), "10");
    }

    #[test]
    fn debug_output_hides_the_key() {
        let text = format!("{:?}", provider());
        assert!(text.contains("Secret(***)"));
        assert!(!text.contains("Bearer"));
    }
}
