// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The guardrails end to end: the real binary between a client and the in-process mock
//! upstream — what the provider receives, what the client gets back, streamed or not.

mod support;

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::gateway::TestGateway;
use support::mock_upstream::{scripted_sse, MockUpstream};

struct Setup {
    upstream: MockUpstream,
    gw: TestGateway,
    key: String,
    http: reqwest::Client,
}

/// A gateway routing `mock-*` to the mock upstream, with `guardrails` (TOML) as its config
/// section and a key of tenant `acme` created with `key_args`.
async fn setup(guardrails: &str, key_args: &[&str]) -> Setup {
    let upstream = MockUpstream::start().await;
    let body = format!(
        r#"
[[providers]]
name = "up"
kind = "openai"
base_url = "{base}"
api_key = "env:PORTCULLIS_TEST_UPSTREAM_KEY"

[[routes]]
model = "mock-*"
provider = "up"

{guardrails}
"#,
        base = upstream.base_url()
    );
    let gw = TestGateway::start(&body, "", "");
    gw.create_tenant("acme");
    let key = gw.create_key("acme", key_args)["key"]
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

impl Setup {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.gw.url(path))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// What the provider received as the body of the last request.
    fn upstream_body(&self) -> Value {
        serde_json::from_slice(&self.upstream.state.last_request().unwrap().body).unwrap()
    }
}

/// The raw SSE body and the text of its content deltas.
async fn read_stream(response: reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), 200);
    let raw = String::from_utf8(response.bytes().await.unwrap().to_vec()).unwrap();
    let mut content = String::new();
    for line in raw.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(text) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(text);
        }
    }
    (raw, content)
}

const EMAIL: &str = "jane.doe@example.com";

#[tokio::test]
async fn default_policy_redacts_request_text_but_not_keys_ids_or_images() {
    let s = setup("", &[]).await;
    let image =
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk";
    let response = s
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-plain", "user": EMAIL, "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": format!("My email is {EMAIL}, card 4111 1111 1111 1111.")},
                    {"type": "image_url", "image_url": {"url": image}}]}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let sent = s.upstream_body();
    assert_eq!(
        sent["messages"][0]["content"][0]["text"],
        "My email is [EMAIL], card [CREDIT_CARD]."
    );
    assert_eq!(sent["messages"][0]["content"][1]["image_url"]["url"], image);
    // Only message text is scanned: other fields travel as sent.
    assert_eq!(sent["user"], EMAIL);

    // The logging phase runs just after the response is sent: poll briefly.
    let wanted = r#"portcullis_guardrail_findings_total{action="redact",direction="request",entity="EMAIL"} 1"#;
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = s
            .http
            .get(s.gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(wanted) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    assert!(metrics.contains(wanted), "{metrics}");
    let log = s.gw.log();
    assert!(!log.contains(EMAIL) && !log.contains("4111 1111"), "{log}");
    assert!(log.contains("request:EMAIL:redact=1"), "{log}");
}

#[tokio::test]
async fn streamed_pii_straddling_events_is_masked_at_every_byte_split() {
    let s = setup("", &[]).await;
    let answer = format!("Sure: write to {EMAIL} or call +1 (415) 555-0132 today.");
    let expected = "Sure: write to [EMAIL] or call [PHONE] today.";
    // Events of 6 characters: both values straddle several events.
    let total = scripted_sse("mock-scripted", &answer, 6).len();
    let prefixes = ["jane", "jane.doe", "@example.com", "555-0132", "(415)"];
    let splits: Vec<usize> = (1..total).collect();
    for batch in splits.chunks(16) {
        let requests = batch.iter().map(|split| {
            let body = json!({"model": "mock-scripted", "stream": true,
                "messages": [{"role": "user", "content": "contact details?"}],
                "metadata": {"answer": answer, "event_chars": "6", "split_at": split.to_string()}});
            let s = &s;
            async move {
                (
                    *split,
                    read_stream(s.post("/v1/chat/completions", body).await).await,
                )
            }
        });
        for (split, (raw, content)) in futures_util::future::join_all(requests).await {
            assert_eq!(content, expected, "split at byte {split}");
            for p in prefixes {
                assert!(!raw.contains(p), "split at {split}: {p:?} leaked in {raw}");
            }
            assert!(raw.ends_with("data: [DONE]\n\n"), "split at {split}: {raw}");
        }
    }
}

#[tokio::test]
async fn streams_release_text_before_the_end() {
    let s = setup("", &[]).await;
    // A long answer in small events: most of it must reach the client before the stream ends,
    // i.e. the hold-back is bounded, not the whole answer.
    let answer = "All clear here. ".repeat(200);
    let response = s
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-scripted", "stream": true,
                "messages": [{"role": "user", "content": "go"}],
                "metadata": {"answer": answer, "event_chars": "16"}}),
        )
        .await;
    let mut body = response.bytes_stream();
    let mut events_before_done = 0;
    while let Some(chunk) = body.next().await {
        let chunk = String::from_utf8(chunk.unwrap().to_vec()).unwrap();
        events_before_done += chunk.matches("\"content\"").count();
        if chunk.contains("[DONE]") {
            break;
        }
    }
    assert!(
        events_before_done > 100,
        "{events_before_done} content events"
    );
}

const PSEUDO: &str = r#"
[guardrails]
default_policy = "pseudo"

[guardrails.policies.pseudo.request]
default = "redact"
EMAIL = "pseudonymize"
PHONE = "pseudonymize"

[guardrails.policies.pseudo.response]
default = "redact"
"#;

#[tokio::test]
async fn pseudonyms_go_upstream_and_come_back_as_the_values() {
    let s = setup(PSEUDO, &[]).await;
    let prompt = format!("Write to {EMAIL} and bob@example.org, then {EMAIL} again.");
    let response = s
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-scripted", "messages": [{"role": "user", "content": prompt}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let sent = s.upstream_body();
    assert_eq!(
        sent["messages"][0]["content"],
        "Write to [EMAIL_1] and [EMAIL_2], then [EMAIL_1] again."
    );
    let answer: Value = response.json().await.unwrap();
    // The mock echoes the placeholders; the caller gets its own values back.
    assert_eq!(answer["choices"][0]["message"]["content"], prompt);

    // The same, streamed in 3-character events so placeholders straddle them.
    let response = s
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-scripted", "stream": true, "metadata": {"event_chars": "3"},
                   "messages": [{"role": "user", "content": prompt}]}),
        )
        .await;
    let (raw, content) = read_stream(response).await;
    assert_eq!(content, prompt, "{raw}");

    // Another request does not see this one's pseudonyms.
    let response = s
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-scripted", "metadata": {"answer": "Hi [EMAIL_1]"},
                   "messages": [{"role": "user", "content": "hello"}]}),
        )
        .await;
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hi [EMAIL_1]");
}

const STRICT: &str = r#"
[guardrails.policies.strict.request]
default = "redact"
API_SECRET = "block"

[guardrails.policies.strict.response]
default = "redact"
API_SECRET = "block"
"#;

const AWS_KEY: &str = "AKIA2E0A8F3B244C9986";

#[tokio::test]
async fn block_refuses_requests_and_answers_with_the_documented_error() {
    // The key selects the policy; the tenant keeps the default.
    let s = setup(STRICT, &["--policy", "strict"]).await;
    let response = s
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-plain", "messages": [
                {"role": "user", "content": format!("deploy with {AWS_KEY}")}]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "guardrail_blocked");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("API_SECRET") && message.contains("strict"),
        "{message}"
    );
    assert!(!message.contains(AWS_KEY));
    assert!(
        s.upstream.state.last_request().is_none(),
        "nothing reached the provider"
    );

    // An answer carrying a secret is replaced by the error.
    let answer = format!("Use {AWS_KEY} to sign in.");
    let response = s
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-scripted", "metadata": {"answer": answer},
                   "messages": [{"role": "user", "content": "how do I sign in?"}]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("guardrail_blocked") && !text.contains("AKIA"),
        "{text}"
    );

    // Streamed: the stream ends with the error event, and the value never left.
    let response = s
        .post(
            "/v1/chat/completions",
            json!({"model": "mock-scripted", "stream": true,
                   "metadata": {"answer": answer, "event_chars": "4"},
                   "messages": [{"role": "user", "content": "how do I sign in?"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let raw = response.text().await.unwrap();
    assert!(!raw.contains("AKIA"), "{raw}");
    let last = raw.trim_end().lines().last().unwrap();
    let error: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "guardrail_blocked");
}

#[tokio::test]
async fn tenant_policy_is_set_by_the_cli_and_unknown_policies_are_refused() {
    let s = setup(STRICT, &[]).await;
    let out = s.gw.cli(&["tenants", "set-policy", "acme", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("strict"), "{err}");

    let out = s.gw.cli(&["tenants", "set-policy", "acme", "strict"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A fresh key picks up the tenant's policy at once (no cache entry yet).
    let key = s.gw.create_key("acme", &[])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let response = s
        .http
        .post(s.gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "mock-plain", "messages": [
            {"role": "user", "content": format!("key {AWS_KEY}")}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn responses_and_completions_endpoints_are_guarded_too() {
    let s = setup("", &[]).await;
    let response = s
        .post(
            "/v1/responses",
            json!({"model": "mock-plain", "instructions": format!("cc {EMAIL}"),
                   "input": [{"role": "user", "content": [
                       {"type": "input_text", "text": format!("mail {EMAIL}")}]}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let sent = s.upstream_body();
    assert_eq!(sent["instructions"], "cc [EMAIL]");
    assert_eq!(sent["input"][0]["content"][0]["text"], "mail [EMAIL]");

    s.post(
        "/v1/completions",
        json!({"model": "mock-plain", "prompt": [format!("to {EMAIL}"), "plain"]}),
    )
    .await;
    assert_eq!(s.upstream_body()["prompt"], json!(["to [EMAIL]", "plain"]));
}
