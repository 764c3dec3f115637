//! Criterion benches for the data plane's per-request work that is not I/O:
//! API key verification with a warm cache, and request parsing + routing.
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
use portcullis::auth::{KeyHasher, KeyVerifier};
use portcullis::config::Config;
use portcullis::proxy::origin::parse_request;
use portcullis::store::{NewApiKey, Store};

fn config(db_url: &str) -> Config {
    let text = format!(
        "[database]\nurl = \"{db_url}\"\n[[providers]]\nname = \"demo\"\nkind = \"mock\"\n\
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
    let config = config(&url);
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
            })
            .await
            .unwrap();
    });
    let verifier = KeyVerifier::new(&config.auth, store);
    runtime.block_on(verifier.verify(&key.secret)).unwrap(); // warm the cache

    let mut group = c.benchmark_group("auth");
    group.bench_function("verify_api_key_warm_cache", |b| {
        b.iter(|| {
            runtime
                .block_on(verifier.verify(black_box(&key.secret)))
                .unwrap()
        })
    });
    group.bench_function("hash_api_key_sha256", |b| {
        b.iter(|| hasher.hash(black_box(&key.secret)))
    });
    group.finish();
}

fn request_parsing(c: &mut Criterion) {
    let config = config("sqlite::memory:");
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

criterion_group!(benches, key_verification, request_parsing);
criterion_main!(benches);
