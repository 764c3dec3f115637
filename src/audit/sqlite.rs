//! The writer's appends on SQLite, on a connection of its own (rusqlite): one prepared INSERT
//! stepped once per record inside the batch's transaction. sqlx's driver would copy every
//! argument, ship the statement to a worker thread and free the copies there — per record
//! that cost more than SQLite's own insert, on the core that also serves requests.
//!
//! Same tables, same chain rules and same transaction shape as the Postgres path in
//! [`super::sink`]: `BEGIN IMMEDIATE` takes the database's write lock up front, so the CLI and
//! other gateways on the same file extend the chains one at a time.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

use super::chain::{Signer, GENESIS};
use super::sink::{self, Head};
use super::{AuditError, AuditRecord};

/// As long as sqlx's connections wait for the lock, so both sides behave alike.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One record a step. Multi-row INSERTs were tried: no faster with one tenant, and 40% more
/// CPU a record with 50 tenants (`cargo bench --bench audit_writer`).
const INSERT_RECORD: &str = "INSERT INTO audit_records (id, chain, seq, time, kind, tenant, \
     action, actor, status, subject, detail, content, content_hash, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

/// Opens the database the migrations created (never creates one).
pub(super) fn open(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// [`sink::append`] on SQLite.
pub(super) fn append(
    conn: &mut Connection,
    records: &[AuditRecord],
    signer: &Signer,
    dedupe: bool,
) -> Result<Vec<Head>, AuditError> {
    // The database's write lock first: the duplicate check sees every committed write.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let fresh = if dedupe {
        let mut stored = HashSet::new();
        // Looked up by tenant and time: the index search uses.
        let mut known = tx.prepare_cached(
            "SELECT 1 FROM audit_records WHERE tenant = ?1 AND time = ?2 AND id = ?3",
        )?;
        for r in records {
            if known.exists(params![r.tenant, r.time, r.id])? {
                stored.insert(r.id.clone());
            }
        }
        sink::fresh(records, &stored)
    } else {
        records.iter().collect()
    };
    if fresh.is_empty() {
        tx.commit()?;
        return Ok(Vec::new());
    }

    let mut heads = BTreeMap::new();
    {
        let mut create = tx.prepare_cached(
            "INSERT INTO audit_chain_heads (chain, seq, hash, time, mac) \
             VALUES (?1, 0, ?2, 0, NULL) ON CONFLICT (chain) DO NOTHING",
        )?;
        let mut read =
            tx.prepare_cached("SELECT seq, hash, time FROM audit_chain_heads WHERE chain = ?1")?;
        for chain in sink::chain_names(fresh.iter().copied()) {
            create.execute(params![chain, GENESIS])?;
            let head = read.query_row([&chain], |row| {
                Ok(Head {
                    chain: chain.clone(),
                    seq: row.get(0)?,
                    hash: row.get(1)?,
                    time: row.get(2)?,
                })
            })?;
            heads.insert(chain, head);
        }
    }

    let rows = sink::link(fresh, &mut heads)?;
    sink::keep_grown(&mut heads, &rows);
    {
        let mut insert = tx.prepare_cached(INSERT_RECORD)?;
        for row in &rows {
            let r = row.record;
            insert.execute(params![
                r.id,
                row.chain,
                row.seq,
                r.time,
                r.kind.name(),
                r.tenant,
                r.action,
                r.actor,
                i32::from(r.status),
                r.subject,
                r.detail,
                r.content,
                row.content_hash,
                row.prev_hash,
                row.hash,
            ])?;
        }
    }

    let now = crate::store::now_millis();
    {
        let mut update = tx.prepare_cached(
            "UPDATE audit_chain_heads SET seq = ?1, hash = ?2, time = ?3, mac = ?4 WHERE chain = ?5",
        )?;
        for head in heads.values_mut() {
            head.time = now;
            let mac = signer.sign(&head.chain, head.seq, &head.hash, head.time);
            update.execute(params![head.seq, head.hash, head.time, mac, head.chain])?;
        }
    }
    tx.commit()?;
    Ok(heads.into_values().collect())
}
