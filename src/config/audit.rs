//! `[audit]`: what the audit trail keeps for each tenant, how records reach the database (a
//! bounded queue, batches, a spool file while the database is away), how chains are signed,
//! and how long each kind of data is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawAudit;
use super::{Problems, Secret};
use crate::audit::LoggingPolicy;

#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// `false`: no records at all (benchmarks and throwaway setups only).
    pub enabled: bool,
    /// The logging policy of tenants that have none of their own.
    pub default_logging: LoggingPolicy,
    /// Signs chain heads and checkpoints (HMAC-SHA-256) and keys the data-subject hashes.
    pub signing_key: Option<Secret>,
    /// Header naming the data subject of a request; else the OpenAI `user` field.
    pub subject_header: Option<String>,
    pub queue_capacity: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// How long the writer leaves an unreachable database alone (records spool meanwhile).
    pub retry_interval: Duration,
    pub checkpoint_interval: Duration,
    /// Prompt and response text kept per record under the `redacted` policy, each.
    pub max_content_bytes: usize,
    pub spool_path: PathBuf,
    pub spool_fsync: SpoolFsync,
    pub retention: Retention,
}

/// When spooled records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFsync {
    /// After every append: a record that was spooled survives a power cut.
    Always,
    /// Left to the operating system: survives a crash of the gateway, not of the machine.
    Never,
}

/// How long each kind of data is kept; `None` keeps it forever.
#[derive(Debug, Clone)]
pub struct Retention {
    pub requests: Option<Duration>,
    pub events: Option<Duration>,
    pub content: Option<Duration>,
    pub purge_interval: Duration,
    pub purge_batch: u64,
}

const DAY: u64 = 86_400;

pub(super) fn validate(raw: &RawAudit, config_dir: &Path, p: &mut Problems) -> AuditConfig {
    let default_logging = match LoggingPolicy::parse(&raw.default_logging) {
        Some(policy) => policy,
        None => {
            p.push(
                "audit.default_logging",
                format!(
                    "{:?} is not one of \"none\", \"metadata\", \"redacted\"",
                    raw.default_logging
                ),
            );
            LoggingPolicy::Metadata
        }
    };
    let signing_key = raw
        .signing_key
        .as_deref()
        .and_then(|v| p.secret("audit.signing_key", v));
    if let Some(key) = &signing_key {
        if key.expose().len() < 32 {
            p.push(
                "audit.signing_key",
                "must be at least 32 bytes (e.g. `openssl rand -hex 32`)",
            );
        }
    }
    let subject_header = raw
        .subject_header
        .as_ref()
        .map(|h| h.trim().to_ascii_lowercase());
    if let Some(h) = &subject_header {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            p.push(
                "audit.subject_header",
                format!("{h:?} is not a valid header name"),
            );
        }
    }
    let spool_fsync = match raw.spool_fsync.as_str() {
        "always" => SpoolFsync::Always,
        "never" => SpoolFsync::Never,
        other => {
            p.push(
                "audit.spool_fsync",
                format!("{other:?} is not one of \"always\", \"never\""),
            );
            SpoolFsync::Always
        }
    };
    if raw.spool_path.trim().is_empty() {
        p.push("audit.spool_path", "must not be empty");
    }
    let days = |p: &mut Problems, key: &str, v: Option<u64>| {
        v.map(|d| Duration::from_secs(p.positive(key, d).saturating_mul(DAY)))
    };
    let retention = Retention {
        requests: days(
            p,
            "audit.retention.requests_days",
            raw.retention.requests_days,
        ),
        events: days(p, "audit.retention.events_days", raw.retention.events_days),
        content: days(
            p,
            "audit.retention.content_days",
            raw.retention.content_days,
        ),
        purge_interval: Duration::from_secs(p.positive(
            "audit.retention.purge_interval_seconds",
            raw.retention.purge_interval_seconds,
        )),
        purge_batch: p.positive("audit.retention.purge_batch", raw.retention.purge_batch),
    };
    if let (Some(content), Some(requests)) = (retention.content, retention.requests) {
        if content > requests {
            p.push(
                "audit.retention.content_days",
                "must not exceed requests_days (content lives inside request records)",
            );
        }
    }
    // Postgres refuses statements with more than 65,535 parameters; a row binds 15.
    if raw.batch_size > 4_000 {
        p.push("audit.batch_size", "must be at most 4000");
    }
    AuditConfig {
        enabled: raw.enabled,
        default_logging,
        signing_key,
        subject_header,
        queue_capacity: p.positive("audit.queue_capacity", raw.queue_capacity as u64) as usize,
        batch_size: p.positive("audit.batch_size", raw.batch_size as u64) as usize,
        flush_interval: Duration::from_millis(
            p.positive("audit.flush_interval_ms", raw.flush_interval_ms),
        ),
        retry_interval: Duration::from_millis(
            p.positive("audit.retry_interval_ms", raw.retry_interval_ms),
        ),
        checkpoint_interval: Duration::from_secs(p.positive(
            "audit.checkpoint_interval_seconds",
            raw.checkpoint_interval_seconds,
        )),
        max_content_bytes: raw.max_content_bytes,
        spool_path: config_dir.join(raw.spool_path.trim()),
        spool_fsync,
        retention,
    }
}
