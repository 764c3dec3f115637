//! The audit trail end to end: the real binary and CLI, the in-process mock upstream, and the
//! real PostgreSQL at 127.0.0.1:5432 (a throwaway database per test) or a SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::audit::{sink, AuditRecord, Kind, Signer};
use portcullis::store::Store;
use serde_json::{json, Value};
use sqlx::Connection;
use support::gateway::{cli, TestGateway, AUDIT_KEY};
use support::mock_upstream::MockUpstream;
use support::postgres::TempDatabase;
use tokio::net::{TcpListener, TcpStream};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/eval/corpus_dev.jsonl"
);

/// Providers, routes, a guardrail policy that only *logs* (so raw values reach the provider
/// and come back in its echo: the audit trail must mask them by itself), and `[audit]`.
fn config(upstream: &MockUpstream, audit_extra: &str) -> String {
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
default_policy = "watch"
[guardrails.policies.watch.request]
default = "log"
[guardrails.policies.watch.response]
default = "log"

[audit]
signing_key = "env:PORTCULLIS_TEST_AUDIT_KEY"
retry_interval_ms = 200
{audit_extra}
"#,
        base = upstream.base_url(),
        audit_extra = if audit_extra.contains("flush_interval_ms") {
            audit_extra.to_string()
        } else {
            format!("flush_interval_ms = 20\n{audit_extra}")
        }
    )
}

fn run_ok(gw_config: &std::path::Path, args: &[&str]) -> String {
    let out = cli(gw_config, args);
    assert!(
        out.status.success(),
        "portcullis {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Records of a tenant, as `audit search --json` prints them.
fn search(gw: &TestGateway, tenant: &str) -> Vec<Value> {
    run_ok(
        &gw.config_path,
        &[
            "audit", "search", "--tenant", tenant, "--json", "--limit", "100000",
        ],
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// Waits (bounded) until the tenant has `n` request records.
fn wait_for_requests(gw: &TestGateway, tenant: &str, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let records: Vec<Value> = search(gw, tenant)
            .into_iter()
            .filter(|r| r["kind"] == "request")
            .collect();
        if records.len() >= n || start.elapsed() > Duration::from_secs(60) {
            return records;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Sample {
    text: String,
    values: Vec<String>,
}

/// Every corpus text that carries PII, with its values.
fn pii_samples() -> Vec<Sample> {
    std::fs::read_to_string(CORPUS)
        .expect("../shared/eval/corpus_dev.jsonl")
        .lines()
        .filter_map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let values: Vec<String> = v["entities"]
                .as_array()?
                .iter()
                .filter_map(|e| e["value"].as_str().map(str::to_string))
                .collect();
            (!values.is_empty()).then(|| Sample {
                text: v["text"].as_str().unwrap().to_string(),
                values,
            })
        })
        .collect()
}

/// Sends every PII sample through a `redacted` tenant (half streamed), then searches every
/// place the trail could leak: rows, exports (JSONL and CSV), search output, the gateway's
/// log, and whatever `database_files` / `database_dump` return.
async fn no_raw_value_anywhere(gw: &TestGateway, database_dump: impl AsyncFnOnce() -> Vec<u8>) {
    gw.create_tenant("bank");
    run_ok(
        &gw.config_path,
        &["tenants", "set-logging", "bank", "redacted"],
    );
    let key = gw.create_key("bank", &[])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let samples = pii_samples();
    assert!(
        samples.len() > 200,
        "corpus has {} PII samples",
        samples.len()
    );
    let client = reqwest::Client::new();
    for (i, s) in samples.iter().enumerate() {
        let body = json!({"model": "mock-scripted", "stream": i % 2 == 1, "user": format!("subject-{}", i % 7),
                          "messages": [{"role": "user", "content": s.text}]});
        let resp = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        // The tenant's guardrails only log: the client gets its echo back unmasked.
        let text = resp.text().await.unwrap();
        assert!(!text.is_empty());
    }
    let records = wait_for_requests(gw, "bank", samples.len());
    assert_eq!(records.len(), samples.len());
    let with_content = records.iter().filter(|r| r["content"].is_object()).count();
    assert_eq!(
        with_content,
        samples.len(),
        "every record keeps its redacted content"
    );
    assert!(
        records
            .iter()
            .any(|r| r["content"].to_string().contains("[EMAIL]")),
        "masks are visible in the content"
    );
    assert!(records
        .iter()
        .all(|r| r["subject"].as_str().is_some_and(|s| s.len() == 64)));

    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("search".into(), serde_json::to_vec(&records).unwrap()),
        (
            "export jsonl".into(),
            run_ok(&gw.config_path, &["audit", "export", "--tenant", "bank"]).into_bytes(),
        ),
        (
            "export csv".into(),
            run_ok(
                &gw.config_path,
                &["audit", "export", "--tenant", "bank", "--format", "csv"],
            )
            .into_bytes(),
        ),
        ("gateway log".into(), gw.log().into_bytes()),
        ("database".into(), database_dump().await),
    ];
    for entry in std::fs::read_dir(gw.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        // The SQLite file, its WAL, and any spool file.
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.contains(".db") || name.contains("spool") {
            haystacks.push((name, std::fs::read(&path).unwrap()));
        }
    }
    let mut leaks = Vec::new();
    for s in &samples {
        for value in &s.values {
            for (place, bytes) in &haystacks {
                if contains(bytes, value.as_bytes()) {
                    leaks.push(format!("{value:?} in {place}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "raw values leaked: {leaks:#?}");
    // The checks above looked at the right bytes: the masked text is there.
    assert!(haystacks
        .iter()
        .any(|(p, b)| p == "export csv" && contains(b, b"[EMAIL]")));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn redacted_logging_keeps_no_raw_pii_on_sqlite() {
    let upstream = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&upstream, ""), "", "");
    let dir = gw.dir.path().to_path_buf();
    no_raw_value_anywhere(&gw, async move || {
        // SQLite: the database files themselves are searched (see the directory scan).
        assert!(dir.join("portcullis.db").exists());
        Vec::new()
    })
    .await;
}

#[tokio::test]
async fn redacted_logging_keeps_no_raw_pii_on_postgres() {
    let upstream = MockUpstream::start().await;
    let db = TempDatabase::create().await;
    let gw = TestGateway::start_with_database(&config(&upstream, ""), "", "", Some(&db.url));
    let url = db.url.clone();
    no_raw_value_anywhere(&gw, async move || {
        // Every row of every table, as text.
        let mut conn = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
        let mut dump = Vec::new();
        for table in [
            "audit_records",
            "audit_chain_heads",
            "audit_checkpoints",
            "tenants",
            "api_keys",
        ] {
            let rows: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for (row,) in rows {
                dump.extend_from_slice(row.as_bytes());
            }
        }
        assert!(dump.len() > 10_000);
        dump
    })
    .await;
    drop(gw);
    db.drop_database().await;
}

/// A TCP relay in front of Postgres that can be switched off: live connections are cut and
/// new ones refused, as when the database host goes away.
struct Outage {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Outage {
    async fn start(target: SocketAddr) -> Outage {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (d, g) = (down.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (d, g) = (d.clone(), g.clone());
                let born = g.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let relay = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let cut = async {
                        while !d.load(Ordering::SeqCst) && g.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = relay => {}, _ = cut => {} }
                });
            }
        });
        Outage {
            addr,
            down,
            generation,
        }
    }

    fn set_down(&self, down: bool) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.down.store(down, Ordering::SeqCst);
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_is_stored_exactly_once_across_a_database_outage() {
    let upstream = MockUpstream::start().await;
    let db = TempDatabase::create().await;
    let outage = Outage::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = db.url.replace("127.0.0.1:5432", &outage.addr.to_string());
    assert_ne!(url, db.url, "the test database URL goes through the relay");
    let gw = TestGateway::start_with_database(
        &config(&upstream, ""),
        "",
        // Keys stay cached through the outage: only the audit trail needs the database.
        "key_cache_ttl_ms = 600000",
        Some(&url),
    );
    gw.create_tenant("acme");
    let key = gw.create_key("acme", &[])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let client = reqwest::Client::new();
    let send = |i: usize| {
        let (client, key, url) = (client.clone(), key.clone(), gw.url("/v1/chat/completions"));
        async move {
            let body = json!({"model": "mock-scripted", "stream": i % 3 == 0,
                              "messages": [{"role": "user", "content": format!("request {i}")}]});
            let resp = client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "request {i}");
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
            resp.bytes().await.unwrap();
            id
        }
    };
    // Warm the key cache, then load in three phases: up, down, up again.
    let mut ids: HashSet<String> = HashSet::new();
    ids.insert(send(usize::MAX / 2).await);
    let total = 600;
    for phase in 0..3 {
        match phase {
            1 => outage.set_down(true),
            2 => outage.set_down(false),
            _ => {}
        }
        let mut tasks = Vec::new();
        for i in phase * total / 3..(phase + 1) * total / 3 {
            tasks.push(tokio::spawn(send(i)));
            if tasks.len() == 16 {
                for t in tasks.drain(..) {
                    assert!(ids.insert(t.await.unwrap()));
                }
            }
        }
        for t in tasks {
            assert!(ids.insert(t.await.unwrap()));
        }
        if phase == 1 {
            // Long enough for the writer to have failed and spooled.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert_eq!(ids.len(), total + 1);

    // Every request's record, exactly once, straight from the database.
    let mut conn = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();
    let start = Instant::now();
    let stored: Vec<(String,)> = loop {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM audit_records WHERE tenant = 'acme' AND kind = 'request'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        if rows.len() >= ids.len() || start.elapsed() > Duration::from_secs(60) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stored_ids: HashSet<String> = stored.iter().map(|(id,)| id.clone()).collect();
    assert_eq!(stored.len(), stored_ids.len(), "no record stored twice");
    assert_eq!(stored_ids, ids, "every request has its record");

    let metrics = reqwest::get(gw.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&metrics, "portcullis_audit_records_spooled_total") > 0.0,
        "the outage spooled records"
    );
    assert!(
        metric(&metrics, "portcullis_audit_records_replayed_total") > 0.0,
        "and replayed them"
    );
    assert!(metric(&metrics, "portcullis_audit_write_failures_total") > 0.0);
    run_ok(&gw.config_path, &["audit", "verify"]);
    drop(gw);
    drop(conn);
    db.drop_database().await;
}

/// Sends 50 requests to a gateway whose writer waits a minute between batches, stops it with
/// `signal`, restarts it, and checks all 50 records are stored. Returns the first run's log.
async fn records_survive(signal: &str) -> String {
    let upstream = MockUpstream::start().await;
    let mut gw = TestGateway::start(&config(&upstream, "flush_interval_ms = 60000"), "", "");
    gw.create_tenant("acme");
    let key = gw.create_key("acme", &[])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let client = reqwest::Client::new();
    for i in 0..50 {
        let body = json!({"model": "mock-scripted", "messages": [{"role": "user", "content": format!("r{i}")}]});
        let resp = client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    gw.stop_with(signal);
    let log = gw.log();
    gw.restart();
    let records = wait_for_requests(&gw, "acme", 50);
    assert_eq!(records.len(), 50, "SIG{signal}; first run's log:\n{log}");
    run_ok(&gw.config_path, &["audit", "verify"]);
    log
}

#[tokio::test]
async fn records_queued_at_shutdown_survive_sigterm_and_sigint() {
    // The test gateway's grace period is 0 s: the writer, woken by the shutdown, races the
    // end of the process with its last batch. Either it commits, or what it still holds goes
    // to the spool on the way out and is replayed at the next start; both ways every record
    // is stored exactly once (`records_survive` counts them).
    let mut spooled = 0;
    for signal in ["TERM", "INT", "TERM", "INT"] {
        let log = records_survive(signal).await;
        spooled += usize::from(log.contains("audit records spooled at shutdown"));
    }
    eprintln!("runs that spooled at shutdown: {spooled} of 4");
}

/// A chain of `n` request records of tenant `acme` (one carrying content, for subject
/// `alice`), written through the same code the gateway uses.
async fn chain_of(store: &Store, n: usize, start_time: i64) -> Vec<AuditRecord> {
    store.migrate().await.unwrap();
    let signer = Signer::new(Some(&secret()));
    let records: Vec<AuditRecord> = (0..n)
        .map(|i| {
            request_record(
                &format!("req_test{i:04}"),
                start_time + i as i64 * 1000,
                (i == 2).then(|| signer.subject("alice")),
                (i == 2).then(|| json!({"request": ["hi [EMAIL]"], "response": ["ok"]})),
            )
        })
        .collect();
    // In two batches, with a checkpoint after the first, as the writer does.
    let (a, b) = records.split_at(n / 2);
    let heads = sink::append(store, a, &signer, false).await.unwrap();
    sink::checkpoint(store, &heads, &signer).await.unwrap();
    sink::append(store, b, &signer, true).await.unwrap();
    records
}

/// The signing key the CLI resolves from `env:PORTCULLIS_TEST_AUDIT_KEY`, for in-process use.
/// A request record of tenant `acme`, as the gateway makes them.
fn request_record(
    id: &str,
    time: i64,
    subject: Option<String>,
    content: Option<Value>,
) -> AuditRecord {
    AuditRecord {
        id: id.to_string(),
        time,
        kind: Kind::Request,
        tenant: "acme".into(),
        action: "request".into(),
        actor: "pc_test".into(),
        status: 200,
        subject,
        detail: json!({"model": "gpt-4o", "id": id}).to_string(),
        content: content.map(|c| c.to_string()),
    }
}

fn secret() -> portcullis::config::Secret {
    // Every test sets the same constant value.
    std::env::set_var("PORTCULLIS_TEST_AUDIT_KEY", AUDIT_KEY);
    portcullis::config::SecretRef::parse("env:PORTCULLIS_TEST_AUDIT_KEY")
        .and_then(|r| r.resolve())
        .unwrap()
}

/// A config file for the CLI on `database_url`, signing with the test key.
fn cli_config(dir: &std::path::Path, database_url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("cli.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{database_url}\"\n[[providers]]\nname = \"m\"\nkind = \"mock\"\n\
             [[routes]]\nmodel = \"*\"\nprovider = \"m\"\n\
             [audit]\nsigning_key = \"env:PORTCULLIS_TEST_AUDIT_KEY\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// `audit verify`: (exit code 0?, stdout + stderr).
fn verify(config: &std::path::Path) -> (bool, String) {
    let out = cli(config, &["audit", "verify", "--tenant", "acme"]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Plain SQL, as an attacker with database access would run it.
async fn sql_pool(database_url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(database_url).await.unwrap()
}

async fn exec(pool: &sqlx::AnyPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

/// Tampering with plain SQL — UPDATE, DELETE, reorder, cutting the tail, editing content —
/// is each detected and named; erasure and undoing the tampering leave a chain that verifies.
async fn tampering_is_detected(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), database_url, "");
    let store = Store::new(database_url, 2, Duration::from_secs(5));
    let records = chain_of(&store, 10, portcullis::store::now_millis()).await;
    let db = sql_pool(database_url).await;
    let (ok, out) = verify(&config);
    assert!(ok, "{out}");
    assert!(
        out.contains("acme:requests") && out.contains("10 record(s)"),
        "{out}"
    );

    // UPDATE a field.
    exec(
        &db,
        "UPDATE audit_records SET status = 500 WHERE chain = 'acme:requests' AND seq = 4",
    )
    .await;
    let (ok, out) = verify(&config);
    assert!(
        !ok && out.contains("seq 4") && out.contains(&records[3].id) && out.contains("modified"),
        "{out}"
    );
    exec(
        &db,
        "UPDATE audit_records SET status = 200 WHERE chain = 'acme:requests' AND seq = 4",
    )
    .await;
    assert!(verify(&config).0);

    // UPDATE the content.
    exec(&db, "UPDATE audit_records SET content = '{\"request\":[\"hi\"],\"response\":[]}' WHERE seq = 3 AND chain = 'acme:requests'").await;
    let (ok, out) = verify(&config);
    assert!(
        !ok && out.contains("seq 3") && out.contains("content"),
        "{out}"
    );
    exec(
        &db,
        &format!(
            "UPDATE audit_records SET content = '{}' WHERE seq = 3 AND chain = 'acme:requests'",
            records[2].content.as_ref().unwrap()
        ),
    )
    .await;
    assert!(verify(&config).0);

    // DELETE a row in the middle.
    exec(&db, "CREATE TABLE saved_row AS SELECT * FROM audit_records WHERE chain = 'acme:requests' AND seq = 6").await;
    exec(
        &db,
        "DELETE FROM audit_records WHERE chain = 'acme:requests' AND seq = 6",
    )
    .await;
    let (ok, out) = verify(&config);
    assert!(
        !ok && out.contains("seq 6") && out.contains("missing"),
        "{out}"
    );
    exec(&db, "INSERT INTO audit_records SELECT * FROM saved_row").await;
    exec(&db, "DROP TABLE saved_row").await;
    assert!(verify(&config).0);

    // Reorder: swap two records' places.
    exec(
        &db,
        "UPDATE audit_records SET seq = -1 WHERE chain = 'acme:requests' AND seq = 7",
    )
    .await;
    exec(
        &db,
        "UPDATE audit_records SET seq = 7 WHERE chain = 'acme:requests' AND seq = 8",
    )
    .await;
    exec(
        &db,
        "UPDATE audit_records SET seq = 8 WHERE chain = 'acme:requests' AND seq = -1",
    )
    .await;
    let (ok, out) = verify(&config);
    assert!(!ok && out.contains("seq 7"), "{out}");
    exec(
        &db,
        "UPDATE audit_records SET seq = -1 WHERE chain = 'acme:requests' AND seq = 7",
    )
    .await;
    exec(
        &db,
        "UPDATE audit_records SET seq = 7 WHERE chain = 'acme:requests' AND seq = 8",
    )
    .await;
    exec(
        &db,
        "UPDATE audit_records SET seq = 8 WHERE chain = 'acme:requests' AND seq = -1",
    )
    .await;
    assert!(verify(&config).0);

    // Cut the tail: the signed head still names the last record.
    exec(
        &db,
        "DELETE FROM audit_records WHERE chain = 'acme:requests' AND seq = 10",
    )
    .await;
    let (ok, out) = verify(&config);
    assert!(!ok && out.contains("cut off the end"), "{out}");
    // …and re-pointing the head without the key does not help.
    exec(&db, "UPDATE audit_chain_heads SET seq = 9, hash = (SELECT hash FROM audit_records WHERE chain = 'acme:requests' AND seq = 9) WHERE chain = 'acme:requests'").await;
    let (ok, out) = verify(&config);
    assert!(!ok && out.contains("signature"), "{out}");

    db.close().await;
    store.close().await;
}

#[tokio::test]
async fn verify_detects_tampering_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    tampering_is_detected(&format!(
        "sqlite://{}",
        dir.path().join("audit.db").display()
    ))
    .await;
}

#[tokio::test]
async fn verify_detects_tampering_on_postgres() {
    let db = TempDatabase::create().await;
    tampering_is_detected(&db.url).await;
    db.drop_database().await;
}

/// Retention purges the front of a chain and old content; erasure removes a subject's
/// content; the chain still verifies — and deleting the checkpoint that anchors it does not.
async fn retention_and_erasure_keep_the_chain_verifiable(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), database_url, "");
    let store = Store::new(database_url, 2, Duration::from_secs(5));
    let day = 86_400_000;
    let now = portcullis::store::now_millis();
    // Ten records 40 days old and onwards, one a second.
    chain_of(&store, 10, now - 40 * day).await;
    let db = sql_pool(database_url).await;
    let signer = Signer::new(Some(&secret()));
    let recent: Vec<AuditRecord> = (0..3)
        .map(|i| {
            request_record(
                &format!("req_recent{i}"),
                now - 1000 + i,
                Some(signer.subject("alice")),
                Some(json!({"request": ["recent"], "response": []})),
            )
        })
        .collect();
    sink::append(&store, &recent, &signer, false).await.unwrap();

    // Erase alice: her content goes, the chain verifies.
    let out = run_ok(&config, &["audit", "erase", "--subject", "alice", "--json"]);
    let erased: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(erased["contents_removed"], 4, "{out}");
    assert_eq!(erased["records"], 4, "{out}");
    let (ok, out) = verify(&config);
    assert!(ok && out.contains("4 with content removed"), "{out}");

    // Purge requests older than 30 days, in batches of 3.
    let retention = portcullis::config::Retention {
        requests: Some(Duration::from_secs(30 * 86_400)),
        events: None,
        content: Some(Duration::from_secs(86_400)),
        purge_interval: Duration::from_secs(3600),
        purge_batch: 3,
    };
    let purged = sink::purge(&store, &retention, &signer, now).await.unwrap();
    assert_eq!(purged.records, 10);
    let (ok, out) = verify(&config);
    assert!(ok && out.contains("3 record(s), seq 11..13"), "{out}");

    // The anchor matters: without it the front of the chain is unexplained.
    exec(
        &db,
        "DELETE FROM audit_checkpoints WHERE chain = 'acme:requests' AND seq = 10",
    )
    .await;
    let (ok, out) = verify(&config);
    assert!(
        !ok && out.contains("seq 11") && out.contains("no checkpoint anchors"),
        "{out}"
    );
    db.close().await;
    store.close().await;
}

#[tokio::test]
async fn retention_and_erasure_keep_the_chain_verifiable_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    retention_and_erasure_keep_the_chain_verifiable(&format!(
        "sqlite://{}",
        dir.path().join("audit.db").display()
    ))
    .await;
}

#[tokio::test]
async fn retention_and_erasure_keep_the_chain_verifiable_on_postgres() {
    let db = TempDatabase::create().await;
    retention_and_erasure_keep_the_chain_verifiable(&db.url).await;
    db.drop_database().await;
}

/// A replay of records of which some are stored already (a batch that committed but whose
/// answer was lost, then spooled) stores the rest once each, in order, and the chain verifies.
async fn replays_store_each_record_once(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), database_url, "");
    let store = Store::new(database_url, 2, Duration::from_secs(5));
    store.migrate().await.unwrap();
    let signer = Signer::new(Some(&secret()));
    let now = portcullis::store::now_millis();
    let records: Vec<AuditRecord> = (0..8)
        .map(|i| request_record(&format!("req_replay{i}"), now + i, None, None))
        .collect();
    sink::append(&store, &records[..5], &signer, false)
        .await
        .unwrap();
    // The whole batch again, with one record twice over.
    let mut replay = records.clone();
    replay.push(records[6].clone());
    let heads = sink::append(&store, &replay, &signer, true).await.unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].seq, 8, "three new records after five");
    // Nothing new at all: nothing written, no head moved.
    assert!(sink::append(&store, &records, &signer, true)
        .await
        .unwrap()
        .is_empty());

    let db = sql_pool(database_url).await;
    let rows =
        sqlx::query("SELECT id FROM audit_records WHERE chain = 'acme:requests' ORDER BY seq")
            .fetch_all(&db)
            .await
            .unwrap();
    let ids: Vec<String> = rows
        .iter()
        .map(|r| sqlx::Row::try_get(r, "id").unwrap())
        .collect();
    let expected: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, expected);
    let (ok, out) = verify(&config);
    assert!(ok && out.contains("8 record(s)"), "{out}");
    db.close().await;
    store.close().await;
}

#[tokio::test]
async fn replays_store_each_record_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    replays_store_each_record_once(&format!(
        "sqlite://{}",
        dir.path().join("audit.db").display()
    ))
    .await;
}

#[tokio::test]
async fn replays_store_each_record_once_on_postgres() {
    let db = TempDatabase::create().await;
    replays_store_each_record_once(&db.url).await;
    db.drop_database().await;
}

/// Migration 0008 rebuilds the audit table's keys: a database with records from before it
/// keeps them all, and their chain still verifies and grows.
async fn existing_records_survive_the_key_migration(
    database_url: &str,
    mut old: sqlx::migrate::Migrator,
) {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), database_url, "");
    let db = sql_pool(database_url).await;
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version < 8)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    old.run(&db).await.unwrap();
    let store = Store::new(database_url, 2, Duration::from_secs(5));
    let signer = Signer::new(Some(&secret()));
    let now = portcullis::store::now_millis();
    let before: Vec<AuditRecord> = (0..4)
        .map(|i| request_record(&format!("req_old{i}"), now + i, None, None))
        .collect();
    sink::append(&store, &before, &signer, false).await.unwrap();

    store.migrate().await.unwrap();
    let after = [request_record("req_new", now + 10, None, None)];
    sink::append(&store, &after, &signer, false).await.unwrap();
    let (ok, out) = verify(&config);
    assert!(ok && out.contains("5 record(s)"), "{out}");
    db.close().await;
    store.close().await;
}

#[tokio::test]
async fn existing_records_survive_the_key_migration_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("audit.db").display()
    );
    existing_records_survive_the_key_migration(&url, sqlx::migrate!("./migrations/sqlite")).await;
}

#[tokio::test]
async fn existing_records_survive_the_key_migration_on_postgres() {
    let db = TempDatabase::create().await;
    existing_records_survive_the_key_migration(&db.url, sqlx::migrate!("./migrations/postgres"))
        .await;
    db.drop_database().await;
}

#[tokio::test]
async fn logging_policies_admin_events_and_search_filters() {
    let upstream = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&upstream, ""), "", "");
    run_ok(
        &gw.config_path,
        &["tenants", "create", "quiet", "--logging", "none"],
    );
    gw.create_tenant("meta");
    let quiet = gw.create_key("quiet", &[])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let meta = gw.create_key("meta", &[])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let client = reqwest::Client::new();
    for key in [&quiet, &meta, &"pc_not_a_key".to_string()] {
        let body = json!({"model": "mock-scripted", "user": "bob",
                          "messages": [{"role": "user", "content": "mail jane.doe@example.com"}]});
        client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    let records = wait_for_requests(&gw, "meta", 1);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert!(r["content"].is_null(), "metadata keeps no text: {r}");
    assert_eq!(r["detail"]["model"], "mock-scripted");
    assert_eq!(r["detail"]["findings"][0]["type"], "EMAIL");
    assert_eq!(r["detail"]["findings"][0]["action"], "log");
    assert!(!r.to_string().contains("jane"), "{r}");
    // `none`: no request record, but its administrative events are kept.
    let quiet_records = search(&gw, "quiet");
    assert!(
        quiet_records.iter().all(|r| r["kind"] == "admin"),
        "{quiet_records:?}"
    );
    assert!(quiet_records
        .iter()
        .any(|r| r["action"] == "tenant.created"));
    assert!(quiet_records.iter().any(|r| r["action"] == "key.created"));

    // The failed authentication is a security event.
    let out = run_ok(
        &gw.config_path,
        &["audit", "search", "--action", "auth.failed", "--json"],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    // Filters combine.
    let out = run_ok(
        &gw.config_path,
        &[
            "audit", "search", "--tenant", "meta", "--kind", "request", "--status", "200",
            "--since", "1h", "--json",
        ],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    let out = run_ok(
        &gw.config_path,
        &[
            "audit",
            "search",
            "--tenant",
            "meta",
            "--until",
            "2000-01-01",
            "--json",
        ],
    );
    assert_eq!(out.lines().count(), 0, "{out}");

    // Switching policy is itself recorded; bad input is a clear error.
    run_ok(
        &gw.config_path,
        &["tenants", "set-logging", "meta", "redacted"],
    );
    let out = cli(
        &gw.config_path,
        &["tenants", "set-logging", "meta", "everything"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("none, metadata, redacted"));
    let out = cli(
        &gw.config_path,
        &["audit", "search", "--since", "last tuesday"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
    let changes = run_ok(
        &gw.config_path,
        &[
            "audit",
            "search",
            "--action",
            "tenant.logging_changed",
            "--json",
        ],
    );
    assert_eq!(changes.lines().count(), 1, "{changes}");
    run_ok(&gw.config_path, &["audit", "verify"]);
}
