//! Per-request state, filled in phase by phase and read once by the `logging` phase. Grouped
//! into named parts so each phase's contribution is easy to find.

use std::net::IpAddr;
use std::time::Instant;

use crate::audit::content::Capture;
use crate::audit::LoggingPolicy;
use crate::auth::Principal;
use crate::guard::GuardState;
use crate::limits::usage::Usage;
use crate::limits::{Admitted, RateHeaders, Refusal, Settled};
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
    /// Set by the admit phase: what the limiter holds for this request, and what it cost.
    pub limits: LimitState,
    /// Set once the caller is known: what the audit trail keeps of this request.
    pub audit: AuditState,
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
pub struct AuditState {
    /// The tenant's logging policy; `None` until authenticated.
    pub policy: Option<LoggingPolicy>,
    /// The data subject (OpenAI `user` field or `audit.subject_header`), hashed when recorded.
    pub subject: Option<String>,
    /// Prompt and answer text, kept only under the `redacted` policy and masked before the
    /// record is made.
    pub capture: Option<Capture>,
}

#[derive(Debug, Default)]
pub struct LimitState {
    /// Held until the `logging` phase settles it.
    pub admitted: Option<Admitted>,
    /// The `x-ratelimit-*` headers every response of this request carries.
    pub headers: RateHeaders,
    /// Prompt tokens as estimated at admission.
    pub prompt_tokens: u64,
    /// The gateway added `stream_options.include_usage`: the usage chunk is dropped.
    pub usage_added: bool,
    /// The provider's reported usage.
    pub usage: Option<Usage>,
    /// Completion tokens counted in a stream so far.
    pub streamed: u64,
    /// A stream ran past its budget: `Some(true)` when it was cut.
    pub overrun: Option<bool>,
    pub refused: Option<Refusal>,
    pub settled: Option<Settled>,
}

impl LimitState {
    /// The gateway's own limits replace the provider's `x-ratelimit-*` headers: the client is
    /// limited by these, and the gateway's provider account is not the client's business.
    pub fn replaces_provider_limits(&self) -> bool {
        self.headers != RateHeaders::default()
    }

    /// Tokens counted against limits: whether the answer must be metered.
    pub fn counts_tokens(&self) -> bool {
        self.admitted.as_ref().is_some_and(Admitted::counts_tokens)
    }

    /// What the request finally cost: the provider's usage; else the prompt estimate plus
    /// what was counted in the stream, for an answer that was at least partly produced.
    pub fn used_tokens(&self, status: u16) -> u64 {
        match self.usage {
            Some(usage) => usage.total,
            None if (200..300).contains(&status) || self.streamed > 0 => {
                self.prompt_tokens + self.streamed
            }
            // The provider refused or failed: nothing was generated, nothing is charged.
            None => 0,
        }
    }
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
    /// Bytes of the answer went to the client: counted, and captured for the audit record.
    pub fn sent(&mut self, bytes: &[u8]) {
        self.outcome.response_bytes += bytes.len();
        if let Some(capture) = self.audit.capture.as_mut() {
            capture.response_bytes(bytes);
        }
    }

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
            limits: LimitState::default(),
            audit: AuditState::default(),
            outcome: Outcome::default(),
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx::new()
    }
}
