//! Origin mode: the gateway answers LLM endpoints itself inside `request_filter` — read and
//! check the body, route the model, call the provider, stream the answer back. (pingora 0.9
//! picks the upstream before the body is readable and replays at most 64 KiB of it, so its
//! forwarding path cannot route by `model`; see docs/architecture.md.)

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use serde_json::Value;

use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::respond::{write_full, JSON};
use super::{upstream, Failure, Gateway};
use crate::auth::AuthError;
use crate::guard::{self, Blocked};
use crate::limits;
use crate::providers::{Endpoint, ProviderKind};
use guardrails::policy::Direction;

/// What the gateway does with a request, decided from method and path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// An LLM endpoint answered in origin mode.
    Origin(Endpoint),
    /// `GET /v1/models`.
    ListModels,
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
}

pub fn classify(method: &http::Method, path: &str) -> Handling {
    let endpoint = match path.trim_end_matches('/') {
        "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
        "/v1/completions" => Some(Endpoint::Completions),
        "/v1/embeddings" => Some(Endpoint::Embeddings),
        "/v1/responses" => Some(Endpoint::Responses),
        "/v1/models" => {
            return if method == http::Method::GET {
                Handling::ListModels
            } else {
                Handling::MethodNotAllowed { allow: "GET" }
            };
        }
        _ => None,
    };
    match endpoint {
        Some(e) if method == http::Method::POST => Handling::Origin(e),
        Some(_) => Handling::MethodNotAllowed { allow: "POST" },
        None => Handling::NotFound,
    }
}

pub fn route_label(handling: Handling) -> &'static str {
    match handling {
        Handling::Origin(e) => e.label(),
        Handling::ListModels => "models",
        Handling::NotFound => "not_found",
        Handling::MethodNotAllowed { .. } => "method_not_allowed",
    }
}

/// The whole journey of one data-plane request after the early filters.
pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Failure> {
    let method = session.req_header().method.clone();
    let path = session.req_header().uri.path().to_string();
    let handling = classify(&method, &path);
    ctx.request.route = route_label(handling);

    // Unknown paths and methods are answered before authentication: they reveal nothing.
    let endpoint = match handling {
        Handling::NotFound => {
            return Err(GatewayError::NotFound {
                method: method.to_string(),
                path,
            }
            .into())
        }
        Handling::MethodNotAllowed { allow } => {
            return Err(GatewayError::MethodNotAllowed {
                method: method.to_string(),
                path,
                allow,
            }
            .into())
        }
        Handling::ListModels => None,
        Handling::Origin(endpoint) => Some(endpoint),
    };

    // Authenticate. Requests without valid credentials count against their client IP.
    let principal = match gw.auth.verify_headers(&session.req_header().headers).await {
        Ok(principal) => principal,
        Err(e @ (AuthError::StoreUnavailable | AuthError::KeysUnavailable(_))) => {
            return Err(e.into())
        }
        Err(e) => {
            gw.limiter
                .unauthenticated(ctx.client.ip)
                .map_err(|refusal| refused(ctx, refusal))?;
            return Err(e.into());
        }
    };
    if !principal.permissions.allows(&method, &path) {
        return Err(GatewayError::Auth(AuthError::EndpointNotAllowed {
            prefix: principal.key_prefix.clone(),
            method: method.to_string(),
            path,
        })
        .into());
    }
    if gw.auditor.is_some() {
        ctx.audit.policy = Some(
            principal
                .logging_policy
                .unwrap_or(gw.config.audit.default_logging),
        );
    }
    ctx.principal = Some(principal);

    let Some(endpoint) = endpoint else {
        return list_models(gw, session, ctx).await;
    };
    ctx.request.endpoint = Some(endpoint);

    // Read and check the body.
    let body = read_body(session, gw.config.server.max_body_bytes).await?;
    ctx.request.body_bytes = body.len();
    let ParsedRequest {
        mut json,
        model,
        stream,
    } = parse_request(&body)?;
    ctx.request.stream = stream;
    ctx.request.model = Some(model.clone());
    capture_for_audit(gw, session, ctx, endpoint, &json);

    // Route, then check the caller may use what it asked for.
    let route = gw
        .config
        .router
        .route(&model)
        .ok_or_else(|| GatewayError::ModelNotFound(model.clone()))?;
    ctx.request.model_label = Some(route.pattern.as_str().to_string());
    ctx.request.provider = Some(route.provider.name.clone());
    if let Some(p) = ctx.principal.as_ref().filter(|p| !p.may_use(&model)) {
        return Err(GatewayError::Auth(AuthError::ModelNotAllowed {
            prefix: p.key_prefix.clone(),
            model,
        })
        .into());
    }

    // Admit: every limit of the key and of its tenant must have room.
    admit(gw, ctx, endpoint, &mut json, &model).await?;

    // Guard the request: the policy named by the key or its tenant, else the default.
    let wanted = ctx
        .principal
        .as_ref()
        .and_then(|p| p.guardrail_policy.clone());
    let policy = gw
        .config
        .guardrails
        .policy(wanted.as_deref())
        .cloned()
        .ok_or_else(|| GatewayError::GuardrailPolicyNotFound(wanted.unwrap_or_default()))?;
    ctx.guard.policy = Some(policy);
    let engine = gw.config.guardrails.engine.as_ref();
    let rewritten = match guard::check_request(engine, &mut ctx.guard, endpoint, &mut json) {
        Ok(rewritten) => rewritten,
        Err(Blocked) => {
            return Err(GatewayError::GuardrailBlocked(
                ctx.guard.blocked_message(Direction::Request),
            )
            .into())
        }
    };

    // Forward the client's bytes untouched unless the guard, the route or the limiter changed
    // them.
    if let Some(upstream_model) = &route.upstream_model {
        json["model"] = Value::String(upstream_model.clone());
    }
    let usage_added = ctx.limits.counts_tokens() && ask_for_stream_usage(endpoint, &mut json);
    ctx.limits.usage_added = usage_added;
    let upstream_body = if rewritten || usage_added || route.upstream_model.is_some() {
        Bytes::from(json.to_string())
    } else {
        body
    };

    match &route.provider.kind {
        ProviderKind::OpenAi(provider) => {
            upstream::forward(
                gw,
                session,
                ctx,
                &route.provider.name,
                provider,
                endpoint,
                upstream_body,
            )
            .await
        }
        ProviderKind::Mock(mock) => {
            let sent_model = route.upstream_model.as_deref().unwrap_or(&model);
            let answer = mock.respond(endpoint, &json, sent_model, &ctx.request_id);
            ctx.timing.upstream_start = Some(std::time::Instant::now());
            ctx.timing.upstream_end = ctx.timing.upstream_start;
            upstream::write_events(
                gw,
                session,
                ctx,
                answer.status,
                answer.content_type,
                answer.chunks,
            )
            .await
        }
    }
}

/// What the audit record needs from the request: the data subject, and under the `redacted`
/// policy the prompt text (masked later, in the `logging` phase).
fn capture_for_audit(
    gw: &Gateway,
    session: &Session,
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
    json: &Value,
) {
    use crate::audit::LoggingPolicy;
    let policy = match ctx.audit.policy {
        None | Some(LoggingPolicy::None) => return,
        Some(policy) => policy,
    };
    let audit = &gw.config.audit;
    let from_header = audit.subject_header.as_ref().and_then(|name| {
        session
            .req_header()
            .headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
    });
    ctx.audit.subject = from_header
        .or_else(|| json.get("user").and_then(Value::as_str))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if policy == LoggingPolicy::Redacted {
        let mut capture = crate::audit::content::Capture::new(audit.max_content_bytes);
        capture.request_body(endpoint, json);
        ctx.audit.capture = Some(capture);
    }
}

/// Reserves what the request may cost, or refuses it with 429. The limiter's headers go on
/// every response of this request, refusals included.
async fn admit(
    gw: &Gateway,
    ctx: &mut RequestCtx,
    endpoint: crate::providers::Endpoint,
    json: &mut Value,
    model: &str,
) -> Result<(), Failure> {
    let Some(principal) = ctx.principal.as_ref() else {
        return Ok(());
    };
    let plan = gw.limiter.plan(principal);
    if plan.is_empty() {
        return Ok(());
    }
    let demand = if plan.counts_tokens() {
        limits::tokens::demand(
            endpoint,
            json,
            model,
            gw.limiter.config().default_completion_tokens,
        )
    } else {
        limits::Demand::default()
    };
    match gw.limiter.admit(plan, demand, &ctx.request_id).await {
        Ok(admitted) => {
            ctx.limits.headers = admitted.headers;
            ctx.limits.prompt_tokens = demand.prompt_tokens;
            ctx.limits.admitted = Some(admitted);
            Ok(())
        }
        Err(refusal) => {
            ctx.limits.headers = refusal.headers;
            Err(refused(ctx, refusal.refusal))
        }
    }
}

fn refused(ctx: &mut RequestCtx, refusal: limits::Refusal) -> Failure {
    ctx.limits.refused = Some(refusal.clone());
    GatewayError::RateLimited(refusal).into()
}

/// Asks a chat or completions stream for its usage (`stream_options.include_usage`), so
/// the tokens can be settled; `true` when the client had not asked itself, so the gateway
/// drops the extra chunk before it reaches the client.
fn ask_for_stream_usage(endpoint: crate::providers::Endpoint, json: &mut Value) -> bool {
    use crate::providers::Endpoint;
    let streams = json.get("stream").and_then(Value::as_bool) == Some(true);
    if !streams || !matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions) {
        return false;
    }
    if json.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
        return false;
    }
    let Some(body) = json.as_object_mut() else {
        return false;
    };
    match body
        .get_mut("stream_options")
        .and_then(Value::as_object_mut)
    {
        Some(options) => {
            options.insert("include_usage".into(), Value::Bool(true));
        }
        None => {
            body.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
    }
    true
}

/// The parts of an LLM request body the gateway needs before routing.
#[derive(Debug)]
pub struct ParsedRequest {
    pub json: Value,
    pub model: String,
    pub stream: bool,
}

/// Parses and checks an LLM request body: a JSON object with a string `model`.
pub fn parse_request(body: &[u8]) -> Result<ParsedRequest, GatewayError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let object = json.as_object().ok_or(GatewayError::BodyNotObject)?;
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .ok_or(GatewayError::MissingModel)?
        .to_string();
    let stream = object.get("stream").and_then(Value::as_bool) == Some(true);
    Ok(ParsedRequest {
        json,
        model,
        stream,
    })
}

/// Reads the whole request body, refusing it as soon as it passes `limit` bytes.
async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| GatewayError::ClientRead(e.to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `GET /v1/models`: the exact model names this caller may use, from the route table.
async fn list_models(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Failure> {
    let principal = ctx.principal.as_ref();
    let data: Vec<Value> = gw
        .config
        .router
        .listable_models()
        .filter(|r| principal.is_none_or(|p| p.may_use(r.pattern.as_str())))
        .map(|r| {
            serde_json::json!({"id": r.pattern.as_str(), "object": "model", "created": 0,
                               "owned_by": r.provider.name})
        })
        .collect();
    let body = serde_json::json!({"object": "list", "data": data}).to_string();
    write_full(session, ctx, 200, JSON, Bytes::from(body), &[])
        .await
        .map_err(Failure::ClientGone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn classification() {
        assert_eq!(
            classify(&Method::POST, "/v1/chat/completions"),
            Handling::Origin(Endpoint::ChatCompletions)
        );
        assert_eq!(
            classify(&Method::POST, "/v1/embeddings/"),
            Handling::Origin(Endpoint::Embeddings)
        );
        assert_eq!(
            classify(&Method::GET, "/v1/chat/completions"),
            Handling::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(classify(&Method::GET, "/v1/models"), Handling::ListModels);
        assert_eq!(
            classify(&Method::POST, "/v1/models"),
            Handling::MethodNotAllowed { allow: "GET" }
        );
        assert_eq!(classify(&Method::POST, "/v2/chat"), Handling::NotFound);
    }
}
