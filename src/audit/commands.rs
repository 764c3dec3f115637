//! `portcullis audit verify | export | search | erase`. Export and erasure are themselves
//! recorded as administrative events.

use std::io::Write;

use serde_json::{json, Value};

use super::sink::{self, Filter, StoredRecord};
use super::time::{format_rfc3339, parse_time};
use super::{verify, AuditError, AuditRecord, Kind, Signer};
use crate::config::Config;
use crate::store::Store;

const PAGE: u32 = 2_000;

/// Verifies every chain (of one tenant, or all). Prints one line per chain; returns the first
/// broken link as the error.
pub async fn verify(
    store: &Store,
    config: &Config,
    tenant: Option<&str>,
    json_out: bool,
    out: &mut dyn Write,
) -> Result<(), AuditError> {
    let signer = Signer::new(config.audit.signing_key.as_ref());
    let chains = sink::chains(store, tenant).await?;
    if chains.is_empty() {
        let msg = match tenant {
            Some(t) => format!("no audit records for tenant {t:?}"),
            None => "no audit records yet".to_string(),
        };
        write(
            out,
            if json_out {
                json!({"chains": [], "message": msg}).to_string()
            } else {
                msg
            },
        )?;
        return Ok(());
    }
    let mut first_broken = None;
    for head in chains {
        match verify::chain(store, &signer, &head.chain).await {
            Ok(report) => {
                let line = if json_out {
                    json!({"ok": true, "report": report}).to_string()
                } else {
                    format!(
                        "ok      {:<32} {} record(s), seq {}..{}, {} checkpoint(s){}{}",
                        report.chain,
                        report.records,
                        report.first_seq.unwrap_or(0),
                        report.last_seq,
                        report.checkpoints,
                        if report.content_removed > 0 {
                            format!(", {} with content removed", report.content_removed)
                        } else {
                            String::new()
                        },
                        if report.signed {
                            ", signatures valid"
                        } else {
                            ", UNSIGNED (no audit.signing_key)"
                        }
                    )
                };
                write(out, line)?;
            }
            Err(e @ AuditError::Broken { .. }) => {
                let line = if json_out {
                    json!({"ok": false, "chain": head.chain, "error": e.to_string()}).to_string()
                } else {
                    format!("BROKEN  {:<32} {e}", head.chain)
                };
                write(out, line)?;
                first_broken.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match first_broken {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Streams a tenant's records to `out` as JSON lines or CSV, page by page.
pub async fn export(
    store: &Store,
    config: &Config,
    tenant: &str,
    since: Option<&str>,
    until: Option<&str>,
    format: &str,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let now = crate::store::now_millis();
    let filter = Filter {
        tenant: Some(tenant.to_string()),
        since: since
            .map(|s| parse_time(s, now))
            .transpose()
            .map_err(bad("--since"))?,
        until: until
            .map(|s| parse_time(s, now))
            .transpose()
            .map_err(bad("--until"))?,
        ..Filter::default()
    };
    if format == "csv" {
        write(out, CSV_HEADER.to_string())?;
    }
    let count = each_page(store, &filter, u64::MAX, |r| {
        let line = if format == "csv" {
            csv_line(r)
        } else {
            json_line(r).to_string()
        };
        write(out, line)
    })
    .await?;
    record_event(
        store,
        config,
        tenant,
        "audit.exported",
        json!({"since": filter.since, "until": filter.until, "format": format, "records": count}),
    )
    .await?;
    Ok(count)
}

/// Matching records, oldest first, at most `limit`.
pub async fn search(
    store: &Store,
    filter: &Filter,
    limit: u32,
    json_out: bool,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    if !json_out {
        write(
            out,
            format!(
                "{:<24} {:<8} {:<22} {:<16} {:<16} {:<6} {}",
                "TIME", "KIND", "ACTION", "TENANT", "ACTOR", "STATUS", "ID"
            ),
        )?;
    }
    each_page(store, filter, u64::from(limit), |r| {
        let line = if json_out {
            json_line(r).to_string()
        } else {
            format!(
                "{:<24} {:<8} {:<22} {:<16} {:<16} {:<6} {}",
                format_rfc3339(r.time),
                r.kind,
                r.action,
                r.tenant,
                r.actor,
                r.status,
                r.id
            )
        };
        write(out, line)
    })
    .await
}

/// The filters of `audit search` and `audit export`, times parsed.
pub fn filter(
    tenant: Option<String>,
    since: Option<&str>,
    until: Option<&str>,
    actor: Option<String>,
    action: Option<String>,
    kind: Option<String>,
    status: Option<i32>,
) -> Result<Filter, AuditError> {
    let now = crate::store::now_millis();
    Ok(Filter {
        tenant,
        since: since
            .map(|s| parse_time(s, now))
            .transpose()
            .map_err(bad("--since"))?,
        until: until
            .map(|s| parse_time(s, now))
            .transpose()
            .map_err(bad("--until"))?,
        actor,
        action,
        kind,
        status,
    })
}

/// Removes the content of every record of a data subject; returns (records of the subject,
/// contents removed now).
pub async fn erase(
    store: &Store,
    config: &Config,
    subject: &str,
) -> Result<(i64, u64), AuditError> {
    let subject = subject.trim();
    if subject.is_empty() {
        return Err(AuditError::InvalidArgument(
            "--subject must not be empty".into(),
        ));
    }
    let signer = Signer::new(config.audit.signing_key.as_ref());
    let hashed = signer.subject(subject);
    let records = sink::count_subject(store, &hashed).await?;
    let erased = sink::erase_subject(store, &hashed).await?;
    record_event(
        store,
        config,
        "",
        "audit.erased",
        json!({"subject": hashed, "records": records, "contents_removed": erased}),
    )
    .await?;
    Ok((records, erased))
}

/// An administrative event written straight to the database (the CLI has no writer queue).
pub async fn record_event(
    store: &Store,
    config: &Config,
    tenant: &str,
    action: &str,
    detail: Value,
) -> Result<(), AuditError> {
    if !config.audit.enabled {
        return Ok(());
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let record = AuditRecord::event(Kind::Admin, tenant, action, &format!("cli:{user}"), detail)
        .map_err(|e| AuditError::InvalidArgument(e.to_string()))?;
    let signer = Signer::new(config.audit.signing_key.as_ref());
    sink::append(store, &[record], &signer, false).await?;
    Ok(())
}

async fn each_page(
    store: &Store,
    filter: &Filter,
    limit: u64,
    mut f: impl FnMut(&StoredRecord) -> Result<(), AuditError>,
) -> Result<u64, AuditError> {
    let mut after = None;
    let mut count = 0;
    while count < limit {
        let page_size = PAGE.min(u32::try_from(limit - count).unwrap_or(PAGE));
        let page = sink::search(store, filter, after.take(), page_size).await?;
        for r in &page {
            f(r)?;
            count += 1;
        }
        match page.last() {
            Some(last) if page.len() as u32 == page_size => {
                after = Some((last.time, last.id.clone()))
            }
            _ => break,
        }
    }
    Ok(count)
}

/// A record for export: detail and content as nested JSON, the time also in RFC 3339, and
/// the chain fields so a recipient can re-check the hashes.
fn json_line(r: &StoredRecord) -> Value {
    let nested = |text: &str| {
        serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()))
    };
    json!({
        "id": r.id, "time": r.time, "time_utc": format_rfc3339(r.time), "kind": r.kind,
        "tenant": r.tenant, "action": r.action, "actor": r.actor, "status": r.status,
        "subject": r.subject, "detail": nested(&r.detail),
        "content": r.content.as_deref().map(nested), "content_removed": r.content_removed,
        "chain": r.chain, "seq": r.seq, "content_hash": r.content_hash,
        "prev_hash": r.prev_hash, "hash": r.hash,
    })
}

const CSV_HEADER: &str = "id,time,time_utc,kind,tenant,action,actor,status,subject,detail,content,content_removed,chain,seq,content_hash,prev_hash,hash";

fn csv_line(r: &StoredRecord) -> String {
    let fields = [
        r.id.clone(),
        r.time.to_string(),
        format_rfc3339(r.time),
        r.kind.clone(),
        r.tenant.clone(),
        r.action.clone(),
        r.actor.clone(),
        r.status.to_string(),
        r.subject.clone().unwrap_or_default(),
        r.detail.clone(),
        r.content.clone().unwrap_or_default(),
        r.content_removed.clone().unwrap_or_default(),
        r.chain.clone(),
        r.seq.to_string(),
        r.content_hash.clone().unwrap_or_default(),
        r.prev_hash.clone(),
        r.hash.clone(),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 4180 quoting; a leading `=`, `+`, `-` or `@` is prefixed with `'` so a spreadsheet
/// does not run it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn write(out: &mut dyn Write, line: String) -> Result<(), AuditError> {
    writeln!(out, "{line}").map_err(AuditError::Output)
}

fn bad(flag: &'static str) -> impl Fn(String) -> AuditError {
    move |msg| AuditError::InvalidArgument(format!("{flag}: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}

/// Matching records as JSON (as `audit search --json` prints them), oldest first, at most
/// `limit`: for the admin API.
pub async fn records(store: &Store, filter: &Filter, limit: u64) -> Result<Vec<Value>, AuditError> {
    let mut out = Vec::new();
    each_page(store, filter, limit, |r| {
        out.push(json_line(r));
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Requests and token usage per tenant and key over the request records matching `filter`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Usage {
    pub tenant: String,
    pub key_id: String,
    /// The key's display prefix (or the JWT caller's id).
    pub actor: String,
    pub requests: u64,
    /// Answers with status 400 or more.
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// Sums the request records matching `filter` (its `kind` is forced to `request`), reading at
/// most `max_records`; the sums and whether that cap cut the scan short.
pub async fn usage(
    store: &Store,
    filter: &Filter,
    max_records: u64,
) -> Result<(Vec<Usage>, bool), AuditError> {
    let filter = Filter {
        kind: Some("request".into()),
        ..filter.clone()
    };
    let mut sums: std::collections::BTreeMap<(String, String), Usage> = Default::default();
    let scanned = each_page(store, &filter, max_records, |r| {
        let detail: Value = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
        let key_id = detail["key_id"].as_str().unwrap_or_default().to_string();
        let u = sums
            .entry((r.tenant.clone(), key_id.clone()))
            .or_insert_with(|| Usage {
                tenant: r.tenant.clone(),
                key_id,
                actor: r.actor.clone(),
                ..Usage::default()
            });
        u.requests += 1;
        u.errors += u64::from(r.status >= 400);
        let tokens = |name: &str| detail[name].as_u64().unwrap_or(0);
        u.prompt_tokens += tokens("prompt_tokens");
        u.completion_tokens += tokens("completion_tokens");
        u.total_tokens += tokens("total_tokens");
        Ok(())
    })
    .await?;
    Ok((sums.into_values().collect(), scanned >= max_records))
}
