//! The `portcullis` binary: install the TLS crypto provider, parse the command line, run it.
//! No `#[tokio::main]`: pingora owns its runtimes (and may fork), so `main` stays synchronous.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Exactly one rustls provider, before anything can touch TLS.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: a rustls crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    let cli = portcullis::cli::Cli::parse();
    portcullis::cli::run(cli)
}
