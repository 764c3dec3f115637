//! `portcullis audit verify`: walks each chain from its first retained record to its head.
//!
//! - every record's hash must match its fields and the hash before it (an UPDATE, a reorder
//!   or a forged row breaks this), and its content, when present, must match `content_hash`;
//! - seqs must follow each other (a DELETE in the middle leaves a gap);
//! - the first record links to the genesis hash, or — after retention purged the front — to a
//!   signed checkpoint at the seq before it;
//! - the signed head and every checkpoint must agree with the records (cutting off the end
//!   leaves the head or a checkpoint pointing past it), and their signatures must hold.

use super::chain::{self, Signer, GENESIS};
use super::sink::{self, Signed};
use super::AuditError;
use crate::store::Store;

const PAGE: u32 = 5_000;

/// One verified chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainReport {
    pub chain: String,
    /// Records present.
    pub records: u64,
    pub first_seq: Option<i64>,
    pub last_seq: i64,
    /// Records whose content was removed (retention, erasure).
    pub content_removed: u64,
    pub checkpoints: usize,
    /// Heads and checkpoints carry signatures that were checked.
    pub signed: bool,
}

/// Verifies one chain: its report, or the first broken link.
pub async fn chain(store: &Store, signer: &Signer, name: &str) -> Result<ChainReport, AuditError> {
    let broken = |seq: i64, id: Option<&str>, reason: String| AuditError::Broken {
        chain: name.to_string(),
        seq,
        id: id.map(str::to_string),
        reason,
    };
    let head = sink::signed_head(store, name)
        .await?
        .ok_or_else(|| broken(0, None, "the chain has no head".into()))?;
    check_signature(signer, &head, "the chain head").map_err(|r| broken(head.head.seq, None, r))?;
    let checkpoints = sink::checkpoints(store, name).await?;
    for cp in &checkpoints {
        check_signature(signer, cp, "checkpoint").map_err(|r| broken(cp.head.seq, None, r))?;
    }

    let mut report = ChainReport {
        chain: name.to_string(),
        records: 0,
        first_seq: None,
        last_seq: 0,
        content_removed: 0,
        checkpoints: checkpoints.len(),
        signed: signer.is_keyed(),
    };
    let mut prev: Option<(i64, String)> = None;
    let mut cursor = 0;
    loop {
        let page = sink::chain_page(store, name, cursor, PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        for r in &page {
            let id = Some(r.id.as_str());
            let expected_prev = match &prev {
                Some((seq, hash)) => {
                    if r.seq != seq + 1 {
                        return Err(broken(
                            seq + 1,
                            None,
                            format!(
                                "record(s) seq {}..{} are missing (deleted) after record seq {seq}",
                                seq + 1,
                                r.seq - 1
                            ),
                        ));
                    }
                    hash.clone()
                }
                None => {
                    start_anchor(r.seq, &checkpoints).map_err(|reason| broken(r.seq, id, reason))?
                }
            };
            if r.prev_hash != expected_prev {
                return Err(broken(
                    r.seq,
                    id,
                    "its link to the previous record does not match (a record was replaced, \
                     reordered or deleted)"
                        .into(),
                ));
            }
            if r.link().hash(&r.prev_hash) != r.hash {
                return Err(broken(
                    r.seq,
                    id,
                    "its hash does not match its contents (the record was modified or moved)"
                        .into(),
                ));
            }
            match (&r.content, &r.content_hash, &r.content_removed) {
                (Some(content), Some(hash), _) if chain::content_hash(content) != *hash => {
                    return Err(broken(r.seq, id, "its content was modified".into()));
                }
                (Some(_), None, _) => {
                    return Err(broken(
                        r.seq,
                        id,
                        "it has content the chain never covered".into(),
                    ));
                }
                (None, Some(_), None) => {
                    return Err(broken(
                        r.seq,
                        id,
                        "its content was removed without a recorded reason".into(),
                    ));
                }
                (None, Some(_), Some(_)) => report.content_removed += 1,
                _ => {}
            }
            report.records += 1;
            report.first_seq.get_or_insert(r.seq);
            prev = Some((r.seq, r.hash.clone()));
        }
    }

    // The end: the head, and every checkpoint, must name a record that is there.
    let (last_seq, last_hash) = match &prev {
        Some(p) => p.clone(),
        // Everything purged: the head must be the last checkpoint.
        None => match checkpoints.last() {
            Some(cp) => (cp.head.seq, cp.head.hash.clone()),
            None => (0, GENESIS.to_string()),
        },
    };
    report.last_seq = last_seq;
    if head.head.seq != last_seq || head.head.hash != last_hash {
        return Err(broken(
            head.head.seq,
            None,
            format!(
                "the chain ends at seq {last_seq} but its signed head is at seq {} \
                 (records were cut off the end, or the head was altered)",
                head.head.seq
            ),
        ));
    }
    let first = report.first_seq.unwrap_or(last_seq + 1);
    for cp in &checkpoints {
        if cp.head.seq > last_seq {
            return Err(broken(
                cp.head.seq,
                None,
                format!(
                    "a checkpoint names seq {} but the chain ends at seq {last_seq}",
                    cp.head.seq
                ),
            ));
        }
        if cp.head.seq >= first {
            let at = sink::chain_page(store, name, cp.head.seq - 1, 1).await?;
            if at
                .first()
                .is_none_or(|r| r.seq != cp.head.seq || r.hash != cp.head.hash)
            {
                return Err(broken(
                    cp.head.seq,
                    at.first().map(|r| r.id.as_str()),
                    "the record does not match the checkpoint taken of it".into(),
                ));
            }
        }
    }
    Ok(report)
}

/// What the first retained record must link to: the genesis hash, or a checkpoint just
/// before it (records before it were purged).
fn start_anchor(seq: i64, checkpoints: &[Signed]) -> Result<String, String> {
    if seq == 1 {
        return Ok(GENESIS.to_string());
    }
    checkpoints
        .iter()
        .find(|cp| cp.head.seq == seq - 1)
        .map(|cp| cp.head.hash.clone())
        .ok_or_else(|| {
            format!(
                "records before seq {seq} are missing and no checkpoint anchors the start \
                 (deleted outside retention)"
            )
        })
}

fn check_signature(signer: &Signer, signed: &Signed, what: &str) -> Result<(), String> {
    let h = &signed.head;
    match (&signed.mac, signer.is_keyed()) {
        (Some(mac), true) if signer.verify(&h.chain, h.seq, &h.hash, h.time, mac) => Ok(()),
        (Some(_), true) => Err(format!(
            "the signature of {what} at seq {} is invalid",
            h.seq
        )),
        (None, true) => Err(format!(
            "{what} at seq {} is unsigned although audit.signing_key is set",
            h.seq
        )),
        // Without the key nothing can be checked; the report says `signed: false`.
        (_, false) => Ok(()),
    }
}
