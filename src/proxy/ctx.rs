//! Per-request state, filled in phase by phase and read once by the `logging` phase. Grouped
//! into named parts so each phase's contribution is easy to find.

use std::net::IpAddr;
use std::time::Instant;

use crate::auth::Principal;
use crate::guard::GuardState;
use crate::providers::Endpoint;

#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub timing: Timing,
    pub client: ClientInfo,
    /// Set by the authenticate phase.
    pub principal: Option<Principal>,
    pub request: RequestInfo,
    /// Set by the guard phase: the policy, this request's pseudonyms, what was found.
    pub guard: GuardState,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub struct Timing {
    pub start: Instant,
    pub upstream_start: Option<Instant>,
    pub upstream_end: Option<Instant>,
    /// First response body byte written to the client.
    pub first_byte: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Default)]
pub struct RequestInfo {
    /// Bounded label for the endpoint (`chat_completions`, `models`, `not_found`…).
    pub route: &'static str,
    pub endpoint: Option<Endpoint>,
    /// The model the client asked for.
    pub model: Option<String>,
    /// Bounded model label for metrics: the matched route's pattern.
    pub model_label: Option<String>,
    pub provider: Option<String>,
    pub stream: bool,
    pub body_bytes: usize,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// The status sent to the client (0 until a response header is written).
    pub status: u16,
    /// Our error code when the gateway itself answered with an error.
    pub error_code: Option<&'static str>,
    /// Why an upstream call failed, as a metric label (`connect`, `timeout`, …).
    pub upstream_error: Option<&'static str>,
    pub client_disconnected: bool,
    pub response_bytes: usize,
}

impl RequestCtx {
    pub fn new() -> RequestCtx {
        RequestCtx {
            request_id: String::new(),
            timing: Timing {
                start: Instant::now(),
                upstream_start: None,
                upstream_end: None,
                first_byte: None,
            },
            client: ClientInfo::default(),
            principal: None,
            request: RequestInfo {
                route: "unknown",
                ..RequestInfo::default()
            },
            guard: GuardState::default(),
            outcome: Outcome::default(),
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx::new()
    }
}
