//! The audit tables (migrations/*/0004_audit.sql and 0008_audit_keys.sql): appending batches
//! onto their chains, checkpoints, search, retention and erasure. One set of queries for
//! SQLite and Postgres, through the store's pool — but for appends, which each backend does in
//! its native form ([`Appender`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::chain::{self, Link, Signer};
use super::{AuditError, AuditRecord};
use crate::store::{Backend, Store};

/// A chain's last link after an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    pub time: i64,
}

const RECORD_COLUMNS: &str = "id, chain, seq, time, kind, tenant, action, actor, status, \
     subject, detail, content, content_hash, content_removed, prev_hash, hash";

/// Appends records, in order, to the end of their chains, in one transaction. Chain heads
/// are locked (Postgres) or the database is (SQLite), so gateways and CLI commands sharing a
/// database extend the same chains without forking them. With `dedupe`, records already
/// stored (same tenant, time and id) are skipped: replayed spool records may have been
/// written before. Returns the heads of the chains that grew.
///
/// For one-off appends (the CLI's events, tests); the writer keeps an [`Appender`].
pub async fn append(
    store: &Store,
    records: &[AuditRecord],
    signer: &Signer,
    dedupe: bool,
) -> Result<Vec<Head>, AuditError> {
    let appender = Appender::new(store);
    let appended = appender
        .append(Arc::new(records.to_vec()), signer, dedupe)
        .await;
    appender.close().await;
    appended
}

/// A write that takes longer than this is given up (and its records spooled): a database
/// that stopped answering must not hold the writer, and the queue behind it, for ever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The writer's connection of its own, kept between batches with its prepared statements.
/// Appends are the one hot query of the audit trail, so each backend gets its native form:
/// on SQLite one prepared INSERT stepped per record ([`super::sqlite`], rusqlite, on a
/// blocking thread); on Postgres one INSERT of whole columns as arrays ([`super::postgres`]).
/// Everything else reads through the store's shared pool.
pub struct Appender {
    target: Target,
}

enum Target {
    Sqlite {
        /// The database file, or why there is none (config validation refuses in-memory
        /// databases while the audit trail is on).
        path: Result<PathBuf, String>,
        /// Opened on first use; dropped after a failure, so the next batch starts afresh.
        connection: Arc<std::sync::Mutex<Option<rusqlite::Connection>>>,
        /// Stops the statement of a write that overran [`WRITE_TIMEOUT`].
        interrupt: Arc<std::sync::Mutex<Option<rusqlite::InterruptHandle>>>,
    },
    Postgres {
        url: String,
        connect_timeout: Duration,
        /// Opened on first use; dropped after a failure, so the next batch reconnects.
        connection: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
    },
}

impl Appender {
    pub fn new(store: &Store) -> Appender {
        let target = match store.backend() {
            Backend::Sqlite => Target::Sqlite {
                path: match store.sqlite_file() {
                    Ok(Some(path)) => Ok(path),
                    Ok(None) => Err("database.url is an in-memory SQLite database".to_string()),
                    Err(e) => Err(e.to_string()),
                },
                connection: Arc::new(std::sync::Mutex::new(None)),
                interrupt: Arc::new(std::sync::Mutex::new(None)),
            },
            Backend::Postgres => Target::Postgres {
                url: store.url().to_string(),
                connect_timeout: store.connect_timeout(),
                connection: tokio::sync::Mutex::new(None),
            },
        };
        Appender { target }
    }

    /// [`append`], for the writer. The records are shared with the blocking thread that
    /// writes them to SQLite, so the writer still holds them if that write never finishes.
    pub async fn append(
        &self,
        records: Arc<Vec<AuditRecord>>,
        signer: &Signer,
        dedupe: bool,
    ) -> Result<Vec<Head>, AuditError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        match &self.target {
            Target::Sqlite {
                path,
                connection,
                interrupt,
            } => {
                let path = path.clone().map_err(AuditError::Unavailable)?;
                let (connection, handle) = (connection.clone(), interrupt.clone());
                let signer = signer.clone();
                let write = tokio::task::spawn_blocking(move || {
                    let mut guard = lock(&connection);
                    let conn = match guard.as_mut() {
                        Some(conn) => conn,
                        None => {
                            let conn = super::sqlite::open(&path)?;
                            *lock(&handle) = Some(conn.get_interrupt_handle());
                            guard.insert(conn)
                        }
                    };
                    let appended = super::sqlite::append(conn, &records, &signer, dedupe);
                    if appended.is_err() {
                        *guard = None;
                    }
                    appended
                });
                match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                    Ok(joined) => joined.map_err(|e| {
                        AuditError::Unavailable(format!("audit write task failed: {e}"))
                    })?,
                    Err(_) => {
                        // Its transaction rolls back; the records go to the spool.
                        if let Some(handle) = lock(interrupt).as_ref() {
                            handle.interrupt();
                        }
                        Err(timed_out())
                    }
                }
            }
            Target::Postgres {
                url,
                connect_timeout,
                connection,
            } => {
                let mut guard = connection.lock().await;
                let conn = match guard.as_mut() {
                    Some(conn) => conn,
                    None => guard.insert(super::postgres::connect(url, *connect_timeout).await?),
                };
                let appended = tokio::time::timeout(
                    WRITE_TIMEOUT,
                    super::postgres::append(conn, &records, signer, dedupe),
                )
                .await
                .unwrap_or_else(|_| Err(timed_out()));
                if appended.is_err() {
                    *guard = None;
                }
                appended
            }
        }
    }

    /// Ends the Postgres session politely (the server logs an abrupt end); SQLite needs
    /// nothing.
    pub async fn close(&self) {
        if let Target::Postgres { connection, .. } = &self.target {
            if let Some(conn) = connection.lock().await.take() {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn timed_out() -> AuditError {
    AuditError::Unavailable(format!(
        "no answer from the database within {} s",
        WRITE_TIMEOUT.as_secs()
    ))
}

/// Records that are not stored yet, each once.
pub(super) fn fresh<'a>(
    records: &'a [AuditRecord],
    stored: &HashSet<String>,
) -> Vec<&'a AuditRecord> {
    let mut seen = HashSet::new();
    records
        .iter()
        .filter(|r| !stored.contains(&r.id) && seen.insert(r.id.as_str()))
        .collect()
}

/// The chains these records go on, in name order: heads are locked in that order, so two
/// writers never deadlock.
pub(super) fn chain_names<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Vec<String> {
    records
        .into_iter()
        .map(|r| r.chain())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Links every record to the one before it on its chain, moving the chain heads along.
/// Every record's chain must be among `heads`.
pub(super) fn link<'a>(
    records: Vec<&'a AuditRecord>,
    heads: &mut BTreeMap<String, Head>,
) -> Result<Vec<PendingRow<'a>>, AuditError> {
    let mut rows = Vec::with_capacity(records.len());
    for r in records {
        let chain = r.chain();
        let head = heads
            .get_mut(&chain)
            .ok_or_else(|| AuditError::InvalidArgument(format!("chain {chain} not locked")))?;
        let seq = head.seq + 1;
        let content_hash = r.content.as_deref().map(chain::content_hash);
        let hash = Link {
            id: &r.id,
            chain: &chain,
            seq,
            time: r.time,
            kind: r.kind.name(),
            tenant: &r.tenant,
            action: &r.action,
            actor: &r.actor,
            status: i32::from(r.status),
            subject: r.subject.as_deref(),
            detail: &r.detail,
            content_hash: content_hash.as_deref(),
        }
        .hash(&head.hash);
        rows.push(PendingRow {
            record: r,
            chain,
            seq,
            content_hash,
            prev_hash: std::mem::replace(&mut head.hash, hash.clone()),
            hash,
        });
        head.seq = seq;
        head.time = head.time.max(r.time);
    }
    Ok(rows)
}

/// Keeps only the heads that `rows` moved along: the ones to update and checkpoint.
pub(super) fn keep_grown(heads: &mut BTreeMap<String, Head>, rows: &[PendingRow<'_>]) {
    let grown: HashSet<&str> = rows.iter().map(|r| r.chain.as_str()).collect();
    heads.retain(|chain, _| grown.contains(chain.as_str()));
}

/// One record linked into its chain, ready to insert.
pub(super) struct PendingRow<'a> {
    pub record: &'a AuditRecord,
    pub chain: String,
    pub seq: i64,
    pub content_hash: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

fn head_from_row(row: &AnyRow) -> Result<Head, AuditError> {
    Ok(Head {
        chain: row.try_get("chain")?,
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        time: row.try_get("time")?,
    })
}

const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (chain, seq, hash, time, mac) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chain, seq) DO NOTHING";

/// Records signed snapshots of these heads; they outlive purges of the records they name.
pub async fn checkpoint(store: &Store, heads: &[Head], signer: &Signer) -> Result<(), AuditError> {
    let pool = store.pool().await?;
    for h in heads {
        sqlx::query(INSERT_CHECKPOINT)
            .bind(&h.chain)
            .bind(h.seq)
            .bind(&h.hash)
            .bind(h.time)
            .bind(signer.sign(&h.chain, h.seq, &h.hash, h.time))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// A record as stored, with its place in its chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredRecord {
    pub id: String,
    pub chain: String,
    pub seq: i64,
    pub time: i64,
    pub kind: String,
    pub tenant: String,
    pub action: String,
    pub actor: String,
    pub status: i32,
    pub subject: Option<String>,
    pub detail: String,
    pub content: Option<String>,
    pub content_hash: Option<String>,
    /// `retention` or `erasure` once the content was removed.
    pub content_removed: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredRecord {
    pub fn link(&self) -> Link<'_> {
        Link {
            id: &self.id,
            chain: &self.chain,
            seq: self.seq,
            time: self.time,
            kind: &self.kind,
            tenant: &self.tenant,
            action: &self.action,
            actor: &self.actor,
            status: self.status,
            subject: self.subject.as_deref(),
            detail: &self.detail,
            content_hash: self.content_hash.as_deref(),
        }
    }
}

fn record_from_row(row: &AnyRow) -> Result<StoredRecord, AuditError> {
    Ok(StoredRecord {
        id: row.try_get("id")?,
        chain: row.try_get("chain")?,
        seq: row.try_get("seq")?,
        time: row.try_get("time")?,
        kind: row.try_get("kind")?,
        tenant: row.try_get("tenant")?,
        action: row.try_get("action")?,
        actor: row.try_get("actor")?,
        status: row.try_get("status")?,
        subject: row.try_get("subject")?,
        detail: row.try_get("detail")?,
        content: row.try_get("content")?,
        content_hash: row.try_get("content_hash")?,
        content_removed: row.try_get("content_removed")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Filters of `audit search` and `audit export`; every one optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tenant: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub kind: Option<String>,
    pub status: Option<i32>,
}

/// One page of matching records in (time, id) order, after the record `after`.
pub async fn search(
    store: &Store,
    filter: &Filter,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<StoredRecord>, AuditError> {
    let mut conditions: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if filter.tenant.is_some() {
        conditions.push(format!("tenant = {}", next()));
    }
    if filter.since.is_some() {
        conditions.push(format!("time >= {}", next()));
    }
    if filter.until.is_some() {
        conditions.push(format!("time < {}", next()));
    }
    if filter.actor.is_some() {
        conditions.push(format!("actor = {}", next()));
    }
    if filter.action.is_some() {
        conditions.push(format!("action = {}", next()));
    }
    if filter.kind.is_some() {
        conditions.push(format!("kind = {}", next()));
    }
    if filter.status.is_some() {
        conditions.push(format!("status = {}", next()));
    }
    if after.is_some() {
        let (t1, t2, id) = (next(), next(), next());
        conditions.push(format!("(time > {t1} OR (time = {t2} AND id > {id}))"));
    }
    let limit_param = next();
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM audit_records {filter_sql} ORDER BY time, id LIMIT {limit_param}"
    );
    let mut q = sqlx::query(&sql);
    if let Some(v) = &filter.tenant {
        q = q.bind(v);
    }
    if let Some(v) = filter.since {
        q = q.bind(v);
    }
    if let Some(v) = filter.until {
        q = q.bind(v);
    }
    if let Some(v) = &filter.actor {
        q = q.bind(v);
    }
    if let Some(v) = &filter.action {
        q = q.bind(v);
    }
    if let Some(v) = &filter.kind {
        q = q.bind(v);
    }
    if let Some(v) = filter.status {
        q = q.bind(v);
    }
    if let Some((time, id)) = after {
        q = q.bind(time).bind(time).bind(id);
    }
    q = q.bind(i64::from(limit));
    let rows = q.fetch_all(store.pool().await?).await?;
    rows.iter().map(record_from_row).collect()
}

/// Chains, optionally only those of one tenant (`*` for events of no tenant).
pub async fn chains(store: &Store, tenant: Option<&str>) -> Result<Vec<Head>, AuditError> {
    let pool = store.pool().await?;
    let rows = match tenant {
        Some(t) => {
            sqlx::query(
                "SELECT chain, seq, hash, time FROM audit_chain_heads \
                 WHERE chain = $1 OR chain = $2 ORDER BY chain",
            )
            .bind(format!("{t}:requests"))
            .bind(format!("{t}:events"))
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query("SELECT chain, seq, hash, time FROM audit_chain_heads ORDER BY chain")
                .fetch_all(pool)
                .await?
        }
    };
    rows.iter().map(head_from_row).collect()
}

/// A chain head or checkpoint with its signature.
#[derive(Debug, Clone)]
pub struct Signed {
    pub head: Head,
    pub mac: Option<String>,
}

pub async fn signed_head(store: &Store, chain: &str) -> Result<Option<Signed>, AuditError> {
    let row =
        sqlx::query("SELECT chain, seq, hash, time, mac FROM audit_chain_heads WHERE chain = $1")
            .bind(chain)
            .fetch_optional(store.pool().await?)
            .await?;
    row.map(|r| {
        Ok(Signed {
            head: head_from_row(&r)?,
            mac: r.try_get("mac")?,
        })
    })
    .transpose()
}

pub async fn checkpoints(store: &Store, chain: &str) -> Result<Vec<Signed>, AuditError> {
    let rows = sqlx::query(
        "SELECT chain, seq, hash, time, mac FROM audit_checkpoints WHERE chain = $1 ORDER BY seq",
    )
    .bind(chain)
    .fetch_all(store.pool().await?)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Signed {
                head: head_from_row(r)?,
                mac: r.try_get("mac")?,
            })
        })
        .collect()
}

/// Records of a chain after `after_seq`, in chain order.
pub async fn chain_page(
    store: &Store,
    chain: &str,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<StoredRecord>, AuditError> {
    let rows = sqlx::query(&format!(
        "SELECT {RECORD_COLUMNS} FROM audit_records WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(chain)
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(store.pool().await?)
    .await?;
    rows.iter().map(record_from_row).collect()
}

/// Removes the content of every record of a data subject. The chain covers content through
/// its hash, so it still verifies; the record says why its content is gone.
pub async fn erase_subject(store: &Store, subject_hash: &str) -> Result<u64, AuditError> {
    let done = sqlx::query(
        "UPDATE audit_records SET content = NULL, content_removed = 'erasure' \
         WHERE subject = $1 AND content IS NOT NULL",
    )
    .bind(subject_hash)
    .execute(store.pool().await?)
    .await?;
    Ok(done.rows_affected())
}

/// Records of a data subject.
pub async fn count_subject(store: &Store, subject_hash: &str) -> Result<i64, AuditError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_records WHERE subject = $1")
        .bind(subject_hash)
        .fetch_one(store.pool().await?)
        .await?;
    Ok(row.try_get("n")?)
}

/// What one purge pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub records: u64,
    pub contents: u64,
}

/// One retention pass at time `now`: removes content older than `retention.content`, then
/// deletes records older than their kind's period from the front of each chain — all in
/// batches of `retention.purge_batch`, so no statement holds locks for long.
pub async fn purge(
    store: &Store,
    retention: &crate::config::Retention,
    signer: &Signer,
    now: i64,
) -> Result<Purged, AuditError> {
    let cutoff = |keep: std::time::Duration| now - keep.as_millis() as i64;
    let batch = retention.purge_batch;
    let mut purged = Purged::default();
    if let Some(keep) = retention.content {
        loop {
            let n = purge_content(store, cutoff(keep), batch).await?;
            purged.contents += n;
            if n < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    for head in chains(store, None).await? {
        let keep = if head.chain.ends_with(":requests") {
            retention.requests
        } else {
            retention.events
        };
        let Some(keep) = keep else { continue };
        loop {
            let n = purge_chain_front(store, &head.chain, cutoff(keep), batch, signer).await?;
            purged.records += n;
            if n < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(purged)
}

/// Removes the content of at most `batch` records older than `cutoff`.
pub async fn purge_content(store: &Store, cutoff: i64, batch: u64) -> Result<u64, AuditError> {
    let done = sqlx::query(
        "UPDATE audit_records SET content = NULL, content_removed = 'retention' \
         WHERE (chain, seq) IN (SELECT chain, seq FROM audit_records \
         WHERE content IS NOT NULL AND time < $1 LIMIT $2)",
    )
    .bind(cutoff)
    .bind(batch as i64)
    .execute(store.pool().await?)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes at most `batch` records from the front of `chain` while they are older than
/// `cutoff`, after recording a signed checkpoint at the last one deleted: the first record
/// kept links to it, so what remains still verifies. Returns how many were deleted.
pub async fn purge_chain_front(
    store: &Store,
    chain: &str,
    cutoff: i64,
    batch: u64,
    signer: &Signer,
) -> Result<u64, AuditError> {
    let pool = store.pool().await?;
    let rows = sqlx::query(
        "SELECT seq, time, hash FROM audit_records WHERE chain = $1 ORDER BY seq LIMIT $2",
    )
    .bind(chain)
    .bind(batch as i64)
    .fetch_all(pool)
    .await?;
    // The front of the chain, up to the first record young enough to keep.
    let mut last: Option<(i64, String)> = None;
    for row in &rows {
        let time: i64 = row.try_get("time")?;
        if time >= cutoff {
            break;
        }
        last = Some((row.try_get("seq")?, row.try_get("hash")?));
    }
    let Some((seq, hash)) = last else {
        return Ok(0);
    };
    let now = crate::store::now_millis();
    let mut tx = pool.begin().await?;
    sqlx::query(INSERT_CHECKPOINT)
        .bind(chain)
        .bind(seq)
        .bind(&hash)
        .bind(now)
        .bind(signer.sign(chain, seq, &hash, now))
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM audit_records WHERE chain = $1 AND seq <= $2")
        .bind(chain)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
