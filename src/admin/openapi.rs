//! The OpenAPI 3.1 document of the admin API, built from [`ROUTES`] (paths, methods, who may
//! call them, whether re-authentication is needed) and the request schemas below.

use serde_json::{json, Map, Value};

use super::api::{Access, ROUTES};

pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let mut op = json!({
            "operationId": format!("{:?}", route.op),
            "summary": route.summary,
            "responses": responses(route.access),
        });
        match route.access {
            Access::Public => op["security"] = json!([]),
            Access::Signed(permission) => {
                let mut description = format!(
                    "Requires the `{}` permission.",
                    json!(permission).as_str().unwrap_or_default()
                );
                if route.sensitive {
                    description.push_str(" Sensitive: the password (and TOTP) must have been entered within `reauth_window_seconds` (login or POST /admin/v1/reauth), else 403 `reauthentication_required`.");
                }
                op["description"] = json!(description);
                op["x-permission"] = json!(permission);
            }
        }
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = json!(params);
        }
        if let Some(schema) = route.request {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
            });
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Portcullis admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tenants, API keys, users, sessions and security settings. Log in with POST /admin/v1/login and send the token as `Authorization: Bearer pcs_…`. Errors are `{\"error\": {\"message\", \"type\", \"code\"}}`. See docs/security.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"adminToken": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer", "description": "A token from POST /admin/v1/login."}},
            "schemas": schemas(),
        },
    })
}

fn responses(access: Access) -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let with =
        |d: &str| json!({"description": d, "content": {"application/json": {"schema": error}}});
    let mut r = json!({
        "200": {"description": "Success", "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": with("Invalid request body or parameters"),
    });
    match access {
        Access::Public => {
            r["401"] = with("Incorrect e-mail or password, or a missing or wrong TOTP code")
        }
        Access::Signed(_) => {
            r["401"] = with("Missing, invalid, expired, idle or ended session token");
            r["403"] = with("The caller's role lacks the permission, re-authentication is needed, or the session is restricted");
        }
    }
    r
}

fn schemas() -> Value {
    let string = json!({"type": "string"});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message", "type", "code"],
            "properties": {"message": string, "type": string, "code": string}}}},
        "LoginRequest": {"type": "object", "required": ["email", "password"], "additionalProperties": false,
            "properties": {"email": string, "password": string,
                "totp": {"type": "string", "description": "The current 6-digit code, for users with MFA."},
                "recovery_code": {"type": "string", "description": "A single-use recovery code, instead of totp."}}},
        "ReauthRequest": {"type": "object", "required": ["password"], "additionalProperties": false,
            "properties": {"password": string, "totp": string, "recovery_code": string}},
        "ChangePasswordRequest": {"type": "object", "required": ["current_password", "new_password"],
            "additionalProperties": false, "properties": {"current_password": string, "new_password": string}},
        "MfaConfirmRequest": {"type": "object", "required": ["code"], "additionalProperties": false,
            "properties": {"code": string}},
        "CreateTenantRequest": {"type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
                "logging": {"enum": ["none", "metadata", "redacted"]}}},
        "CreateKeyRequest": {"type": "object", "required": ["tenant", "name"], "additionalProperties": false,
            "properties": {"tenant": string, "name": string,
                "models": {"type": "array", "items": string, "description": "Model names or globs; empty: every routed model."},
                "expires_in_seconds": {"type": "integer", "minimum": 1},
                "permissions": {"oneOf": [{"enum": ["full", "read_only"]}, {"type": "array", "items": string}],
                    "description": "full, read_only (GET endpoints only) or a list of endpoint paths."},
                "guardrail_policy": string}},
        "RotateKeyRequest": {"type": "object", "additionalProperties": false,
            "properties": {"overlap_seconds": {"type": "integer", "minimum": 0, "default": 86400,
                "description": "How long the old key keeps working."}}},
        "CreateUserRequest": {"type": "object", "required": ["email", "role"], "additionalProperties": false,
            "properties": {"email": string,
                "password": {"type": "string", "description": "Leave out for a user who logs in only through SSO."},
                "role": {"enum": ["admin", "manager", "developer", "viewer"]},
                "tenant": {"type": "string", "description": "Scope the user to one tenant."}}},
        "SetRoleRequest": {"type": "object", "required": ["role"], "additionalProperties": false,
            "properties": {"role": {"enum": ["admin", "manager", "developer", "viewer"]}}},
        "SecuritySettingsRequest": {"type": "object", "additionalProperties": false, "properties": {
            "sessions": {"type": "object", "additionalProperties": false, "properties": {
                "token_lifetime_seconds": {"type": "integer", "minimum": 1},
                "idle_timeout_seconds": {"type": "integer", "minimum": 1},
                "max_duration_seconds": {"type": "integer", "minimum": 1},
                "max_concurrent": {"type": "integer", "minimum": 1},
                "reauth_window_seconds": {"type": "integer", "minimum": 1}}},
            "mfa": {"type": "object", "additionalProperties": false, "properties": {
                "issuer": string,
                "required_for_roles": {"type": "array", "items": {"enum": ["admin", "manager", "developer", "viewer"]}},
                "grace_period_seconds": {"type": "integer", "minimum": 0}}}}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_schema_is_in_the_document() {
        let doc = document();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.to_lowercase()];
            assert!(op.is_object(), "{} {}", r.method, r.path);
            if let Some(schema) = r.request {
                assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
            }
        }
    }
}
