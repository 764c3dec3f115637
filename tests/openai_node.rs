//! End-to-end: the official `openai` npm package against the real gateway binary and an
//! in-process mock upstream. Node.js and npm come from the machine; the package is installed
//! with `npm ci` from tests/e2e/node/package-lock.json into target/e2e-node the first time.
//! Missing Node is a failure, not a skip.

// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::mock_upstream::MockUpstream;

/// target/e2e-node with the pinned `openai` package and the test script.
fn node_project() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = root.join("tests/e2e/node");
    let dir = root.join("target").join("e2e-node");
    std::fs::create_dir_all(&dir).unwrap();
    // ESM resolves `openai` next to the script, so the script runs from the install dir.
    for file in ["package.json", "package-lock.json", "openai_sdk.mjs"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let lock = std::fs::read_to_string(source.join("package-lock.json")).unwrap();
    let stamp = dir.join("lock.installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str()) {
        return dir;
    }
    let status = Command::new("npm")
        .args(["ci", "--silent", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm is required for the openai npm end-to-end test");
    assert!(status.success(), "npm ci in target/e2e-node failed");
    std::fs::write(&stamp, lock).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_npm_package_works_through_the_gateway() {
    let upstream = MockUpstream::start().await;
    let (gw, key) = support::gateway::start_for_sdk_tests(&upstream.base_url());
    let dir = node_project();
    let base_url = gw.url("/v1");
    // The script blocks; run it off the runtime that serves the mock upstream.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("openai_sdk.mjs")
            .current_dir(dir)
            .env("PORTCULLIS_BASE_URL", base_url)
            .env("PORTCULLIS_KEY", key)
            .output()
            .expect("node is required for the openai npm end-to-end test")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai npm script failed:\n{stdout}\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["chat"], "Hello from the mock upstream.");
    assert_eq!(summary["stream"], "ok");
    assert_eq!(summary["guardrails"], "ok");
    assert_eq!(summary["errors"], "ok");
}
