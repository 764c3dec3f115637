// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Rate limits end to end: the real binary, the in-process mock upstream, and the real Redis at
//! 127.0.0.1:6379 (PORTCULLIS_TEST_REDIS_URL overrides it). Redis being down fails these tests:
//! they are never skipped.

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::gateway::{free_port, TestGateway};
use support::mock_upstream::MockUpstream;

fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Fails loudly when the Redis these tests need is not there.
fn require_redis() {
    let url = redis_url();
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("these tests need Redis at {url}: {e}"));
}

/// A Redis key prefix of its own, so tests (and earlier runs) never share state.
fn fresh_prefix() -> String {
    format!(
        "portcullis-test-{}",
        portcullis::ids::new_id("t").unwrap().to_lowercase()
    )
}

fn config(upstream: &MockUpstream, limits: &str) -> String {
    format!(
        r#"
[[providers]]
name = "up"
kind = "openai"
base_url = "{base}"
api_key = "env:PORTCULLIS_TEST_UPSTREAM_KEY"

[[routes]]
model = "mock-*"
provider = "up"

[guardrails]
default_policy = "off"
[guardrails.policies.off.request]

[limits]
{limits}
"#,
        base = upstream.base_url()
    )
}

struct Client {
    http: reqwest::Client,
    key: String,
}

/// ~16 tokens with the chat framing: more than the mock's reported 10, so settlement always
/// gives some back.
const PROMPT: &str = "Please count some tokens for the rate limit test";

impl Client {
    fn new(key: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            key: key.to_string(),
        }
    }

    async fn chat(&self, gw: &TestGateway, body: Value) -> reqwest::Response {
        self.http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

fn chat(extra: Value) -> Value {
    let mut body =
        json!({"model": "mock-tokens", "messages": [{"role": "user", "content": PROMPT}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

async fn metrics(gw: &TestGateway) -> String {
    reqwest::get(gw.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Sum of a metric's samples whose labels contain `filter`.
fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (bounded, ~5 s) until the gateway has logged `count` requests of tenant `tenant`: the
/// logging phase, where tokens are settled, runs just after each response.
async fn logged(gw: &TestGateway, tenant: &str, count: f64) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = metrics(gw).await;
        let filter = format!("tenant=\"{tenant}\"");
        if metric_sum(&text, "portcullis_requests_total", &filter) >= count {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text
}

/// Two gateways sharing one database file and one Redis (a key prefix of their own), with
/// `extra` lines in their `[limits]`.
fn two_on_redis(upstream: &MockUpstream, extra: &str) -> (TestGateway, TestGateway) {
    require_redis();
    let limits = format!(
        "backend = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"{}\"\n{extra}",
        redis_url(),
        fresh_prefix()
    );
    let a = start(upstream, &limits);
    let db = format!("sqlite://{}", a.dir.path().join("portcullis.db").display());
    let b = TestGateway::start_with_database(&config(upstream, &limits), "", "", Some(&db));
    (a, b)
}

fn start(upstream: &MockUpstream, limits: &str) -> TestGateway {
    let gw = TestGateway::start(&config(upstream, limits), "", "");
    gw.create_tenant("acme");
    gw
}

fn new_key(gw: &TestGateway, extra: &[&str]) -> String {
    gw.create_key("acme", extra)["key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends `n` requests alternating over `gateways`; returns the statuses in order.
async fn statuses(gateways: &[&TestGateway], client: &Client, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        let gw = gateways[i % gateways.len()];
        out.push(client.chat(gw, chat(json!({}))).await.status().as_u16());
    }
    out
}

#[tokio::test]
async fn a_key_with_rpm_10_gets_exactly_10_then_429s_with_openai_headers() {
    let upstream = MockUpstream::start().await;
    let gw = start(&upstream, "");
    let client = Client::new(&new_key(&gw, &["--rpm", "10"]));

    let mut remaining = Vec::new();
    for _ in 0..10 {
        let resp = client.chat(&gw, chat(json!({}))).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests").unwrap(), "10");
        assert!(header(&resp, "x-ratelimit-reset-requests").is_some());
        remaining.push(
            header(&resp, "x-ratelimit-remaining-requests")
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    assert_eq!(remaining, (0..10).rev().collect::<Vec<_>>());
    for _ in 0..3 {
        let resp = client.chat(&gw, chat(json!({}))).await;
        assert_eq!(resp.status(), 429);
        let retry: u64 = header(&resp, "retry-after").unwrap().parse().unwrap();
        assert!((1..=6).contains(&retry), "{retry}");
        assert!(header(&resp, "retry-after-ms").is_some());
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests").unwrap(),
            "0"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
        assert_eq!(body["error"]["type"], "requests");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("requests per minute") && message.contains("limit 10"),
            "{message}"
        );
    }
    // Only admitted requests reached the provider.
    assert_eq!(upstream.state.requests.lock().unwrap().len(), 10);
    let text = logged(&gw, "acme", 13.0).await;
    assert_eq!(
        metric_sum(
            &text,
            "portcullis_ratelimit_rejections_total",
            "kind=\"requests\",scope=\"key\""
        ),
        3.0
    );
}

#[tokio::test]
async fn two_gateways_sharing_redis_enforce_one_combined_limit() {
    let upstream = MockUpstream::start().await;
    let (a, b) = two_on_redis(&upstream, "on_redis_error = \"deny\"");
    let client = Client::new(&new_key(&a, &["--rpm", "10"]));

    let statuses = statuses(&[&a, &b], &client, 20).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 10, "{statuses:?}");
    assert!(statuses[..10].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // Both gateways served and refused some: the limit is one, not one per replica.
    assert!(a.log().contains("rate_limit_exceeded") || b.log().contains("rate_limit_exceeded"));
    let served_by_b = metric_sum(
        &logged(&b, "acme", 10.0).await,
        "portcullis_requests_total",
        "status=\"200\"",
    );
    assert_eq!(served_by_b, 5.0);
}

/// Sends 50 streaming requests at once (alternating over `gateways`); returns per request
/// whether it was admitted, the usage the client saw (if asked) and whether it was cut.
async fn race(gateways: &[&TestGateway], key: &str, body: Value) -> Vec<(u16, Option<u64>, bool)> {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let url = gateways[i % gateways.len()].url("/v1/chat/completions");
        let (key, body) = (key.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let mut text = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                text.extend_from_slice(&chunk.unwrap());
            }
            let text = String::from_utf8(text).unwrap();
            let usage = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .find_map(|v| v["usage"]["total_tokens"].as_u64());
            (status, usage, text.contains("\"rate_limit_exceeded\""))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Tokens a tpm limit refills in `elapsed` (what the budget legitimately grows by meanwhile).
fn refill(tpm: u64, elapsed: Duration) -> u64 {
    (tpm as f64 * elapsed.as_secs_f64() / 60.0).ceil() as u64
}

/// The key's budget in the race tests, and one request's worth of it: ~16 prompt tokens
/// estimated + 40 completion.
const TPM: u64 = 1000;
const ONE_REQUEST: u64 = 60;

async fn tpm_race_holds(gateways: &[&TestGateway], key: &str) {
    let started = Instant::now();
    let results = race(
        gateways,
        key,
        chat(
            json!({"stream": true, "max_tokens": 40, "metadata": {"tokens": "40"},
                    "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    let elapsed = started.elapsed();
    let admitted: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    let refused = results.iter().filter(|r| r.0 == 429).count();
    assert_eq!(admitted.len() + refused, 50, "{results:?}");
    let used: u64 = admitted.iter().map(|r| r.1.unwrap()).sum();
    assert!(
        used <= TPM + refill(TPM, elapsed) + ONE_REQUEST,
        "used {used} of {TPM} in {elapsed:?}"
    );
    // Not needlessly strict either: the budget fits about 17 reservations of ~56 tokens.
    assert!(admitted.len() >= 15, "only {} admitted", admitted.len());
    assert!(refused >= 25, "{refused} refused");
}

#[tokio::test]
async fn a_tpm_budget_holds_when_50_streams_race_for_it_locally() {
    let upstream = MockUpstream::start().await;
    let gw = start(&upstream, "");
    let key = new_key(&gw, &["--tpm", "1000"]);
    tpm_race_holds(&[&gw], &key).await;
}

#[tokio::test]
async fn a_tpm_budget_holds_when_50_streams_race_across_two_gateways_on_redis() {
    let upstream = MockUpstream::start().await;
    let (a, b) = two_on_redis(&upstream, "on_redis_error = \"deny\"");
    let key = new_key(&a, &["--tpm", "1000"]);
    tpm_race_holds(&[&a, &b], &key).await;
}

/// Streams without `max_tokens` reserve only `default_completion_tokens` (8) and take more as
/// they run; with `on_exceed = "cut"` the ones that find the budget empty are cut.
async fn cut_race_holds(gateways: &[&TestGateway], key: &str) {
    let started = Instant::now();
    let results = race(
        gateways,
        key,
        chat(json!({"stream": true, "metadata": {"tokens": "40"}})),
    )
    .await;
    let elapsed = started.elapsed();
    let cut = results.iter().filter(|r| r.2).count();
    assert!(cut > 0, "no stream was cut: {results:?}");
    // What every gateway charged, by the provider's usage or, for cut streams, by count.
    let mut charged = 0.0;
    for g in gateways {
        let text = logged(g, "acme", 50.0 / gateways.len() as f64).await;
        charged += metric_sum(&text, "portcullis_ratelimit_tokens_settled_total", "acme");
    }
    assert!(
        charged as u64 <= TPM + refill(TPM, elapsed) + ONE_REQUEST,
        "charged {charged} of {TPM} in {elapsed:?}; {cut} cut"
    );
}

#[tokio::test]
async fn streams_past_the_budget_are_cut_at_an_event_boundary() {
    let upstream = MockUpstream::start().await;
    let gw = start(
        &upstream,
        "on_exceed = \"cut\"\ndefault_completion_tokens = 8",
    );
    let key = new_key(&gw, &["--tpm", "1000"]);
    cut_race_holds(&[&gw], &key).await;
    let text = metrics(&gw).await;
    assert!(
        metric_sum(
            &text,
            "portcullis_ratelimit_stream_overruns_total",
            "action=\"cut\""
        ) > 0.0
    );
}

#[tokio::test]
async fn streams_past_the_budget_are_cut_across_gateways_on_redis() {
    let upstream = MockUpstream::start().await;
    let (a, b) = two_on_redis(
        &upstream,
        "on_exceed = \"cut\"\ndefault_completion_tokens = 8",
    );
    let key = new_key(&a, &["--tpm", "1000"]);
    cut_race_holds(&[&a, &b], &key).await;
}

#[tokio::test]
async fn settlement_uses_the_providers_usage_and_returns_unused_tokens() {
    let upstream = MockUpstream::start().await;
    let gw = start(&upstream, "");
    let client = Client::new(&new_key(&gw, &["--tpm", "10000"]));
    let remaining = |r: &reqwest::Response| -> i64 {
        header(r, "x-ratelimit-remaining-tokens")
            .unwrap()
            .parse()
            .unwrap()
    };

    // Not streamed: reserves prompt + 500, the provider reports 10 + 40 = 50.
    let first = client
        .chat(
            &gw,
            chat(json!({"max_tokens": 500, "metadata": {"tokens": "40"}})),
        )
        .await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit-tokens").unwrap(), "10000");
    let reserved = 10_000 - remaining(&first);
    assert!((500..600).contains(&reserved), "{reserved}");
    let usage: Value = first.json().await.unwrap();
    assert_eq!(usage["usage"]["total_tokens"], 50);
    logged(&gw, "acme", 1.0).await;

    // The unused part came back: the second request sees 10000 - 50 - its own reservation
    // (plus what refilled meanwhile), not 10000 - 2 × reservation.
    let second = client
        .chat(
            &gw,
            chat(json!({"max_tokens": 500, "metadata": {"tokens": "40"}})),
        )
        .await;
    let expected = 10_000 - 50 - reserved;
    let seen = remaining(&second);
    assert!(
        (expected..expected + 40).contains(&seen),
        "remaining {seen}, expected about {expected}"
    );
    let text = logged(&gw, "acme", 2.0).await;
    assert_eq!(
        metric_sum(&text, "portcullis_ratelimit_tokens_settled_total", "acme"),
        100.0
    );
    assert_eq!(
        metric_sum(&text, "portcullis_ratelimit_tokens_reserved_total", "acme"),
        2.0 * reserved as f64
    );

    // Streamed without asking for usage: the gateway asks the provider, settles with it, and
    // the client never sees the extra chunk.
    let resp = client
        .chat(
            &gw,
            chat(json!({"stream": true, "max_tokens": 500, "metadata": {"tokens": "30"}})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(!body.contains("\"usage\""), "{body}");
    assert_eq!(body.matches(" tok").count(), 30);
    assert!(body.ends_with("data: [DONE]\n\n"));
    let sent: Value = serde_json::from_slice(&upstream.state.last_request().unwrap().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let text = logged(&gw, "acme", 3.0).await;
    assert_eq!(
        metric_sum(&text, "portcullis_ratelimit_tokens_settled_total", "acme"),
        140.0
    );

    // Asked for by the client: it is passed on.
    let resp = client
        .chat(
            &gw,
            chat(
                json!({"stream": true, "stream_options": {"include_usage": true},
                        "metadata": {"tokens": "5"}}),
            ),
        )
        .await;
    let body = resp.text().await.unwrap();
    assert!(body.contains("\"total_tokens\":15"), "{body}");
}

#[tokio::test]
async fn concurrency_is_limited_and_slots_are_released() {
    let upstream = MockUpstream::start().await;
    let gw = start(&upstream, "");
    let key = new_key(&gw, &["--max-concurrency", "1"]);
    let client = Client::new(&key);
    // mock-slow-stream takes ~1.25 s.
    let slow = client.chat(
        &gw,
        json!({"model": "mock-slow-stream", "stream": true, "messages": []}),
    );
    let second = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.chat(&gw, chat(json!({}))).await
    };
    let (slow, second) = tokio::join!(slow, second);
    assert_eq!(slow.status(), 200);
    let _ = slow.text().await.unwrap();
    assert_eq!(second.status(), 429);
    let body: Value = second.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrent"),
        "{body}"
    );
    logged(&gw, "acme", 2.0).await;
    assert_eq!(client.chat(&gw, chat(json!({}))).await.status(), 200);
}

#[tokio::test]
async fn tenant_limits_from_the_cli_restrict_every_key() {
    let upstream = MockUpstream::start().await;
    let gw = start(&upstream, "[limits.key_defaults]\nrpm = 100");
    let out = gw.cli(&["tenants", "set-limits", "acme", "--rpm", "3", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["effective_limits"]["rpm"], 3);
    let out = gw.cli(&["tenants", "set-limits", "acme", "--rpm", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rpm"));

    let one = Client::new(&new_key(&gw, &[]));
    let two = Client::new(&new_key(&gw, &[]));
    assert_eq!(statuses(&[&gw], &one, 2).await, vec![200, 200]);
    assert_eq!(statuses(&[&gw], &two, 2).await, vec![200, 429]);
    let resp = one.chat(&gw, chat(json!({}))).await;
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant acme"),
        "{body}"
    );
}

#[tokio::test]
async fn requests_without_valid_credentials_are_limited_per_client_ip() {
    let upstream = MockUpstream::start().await;
    let gw = start(&upstream, "unauthenticated_rpm = 3");
    let bad = Client::new(&format!("pc_{}", "x".repeat(43)));
    let got = statuses(&[&gw], &bad, 5).await;
    assert_eq!(got, vec![401, 401, 401, 429, 429]);
    // A valid key from the same address is not affected.
    let good = Client::new(&new_key(&gw, &[]));
    assert_eq!(good.chat(&gw, chat(json!({}))).await.status(), 200);
}

#[tokio::test]
async fn unreachable_redis_falls_back_to_local_limits_or_fails_closed() {
    let upstream = MockUpstream::start().await;
    let closed = free_port();
    let gw = start(
        &upstream,
        &format!("backend = \"redis\"\nredis_url = \"redis://127.0.0.1:{closed}\""),
    );
    let client = Client::new(&new_key(&gw, &["--rpm", "3"]));
    assert_eq!(statuses(&[&gw], &client, 4).await, vec![200, 200, 200, 429]);
    let text = logged(&gw, "acme", 4.0).await;
    assert!(metric_sum(&text, "portcullis_ratelimit_fallbacks_total", "") >= 4.0);
    assert!(metric_sum(&text, "portcullis_ratelimit_redis_errors_total", "admit") >= 1.0);
    // Logged once, not once per request.
    assert_eq!(
        gw.log().matches("Redis rate limiter unavailable").count(),
        1
    );

    let gw = start(
        &upstream,
        &format!(
            "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:{closed}\"\non_redis_error = \"deny\""
        ),
    );
    let client = Client::new(&new_key(&gw, &["--rpm", "3"]));
    let resp = client.chat(&gw, chat(json!({}))).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limiter_unavailable");
}

#[test]
fn bad_limits_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[[providers]]\nname = \"d\"\nkind = \"mock\"\n[[routes]]\nmodel = \"*\"\nprovider = \"d\"\n\
         [limits]\nbackend = \"memcached\"\non_exceed = \"stop\"\n[limits.key_defaults]\nrpm = 0\n",
    )
    .unwrap();
    let out = support::gateway::cli(&path, &["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "limits.backend",
        "limits.on_exceed",
        "limits.key_defaults.rpm",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

#[tokio::test]
async fn the_gateways_limits_replace_the_providers_headers() {
    let upstream = MockUpstream::start().await;
    let gw = start(&upstream, "");
    let client = Client::new(&new_key(&gw, &["--rpm", "100"]));
    // The provider answers 429 with its own `x-ratelimit-remaining-requests: 0`.
    let resp = client
        .chat(&gw, json!({"model": "mock-error", "messages": []}))
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-limit-requests").unwrap(), "100");
    assert_eq!(
        header(&resp, "x-ratelimit-remaining-requests").unwrap(),
        "99"
    );
    // The provider's own error passes through otherwise unchanged.
    assert_eq!(header(&resp, "retry-after").unwrap(), "7");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Rate limit reached for mock-error"
    );
}
