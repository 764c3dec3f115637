//! A standalone mock LLM upstream (OpenAI-compatible) for the load recipe in benches/load/.
//!
//!     cargo run --release --example mock_upstream -- --listen 127.0.0.1:18000
//!
//! Behaviour by model name is documented in tests/support/mock_upstream.rs.

// Test tooling shared with the integration tests, where panicking on a broken setup is right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mock_upstream.rs"]
mod mock_upstream;

fn main() {
    let mut listen = "127.0.0.1:18000".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage("--listen needs ADDR")),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let addr = listen
        .parse()
        .unwrap_or_else(|_| usage(&format!("{listen:?} is not IP:port")));
    // One thread: the load recipe pins this process to one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("runtime: {e}")));
    runtime.block_on(async {
        let upstream = mock_upstream::MockUpstream::start_on(addr, false).await;
        eprintln!("mock upstream listening on {}", upstream.addr);
        std::future::pending::<()>().await;
    });
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!("usage: mock_upstream [--listen 127.0.0.1:18000]");
    std::process::exit(2)
}
