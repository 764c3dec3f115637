//! End-to-end: the official `openai` Python package against the real gateway binary and an
//! in-process mock upstream. The interpreter is $PORTCULLIS_PYTHON, else a virtual environment
//! at target/e2e-venv that this test creates (from tests/e2e/requirements.txt, via PyPI) the
//! first time. Missing Python is a failure, not a skip.

// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::idp::{SigningKey, TestIdp};
use support::mock_upstream::MockUpstream;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTCULLIS_PYTHON") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join("e2e-venv");
    let python = venv.join("bin").join("python");
    let requirements = root.join("tests/e2e/requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is required for the openai SDK end-to-end test");
    assert!(
        status.success(),
        "python3 -m venv failed (Debian: apt-get install python3-venv)"
    );
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "pip install -r tests/e2e/requirements.txt failed"
    );
    std::fs::write(&stamp, wanted).unwrap();
    python
}

/// Runs tests/e2e/openai_sdk.py against the gateway with `credential` as the SDK's api_key
/// and checks its summary.
async fn run_sdk_script(gw: &support::gateway::TestGateway, credential: String) {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/openai_sdk.py");
    // The SDK call blocks; run it off the runtime that serves the mock upstream.
    let base_url = gw.url("/v1");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("PORTCULLIS_BASE_URL", base_url)
            .env("PORTCULLIS_KEY", credential)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai SDK script failed:\n{stdout}\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["chat"], "Hello from the mock upstream.");
    assert!(summary["stream_chunks"].as_u64().unwrap() >= 1);
    assert_eq!(summary["guardrails"], "ok");
    assert_eq!(summary["errors"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_sdk_works_through_the_gateway() {
    let upstream = MockUpstream::start().await;
    let (gw, key) = support::gateway::start_for_sdk_tests(&upstream.base_url());
    run_sdk_script(&gw, key).await;
}

/// The same script with JWTs as the SDK's api_key: an HS256 token, and an RS256 token of the
/// OIDC provider the test starts (keys through its discovery document and JWKS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_sdk_works_with_jwts() {
    const SECRET: &str = "test-only-hs256-secret-of-32-bytes-or-more";
    let upstream = MockUpstream::start().await;
    let idp = TestIdp::start(vec![SigningKey::rs256("k1")]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let jwt = format!(
        "[auth.jwt]\nhs256_secret = \"file:{}\"\n[[auth.jwt.issuers]]\nissuer = \"{}\"\naudience = \"portcullis\"\n",
        secret.display(),
        idp.issuer()
    );
    let (gw, _key) = support::gateway::start_for_sdk_tests_with(&upstream.base_url(), &jwt);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "sdk-user", "tenant": "acme", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    run_sdk_script(&gw, hs).await;
    // An ID token the provider issues through its authorization code flow, for a client whose
    // id is the gateway's audience.
    idp.register_client(
        "portcullis",
        "test-only-client-secret",
        &["http://localhost/cb"],
    );
    let rs = idp
        .issue_id_token(json!({"sub": "sdk-user", "tenant": "acme"}))
        .await;
    run_sdk_script(&gw, rs).await;
    assert!(idp.jwks_fetches() >= 1);
}
