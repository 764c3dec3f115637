//! Everything the data plane can answer with an error. Each variant knows its HTTP status, its
//! OpenAI error `type` and its stable snake_case `code`; every one reaches the client as
//! `{"error": {"message", "type", "param", "code"}}`.

use serde_json::json;

use crate::auth::AuthError;
use crate::limits::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(
        "Unknown request URL: {method} {path}. See the OpenAI API reference for valid endpoints."
    )]
    NotFound { method: String, path: String },
    #[error("Method {method} is not allowed on {path}; allowed: {allow}.")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("The request body exceeds the gateway's limit of {limit} bytes.")]
    BodyTooLarge { limit: usize },
    #[error("The request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("The request body must be a JSON object.")]
    BodyNotObject,
    #[error("You must provide a model parameter (a string).")]
    MissingModel,
    #[error("The model '{0}' does not exist or is not routed by this gateway.")]
    ModelNotFound(String),
    #[error("Could not read the request body: {0}")]
    ClientRead(String),
    #[error("The upstream provider '{provider}' could not be reached.")]
    UpstreamUnreachable { provider: String },
    #[error("The upstream provider '{provider}' did not answer in time ({phase}).")]
    UpstreamTimeout {
        provider: String,
        phase: &'static str,
    },
    #[error("The upstream provider '{provider}' sent an invalid response.")]
    UpstreamProtocol { provider: String },
    #[error("Internal gateway error (request {request_id}).")]
    Internal { request_id: String },
    /// A guardrail `block` fired; the message names the policy and the types, never values.
    #[error("{0}")]
    GuardrailBlocked(String),
    #[error("The guardrail policy '{0}' assigned to this key or tenant is not defined in the gateway's config.")]
    GuardrailPolicyNotFound(String),
    #[error("The provider's answer exceeds guardrails.max_response_bytes ({limit} bytes) and cannot be checked.")]
    ResponseTooLarge { limit: usize },
    #[error(
        "The provider's answer is compressed ({encoding}) and cannot be checked by the guardrails."
    )]
    ResponseUninspectable { encoding: String },
    /// A rate, token or concurrency limit refused the request; the message says which.
    #[error("{}", .0.message())]
    RateLimited(Refusal),
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::Auth(
                AuthError::ModelNotAllowed { .. } | AuthError::EndpointNotAllowed { .. },
            ) => 403,
            GatewayError::Auth(AuthError::ScopeMissing(_)) => 403,
            GatewayError::Auth(AuthError::StoreUnavailable | AuthError::KeysUnavailable(_)) => 503,
            GatewayError::Auth(_) => 401,
            GatewayError::NotFound { .. } | GatewayError::ModelNotFound(_) => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::InvalidJson(_)
            | GatewayError::BodyNotObject
            | GatewayError::MissingModel
            | GatewayError::ClientRead(_) => 400,
            GatewayError::UpstreamUnreachable { .. } | GatewayError::UpstreamProtocol { .. } => 502,
            GatewayError::UpstreamTimeout { .. } => 504,
            GatewayError::Internal { .. } | GatewayError::GuardrailPolicyNotFound(_) => 500,
            GatewayError::GuardrailBlocked(_) => 400,
            GatewayError::ResponseTooLarge { .. } | GatewayError::ResponseUninspectable { .. } => {
                502
            }
            GatewayError::RateLimited(Refusal::Unavailable) => 503,
            GatewayError::RateLimited(_) => 429,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            GatewayError::Auth(
                AuthError::ModelNotAllowed { .. }
                | AuthError::EndpointNotAllowed { .. }
                | AuthError::ScopeMissing(_),
            ) => "permission_error",
            GatewayError::Auth(AuthError::StoreUnavailable | AuthError::KeysUnavailable(_)) => {
                "server_error"
            }
            GatewayError::Auth(_) => "authentication_error",
            GatewayError::NotFound { .. } | GatewayError::ModelNotFound(_) => "not_found_error",
            GatewayError::MethodNotAllowed { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::InvalidJson(_)
            | GatewayError::BodyNotObject
            | GatewayError::MissingModel
            | GatewayError::ClientRead(_) => "invalid_request_error",
            GatewayError::UpstreamUnreachable { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamProtocol { .. } => "upstream_error",
            GatewayError::Internal { .. } | GatewayError::GuardrailPolicyNotFound(_) => {
                "server_error"
            }
            GatewayError::GuardrailBlocked(_) => "invalid_request_error",
            GatewayError::ResponseTooLarge { .. } | GatewayError::ResponseUninspectable { .. } => {
                "upstream_error"
            }
            GatewayError::RateLimited(Refusal::Unavailable) => "server_error",
            // As OpenAI: what ran out, "requests" or "tokens".
            GatewayError::RateLimited(r) => r.error_type(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Auth(e) => e.code(),
            GatewayError::NotFound { .. } => "unknown_url",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::BodyTooLarge { .. } => "request_too_large",
            GatewayError::InvalidJson(_) => "invalid_json",
            GatewayError::BodyNotObject => "invalid_body",
            GatewayError::MissingModel => "missing_model",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::ClientRead(_) => "client_read_error",
            GatewayError::UpstreamUnreachable { .. } => "upstream_unreachable",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamProtocol { .. } => "upstream_protocol_error",
            GatewayError::Internal { .. } => "internal_error",
            GatewayError::GuardrailBlocked(_) => "guardrail_blocked",
            GatewayError::GuardrailPolicyNotFound(_) => "guardrail_policy_not_found",
            GatewayError::ResponseTooLarge { .. } => "response_too_large",
            GatewayError::ResponseUninspectable { .. } => "response_uninspectable",
            GatewayError::RateLimited(Refusal::Unavailable) => "rate_limiter_unavailable",
            GatewayError::RateLimited(_) => "rate_limit_exceeded",
        }
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> Vec<u8> {
        let param = match self {
            GatewayError::MissingModel | GatewayError::ModelNotFound(_) => json!("model"),
            _ => serde_json::Value::Null,
        };
        json!({"error": {"message": self.to_string(), "type": self.error_type(),
                         "param": param, "code": self.code()}})
        .to_string()
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_openai_shaped_with_distinct_auth_codes() {
        let errors = [
            GatewayError::Auth(AuthError::MissingKey),
            GatewayError::Auth(AuthError::MalformedKey),
            GatewayError::Auth(AuthError::UnknownKey("pc_x".into())),
            GatewayError::Auth(AuthError::ExpiredKey("pc_x".into())),
            GatewayError::Auth(AuthError::RevokedKey("pc_x".into())),
            GatewayError::Auth(AuthError::ModelNotAllowed {
                prefix: "pc_x".into(),
                model: "m".into(),
            }),
            GatewayError::Auth(AuthError::EndpointNotAllowed {
                prefix: "pc_x".into(),
                method: "POST".into(),
                path: "/v1/embeddings".into(),
            }),
        ];
        let mut codes: Vec<_> = errors.iter().map(GatewayError::code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
        for e in &errors {
            let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            assert!(v["error"]["message"].is_string());
            assert!(v["error"]["type"].is_string());
            assert_eq!(v["error"]["code"], e.code());
        }
        assert_eq!(errors[5].status(), 403);
        assert_eq!(errors[0].status(), 401);
    }
}
