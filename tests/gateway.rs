// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! End-to-end tests of the data plane: the real binary, an in-process mock LLM upstream, and
//! plain HTTP clients. Every bad-input case of the core-gateway issue has a test here.

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::gateway::{free_port, TestGateway, UPSTREAM_SECRET};
use support::mock_upstream::MockUpstream;

struct Setup {
    upstream: MockUpstream,
    gw: TestGateway,
    key: String,
    http: reqwest::Client,
}

async fn setup_with(server_extra: &str, auth_extra: &str) -> Setup {
    let upstream = MockUpstream::start().await;
    let closed = free_port();
    let body = format!(
        r#"
[[providers]]
name = "up"
kind = "openai"
base_url = "{base}"
api_key = "env:PORTCULLIS_TEST_UPSTREAM_KEY"
first_byte_timeout_ms = 1000
idle_timeout_ms = 2000

[[providers]]
name = "down"
kind = "openai"
base_url = "http://127.0.0.1:{closed}/v1"
api_key = "env:PORTCULLIS_TEST_UPSTREAM_KEY"

[[providers]]
name = "demo"
kind = "mock"

[[routes]]
model = "refused"
provider = "down"

[[routes]]
model = "demo"
provider = "demo"

[[routes]]
model = "alias"
provider = "up"
upstream_model = "mock-renamed"

[[routes]]
model = "mock-*"
provider = "up"

[[routes]]
model = "gpt-test"
provider = "up"

# Guardrails off, for the tests of faithful relaying (tests/guardrails.rs covers them on).
[guardrails.policies.off.request]
"#,
        base = upstream.base_url()
    );
    let gw = TestGateway::start(&body, server_extra, auth_extra);
    gw.create_tenant("acme");
    let key = gw.create_key("acme", &[])["key"]
        .as_str()
        .unwrap()
        .to_string();
    Setup {
        upstream,
        gw,
        key,
        http: reqwest::Client::new(),
    }
}

async fn setup() -> Setup {
    setup_with("", "").await
}

impl Setup {
    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.gw.url(path))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(self.gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap();
        resp.text().await.unwrap()
    }

    /// The metrics once they contain `wanted`: the logging phase runs just after the response
    /// is sent, so a test reading them right away would race it. Bounded: about 2 s.
    async fn metrics_with(&self, wanted: &str) -> String {
        let mut metrics = String::new();
        for _ in 0..50 {
            metrics = self.metrics().await;
            if metrics.contains(wanted) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        metrics
    }

    async fn chat(&self, body: Value) -> reqwest::Response {
        self.chat_as(&self.key, body).await
    }

    async fn chat_as(&self, key: &str, body: Value) -> reqwest::Response {
        let url = self.gw.url("/v1/chat/completions");
        self.http
            .post(url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    (status, body)
}

async fn assert_error(resp: reqwest::Response, status: u16, code: &str) {
    let (actual, body) = error_of(resp).await;
    assert_eq!(
        (actual, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
}

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

fn stream_body(model: &str) -> Value {
    let mut body = chat_body(model);
    body["stream"] = json!(true);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_chat_reaches_the_provider_with_its_key_only() {
    let s = setup().await;
    let resp = s
        .http
        .post(s.gw.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .header("x-api-key", &s.key)
        .header("cookie", "session=abc")
        .header("user-agent", "portcullis-test")
        .json(&chat_body("mock-json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    assert_eq!(resp.headers().get("x-mock-upstream").unwrap(), "1");
    let text = resp.text().await.unwrap();
    assert!(!text.contains(UPSTREAM_SECRET));
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the mock upstream."
    );
    assert_eq!(body["usage"]["total_tokens"], 11);

    let seen = s.upstream.state.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_SECRET}").as_str())
    );
    assert_eq!(seen.header("x-api-key"), None);
    assert_eq!(seen.header("cookie"), None);
    assert_eq!(seen.header("user-agent"), Some("portcullis-test"));
    assert!(!seen.headers.iter().any(|(_, v)| v.contains(&s.key)));
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent, chat_body("mock-json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_events_arrive_one_by_one() {
    let s = setup().await;
    let body = stream_body("mock-slow-stream");
    // Without guardrails: with them, text this short is held back until it is known safe.
    let off = s.gw.create_key("acme", &["--policy", "off"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let start = Instant::now();
    let resp = s.chat_as(&off, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut stream = resp.bytes_stream();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        arrivals.push(start.elapsed());
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(text.matches("data: ").count(), 7);
    // The upstream spaces its 5 events 250 ms apart: a buffering gateway would deliver them
    // all at the end. The first must arrive well before the stream is over.
    let first = arrivals[0];
    let last = *arrivals.last().unwrap();
    assert!(arrivals.len() >= 4, "events were coalesced: {arrivals:?}");
    assert!(
        last - first >= Duration::from_millis(700),
        "first {first:?}, last {last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_stream_is_complete_and_ordered() {
    let s = setup().await;
    let tokens = |text: String| -> Vec<String> {
        text.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(String::from)
            })
            .filter(|t| !t.is_empty())
            .collect()
    };
    let expected: Vec<String> = (0..21).map(|i| format!("tok{i} ")).collect();
    // Relayed event for event without guardrails…
    let off = s.gw.create_key("acme", &["--policy", "off"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let text = s
        .chat_as(&off, stream_body("mock-fast"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(tokens(text), expected);
    // …and the same text, in possibly different pieces, through the default guardrails.
    let text = s.chat(stream_body("mock-fast")).await.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(tokens(text).concat(), expected.concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_shaped_errors() {
    let s = setup_with("max_body_bytes = 4096", "").await;

    assert_error(
        s.post("/v1/chat/completions", "{not json").await,
        400,
        "invalid_json",
    )
    .await;

    assert_error(
        s.post("/v1/chat/completions", r#"{"messages": []}"#).await,
        400,
        "missing_model",
    )
    .await;

    assert_error(
        s.post("/v1/chat/completions", "[1,2]").await,
        400,
        "invalid_body",
    )
    .await;

    assert_error(
        s.chat(chat_body("no-such-model")).await,
        404,
        "model_not_found",
    )
    .await;

    let big =
        json!({"model": "mock-json", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    assert_error(s.chat(big).await, 413, "request_too_large").await;

    let resp = s
        .http
        .get(s.gw.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("allow").unwrap(), "POST");
    assert_error(resp, 405, "method_not_allowed").await;

    assert_error(s.post("/v1/nope", "{}").await, 404, "unknown_url").await;

    // The gateway is still healthy after all of that.
    assert_eq!(s.chat(chat_body("mock-json")).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_cap_without_content_length_is_refused() {
    let s = setup_with("max_body_bytes = 4096", "").await;
    // A chunked upload (no Content-Length) must be cut off while reading, not after.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = s.post("/v1/chat/completions", body).await;
    assert_error(resp, 413, "request_too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_prompts_pass_through_whole() {
    let s = setup().await;
    let prompt = "lorem ipsum ".repeat(400_000); // ~4.8 MB, above pingora's 64 KiB replay buffer
    let body = json!({"model": "mock-json", "messages": [{"role": "user", "content": prompt}]});
    let resp = s.chat(body.clone()).await;
    assert_eq!(resp.status(), 200);
    let seen = s.upstream.state.last_request().unwrap();
    assert_eq!(seen.body.len(), body.to_string().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_pass_through_faithfully() {
    let s = setup().await;
    let resp = s.chat(chat_body("mock-error")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()
            .get("x-ratelimit-remaining-requests")
            .unwrap(),
        "0"
    );
    assert_eq!(resp.headers().get("retry-after").unwrap(), "7");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Rate limit reached for mock-error"
    );

    let resp = s.chat(chat_body("mock-500")).await;
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "The server had an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_502_and_slow_upstream_is_504() {
    let s = setup().await;
    assert_error(
        s.chat(chat_body("refused")).await,
        502,
        "upstream_unreachable",
    )
    .await;

    let start = Instant::now();
    assert_error(
        s.chat(chat_body("mock-slow")).await,
        504,
        "upstream_timeout",
    )
    .await;
    assert!(
        start.elapsed() < Duration::from_millis(2900),
        "timeout not applied: {:?}",
        start.elapsed()
    );

    let metrics = s
        .metrics_with(r#"portcullis_upstream_errors_total{kind="timeout",provider="up"} 1"#)
        .await;
    assert!(
        metrics.contains(r#"portcullis_upstream_errors_total{kind="connect",provider="down"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"portcullis_upstream_errors_total{kind="timeout",provider="up"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_stream_cancels_the_upstream_request() {
    let s = setup().await;
    let body = stream_body("mock-endless");
    let resp = s.chat(body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream); // the client hangs up

    let deadline = Instant::now() + Duration::from_secs(5);
    while s
        .upstream
        .state
        .cancelled_streams
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the upstream stream was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing panicked: the gateway still serves, and recorded the hang-up as 499.
    assert_eq!(s.chat(chat_body("mock-json")).await.status(), 200);
    let metrics = s.metrics_with(r#"status="499""#).await;
    assert!(metrics.contains(r#"status="499""#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_breaking_off_mid_stream_cuts_the_client_response() {
    let mut s = setup().await;
    let body = stream_body("mock-disconnect");
    let resp = s.chat(body).await;
    assert_eq!(resp.status(), 200);
    // The client must see an incomplete body, never a clean end that looks like success.
    let result = resp.bytes().await;
    assert!(
        result.is_err(),
        "a broken upstream stream looked complete: {result:?}"
    );
    assert!(s.gw.is_running());
    assert_eq!(s.chat(chat_body("mock-json")).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_rewrite_models_and_the_demo_provider_answers_locally() {
    let s = setup().await;
    assert_eq!(s.chat(chat_body("alias")).await.status(), 200);
    let seen = s.upstream.state.last_request().unwrap();
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["model"], "mock-renamed");

    let before = s.upstream.state.requests.lock().unwrap().len();
    let body: Value = s.chat(chat_body("demo")).await.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("demo provider"));
    assert_eq!(s.upstream.state.requests.lock().unwrap().len(), before);

    let resp = s
        .post(
            "/v1/embeddings",
            json!({"model": "mock-embed", "input": "hi"}).to_string(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        s.upstream.state.last_request().unwrap().path,
        "/v1/embeddings"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_failure_has_its_own_code() {
    let s = setup_with("", "key_cache_ttl_ms = 300").await;
    let post = |key: Option<String>| {
        let mut req = s
            .http
            .post(s.gw.url("/v1/chat/completions"))
            .json(&chat_body("mock-json"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    let code = |resp: reqwest::Response| async move {
        let (status, body) = error_of(resp).await;
        (status, body["error"]["code"].as_str().unwrap().to_string())
    };
    assert_eq!(
        code(post(None).await.unwrap()).await,
        (401, "missing_api_key".into())
    );
    assert_eq!(
        code(post(Some("pc_short".into())).await.unwrap()).await,
        (401, "malformed_api_key".into())
    );
    let unknown = format!("pc_{}", "A".repeat(43));
    assert_eq!(
        code(post(Some(unknown)).await.unwrap()).await,
        (401, "invalid_api_key".into())
    );

    let restricted = s.gw.create_key("acme", &["--models", "gpt-test"]);
    let restricted_key = restricted["key"].as_str().unwrap().to_string();
    assert_eq!(
        code(post(Some(restricted_key.clone())).await.unwrap()).await,
        (403, "model_not_allowed".into())
    );
    let ok = s.chat_as(&restricted_key, chat_body("gpt-test")).await;
    assert_eq!(ok.status(), 200);
    let models: Value = s
        .http
        .get(s.gw.url("/v1/models"))
        .bearer_auth(&restricted_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gpt-test"]);

    let expiring = s.gw.create_key("acme", &["--expires-in", "1s"]);
    let expiring_key = expiring["key"].as_str().unwrap().to_string();
    assert_eq!(
        post(Some(expiring_key.clone())).await.unwrap().status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        code(post(Some(expiring_key)).await.unwrap()).await,
        (401, "expired_api_key".into())
    );

    // Revocation: the key works (and is cached), is revoked out of process by the CLI, and is
    // refused within the configured cache TTL (300 ms here).
    assert_eq!(post(Some(s.key.clone())).await.unwrap().status(), 200);
    let key_id = s.gw.cli(&["keys", "list", "--tenant", "acme", "--json"]);
    let keys: Value = serde_json::from_slice(&key_id.stdout).unwrap();
    let id = keys[0]["id"].as_str().unwrap();
    let revoked_at = Instant::now();
    assert!(s.gw.cli(&["keys", "revoke", id]).status.success());
    loop {
        let resp = post(Some(s.key.clone())).await.unwrap();
        if resp.status() == 401 {
            assert_eq!(code(resp).await, (401, "revoked_api_key".into()));
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "revoked key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The revoked key's refusal was the last request: once it is counted, all are.
    let metrics = s
        .metrics_with("portcullis_auth_failures_total{reason=\"revoked_api_key\"}")
        .await;
    for reason in [
        "missing_api_key",
        "malformed_api_key",
        "invalid_api_key",
        "expired_api_key",
        "revoked_api_key",
        "model_not_allowed",
    ] {
        assert!(
            metrics.contains(&format!(
                "portcullis_auth_failures_total{{reason=\"{reason}\"}}"
            )),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_metrics_or_errors() {
    let s = setup().await;
    assert_eq!(s.chat(chat_body("mock-json")).await.status(), 200);
    let wrong = format!("{}X", &s.key[..s.key.len() - 1]);
    let resp = s.chat_as(&wrong, chat_body("mock-json")).await;
    let error = resp.text().await.unwrap();
    assert!(!error.contains(&wrong[3..]), "{error}");
    let wanted = "portcullis_requests_total{model=\"mock-*\",route=\"chat_completions\",status=\"200\",tenant=\"acme\"} 1";
    let metrics = s.metrics_with(wanted).await;
    assert!(metrics.contains(wanted), "{metrics}");
    for text in [s.gw.log(), metrics, error] {
        assert!(!text.contains(&s.key[3..]), "the API key leaked");
        assert!(!text.contains(&wrong[3..]), "a presented key leaked");
        assert!(!text.contains(UPSTREAM_SECRET), "the provider key leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_health_readiness_and_metrics() {
    let s = setup().await;
    let get = |path: &str| s.http.get(s.gw.admin_url(path)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready: Value = get("/readyz").await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(get("/nope").await.unwrap().status(), 404);
    let _ = s.chat(chat_body("mock-json")).await;
    let metrics = s.metrics_with("portcullis_gateway_overhead_seconds").await;
    for name in [
        "portcullis_requests_total",
        "portcullis_request_duration_seconds",
        "portcullis_upstream_duration_seconds",
        "portcullis_gateway_overhead_seconds",
        "portcullis_requests_in_flight",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_runs_on_postgres() {
    let db = support::postgres::TempDatabase::create().await;
    let body = "[[providers]]\nname = \"demo\"\nkind = \"mock\"\n[[routes]]\nmodel = \"*\"\nprovider = \"demo\"\n";
    let gw = TestGateway::start_with_database(body, "", "", Some(&db.url));
    gw.create_tenant("acme");
    let key = gw.create_key("acme", &[])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let resp = http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("demo"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let ready: Value = http
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    drop(gw);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled_and_reused() {
    let s = setup().await;
    for _ in 0..20 {
        assert_eq!(s.chat(chat_body("mock-json")).await.status(), 200);
        let text = s
            .chat(stream_body("mock-stream"))
            .await
            .text()
            .await
            .unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
    let connections = s
        .upstream
        .state
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    // 40 sequential requests; a gateway without keep-alive would open 40 connections.
    assert!(
        connections <= 4,
        "{connections} upstream connections for 40 requests"
    );
}
