//! The audit writer: a pingora background service that drains the queue into the database in
//! batches (by size or time), spools while the database is unreachable, replays the spool
//! when it is back, checkpoints chains, and runs retention.
//!
//! Order is kept: while anything is spooled, new batches are appended to the spool behind it,
//! and the spool is replayed before anything newer is written.
//!
//! Nothing is lost at shutdown: on SIGTERM the writer keeps flushing through pingora's grace
//! period. Once the server has stopped (pingora may stop the writer mid-write, or — on SIGINT —
//! not wait for it at all), `serve` calls [`Leftovers::spool`]: whatever the writer still holds,
//! queued or in a batch whose write did not finish, goes to the spool, and records submitted
//! after that find the queue closed and are spooled by [`super::Auditor::submit`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{mpsc, Mutex};

use super::sink::{self, Appender, Head};
use super::{AuditError, AuditRecord, Signer, Spool};
use crate::config::AuditConfig;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

pub struct AuditWriter {
    held: Arc<Mutex<Held>>,
    store: Store,
    appender: Appender,
    spool: Arc<Spool>,
    signer: Signer,
    config: AuditConfig,
    metrics: Arc<Metrics>,
}

/// What the writer holds that is not in the database yet: the queue's receiving end and the
/// batch being written. Shared with [`Leftovers`], which spools it when the server stops.
struct Held {
    receiver: mpsc::Receiver<AuditRecord>,
    /// Shared with the blocking thread that writes it (SQLite) only while that write runs;
    /// otherwise the one reference, so changing it copies nothing.
    batch: Arc<Vec<AuditRecord>>,
}

/// The writer's unwritten records, for the end of `serve`.
pub struct Leftovers {
    held: Arc<Mutex<Held>>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
}

impl Leftovers {
    /// Closes the queue and spools everything still in it or in an unfinished batch (a batch
    /// that did commit is skipped at replay). Call once the server has stopped. Waits
    /// at most 10 s for a write still under way on a runtime pingora did not wait for.
    pub fn spool(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut held = loop {
            match self.held.try_lock() {
                Ok(held) => break held,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => {
                    tracing::error!(
                        "audit writer still busy at exit; its current batch is not spooled"
                    );
                    return;
                }
            }
        };
        held.receiver.close();
        let mut records = Arc::unwrap_or_clone(std::mem::take(&mut held.batch));
        while let Ok(r) = held.receiver.try_recv() {
            records.push(r);
        }
        if records.is_empty() {
            return;
        }
        match self.spool.append(&records) {
            Ok(()) => {
                self.metrics
                    .audit_records_spooled
                    .inc_by(records.len() as u64);
                tracing::info!(records = records.len(), spool = %self.spool.path().display(), "audit records spooled at shutdown; replayed on the next start");
            }
            Err(e) => {
                tracing::error!(records = records.len(), error = %e, "audit records lost at shutdown: the spool failed")
            }
        }
    }
}

impl AuditWriter {
    pub fn new(
        receiver: mpsc::Receiver<AuditRecord>,
        store: Store,
        spool: Arc<Spool>,
        config: AuditConfig,
        metrics: Arc<Metrics>,
    ) -> (AuditWriter, Leftovers) {
        let held = Arc::new(Mutex::new(Held {
            receiver,
            batch: Arc::new(Vec::with_capacity(config.batch_size)),
        }));
        let leftovers = Leftovers {
            held: held.clone(),
            spool: spool.clone(),
            metrics: metrics.clone(),
        };
        let writer = AuditWriter {
            held,
            appender: Appender::new(&store),
            store,
            signer: Signer::new(config.signing_key.as_ref()),
            spool,
            config,
            metrics,
        };
        (writer, leftovers)
    }

    /// Writes one batch, or spools it; never returns it.
    async fn write_or_spool(&self, held: &mut Held, state: &mut State) {
        if held.batch.is_empty() {
            return;
        }
        // Anything already spooled goes first.
        if self.spool.has_records() && !self.replay(state).await {
            self.spool_batch(held);
            return;
        }
        if state.backing_off() {
            self.spool_batch(held);
            return;
        }
        let started = Instant::now();
        let written = self
            .appender
            .append(held.batch.clone(), &self.signer, false)
            .await;
        match written {
            Ok(heads) => {
                self.observe(held.batch.len(), started);
                Arc::make_mut(&mut held.batch).clear();
                self.checkpoint(heads, state).await;
                state.healthy();
            }
            Err(e) => {
                state.failed(&e, "write", &self.metrics);
                self.spool_batch(held);
            }
        }
    }

    fn spool_batch(&self, held: &mut Held) {
        match self.spool.append(&held.batch) {
            Ok(()) => {
                self.metrics
                    .audit_records_spooled
                    .inc_by(held.batch.len() as u64);
                Arc::make_mut(&mut held.batch).clear();
            }
            Err(e) => {
                // Keep the batch: the next round tries the database and the spool again.
                self.metrics
                    .audit_write_failures
                    .with_label_values(&["spool"])
                    .inc();
                tracing::error!(error = %e, records = held.batch.len(), "audit spool failed; holding the batch in memory");
            }
        }
    }

    /// Replays the spool, oldest first, in batches; `true` once it is empty.
    async fn replay(&self, state: &mut State) -> bool {
        while self.spool.has_records() {
            if state.backing_off() {
                return false;
            }
            let mut rest = match self.spool.take() {
                Ok(r) => r,
                Err(e) => {
                    state.failed(&e, "replay", &self.metrics);
                    return false;
                }
            };
            let total = rest.len();
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(self.config.batch_size));
                let chunk = Arc::new(std::mem::replace(&mut rest, tail));
                let started = Instant::now();
                let written = self
                    .appender
                    .append(chunk.clone(), &self.signer, true)
                    .await;
                match written {
                    Ok(heads) => {
                        self.observe(chunk.len(), started);
                        self.metrics
                            .audit_records_replayed
                            .inc_by(chunk.len() as u64);
                        self.checkpoint(heads, state).await;
                    }
                    Err(e) => {
                        state.failed(&e, "replay", &self.metrics);
                        return false;
                    }
                }
            }
            if let Err(e) = self.spool.done() {
                state.failed(&e, "replay", &self.metrics);
                return false;
            }
            tracing::info!(records = total, "audit spool replayed into the database");
            state.healthy();
        }
        self.metrics.audit_spool_bytes.set(0);
        true
    }

    fn observe(&self, records: usize, started: Instant) {
        self.metrics.audit_batch_size.observe(records as f64);
        self.metrics
            .audit_batch_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.audit_records_written.inc_by(records as u64);
    }

    /// Signed checkpoints of chains not checkpointed for `audit.checkpoint_interval`.
    async fn checkpoint(&self, heads: Vec<Head>, state: &mut State) {
        let now = Instant::now();
        let due: Vec<Head> = heads
            .into_iter()
            .filter(|h| {
                state
                    .checkpointed
                    .get(&h.chain)
                    .is_none_or(|t| now.duration_since(*t) >= self.config.checkpoint_interval)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        match sink::checkpoint(&self.store, &due, &self.signer).await {
            Ok(()) => {
                for h in due {
                    state.checkpointed.insert(h.chain, now);
                }
            }
            // Not fatal: the next batch tries again.
            Err(e) => state.failed(&e, "checkpoint", &self.metrics),
        }
    }

    /// One retention pass.
    async fn purge(&self, state: &mut State) {
        let now = crate::store::now_millis();
        match sink::purge(&self.store, &self.config.retention, &self.signer, now).await {
            Ok(purged) => {
                if purged != sink::Purged::default() {
                    self.metrics
                        .audit_purged
                        .with_label_values(&["records"])
                        .inc_by(purged.records);
                    self.metrics
                        .audit_purged
                        .with_label_values(&["content"])
                        .inc_by(purged.contents);
                    tracing::info!(
                        records = purged.records,
                        contents = purged.contents,
                        "audit retention purge"
                    );
                }
            }
            Err(e) => state.failed(&e, "purge", &self.metrics),
        }
    }
}

/// The writer's view of the database's health, and when chains were last checkpointed.
struct State {
    retry_at: Option<Instant>,
    retry_interval: Duration,
    last_error_log: Option<Instant>,
    checkpointed: HashMap<String, Instant>,
}

impl State {
    fn backing_off(&self) -> bool {
        self.retry_at.is_some_and(|t| Instant::now() < t)
    }

    fn healthy(&mut self) {
        if self.retry_at.take().is_some() {
            tracing::info!("audit database reachable again");
        }
    }

    fn failed(&mut self, e: &AuditError, op: &'static str, metrics: &Metrics) {
        metrics.audit_write_failures.with_label_values(&[op]).inc();
        self.retry_at = Some(Instant::now() + self.retry_interval);
        // Once a minute at most: an outage must not flood the log.
        if self
            .last_error_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.last_error_log = Some(Instant::now());
            tracing::error!(op, error = %e, "audit database write failed; spooling records until it is back");
        }
    }
}

#[async_trait]
impl BackgroundService for AuditWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut state = State {
            retry_at: None,
            retry_interval: self.config.retry_interval,
            last_error_log: None,
            checkpointed: HashMap::new(),
        };
        let mut purge_at = Instant::now() + Duration::from_secs(5);
        let mut stopping = false;
        // Records spooled by an earlier run go in first.
        self.replay(&mut state).await;

        loop {
            // Wake on a timer, not per record: a wake-up for every record the request path
            // queues would cost it a context switch each. The queue holds what arrives meanwhile.
            tokio::select! {
                _ = tokio::time::sleep(self.config.flush_interval) => {}
                _ = shutdown.changed(), if !stopping => stopping = true,
            }
            // Drain the queue in batches of up to batch_size.
            let mut closed = false;
            let mut held = self.held.lock().await;
            loop {
                while held.batch.len() < self.config.batch_size {
                    match held.receiver.try_recv() {
                        Ok(r) => Arc::make_mut(&mut held.batch).push(r),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                let full = held.batch.len() >= self.config.batch_size;
                self.metrics
                    .audit_queue_depth
                    .set(held.receiver.len() as i64);
                if held.batch.is_empty() {
                    break;
                }
                self.write_or_spool(&mut held, &mut state).await;
                if !full || !held.batch.is_empty() {
                    break;
                }
            }
            if closed {
                break; // every sender is gone
            }
            let idle = held.batch.is_empty();
            drop(held);
            // Idle: replay what an outage spooled, once the database is back.
            if idle && self.spool.has_records() {
                self.metrics
                    .audit_spool_bytes
                    .set(self.spool.bytes() as i64);
                self.replay(&mut state).await;
            }
            if Instant::now() >= purge_at && !stopping {
                self.purge(&mut state).await;
                purge_at = Instant::now() + self.config.retention.purge_interval;
            }
        }
    }
}
