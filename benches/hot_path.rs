//! Criterion benches for the data plane's per-request work: API key and HS256 JWT verification
//! with warm caches, request parsing + routing, and the rate limiter's decision (admit + settle) per
//! request, locally and on the Redis at 127.0.0.1:6379 (PORTCULLIS_BENCH_REDIS_URL).
//!
//!     cargo bench --bench hot_path
//!
//! Compare the figures to the load recipe (benches/load/): these costs are what the gateway
//! adds on top of the HTTP hop itself.

// Bench setup: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::auth::{JwtVerifier, KeyHasher, KeyVerifier};
use portcullis::config::Config;
use portcullis::limits::{tokens, Demand, LimitSet, Limiter};
use portcullis::providers::Endpoint;
use portcullis::proxy::origin::parse_request;
use portcullis::store::{NewApiKey, Store};
use portcullis::telemetry::metrics::Metrics;

fn config_with(db_url: &str, extra: &str) -> Config {
    let text = format!(
        "{extra}\n[database]\nurl = \"{db_url}\"\n[[providers]]\nname = \"demo\"\nkind = \"mock\"\n\
         [[routes]]\nmodel = \"gpt-4o\"\nprovider = \"demo\"\n[[routes]]\nmodel = \"claude-*\"\nprovider = \"demo\"\n\
         [[routes]]\nmodel = \"*\"\nprovider = \"demo\"\n"
    );
    Config::from_toml(&text, Path::new("bench.toml")).unwrap()
}

/// A ~1.4 KB chat request, the size the load recipe uses.
fn chat_body() -> Vec<u8> {
    let prompt =
        "Summarise the quarterly figures for the board in three bullet points. ".repeat(18);
    serde_json::json!({
        "model": "gpt-4o", "stream": false, "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You are a careful financial analyst."},
            {"role": "user", "content": prompt}
        ]
    })
    .to_string()
    .into_bytes()
}

fn key_verification(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    // HS256 JWTs beside the keys; the secret is read from a file, as in production.
    let secret = dir.path().join("jwt-secret");
    std::fs::write(&secret, "bench-only-hs256-secret-of-32-bytes-or-more").unwrap();
    let config = config_with(
        &url,
        &format!("[auth.jwt]\nhs256_secret = \"file:{}\"\n", secret.display()),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(Store::from_config(&config.database));
    let hasher = KeyHasher::from_config(&config.auth);
    let key = hasher.generate().unwrap();
    runtime.block_on(async {
        store.migrate().await.unwrap();
        store.create_tenant("bench").await.unwrap();
        store
            .create_api_key(NewApiKey {
                tenant: "bench",
                name: "bench",
                prefix: &key.prefix,
                key_hash: &key.hash,
                allowed_models: &[],
                expires_at: None,
                guardrail_policy: None,
                limits: LimitSet::default(),
                created_by: None,
                permissions: Default::default(),
            })
            .await
            .unwrap();
    });
    let verifier = KeyVerifier::new(&config.auth, store.clone());
    runtime.block_on(verifier.verify(&key.secret)).unwrap(); // warm the cache
    let jwt_config = config.auth.jwt.as_ref().unwrap();
    let jwt = JwtVerifier::new(jwt_config, store, config.auth.key_cache_ttl).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let sign = |jti: u64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"sub": "bench-user", "tenant": "bench", "exp": exp, "jti": jti}),
            &jsonwebtoken::EncodingKey::from_secret(b"bench-only-hs256-secret-of-32-bytes-or-more"),
        )
        .unwrap()
    };
    let token = sign(0);
    // Warm the tenant and token caches.
    runtime.block_on(jwt.verify(&token)).unwrap();
    // Tokens the verifier has not seen (signed outside the timing): every check runs.
    let mut jti = 0;

    let mut group = c.benchmark_group("auth");
    group.bench_function("verify_api_key_warm_cache", |b| {
        b.iter(|| {
            runtime
                .block_on(verifier.verify(black_box(&key.secret)))
                .unwrap()
        })
    });
    group.bench_function("verify_jwt_hs256_warm_cache", |b| {
        b.iter(|| runtime.block_on(jwt.verify(black_box(&token))).unwrap())
    });
    group.bench_function("verify_jwt_hs256_first_use", |b| {
        b.iter_batched(
            || {
                jti += 1;
                sign(jti)
            },
            |token| runtime.block_on(jwt.verify(black_box(&token))).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("hash_api_key_sha256", |b| {
        b.iter(|| hasher.hash(black_box(&key.secret)))
    });
    group.finish();
}

fn request_parsing(c: &mut Criterion) {
    let config = config_with("sqlite::memory:", "[audit]\nenabled = false");
    let body = chat_body();
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse_and_route_chat_1_4kb", |b| {
        b.iter(|| {
            let parsed = parse_request(black_box(&body)).unwrap();
            black_box(config.router.route(&parsed.model).unwrap());
        })
    });
    group.finish();
    c.bench_function("route/glob_match", |b| {
        b.iter(|| black_box(config.router.route(black_box("claude-3-5-sonnet-latest"))))
    });
}

fn principal(limits: LimitSet) -> portcullis::auth::Principal {
    portcullis::auth::Principal {
        key_id: "key_bench".into(),
        key_prefix: "pc_bench".into(),
        tenant_id: "ten_bench".into(),
        tenant: "bench".into(),
        allowed_models: Arc::from(Vec::new()),
        guardrail_policy: None,
        key_limits: limits,
        tenant_limits: limits,
        logging_policy: None,
        role: None,
        scopes: Arc::from(Vec::new()),
        permissions: Default::default(),
    }
}

/// One request's limiter work: plan, admit, settle — with limits high enough never to refuse,
/// so every iteration takes the full path.
fn limiter_decisions(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let high = LimitSet {
        rpm: Some(u32::MAX),
        tpm: Some(u64::from(u32::MAX)),
        max_concurrency: Some(u32::MAX),
        ..LimitSet::default()
    };
    let rpm_only = LimitSet {
        rpm: Some(u32::MAX),
        ..LimitSet::default()
    };
    let redis_url = std::env::var("PORTCULLIS_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let backends = [
        ("local", String::new()),
        (
            "redis",
            format!(
                "backend = \"redis\"\nredis_url = \"{redis_url}\"\nredis_key_prefix = \"bench\"\non_redis_error = \"deny\"\nredis_timeout_ms = 1000\n"
            ),
        ),
    ];
    let mut group = c.benchmark_group("limits");
    for (name, table) in backends {
        let text = format!(
            "[[providers]]\nname = \"demo\"\nkind = \"mock\"\n[[routes]]\nmodel = \"*\"\nprovider = \"demo\"\n[limits]\n{table}"
        );
        let config = Config::from_toml(&text, Path::new("bench.toml")).unwrap();
        let limiter = Limiter::new(&config.limits, Arc::new(Metrics::new().unwrap()));
        for (label, limits) in [("rpm", rpm_only), ("rpm_tpm_concurrency", high)] {
            let p = principal(limits);
            let demand = Demand {
                prompt_tokens: 350,
                completion_tokens: 1024,
            };
            // Fails the bench when Redis is not there, rather than timing the fallback.
            runtime
                .block_on(limiter.admit(limiter.plan(&p), demand, "warm"))
                .unwrap();
            group.bench_function(format!("{name}_admit_settle_{label}"), |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let admitted = limiter
                            .admit(limiter.plan(black_box(&p)), demand, "slot")
                            .await
                            .unwrap();
                        black_box(limiter.settle(admitted, 400).await)
                    })
                })
            });
        }
    }
    group.finish();

    tokens::warm_up();
    let body: serde_json::Value = serde_json::from_slice(&chat_body()).unwrap();
    let mut group = c.benchmark_group("tokens");
    group.throughput(Throughput::Bytes(chat_body().len() as u64));
    // Long texts are remembered; "uncached" is the first-seen case: a new prompt every time.
    let mut n = 0u64;
    group.bench_function("estimate_chat_1_4kb_o200k_uncached", |b| {
        b.iter(|| {
            let mut body = body.clone();
            n += 1;
            let text = format!("{n} {}", body["messages"][1]["content"].as_str().unwrap());
            body["messages"][1]["content"] = serde_json::Value::String(text);
            black_box(tokens::demand(
                Endpoint::ChatCompletions,
                &mut body,
                "gpt-4o",
                1024,
            ))
        })
    });
    group.bench_function("estimate_chat_1_4kb_o200k_cached", |b| {
        b.iter(|| {
            let mut body = body.clone();
            black_box(tokens::demand(
                Endpoint::ChatCompletions,
                &mut body,
                "gpt-4o",
                1024,
            ))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    key_verification,
    request_parsing,
    limiter_decisions
);
criterion_main!(benches);
