//! The audit tables (migrations/*/0004_audit.sql): appending batches onto their chains,
//! checkpoints, search, retention and erasure. One set of queries for SQLite and Postgres.

use std::collections::{BTreeMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::chain::{self, Link, Signer, GENESIS};
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

/// Postgres takes at most 65,535 parameters per statement; 15 per row.
const ROWS_PER_INSERT: usize = 2_000;

const RECORD_COLUMNS: &str = "id, chain, seq, time, kind, tenant, action, actor, status, \
     subject, detail, content, content_hash, content_removed, prev_hash, hash";

/// Appends records, in order, to the end of their chains, in one transaction. Chain heads
/// are locked (Postgres) or the database is (SQLite), so gateways and CLI commands sharing a
/// database extend the same chains without forking them. With `dedupe`, records whose id is
/// already stored are skipped: replayed spool records may have been written before.
pub async fn append(
    store: &Store,
    records: &[AuditRecord],
    signer: &Signer,
    dedupe: bool,
) -> Result<Vec<Head>, AuditError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let pool = store.pool().await?;
    let mut tx = match store.backend() {
        // Take the write lock up front: a deferred transaction that reads first can fail to
        // upgrade when another connection writes in between.
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };

    let fresh: Vec<&AuditRecord> = if dedupe {
        let stored = stored_ids(&mut tx, records).await?;
        let mut seen = HashSet::new();
        records
            .iter()
            .filter(|r| !stored.contains(&r.id) && seen.insert(r.id.as_str()))
            .collect()
    } else {
        records.iter().collect()
    };
    if fresh.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }

    let named: Vec<(String, &AuditRecord)> = fresh.into_iter().map(|r| (r.chain(), r)).collect();
    let chains: Vec<String> = named
        .iter()
        .map(|(c, _)| c.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut heads = lock_heads(&mut tx, store.backend(), &chains).await?;

    // Link every record to the one before it on its chain.
    let mut rows = Vec::with_capacity(named.len());
    for (chain, r) in named {
        let head = heads
            .get_mut(&chain)
            .ok_or_else(|| AuditError::InvalidArgument(format!("chain {chain} not locked")))?;
        let seq = head.seq + 1;
        let content_hash = r.content.as_deref().map(chain::content_hash);
        let kind = r.kind.name();
        let status = i32::from(r.status);
        let hash = Link {
            id: &r.id,
            chain: &chain,
            seq,
            time: r.time,
            kind,
            tenant: &r.tenant,
            action: &r.action,
            actor: &r.actor,
            status,
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

    // SQLite gets anonymous `?` parameters: it looks numbered ones up by name while
    // compiling, which grows with the square of their count. Its limit is 32,766 per statement.
    let per_insert = match store.backend() {
        Backend::Postgres => ROWS_PER_INSERT,
        Backend::Sqlite => 500,
    };
    for chunk in rows.chunks(per_insert) {
        insert_rows(&mut tx, store.backend(), chunk).await?;
    }
    let now = crate::store::now_millis();
    for head in heads.values_mut() {
        head.time = now;
        sqlx::query(
            "UPDATE audit_chain_heads SET seq = $1, hash = $2, time = $3, mac = $4 WHERE chain = $5",
        )
        .bind(head.seq)
        .bind(&head.hash)
        .bind(head.time)
        .bind(signer.sign(&head.chain, head.seq, &head.hash, head.time))
        .bind(&head.chain)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(heads.into_values().collect())
}

/// One row ready to insert.
struct PendingRow<'a> {
    record: &'a AuditRecord,
    chain: String,
    seq: i64,
    content_hash: Option<String>,
    prev_hash: String,
    hash: String,
}

async fn insert_rows(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    rows: &[PendingRow<'_>],
) -> Result<(), AuditError> {
    let mut sql = String::with_capacity(100 + rows.len() * 64);
    sql.push_str(
        "INSERT INTO audit_records (id, chain, seq, time, kind, tenant, action, actor, status, \
         subject, detail, content, content_hash, prev_hash, hash) VALUES ",
    );
    // `content_removed` is always NULL on insert: not listed.
    let mut n = 0;
    for (i, _) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..15 {
            if c > 0 {
                sql.push(',');
            }
            n += 1;
            match backend {
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
                Backend::Sqlite => sql.push('?'),
            }
        }
        sql.push(')');
    }
    let mut q = sqlx::query(&sql);
    for row in rows {
        let r = row.record;
        // Borrowed `&str`s: an owned `String` would be copied once more on the way in.
        q = q
            .bind(r.id.as_str())
            .bind(row.chain.as_str())
            .bind(row.seq)
            .bind(r.time)
            .bind(r.kind.name())
            .bind(r.tenant.as_str())
            .bind(r.action.as_str())
            .bind(r.actor.as_str())
            .bind(i32::from(r.status))
            .bind(r.subject.as_deref())
            .bind(r.detail.as_str())
            .bind(r.content.as_deref())
            .bind(row.content_hash.as_deref())
            .bind(row.prev_hash.as_str())
            .bind(row.hash.as_str());
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// Ids among `records` that are already stored.
async fn stored_ids(
    tx: &mut Transaction<'_, Any>,
    records: &[AuditRecord],
) -> Result<HashSet<String>, AuditError> {
    let mut stored = HashSet::new();
    for chunk in records.chunks(ROWS_PER_INSERT) {
        let list = placeholders(1, chunk.len());
        let sql = format!("SELECT id FROM audit_records WHERE id IN ({list})");
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q.bind(&r.id);
        }
        for row in q.fetch_all(&mut **tx).await? {
            stored.insert(row.try_get::<String, _>("id")?);
        }
    }
    Ok(stored)
}

/// Creates missing chain heads and locks them all, in name order (no deadlocks between
/// writers).
async fn lock_heads(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    chains: &[String],
) -> Result<BTreeMap<String, Head>, AuditError> {
    let mut values = String::new();
    for i in 0..chains.len() {
        if i > 0 {
            values.push(',');
        }
        values.push_str(&format!("(${}, 0, '{GENESIS}', 0, NULL)", i + 1));
    }
    let sql = format!(
        "INSERT INTO audit_chain_heads (chain, seq, hash, time, mac) VALUES {values} \
         ON CONFLICT (chain) DO NOTHING"
    );
    let mut q = sqlx::query(&sql);
    for c in chains {
        q = q.bind(c);
    }
    q.execute(&mut **tx).await?;

    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT chain, seq, hash, time FROM audit_chain_heads WHERE chain IN ({}) ORDER BY chain{lock}",
        placeholders(1, chains.len())
    );
    let mut q = sqlx::query(&sql);
    for c in chains {
        q = q.bind(c);
    }
    let mut heads = BTreeMap::new();
    for row in q.fetch_all(&mut **tx).await? {
        let head = head_from_row(&row)?;
        heads.insert(head.chain.clone(), head);
    }
    Ok(heads)
}

fn head_from_row(row: &AnyRow) -> Result<Head, AuditError> {
    Ok(Head {
        chain: row.try_get("chain")?,
        seq: row.try_get("seq")?,
        hash: row.try_get("hash")?,
        time: row.try_get("time")?,
    })
}

/// `$from, $from+1, …` (`count` of them).
fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
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
        "UPDATE audit_records SET content = NULL, content_removed = 'retention' WHERE id IN \
         (SELECT id FROM audit_records WHERE content IS NOT NULL AND time < $1 LIMIT $2)",
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
