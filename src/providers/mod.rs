//! Providers: where a routed request goes. One file per provider kind; the enum keeps the
//! set closed and explicit so every match on it shows all the kinds a request can meet.

mod mock;
mod openai;

use std::time::Duration;

pub use mock::MockProvider;
pub use openai::{BaseUrl, OpenAiProvider};

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
}

#[derive(Debug)]
pub enum ProviderKind {
    /// Any OpenAI-compatible HTTP API (OpenAI, Azure-compatible endpoints, vLLM, Ollama…).
    OpenAi(Box<OpenAiProvider>),
    /// The built-in deterministic demo provider: answers locally, no network, no secret.
    Mock(MockProvider),
}

impl ProviderKind {
    pub fn label(&self) -> &'static str {
        match self {
            ProviderKind::OpenAi(_) => "openai",
            ProviderKind::Mock(_) => "mock",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP (+ TLS) connection establishment.
    pub connect: Duration,
    /// From sending the request to the response header.
    pub first_byte: Duration,
    /// Longest silence between two reads of the response body.
    pub idle: Duration,
    /// How long an unused upstream connection stays in the pool.
    pub pool_idle: Duration,
}

/// The OpenAI-style endpoints answered in origin mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
}

impl Endpoint {
    /// The path below the provider's base URL (which already ends in `/v1` for OpenAI).
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
        }
    }

    /// Bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
        }
    }
}
