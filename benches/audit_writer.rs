//! The audit writer's sustained throughput: records/s from the queue into the database, through
//! the real writer service (batching, chain hashing, multi-row INSERT, head updates,
//! checkpoints), into a throwaway database on the local PostgreSQL and into a SQLite file.
//!
//!   cargo bench --bench audit_writer            # RECORDS=200000 TENANTS=50 BATCH=1000 to tune
//!
//! Target (issue 5): at least 20,000 records/s into Postgres. BACKENDS=sqlite skips Postgres.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::services::background::BackgroundService;
use portcullis::audit::writer::AuditWriter;
use portcullis::audit::{AuditRecord, Auditor, Kind, Signer, Spool};
use portcullis::config::Config;
use portcullis::store::Store;
use portcullis::telemetry::metrics::Metrics;
use sqlx::Connection;

const TARGET: f64 = 20_000.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A request record shaped like the gateway's: a ~450-byte detail, findings, a subject.
fn records(n: usize, tenants: usize) -> Vec<AuditRecord> {
    let signer = Signer::default();
    (0..n)
        .map(|i| AuditRecord {
            id: format!("req_bench{i:09}"),
            time: 1_795_000_000_000 + i as i64,
            kind: Kind::Request,
            tenant: format!("tenant{}", i % tenants),
            action: "request".into(),
            actor: "pc_AbCdEfGh".into(),
            status: 200,
            subject: (i % 4 == 0).then(|| signer.subject(&format!("user-{}", i % 1000))),
            detail: format!(
                r#"{{"key_id":"key_3kTMd92Jf0aQxYz12","client_ip":"10.1.{}.{}","method":"POST","route":"chat_completions","model":"gpt-4o","provider":"openai","stream":{},"error_code":"","upstream_error":"","latency_ms":412.337,"upstream_ms":409.118,"request_bytes":1433,"response_bytes":2871,"guardrail_policy":"bank","findings":[{{"direction":"request","type":"EMAIL","action":"redact","count":1}}],"ratelimit":"","prompt_tokens":312,"completion_tokens":221,"total_tokens":533,"logging":"metadata"}}"#,
                i % 250,
                i % 200,
                i % 2 == 0
            ),
            content: None,
        })
        .collect()
}

fn config(database_url: &str, dir: &Path) -> Config {
    let batch = env_usize("BATCH", 1000);
    let text = format!(
        "[database]\nurl = \"{database_url}\"\nmax_connections = 4\n[audit]\nbatch_size = {batch}\n\
         [[providers]]\nname = \"m\"\nkind = \"mock\"\n[[routes]]\nmodel = \"*\"\nprovider = \"m\"\n"
    );
    match Config::from_toml(&text, &dir.join("bench.toml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Records/s written by the writer, from the first record submitted to the last one stored.
fn run(label: &str, database_url: &str, n: usize, tenants: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let config = config(database_url, dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Store::from_config(&config.database);
    runtime.block_on(store.migrate()).unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let spool = Arc::new(Spool::new(
        &dir.path().join("bench.spool"),
        config.audit.spool_fsync,
    ));
    // A queue that holds everything: the bench measures the database path, not the spool.
    let (auditor, receiver) = Auditor::new(n, spool, Signer::default(), metrics.clone());
    let (writer, _leftovers) = AuditWriter::new(
        receiver,
        store,
        Arc::new(Spool::new(
            &dir.path().join("bench.spool"),
            config.audit.spool_fsync,
        )),
        config.audit.clone(),
        metrics.clone(),
    );
    let writer = Arc::new(writer);
    let records = records(n, tenants);
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let w = writer.clone();
    runtime.spawn(async move { w.start(shutdown).await });

    let cpu_before = process_cpu();
    let start = Instant::now();
    for r in records {
        auditor.submit(r);
    }
    let submitted = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while metrics.audit_records_written.get() < n as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    let cpu = process_cpu() - cpu_before;
    let written = metrics.audit_records_written.get();
    assert_eq!(written, n as u64, "{label}: only {written} of {n} written");
    assert_eq!(
        metrics.audit_records_spooled.get(),
        0,
        "{label}: records were spooled"
    );
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{label:<10} {n} records, {tenants} tenants: {:.2} s → {rate:>9.0} records/s \
         ({:.2}× the 20,000/s target; {:.1} µs of this process's CPU per record; \
         submitting took {:.0} ms; mean batch {:.0} records)",
        elapsed.as_secs_f64(),
        rate / TARGET,
        cpu.as_secs_f64() * 1e6 / n as f64,
        submitted.as_secs_f64() * 1000.0,
        metrics.audit_batch_size.get_sample_sum()
            / metrics.audit_batch_size.get_sample_count() as f64,
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
    rate
}

/// CPU time (user + system) of this process so far, from /proc (10 ms resolution).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing: run only on
    // `cargo bench` so tests stay fast.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env_usize("RECORDS", 200_000);
    let tenants = env_usize("TENANTS", 50);
    let backends = std::env::var("BACKENDS").unwrap_or_else(|_| "postgres,sqlite".into());
    if !backends.contains("postgres") {
        let dir = tempfile::tempdir().unwrap();
        run(
            "sqlite",
            &format!("sqlite://{}", dir.path().join("bench.db").display()),
            n,
            tenants,
        );
        return;
    }
    let admin_url = std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("portcullis_bench_{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    runtime.block_on(async {
        let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
    let pg = run("postgres", &url, n, tenants);
    runtime.block_on(async {
        let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
            .await
            .unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let sqlite = run(
        "sqlite",
        &format!("sqlite://{}", dir.path().join("bench.db").display()),
        n,
        tenants,
    );
    println!(
        "postgres / target = {:.2}; sqlite / postgres = {:.2}",
        pg / TARGET,
        sqlite / pg
    );
}
