//! `portcullis serve`: assemble the pingora server — data plane and admin listener — and run
//! it. Everything async that must happen before the listeners open (migrations) runs on a
//! short-lived runtime that is gone before pingora starts its own (it may fork to daemonize).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use pingora::services::background::background_service;

use crate::admin::AdminApp;
use crate::audit::writer::AuditWriter;
use crate::audit::{AuditRecord, Auditor, Kind, Signer, Spool};
use crate::auth::{Authenticator, JwtVerifier, KeyVerifier};
use crate::config::Config;
use crate::proxy::Gateway;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::{Metrics, MetricsError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Listen {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Random(#[from] crate::ids::RandomError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("cannot set up the admin API: {0}")]
    Admin(#[from] crate::admin::error::AdminError),
}

impl ServeError {
    pub fn code(&self) -> &'static str {
        match self {
            ServeError::Listen { .. } => "listen_failed",
            ServeError::Runtime(_) => "runtime_failed",
            ServeError::Store(e) => e.code(),
            ServeError::Metrics(e) => e.code(),
            ServeError::Random(e) => e.code(),
            ServeError::Auth(e) => e.code(),
            ServeError::Admin(e) => e.code(),
        }
    }
}

/// Runs until SIGINT/SIGTERM. `config_path` is recorded
/// (with the file's SHA-256) in the audit trail's `gateway.started` event.
pub fn serve(config: Config, config_path: &std::path::Path) -> Result<(), ServeError> {
    // Fail with the config key in the message, rather than a panic deep inside pingora.
    check_bindable("server.listen", config.server.listen)?;
    check_bindable("admin.listen", config.admin.listen)?;

    migrate(&config)?;

    let config = Arc::new(config);
    let store = Arc::new(Store::from_config(&config.database));
    let metrics = Arc::new(Metrics::new()?);
    let auth = Authenticator {
        keys: KeyVerifier::new(&config.auth, store.clone()),
        jwt: match &config.auth.jwt {
            Some(jwt) => Some(JwtVerifier::new(
                jwt,
                store.clone(),
                config.auth.key_cache_ttl,
            )?),
            None => None,
        },
    };
    // The audit trail: the request path's handle, and the writer that owns the queue's end.
    let (auditor, writer, leftovers) = if config.audit.enabled {
        let audit = &config.audit;
        let spool = Arc::new(Spool::new(&audit.spool_path, audit.spool_fsync));
        let (auditor, receiver) = Auditor::new(
            audit.queue_capacity,
            spool.clone(),
            Signer::new(audit.signing_key.as_ref()),
            metrics.clone(),
        );
        let (writer, leftovers) = AuditWriter::new(
            receiver,
            Store::from_config(&config.database),
            spool,
            audit.clone(),
            metrics.clone(),
        );
        if audit.signing_key.is_none() {
            tracing::warn!("audit.signing_key is not set: chain heads and checkpoints are unsigned, so cutting records off the end of a chain is not detectable");
        }
        auditor.submit(started_event(config_path)?);
        (Some(Arc::new(auditor)), Some(writer), Some(leftovers))
    } else {
        (None, None, None)
    };
    let admin_api = crate::admin::api::AdminApi::new(
        store.clone(),
        config.clone(),
        metrics.clone(),
        auditor.clone(),
    )?;
    let gateway = Gateway::new(config.clone(), auth, metrics.clone(), auditor)?;
    // The tokenizer tables take tens of milliseconds to load: not on a client's request.
    std::thread::spawn(crate::limits::tokens::warm_up);

    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout.as_secs()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    proxy.add_tcp(&config.server.listen.to_string());

    let mut admin = Service::new(
        "portcullis admin".to_string(),
        AdminApp {
            metrics,
            store,
            api: admin_api,
        },
    );
    admin.add_tcp(&config.admin.listen.to_string());
    admin.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    if let Some(writer) = writer {
        server.add_service(background_service("audit writer", writer));
    }
    tracing::info!(
        listen = %config.server.listen,
        admin = %config.admin.listen,
        threads = config.server.threads,
        "portcullis is serving"
    );
    server.run(RunArgs::default());
    // Every runtime has stopped (or, after SIGINT, was not waited for): what the audit writer
    // had not written yet goes to the spool before the process exits.
    if let Some(leftovers) = leftovers {
        leftovers.spool();
    }
    Ok(())
}

/// `gateway.started`: which configuration this process runs with, by file hash.
fn started_event(config_path: &std::path::Path) -> Result<AuditRecord, ServeError> {
    use sha2::{Digest, Sha256};
    let sha256 = std::fs::read(config_path)
        .map(|bytes| crate::ids::hex(&Sha256::digest(&bytes)))
        .unwrap_or_default();
    Ok(AuditRecord::event(
        Kind::Security,
        "",
        "gateway.started",
        &format!("pid:{}", std::process::id()),
        serde_json::json!({
            "config_path": config_path.display().to_string(),
            "config_sha256": sha256,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )?)
}

fn check_bindable(key: &'static str, addr: SocketAddr) -> Result<(), ServeError> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|source| ServeError::Listen { key, addr, source })
}

fn migrate(config: &Config) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async {
        let store = Store::from_config(&config.database);
        let result = store.migrate().await;
        store.close().await;
        result
    })?;
    Ok(())
}
