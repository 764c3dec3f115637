//! The command line, run as a user would: the real binary with a config file.

// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use serde_json::Value;
use support::gateway::BIN;

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[[providers]]\nname = \"demo\"\nkind = \"mock\"\n[[routes]]\nmodel = \"*\"\nprovider = \"demo\"\n",
            dir.join("cli.db").display()
        ),
    )
    .unwrap();
    path
}

fn run(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"nowhere\"\n[database]\nurl = \"mysql://x\"\n[[providers]]\nname = \"p\"\nkind = \"openai\"\napi_key = \"sk-plain\"\n",
    )
    .unwrap();
    let (ok, _, err) = run(&path, &["check-config"]);
    assert!(!ok);
    for key in [
        "server.listen",
        "database.url",
        "providers[0].base_url",
        "providers[0].api_key",
        "routes",
    ] {
        assert!(
            err.contains(&format!("  - {key}: ")),
            "{key} not reported in:\n{err}"
        );
    }
    assert!(!err.contains("sk-plain"));

    let (ok, _, err) = run(&dir.path().join("missing.toml"), &["check-config"]);
    assert!(!ok);
    assert!(err.contains("cannot read config file"), "{err}");

    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\ntypo = true\n").unwrap();
    let (ok, _, err) = run(&path, &["check-config"]);
    assert!(!ok);
    assert!(err.contains("typo"), "{err}");
}

#[test]
fn shipped_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let (ok, out, err) = run(&path, &["check-config"]);
    assert!(ok, "{err}");
    assert!(out.contains("OK"));
}

#[test]
fn config_path_comes_from_the_environment_when_no_flag_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path());
    let out = Command::new(BIN)
        .args(["check-config", "--json"])
        .env("PORTCULLIS_CONFIG", &path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
}

#[test]
fn tenants_and_keys_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    assert!(run(&cfg, &["migrate"]).0);
    let (ok, out, _) = run(&cfg, &["tenants", "create", "acme", "--json"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["name"], "acme");
    let (ok, _, err) = run(&cfg, &["tenants", "create", "acme"]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&cfg, &["tenants", "create", "not valid"]);
    assert!(!ok);
    assert!(err.contains("invalid tenant name"), "{err}");

    let (ok, out, _) = run(
        &cfg,
        &[
            "keys",
            "create",
            "--tenant",
            "acme",
            "--name",
            "app",
            "--expires-in",
            "90d",
            "--models",
            "gpt-4o*,demo",
            "--json",
        ],
    );
    assert!(ok);
    let created: Value = serde_json::from_str(&out).unwrap();
    for field in ["id", "key", "tenant", "prefix"] {
        assert!(created[field].is_string(), "{field} missing in {created}");
    }
    let secret = created["key"].as_str().unwrap();
    assert!(secret.starts_with("pc_") && secret.len() == 46);
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(
        created["allowed_models"],
        serde_json::json!(["gpt-4o*", "demo"])
    );
    assert!(created["expires_at"].as_i64().unwrap() > created["created_at"].as_i64().unwrap());

    let (ok, out, _) = run(&cfg, &["keys", "list", "--tenant", "acme"]);
    assert!(ok);
    assert!(out.contains(created["prefix"].as_str().unwrap()));
    assert!(
        !out.contains(&secret[3..]),
        "a listing must never show the secret"
    );
    let (_, json_list, _) = run(&cfg, &["keys", "list", "--json"]);
    assert!(!json_list.contains(&secret[3..]));
    assert!(!json_list.contains("key_hash"));

    let id = created["id"].as_str().unwrap();
    let (ok, out, _) = run(&cfg, &["keys", "revoke", id]);
    assert!(ok);
    assert!(out.contains("revoked"));
    let (_, out, _) = run(&cfg, &["keys", "list"]);
    assert!(out.contains("revoked"));
    let (ok, _, err) = run(&cfg, &["keys", "revoke", "key_doesnotexist"]);
    assert!(!ok);
    assert!(err.contains("does not exist"));

    let (ok, _, err) = run(&cfg, &["keys", "create", "--tenant", "ghost"]);
    assert!(!ok);
    assert!(err.contains("tenant \"ghost\" does not exist"), "{err}");
    let (ok, _, err) = run(
        &cfg,
        &["keys", "create", "--tenant", "acme", "--expires-in", "soon"],
    );
    assert!(!ok);
    assert!(err.contains("soon"), "{err}");

    let (ok, out, _) = run(&cfg, &["tenants", "list", "--json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn errors_are_json_with_a_code_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let (ok, _, err) = run(&cfg, &["keys", "create", "--tenant", "ghost", "--json"]);
    assert!(!ok);
    let v: Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(v["error"]["code"], "tenant_not_found");
}

#[test]
fn serve_reports_a_busy_port_with_its_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n[database]\nurl = \"sqlite://{}\"\n[[providers]]\nname = \"d\"\nkind = \"mock\"\n[[routes]]\nmodel = \"*\"\nprovider = \"d\"\n",
            support::gateway::free_port(),
            dir.path().join("x.db").display()
        ),
    )
    .unwrap();
    let (ok, _, err) = run(&path, &["serve"]);
    assert!(!ok);
    assert!(err.contains("server.listen: cannot listen on"), "{err}");
}
