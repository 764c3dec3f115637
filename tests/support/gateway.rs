//! Spawns the real `portcullis` binary on free ports with an inline config, for integration
//! tests. The process is killed when the handle is dropped.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
/// The provider secret the mock upstream should receive — and nobody else.
pub const UPSTREAM_SECRET: &str = "sk-upstream-secret-never-leaves-the-gateway";
/// `audit.signing_key = "env:PORTCULLIS_TEST_AUDIT_KEY"` in test configs resolves to this.
pub const AUDIT_KEY: &str = "test-audit-signing-key-0123456789abcdef";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct TestGateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
}

impl TestGateway {
    /// `body` holds the providers, routes and any extra tables; server/admin/database are
    /// filled in here. `server_extra` lines go into the [server] table.
    pub fn start(body: &str, server_extra: &str, auth_extra: &str) -> TestGateway {
        Self::start_with_database(body, server_extra, auth_extra, None)
    }

    /// As [`TestGateway::start`], on the given database URL instead of a fresh SQLite file.
    pub fn start_with_database(
        body: &str,
        server_extra: &str,
        auth_extra: &str,
        database_url: Option<&str>,
    ) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let db = match database_url {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}", dir.path().join("portcullis.db").display()),
        };
        let config = format!(
            "[server]\nlisten = \"{addr}\"\nthreads = 2\ngrace_period_seconds = 0\ngraceful_shutdown_timeout_seconds = 1\n{server_extra}\n\
             [admin]\nlisten = \"{admin}\"\n[database]\nurl = \"{db}\"\n[auth]\n{auth_extra}\n{body}"
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.path().join("gateway.log");
        let mut gw = TestGateway {
            child: None,
            addr,
            admin,
            dir,
            config_path,
            log_path,
        };
        gw.spawn();
        gw
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log_path).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("PORTCULLIS_TEST_UPSTREAM_KEY", UPSTREAM_SECRET)
            .env("PORTCULLIS_TEST_AUDIT_KEY", AUDIT_KEY)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_port(self.admin, Duration::from_secs(20), &self.log_path);
        wait_for_port(self.addr, Duration::from_secs(20), &self.log_path);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.config_path, args)
    }

    pub fn create_tenant(&self, name: &str) {
        let out = self.cli(&["tenants", "create", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates a key and returns the parsed `--json` output.
    pub fn create_key(&self, tenant: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["keys", "create", "--tenant", tenant, "--json"];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends `signal` (`TERM`: graceful shutdown, `INT`: fast), then waits (bounded) for the
    /// process to exit.
    pub fn stop_with(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("gateway did not exit within 20 s of SIG{signal}");
        }
    }

    /// Starts the gateway again with the same config (after [`TestGateway::stop_with`]).
    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The gateway the official-SDK tests drive: `demo` on the built-in demo provider, `mock-*` on
/// the mock upstream at `upstream_base_url`, guardrails redacting everything and blocking
/// API secrets both ways. Returns it with a key of tenant `acme`.
pub fn start_for_sdk_tests(upstream_base_url: &str) -> (TestGateway, String) {
    start_for_sdk_tests_with(upstream_base_url, "")
}

/// As [`start_for_sdk_tests`], with more config (e.g. an `[auth.jwt]` table) appended.
pub fn start_for_sdk_tests_with(upstream_base_url: &str, extra: &str) -> (TestGateway, String) {
    let mut body = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{upstream_base_url}\"\napi_key = \"env:PORTCULLIS_TEST_UPSTREAM_KEY\"\n\
         [[providers]]\nname = \"demo\"\nkind = \"mock\"\n\
         [[routes]]\nmodel = \"demo\"\nprovider = \"demo\"\n[[routes]]\nmodel = \"mock-*\"\nprovider = \"up\"\n\
         [guardrails]\ndefault_policy = \"sdk\"\n\
         [guardrails.policies.sdk.request]\ndefault = \"redact\"\nAPI_SECRET = \"block\"\n\
         [guardrails.policies.sdk.response]\ndefault = \"redact\"\nAPI_SECRET = \"block\"\n"
    );
    body.push_str(extra);
    let gw = TestGateway::start(&body, "", "");
    gw.create_tenant("acme");
    let key = gw.create_key("acme", &[])["key"]
        .as_str()
        .unwrap()
        .to_string();
    (gw, key)
}

pub fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PORTCULLIS_TEST_UPSTREAM_KEY", UPSTREAM_SECRET)
        .env("PORTCULLIS_TEST_AUDIT_KEY", AUDIT_KEY)
        .output()
        .unwrap()
}

fn wait_for_port(addr: SocketAddr, limit: Duration, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "gateway did not listen on {addr} within {limit:?}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
