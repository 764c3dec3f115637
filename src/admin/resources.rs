//! Tenants, API keys, users and roles through the admin API. Each handler narrows what the
//! caller sees: tenant-scoped users see their tenant only (others' resources answer 404, or
//! 403 when named in a filter), developers see and manage only the keys they created.

use serde::Deserialize;
use serde_json::json;

use super::api::{AdminApi, Reply, Request};
use super::error::AdminError;
use super::security::visible_user;
use super::session::{millis, Caller};
use crate::audit::{Kind, LoggingPolicy};
use crate::auth::{passwords, Permission, Role};
use crate::routing::ModelPattern;
use crate::store::{now_millis, ApiKeyRecord, KeyPermissions, NewApiKey, NewUser};

/// A rotated key keeps working this long by default, for deployments to pick up the new one.
const DEFAULT_ROTATION_OVERLAP_SECONDS: u64 = 24 * 3600;

pub async fn list_tenants(api: &AdminApi, caller: &Caller) -> Result<Reply, AdminError> {
    let tenants: Vec<_> = api
        .store
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| caller.sees_tenant(&t.name))
        .collect();
    Reply::ok(json!({"data": tenants}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    logging: Option<LoggingPolicy>,
}

pub async fn create_tenant(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
) -> Result<Reply, AdminError> {
    if caller.user.tenant.is_some() {
        return Err(AdminError::Forbidden(
            "A tenant-scoped user cannot create tenants.".into(),
        ));
    }
    let body: CreateTenant = req.json()?;
    let mut tenant = api.store.create_tenant(&body.name).await?;
    if let Some(policy) = body.logging {
        tenant = api
            .store
            .set_tenant_logging(&tenant.name, Some(policy))
            .await?;
    }
    api.event(
        Kind::Admin,
        &tenant.name,
        "tenant.created",
        &caller.actor(),
        json!({"tenant_id": tenant.id, "logging": tenant.logging_policy}),
    );
    Reply::created(json!(tenant))
}

/// Whether the caller may see (and, with `KeysWrite`, manage) this key.
fn sees_key(caller: &Caller, key: &ApiKeyRecord) -> bool {
    caller.sees_tenant(&key.tenant)
        && (caller.user.role != Role::Developer
            || key.created_by.as_deref() == Some(caller.user.id.as_str()))
}

fn key_json(key: &ApiKeyRecord) -> serde_json::Value {
    let now = now_millis();
    let status = if key.revoked_at.is_some() {
        "revoked"
    } else if key.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    };
    let mut v = json!(key);
    v["status"] = json!(status);
    v
}

pub async fn list_keys(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
) -> Result<Reply, AdminError> {
    let tenant = req.query("tenant");
    if let Some(t) = tenant {
        if !caller.sees_tenant(t) {
            return Err(AdminError::Forbidden(format!(
                "You may not read tenant {t}'s keys."
            )));
        }
    }
    let keys: Vec<_> = api
        .store
        .list_api_keys(tenant)
        .await?
        .iter()
        .filter(|k| sees_key(caller, k))
        .map(key_json)
        .collect();
    Reply::ok(json!({"data": keys}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    tenant: String,
    name: String,
    #[serde(default)]
    models: Vec<String>,
    expires_in_seconds: Option<u64>,
    #[serde(default)]
    permissions: KeyPermissions,
    guardrail_policy: Option<String>,
}

pub async fn create_key(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
) -> Result<Reply, AdminError> {
    let body: CreateKey = req.json()?;
    if !caller.sees_tenant(&body.tenant) {
        return Err(AdminError::Forbidden(format!(
            "You may not create keys for tenant {}.",
            body.tenant
        )));
    }
    for (i, m) in body.models.iter().enumerate() {
        ModelPattern::parse(m).map_err(|e| AdminError::bad_request(format!("models[{i}] {e}")))?;
    }
    if let Some(policy) = &body.guardrail_policy {
        if !api.config.guardrails.policies.contains_key(policy) {
            return Err(AdminError::bad_request(format!(
                "guardrail_policy {policy:?} is not defined (defined: {})",
                api.config.guardrails.policy_names().join(", ")
            )));
        }
    }
    let expires_at = match body.expires_in_seconds {
        Some(0) => {
            return Err(AdminError::bad_request(
                "expires_in_seconds must be at least 1",
            ))
        }
        Some(s) => Some(now_millis().saturating_add(millis(s))),
        None => None,
    };
    let (key, secret) = insert_key(
        api,
        caller,
        NewKey {
            tenant: &body.tenant,
            name: &body.name,
            models: &body.models,
            expires_at,
            permissions: body.permissions,
            guardrail_policy: body.guardrail_policy.as_deref(),
            limits: Default::default(),
        },
        "key.created",
        json!({}),
    )
    .await?;
    let mut v = key_json(&key);
    v["key"] = json!(secret);
    Reply::created(v)
}

struct NewKey<'a> {
    tenant: &'a str,
    name: &'a str,
    models: &'a [String],
    expires_at: Option<i64>,
    permissions: KeyPermissions,
    guardrail_policy: Option<&'a str>,
    limits: crate::limits::LimitSet,
}

/// Generates, stores and records a key; the record and its secret.
async fn insert_key(
    api: &AdminApi,
    caller: &Caller,
    new: NewKey<'_>,
    action: &str,
    extra: serde_json::Value,
) -> Result<(ApiKeyRecord, String), AdminError> {
    let generated = api
        .hasher
        .generate()
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    let key = api
        .store
        .create_api_key(NewApiKey {
            tenant: new.tenant,
            name: new.name,
            prefix: &generated.prefix,
            key_hash: &generated.hash,
            allowed_models: new.models,
            expires_at: new.expires_at,
            guardrail_policy: new.guardrail_policy,
            limits: new.limits,
            created_by: Some(&caller.user.id),
            permissions: new.permissions,
        })
        .await?;
    let mut detail = json!({"key_id": key.id, "prefix": key.prefix, "name": key.name,
        "allowed_models": key.allowed_models, "expires_at": key.expires_at,
        "permissions": key.permissions});
    if let (Some(d), Some(e)) = (detail.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    api.event(Kind::Admin, &key.tenant, action, &caller.actor(), detail);
    Ok((key, generated.secret))
}

async fn visible_key(
    api: &AdminApi,
    caller: &Caller,
    id: &str,
) -> Result<ApiKeyRecord, AdminError> {
    match api.store.api_key_by_id(id).await? {
        Some(key) if sees_key(caller, &key) => Ok(key),
        _ => Err(AdminError::NotFound(format!("No API key {id}."))),
    }
}

pub async fn revoke_key(api: &AdminApi, caller: &Caller, id: &str) -> Result<Reply, AdminError> {
    let key = visible_key(api, caller, id).await?;
    let result = api.store.revoke_api_key(&key.id).await?;
    let now = result == crate::store::Revoked::Now;
    if now {
        api.event(
            Kind::Admin,
            &key.tenant,
            "key.revoked",
            &caller.actor(),
            json!({"key_id": key.id, "prefix": key.prefix}),
        );
    }
    Reply::ok(json!({
        "id": key.id, "revoked": true, "already_revoked": !now,
        "effective_within_ms": api.config.auth.key_cache_ttl.as_millis() as u64,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    overlap_seconds: Option<u64>,
}

pub async fn rotate_key(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
    id: &str,
) -> Result<Reply, AdminError> {
    let body: RotateKey = req.json()?;
    let old = visible_key(api, caller, id).await?;
    if old.revoked_at.is_some() || old.expires_at.is_some_and(|at| at <= now_millis()) {
        return Err(AdminError::Conflict(format!(
            "API key {id} is revoked or expired: create a new key instead."
        )));
    }
    let overlap = body
        .overlap_seconds
        .unwrap_or(DEFAULT_ROTATION_OVERLAP_SECONDS);
    let old_expires_at = api
        .store
        .expire_api_key_by(&old.id, now_millis().saturating_add(millis(overlap)))
        .await?;
    let (new, secret) = insert_key(
        api,
        caller,
        NewKey {
            tenant: &old.tenant,
            name: &old.name,
            models: &old.allowed_models,
            // The new key keeps the old one's end date, if it had one.
            expires_at: old.expires_at,
            permissions: old.permissions.clone(),
            guardrail_policy: old.guardrail_policy.as_deref(),
            limits: old.limits,
        },
        "key.rotated",
        json!({"replaces": old.id, "old_key_expires_at": old_expires_at}),
    )
    .await?;
    let mut v = key_json(&new);
    v["key"] = json!(secret);
    v["replaces"] = json!({"id": old.id, "prefix": old.prefix, "expires_at": old_expires_at});
    Reply::created(v)
}

pub async fn list_users(api: &AdminApi, caller: &Caller) -> Result<Reply, AdminError> {
    let users: Vec<_> = api
        .store
        .list_users()
        .await?
        .into_iter()
        .filter(|u| caller.sees_user(u))
        .collect();
    Reply::ok(json!({"data": users}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    /// Leave out for a user who will log in only through SSO.
    password: Option<String>,
    role: Role,
    tenant: Option<String>,
}

pub async fn create_user(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
) -> Result<Reply, AdminError> {
    let body: CreateUser = req.json()?;
    // A tenant-scoped admin creates users of their own tenant only.
    let tenant = match (&caller.user.tenant, body.tenant) {
        (None, t) => t,
        (Some(scope), None) => Some(scope.clone()),
        (Some(scope), Some(t)) if &t == scope => Some(t),
        (Some(_), Some(t)) => {
            return Err(AdminError::Forbidden(format!(
                "You may not create users for tenant {t}."
            )))
        }
    };
    let users = &api.config.users;
    let email = crate::store::normalize_email(&body.email)?;
    let hash = match &body.password {
        Some(password) => Some(
            passwords::hash_new(&users.password_policy, users.bcrypt_cost, password, &email)
                .await?,
        ),
        None => None,
    };
    let user = api
        .store
        .create_user(NewUser {
            email: &email,
            role: body.role,
            tenant: tenant.as_deref(),
            password_hash: hash.as_deref(),
        })
        .await?;
    api.event(
        Kind::Admin,
        user.tenant.as_deref().unwrap_or(""),
        "user.created",
        &caller.actor(),
        json!({"user_id": user.id, "role": user.role}),
    );
    Reply::created(json!(user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: Role,
}

pub async fn set_role(
    api: &AdminApi,
    req: &Request,
    caller: &Caller,
    user_id: &str,
) -> Result<Reply, AdminError> {
    let body: SetRole = req.json()?;
    let target = visible_user(api, caller, user_id).await?;
    if target.id == caller.user.id {
        // Keeps an admin from locking everyone out by demoting the last admin (themselves).
        return Err(AdminError::Forbidden(
            "You cannot change your own role: ask another admin.".into(),
        ));
    }
    api.store.set_user_role(&target.id, body.role).await?;
    // Sessions carry the old role's trust: end them.
    let ended = api.store.revoke_user_sessions(&target.id, None).await?;
    api.event(
        Kind::Security,
        target.tenant.as_deref().unwrap_or(""),
        "user.role_changed",
        &caller.actor(),
        json!({"user_id": target.id, "from": target.role, "to": body.role, "sessions_ended": ended}),
    );
    Reply::ok(json!({"user_id": target.id, "role": body.role, "sessions_ended": ended}))
}

pub fn list_roles() -> Result<Reply, AdminError> {
    let roles: Vec<_> = Role::ALL
        .iter()
        .map(|r| json!({"name": r, "permissions": r.permissions()}))
        .collect();
    Reply::ok(json!({"data": roles, "all_permissions": Permission::ALL}))
}
