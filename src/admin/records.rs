//! Reading the audit trail through the admin API: the records themselves
//! (`GET /admin/v1/audit/records`) and requests and tokens summed per key
//! (`GET /admin/v1/usage`). Both are scoped like everything else: a tenant-scoped user reads
//! their tenant's records only, a developer the usage of their own keys only.

use std::collections::HashSet;

use serde_json::json;

use super::api::{AdminApi, Reply, Request};
use super::error::AdminError;
use super::session::Caller;
use crate::audit::commands;
use crate::audit::sink::Filter;
use crate::auth::Role;
use crate::store::now_millis;

/// Records one `GET /audit/records` answers at most.
const MAX_RECORDS: u64 = 1_000;
/// Request records one usage query reads at most (it says when it stopped there).
const MAX_USAGE_RECORDS: u64 = 1_000_000;

/// The filter of the query string, narrowed to what the caller may read.
fn filter(req: &Request, caller: &Caller) -> Result<Filter, AdminError> {
    let tenant = match (&caller.user.tenant, req.query("tenant")) {
        (Some(scope), Some(t)) if t != scope => {
            return Err(AdminError::Forbidden(format!(
                "You may not read tenant {t}'s records."
            )))
        }
        (Some(scope), _) => Some(scope.clone()),
        (None, t) => t.map(str::to_string),
    };
    let now = now_millis();
    let time = |name: &str| -> Result<Option<i64>, AdminError> {
        req.query(name)
            .map(|v| {
                crate::audit::time::parse_time(v, now)
                    .map_err(|e| AdminError::bad_request(format!("{name}: {e}")))
            })
            .transpose()
    };
    let status = req
        .query("status")
        .map(|s| {
            s.parse::<i32>()
                .map_err(|_| AdminError::bad_request(format!("status: {s:?} is not a number")))
        })
        .transpose()?;
    Ok(Filter {
        tenant,
        since: time("since")?,
        until: time("until")?,
        actor: req.query("actor").map(str::to_string),
        action: req.query("action").map(str::to_string),
        kind: req.query("kind").map(str::to_string),
        status,
    })
}

pub async fn audit_records(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
) -> Result<Reply, AdminError> {
    let filter = filter(req, caller)?;
    let limit = match req.query("limit") {
        Some(l) => l
            .parse::<u64>()
            .ok()
            .filter(|l| (1..=MAX_RECORDS).contains(l))
            .ok_or_else(|| {
                AdminError::bad_request(format!("limit must be between 1 and {MAX_RECORDS}"))
            })?,
        None => 100,
    };
    let records = commands::records(&api.store, &filter, limit)
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    Reply::ok(json!({"data": records}))
}

pub async fn usage(api: &AdminApi, req: &Request, caller: &Caller) -> Result<Reply, AdminError> {
    let filter = filter(req, caller)?;
    let (mut rows, truncated) = commands::usage(&api.store, &filter, MAX_USAGE_RECORDS)
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    if caller.user.role == Role::Developer {
        let own: HashSet<String> = api
            .store
            .list_api_keys(None)
            .await?
            .into_iter()
            .filter(|k| k.created_by.as_deref() == Some(caller.user.id.as_str()))
            .map(|k| k.id)
            .collect();
        rows.retain(|r| own.contains(&r.key_id));
    }
    Reply::ok(json!({
        "data": rows,
        "since": filter.since,
        "until": filter.until,
        "truncated": truncated,
        "source": "the audit trail's request records (tenants with logging policy none have none)",
    }))
}
