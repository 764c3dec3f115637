// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Administrators from the command line (`portcullis users`): the password policy, bcrypt at
//! the configured cost, stdin-only passwords, e-mail uniqueness, tenant scoping — on SQLite
//! and on the real Postgres.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use sqlx::Connection;
use support::gateway::BIN;
use support::postgres::TempDatabase;

const GOOD: &str = "Correct-Horse-9-Battery";

fn config(dir: &std::path::Path, database_url: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{database_url}\"\n[[providers]]\nname = \"demo\"\nkind = \"mock\"\n\
             [[routes]]\nmodel = \"*\"\nprovider = \"demo\"\n[users]\nbcrypt_cost = 5\n"
        ),
    )
    .unwrap();
    path
}

/// Runs the CLI with `stdin` piped in; (success, stdout, stderr).
fn run(config: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its arguments may exit before it reads stdin: not an error here.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn stored_hashes(database_url: &str) -> Vec<(String, String)> {
    let mut conn = sqlx::AnyConnection::connect(database_url).await.unwrap();
    use sqlx::Row;
    sqlx::query("SELECT email, password_hash FROM users ORDER BY email")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect()
}

async fn users_lifecycle(database_url: &str) {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), database_url);
    let (ok, _, err) = run(&cfg, &["tenants", "create", "acme"], "");
    assert!(ok, "{err}");

    // A weak password: every broken rule is named, nothing is stored.
    let (ok, out, err) = run(
        &cfg,
        &[
            "users",
            "create",
            "--email",
            "ann@bank.example",
            "--role",
            "admin",
        ],
        "short\n",
    );
    assert!(!ok);
    assert!(out.is_empty());
    for rule in ["at least 12 characters", "upper-case", "digit", "special"] {
        assert!(err.contains(rule), "{rule} missing from {err}");
    }
    assert!(!err.contains("short"), "the password is echoed: {err}");

    // No password at all, an unknown role, a bad address.
    let (ok, _, err) = run(
        &cfg,
        &[
            "users",
            "create",
            "--email",
            "ann@bank.example",
            "--role",
            "admin",
        ],
        "",
    );
    assert!(!ok && err.contains("stdin"), "{err}");
    let (ok, _, err) = run(
        &cfg,
        &[
            "users",
            "create",
            "--email",
            "ann@bank.example",
            "--role",
            "root",
        ],
        &format!("{GOOD}\n"),
    );
    assert!(
        !ok && err.contains("admin, manager, developer, viewer"),
        "{err}"
    );
    let (ok, _, err) = run(
        &cfg,
        &[
            "users",
            "create",
            "--email",
            "not-an-address",
            "--role",
            "admin",
        ],
        &format!("{GOOD}\n"),
    );
    assert!(!ok && err.contains("not a valid e-mail address"), "{err}");

    // A good one, then the same mailbox again (case-insensitively).
    let (ok, out, err) = run(
        &cfg,
        &[
            "users",
            "create",
            "--email",
            "Ann@Bank.Example",
            "--role",
            "admin",
            "--json",
        ],
        &format!("{GOOD}\n"),
    );
    assert!(ok, "{err}");
    let user: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(user["email"], "ann@bank.example");
    assert_eq!(user["role"], "admin");
    assert!(user["tenant"].is_null());
    assert!(user.get("password_hash").is_none());
    assert!(!out.contains(GOOD) && !err.contains(GOOD));
    let (ok, _, err) = run(
        &cfg,
        &[
            "users",
            "create",
            "--email",
            "ann@bank.example",
            "--role",
            "viewer",
        ],
        "Another-Horse-9-Battery\n",
    );
    assert!(!ok && err.contains("already exists"), "{err}");

    // Scoped to a tenant; the tenant must exist.
    let (ok, _, err) = run(
        &cfg,
        &[
            "users",
            "create",
            "--email",
            "dev@acme.example",
            "--role",
            "developer",
            "--tenant",
            "globex",
        ],
        "Another-Horse-9-Battery\r\n",
    );
    assert!(!ok && err.contains("globex"), "{err}");
    let (ok, _, err) = run(
        &cfg,
        &[
            "users",
            "create",
            "--email",
            "dev@acme.example",
            "--role",
            "developer",
            "--tenant",
            "acme",
        ],
        "Another-Horse-9-Battery\r\n",
    );
    assert!(ok, "{err}");

    let (ok, out, _) = run(&cfg, &["users", "list", "--json"], "");
    assert!(ok);
    let users: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[1]["tenant"], "acme");
    assert_eq!(users[1]["role"], "developer");
    assert!(!out.contains("$2b$"));

    // Stored: bcrypt at the configured cost, verifying the password given (CRLF stripped).
    let hashes = stored_hashes(database_url).await;
    assert_eq!(hashes.len(), 2);
    assert!(hashes[0].1.starts_with("$2b$05$"), "{}", hashes[0].1);
    assert!(bcrypt::verify(GOOD, &hashes[0].1).unwrap());
    assert!(bcrypt::verify("Another-Horse-9-Battery", &hashes[1].1).unwrap());

    // The creation is an audited admin event that names the user by id only.
    let (ok, out, err) = run(
        &cfg,
        &["audit", "search", "--action", "user.created", "--json"],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(!out.contains("ann@bank.example"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("users.db").display());
    users_lifecycle(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_postgres() {
    let db = TempDatabase::create().await;
    users_lifecycle(&db.url).await;
    db.drop_database().await;
}
