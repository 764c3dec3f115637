//! The audit trail: one record per data-plane request and per administrative or security
//! event, redacted before it leaves the request, written off the hot path, tamper-evident.
//!
//! The journey of a record: the `logging` phase builds it ([`AuditRecord`]) and hands it to
//! [`Auditor::submit`] → a bounded queue → the [`writer`] batches it into the database, where
//! [`sink`] links it into its chain ([`chain`]) and appends it through the writer's own
//! connection (`sqlite`, `postgres`) — or, while the database is away or the queue
//! is full, the [`spool`] file keeps it until it can be replayed. [`verify`] checks chains;
//! [`content`] redacts prompts and answers for tenants whose policy keeps them.

pub mod chain;
pub mod commands;
pub mod content;
pub mod detail;
mod postgres;
pub mod sink;
pub mod spool;
mod sqlite;
pub mod time;
pub mod verify;
pub mod writer;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::store::StoreError;
use crate::telemetry::metrics::Metrics;

pub use chain::Signer;
pub use spool::Spool;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("audit database query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("audit database unavailable: {0}")]
    Unavailable(String),
    #[error("audit spool {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
    #[error("audit record cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("audit chain {chain} is broken at seq {seq}{}: {reason}", .id.as_ref().map(|i| format!(" (record {i})")).unwrap_or_default())]
    Broken {
        chain: String,
        seq: i64,
        id: Option<String>,
        reason: String,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

impl AuditError {
    pub fn code(&self) -> &'static str {
        match self {
            AuditError::Store(e) => e.code(),
            AuditError::Query(_) | AuditError::Sqlite(_) => "audit_query_failed",
            AuditError::Unavailable(_) => "audit_store_unavailable",
            AuditError::Spool { .. } => "audit_spool_failed",
            AuditError::Encode(_) => "audit_encode_failed",
            AuditError::Broken { .. } => "audit_chain_broken",
            AuditError::InvalidArgument(_) => "invalid_argument",
            AuditError::Output(_) => "output_failed",
        }
    }
}

/// What the audit trail keeps of a tenant's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoggingPolicy {
    /// No request records (administrative and security events are still recorded).
    None,
    /// Who, what, when, outcome, tokens, guardrail findings — no prompt or answer text.
    Metadata,
    /// Metadata plus the prompt and the answer with everything the guardrails detect masked.
    Redacted,
}

impl LoggingPolicy {
    pub fn parse(text: &str) -> Option<LoggingPolicy> {
        match text {
            "none" => Some(LoggingPolicy::None),
            "metadata" => Some(LoggingPolicy::Metadata),
            "redacted" => Some(LoggingPolicy::Redacted),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LoggingPolicy::None => "none",
            LoggingPolicy::Metadata => "metadata",
            LoggingPolicy::Redacted => "redacted",
        }
    }
}

/// The kind of a record. Requests and events live on separate chains per tenant, so each can
/// be kept for its own retention period and purged from the front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A data-plane request.
    Request,
    /// An administrative change: keys, tenants, limits, policies, exports, erasures.
    Admin,
    /// A security event: failed authentication, gateway start with its config.
    Security,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Admin => "admin",
            Kind::Security => "security",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "request" => Some(Kind::Request),
            "admin" => Some(Kind::Admin),
            "security" => Some(Kind::Security),
            _ => None,
        }
    }
}

/// The chain a tenant's records of this kind go on: `acme:requests`, `acme:events`, and
/// `*:events` for events that concern no tenant (`*` is not a valid tenant name).
pub fn chain_name(tenant: &str, kind: Kind) -> String {
    let owner = if tenant.is_empty() { "*" } else { tenant };
    match kind {
        Kind::Request => format!("{owner}:requests"),
        Kind::Admin | Kind::Security => format!("{owner}:events"),
    }
}

/// One audit record as the request path hands it over: already redacted, not yet chained.
/// This is also the line format of the spool file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The request id (`req_…`, also in the access log and `x-request-id`) or `evt_…`.
    pub id: String,
    /// Unix milliseconds.
    pub time: i64,
    pub kind: Kind,
    /// Empty for events that concern no tenant.
    pub tenant: String,
    /// `request`, `auth.failed`, `key.created`, `tenant.limits_changed`, …
    pub action: String,
    /// The key prefix (`pc_AbCdEfGh`) or `cli:USER`; empty when unknown.
    pub actor: String,
    /// HTTP status for requests; 0 for events.
    pub status: u16,
    /// Keyed hash of the data subject (the OpenAI `user` field or `audit.subject_header`).
    pub subject: Option<String>,
    /// Everything else, as a JSON object: identifiers, outcome, timings, tokens, findings.
    pub detail: String,
    /// `{"request":[…],"response":[…]}` with every detected value masked; only under the
    /// `redacted` policy.
    pub content: Option<String>,
}

impl AuditRecord {
    pub fn chain(&self) -> String {
        chain_name(&self.tenant, self.kind)
    }

    /// An administrative or security event, stamped now with a fresh id.
    pub fn event(
        kind: Kind,
        tenant: &str,
        action: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<AuditRecord, crate::ids::RandomError> {
        Ok(AuditRecord {
            id: crate::ids::new_id("evt")?,
            time: crate::store::now_millis(),
            kind,
            tenant: tenant.to_string(),
            action: action.to_string(),
            actor: actor.to_string(),
            status: 0,
            subject: None,
            detail: detail.to_string(),
            content: None,
        })
    }
}

/// The request path's handle on the audit trail: a non-blocking hand-off to the writer. When
/// the queue is full — or the writer has stopped at shutdown — the record goes straight to the
/// spool file, so nothing is lost and nothing waits on the database.
pub struct Auditor {
    queue: mpsc::Sender<AuditRecord>,
    spool: Arc<Spool>,
    signer: Signer,
    metrics: Arc<Metrics>,
}

impl Auditor {
    /// The handle and the receiving end, which [`writer::AuditWriter`] owns.
    pub fn new(
        capacity: usize,
        spool: Arc<Spool>,
        signer: Signer,
        metrics: Arc<Metrics>,
    ) -> (Auditor, mpsc::Receiver<AuditRecord>) {
        let (queue, receiver) = mpsc::channel(capacity);
        (
            Auditor {
                queue,
                spool,
                signer,
                metrics,
            },
            receiver,
        )
    }

    /// The stored form of a data subject's identifier.
    pub fn subject(&self, id: &str) -> String {
        self.signer.subject(id)
    }

    pub fn submit(&self, record: AuditRecord) {
        let record = match self.queue.try_send(record) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(r)) | Err(mpsc::error::TrySendError::Closed(r)) => {
                r
            }
        };
        match self.spool.append(std::slice::from_ref(&record)) {
            Ok(()) => self.metrics.audit_records_spooled.inc(),
            Err(e) => {
                // The one way a record can be lost: the queue is full and the disk refuses it.
                self.metrics
                    .audit_write_failures
                    .with_label_values(&["spool"])
                    .inc();
                tracing::error!(record = %record.id, error = %e, "audit record lost: queue full and spool failed");
            }
        }
    }
}
