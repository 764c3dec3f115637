//! The writer's appends on Postgres, on a connection of its own: each batch is one INSERT of
//! whole columns bound as arrays (`UNNEST`), the same statement whatever the batch's size —
//! prepared once, 15 parameters instead of 15 per record, and no limit of 65,535 parameters
//! to split batches around. Chain heads are created and locked (`FOR UPDATE`, in name order)
//! the same way, so gateways and CLI commands sharing the database extend chains one at a
//! time.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};

use super::chain::{Signer, GENESIS};
use super::sink::{self, Head};
use super::{AuditError, AuditRecord};

pub(super) async fn connect(url: &str, timeout: Duration) -> Result<PgConnection, AuditError> {
    let options = PgConnectOptions::from_str(url)?;
    match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
        Ok(connected) => Ok(connected?),
        Err(_) => Err(AuditError::Unavailable(format!(
            "no connection within {} ms",
            timeout.as_millis()
        ))),
    }
}

const INSERT_RECORDS: &str = "INSERT INTO audit_records (id, chain, seq, time, kind, tenant, \
     action, actor, status, subject, detail, content, content_hash, prev_hash, hash) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::int4[], $10::text[], $11::text[], $12::text[], \
     $13::text[], $14::text[], $15::text[])";

/// [`sink::append`] on Postgres.
pub(super) async fn append(
    conn: &mut PgConnection,
    records: &[AuditRecord],
    signer: &Signer,
    dedupe: bool,
) -> Result<Vec<Head>, AuditError> {
    let mut tx = conn.begin().await?;
    // Heads first: once they are locked, a concurrent writer of the same records (another
    // gateway replaying the same spool) has committed or waits, so the duplicate check below
    // sees what it wrote.
    let chains = sink::chain_names(records);
    sqlx::query(
        "INSERT INTO audit_chain_heads (chain, seq, hash, time, mac) \
         SELECT chain, 0, $2, 0, NULL FROM UNNEST($1::text[]) AS c(chain) \
         ON CONFLICT (chain) DO NOTHING",
    )
    .bind(&chains)
    .bind(GENESIS)
    .execute(&mut *tx)
    .await?;
    let mut heads = BTreeMap::new();
    let locked = sqlx::query(
        "SELECT chain, seq, hash, time FROM audit_chain_heads WHERE chain = ANY($1) \
         ORDER BY chain FOR UPDATE",
    )
    .bind(&chains)
    .fetch_all(&mut *tx)
    .await?;
    for row in locked {
        let head = Head {
            chain: row.try_get("chain")?,
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
            time: row.try_get("time")?,
        };
        heads.insert(head.chain.clone(), head);
    }

    let fresh = if dedupe {
        // Looked up by tenant and time: the index search uses.
        let stored: HashSet<String> = sqlx::query(
            "SELECT r.id FROM audit_records r \
             JOIN UNNEST($1::text[], $2::int8[], $3::text[]) AS k(tenant, time, id) \
             ON r.tenant = k.tenant AND r.time = k.time AND r.id = k.id",
        )
        .bind(
            records
                .iter()
                .map(|r| r.tenant.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(records.iter().map(|r| r.time).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()?;
        sink::fresh(records, &stored)
    } else {
        records.iter().collect()
    };
    if fresh.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }

    let rows = sink::link(fresh, &mut heads)?;
    sink::keep_grown(&mut heads, &rows);
    sqlx::query(INSERT_RECORDS)
        .bind(texts(&rows, |r| &r.record.id))
        .bind(texts(&rows, |r| &r.chain))
        .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.record.time).collect::<Vec<_>>())
        .bind(texts(&rows, |r| r.record.kind.name()))
        .bind(texts(&rows, |r| &r.record.tenant))
        .bind(texts(&rows, |r| &r.record.action))
        .bind(texts(&rows, |r| &r.record.actor))
        .bind(
            rows.iter()
                .map(|r| i32::from(r.record.status))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.record.subject.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(texts(&rows, |r| &r.record.detail))
        .bind(
            rows.iter()
                .map(|r| r.record.content.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.content_hash.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(texts(&rows, |r| &r.prev_hash))
        .bind(texts(&rows, |r| &r.hash))
        .execute(&mut *tx)
        .await?;

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

/// One text column of the rows, for binding as an array.
fn texts<'r, 'a: 'r>(
    rows: &'r [sink::PendingRow<'a>],
    field: impl Fn(&'r sink::PendingRow<'a>) -> &'r str,
) -> Vec<&'r str> {
    rows.iter().map(field).collect()
}
