//! An in-process mock LLM upstream speaking the OpenAI HTTP API, whose behaviour is chosen by
//! the requested model name (TensorZero-style):
//!
//! | model             | behaviour                                                            |
//! |-------------------|----------------------------------------------------------------------|
//! | `mock-slow`       | waits 3 s before answering (for first-byte timeouts)                 |
//! | `mock-error`      | 429 with an OpenAI error body and rate-limit headers                 |
//! | `mock-500`        | 500 with an OpenAI error body                                        |
//! | `mock-disconnect` | starts an SSE stream, sends two events, then drops the connection    |
//! | `mock-endless`    | streams an event every 20 ms for up to 10 s (for client disconnects) |
//! | `mock-slow-stream`| 5 SSE events 250 ms apart (to see events arrive one by one)          |
//! | `mock-scripted`   | answers `metadata.answer` (else echoes the last message's text); when |
//! |                   | streaming, one SSE event per `metadata.event_chars` characters, and   |
//! |                   | the SSE bytes sent in two writes split at byte `metadata.split_at`   |
//! | `mock-tokens`     | answers `metadata.tokens` (default 40) words " tok", capped by        |
//! |                   | `max_tokens` / `max_completion_tokens`, one word per SSE event 1 ms   |
//! |                   | apart; usage = 10 prompt tokens + one completion token per word, in   |
//! |                   | the JSON answer or (when asked) a final usage chunk                   |
//! | anything else     | a chat completion: JSON, or SSE when `"stream": true`                |
//!
//! Every request is recorded (path, headers, body) for assertions. Also used by
//! `examples/mock_upstream.rs` as the upstream of the load recipe.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct MockState {
    /// Recorded requests (bounded: the load recipe must not grow memory without limit).
    pub requests: Mutex<Vec<SeenRequest>>,
    pub record: std::sync::atomic::AtomicBool,
    /// Streams that ended because the client went away.
    pub cancelled_streams: AtomicUsize,
    pub finished_streams: AtomicUsize,
    /// TCP connections accepted: shows whether the gateway reuses pooled connections.
    pub connections: AtomicUsize,
}

impl MockState {
    pub fn last_request(&self) -> Option<SeenRequest> {
        self.requests.lock().unwrap().last().cloned()
    }
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
}

impl MockUpstream {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime.
    pub async fn start() -> MockUpstream {
        Self::start_on("127.0.0.1:0".parse().unwrap(), true).await
    }

    pub async fn start_on(addr: SocketAddr, record: bool) -> MockUpstream {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(MockState::default());
        state.record.store(record, Ordering::Relaxed);
        let accept_state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                accept_state.connections.fetch_add(1, Ordering::Relaxed);
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockUpstream { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-mock-upstream", "1")
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<MockState>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(full(400, "text/plain", "bad body")),
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if state.record.load(Ordering::Relaxed) {
        let mut seen = state.requests.lock().unwrap();
        if seen.len() > 1000 {
            seen.remove(0);
        }
        seen.push(SeenRequest {
            method,
            path: path.clone(),
            headers,
            body,
        });
    }
    let model = json["model"].as_str().unwrap_or("").to_string();
    let stream = json["stream"].as_bool() == Some(true);

    if path.ends_with("/embeddings") {
        return Ok(full(
            200,
            "application/json",
            json!({"object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
            "usage": {"prompt_tokens": 2, "total_tokens": 2}})
            .to_string(),
        ));
    }
    match model.as_str() {
        "mock-scripted" => Ok(scripted(&json, &model, stream).await),
        "mock-tokens" => Ok(tokens(&json, &model, stream)),
        "mock-slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(full(200, "application/json", chat_json(&model)))
        }
        "mock-error" => {
            let mut r = full(
                429,
                "application/json",
                json!({"error": {"message": "Rate limit reached for mock-error",
                "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
                .to_string(),
            );
            r.headers_mut()
                .insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
            r.headers_mut().insert("retry-after", "7".parse().unwrap());
            Ok(r)
        }
        "mock-500" => Ok(full(
            500,
            "application/json",
            json!({"error": {"message": "The server had an error",
            "type": "server_error", "param": null, "code": null}})
            .to_string(),
        )),
        "mock-disconnect" => Ok(sse(state, model, 2, Duration::from_millis(10), true)),
        "mock-endless" => Ok(sse(state, model, 500, Duration::from_millis(20), false)),
        "mock-slow-stream" => Ok(sse(state, model, 5, Duration::from_millis(250), false)),
        _ if stream => Ok(sse(state, model, 21, Duration::ZERO, false)),
        _ => Ok(full(200, "application/json", chat_json(&model))),
    }
}

type Frames = tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>;

/// A 200 `text/event-stream` response whose body is what a task sends on `rx`.
fn sse_response(rx: Frames) -> Response<Body> {
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

/// Prompt tokens `mock-tokens` reports for every request.
pub const MOCK_PROMPT_TOKENS: u64 = 10;

/// `mock-tokens`: an answer of a known number of tokens, with usage like OpenAI's.
fn tokens(request: &Value, model: &str, stream: bool) -> Response<Body> {
    let wanted = request["metadata"]["tokens"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(40);
    let cap = request["max_completion_tokens"]
        .as_u64()
        .or(request["max_tokens"].as_u64())
        .unwrap_or(u64::MAX);
    let words = wanted.min(cap);
    let usage = json!({"prompt_tokens": MOCK_PROMPT_TOKENS, "completion_tokens": words,
                       "total_tokens": MOCK_PROMPT_TOKENS + words});
    if !stream {
        let text = " tok".repeat(words as usize);
        let body = json!({"id": "chatcmpl-tokens", "object": "chat.completion", "created": 1,
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant",
            "content": text}, "logprobs": null, "finish_reason": "stop"}], "usage": usage});
        return full(200, "application/json", body.to_string());
    }
    let include_usage = request.pointer("/stream_options/include_usage") == Some(&json!(true));
    let model = model.to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    tokio::spawn(async move {
        let chunk = |choices: Value, usage: Option<&Value>| {
            let mut v = json!({"id": "chatcmpl-tokens", "object": "chat.completion.chunk",
                "created": 1, "model": model, "choices": choices});
            if let Some(u) = usage {
                v["usage"] = u.clone();
            }
            Bytes::from(format!(
                "data: {v}

"
            ))
        };
        let mut events = Vec::new();
        for _ in 0..words {
            events.push(chunk(
                json!([{"index": 0, "delta": {"content": " tok"}, "finish_reason": null}]),
                None,
            ));
        }
        events.push(chunk(
            json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
            None,
        ));
        if include_usage {
            events.push(chunk(json!([]), Some(&usage)));
        }
        events.push(Bytes::from_static(
            b"data: [DONE]

",
        ));
        for event in events {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if tx.send(Ok(Frame::data(event))).await.is_err() {
                return;
            }
        }
    });
    sse_response(rx)
}

/// `mock-scripted`: an answer chosen by the test, streamed in pieces the test chooses.
async fn scripted(request: &Value, model: &str, stream: bool) -> Response<Body> {
    let meta = &request["metadata"];
    let answer = match meta["answer"].as_str() {
        Some(a) => a.to_string(),
        None => request["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string(),
    };
    let number = |key: &str| meta[key].as_str().and_then(|v| v.parse::<usize>().ok());
    if !stream {
        let body = json!({"id": "chatcmpl-scripted", "object": "chat.completion", "created": 1,
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant",
            "content": answer}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}});
        return full(200, "application/json", body.to_string());
    }
    let sse = scripted_sse(model, &answer, number("event_chars").unwrap_or(usize::MAX));
    let split = number("split_at").unwrap_or(sse.len()).min(sse.len());
    let (first, second) = (sse[..split].to_vec(), sse[split..].to_vec());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
    tokio::spawn(async move {
        for part in [first, second] {
            if part.is_empty() {
                continue;
            }
            if tx.send(Ok(Frame::data(Bytes::from(part)))).await.is_err() {
                return;
            }
            // Give the gateway time to read the first part on its own.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    sse_response(rx)
}

/// The SSE bytes of a chat stream carrying `answer` in events of `event_chars` characters.
pub fn scripted_sse(model: &str, answer: &str, event_chars: usize) -> Vec<u8> {
    let event = |delta: Value, finish: Value| {
        let v = json!({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1,
            "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": null,
            "finish_reason": finish}]});
        format!("data: {v}\n\n")
    };
    let mut out = event(json!({"role": "assistant", "content": ""}), Value::Null);
    let chars: Vec<char> = answer.chars().collect();
    for piece in chars.chunks(event_chars.max(1)) {
        let text: String = piece.iter().collect();
        out.push_str(&event(json!({"content": text}), Value::Null));
    }
    out.push_str(&event(json!({}), json!("stop")));
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

fn chat_json(model: &str) -> String {
    json!({"id": "chatcmpl-upstream", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}})
    .to_string()
}

fn chunk(model: &str, i: usize) -> Bytes {
    let v = json!({"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": {"content": format!("tok{i} ")}, "logprobs": null, "finish_reason": null}]});
    Bytes::from(format!("data: {v}\n\n"))
}

/// An SSE body fed by a task; when the client goes away the send fails and is counted.
fn sse(
    state: Arc<MockState>,
    model: String,
    events: usize,
    gap: Duration,
    break_off: bool,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    tokio::spawn(async move {
        for i in 0..events {
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Ok(Frame::data(chunk(&model, i)))).await.is_err() {
                state.cancelled_streams.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        if break_off {
            // An error frame makes hyper abort the connection mid-body (no clean end).
            let _ = tx
                .send(Err(std::io::Error::other("mock upstream broke off")))
                .await;
            return;
        }
        let done = json!({"id": "chatcmpl-upstream", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]});
        let _ = tx
            .send(Ok(Frame::data(Bytes::from(format!("data: {done}\n\n")))))
            .await;
        if tx
            .send(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))))
            .await
            .is_ok()
        {
            state.finished_streams.fetch_add(1, Ordering::SeqCst);
        }
    });
    sse_response(rx)
}
