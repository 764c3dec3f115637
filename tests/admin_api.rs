// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The admin API against the real binary, on SQLite and on the real Postgres: login without
//! account enumeration, failed-login counters, sessions (cap, idle and maximum duration,
//! revocation, logout-all, re-authentication), RBAC with tenant scoping, keys (secret once,
//! rotation, permissions enforced on the data plane), TOTP MFA with replay protection and
//! recovery codes, the MFA requirement with its grace period, and the OpenAPI document.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::auth::totp;
use reqwest::Method;
use serde_json::{json, Value};
use support::gateway::{TestGateway, BIN};
use support::postgres::TempDatabase;

const ROOT: &str = "root@bank.example";
const PASSWORD: &str = "Correct-Horse-9-Battery";

struct Admin {
    gw: TestGateway,
    http: reqwest::Client,
    db_url: String,
    /// Every secret the tests saw (key secrets, TOTP secrets and recovery codes, passwords):
    /// none may appear in the gateway's log.
    secrets: std::sync::Mutex<Vec<String>>,
}

impl Admin {
    fn saw(&self, secret: &str) {
        self.secrets.lock().unwrap().push(secret.to_string());
    }
}

fn setup(database_url: Option<&str>, bcrypt_cost: u32) -> Admin {
    let body = format!(
        "[[providers]]\nname = \"demo\"\nkind = \"mock\"\n[[routes]]\nmodel = \"*\"\nprovider = \"demo\"\n\
         [users]\nbcrypt_cost = {bcrypt_cost}\n[users.sessions]\nmax_concurrent = 3\n"
    );
    let gw = TestGateway::start_with_database(&body, "", "", database_url);
    gw.create_tenant("acme");
    gw.create_tenant("globex");
    let db_url = database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", gw.dir.path().join("portcullis.db").display()));
    let admin = Admin {
        gw,
        http: reqwest::Client::new(),
        db_url,
        secrets: std::sync::Mutex::new(vec![PASSWORD.into(), "Wrong-password-1!".into()]),
    };
    admin.cli_user(ROOT, "admin", None);
    admin
}

impl Admin {
    /// Creates a user with [`PASSWORD`] through the CLI (password on stdin).
    fn cli_user(&self, email: &str, role: &str, tenant: Option<&str>) {
        let mut args = vec!["users", "create", "--email", email, "--role", role];
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        let mut child = Command::new(BIN)
            .args(&args)
            .arg("--config")
            .arg(&self.gw.config_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.gw.admin_url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    async fn login_with(&self, body: Value) -> (u16, Value) {
        self.call(Method::POST, "/admin/v1/login", None, Some(body))
            .await
    }

    async fn login(&self, email: &str) -> String {
        let (status, v) = self
            .login_with(json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(status, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    async fn user_id(&self, root: &str, email: &str) -> String {
        let (_, users) = self.get("/admin/v1/users", root).await;
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn chat(&self, key: &str) -> u16 {
        self.http
            .post(self.gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn models(&self, key: &str) -> u16 {
        self.http
            .get(self.gw.url("/v1/models"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// Logins, enumeration, counters, the OpenAPI document and the 401s of every route.
async fn login_and_every_route_needs_a_token(s: &Admin) {
    let (wrong_status, wrong) = s
        .login_with(json!({"email": ROOT, "password": "Wrong-password-1!"}))
        .await;
    let (unknown_status, unknown) = s
        .login_with(json!({"email": "nobody@bank.example", "password": "Wrong-password-1!"}))
        .await;
    assert_eq!((wrong_status, unknown_status), (401, 401));
    assert_eq!(
        wrong, unknown,
        "an unknown account must look like a wrong password"
    );
    assert_eq!(code(&wrong), "invalid_credentials");
    let (status, v) = s.login_with(json!({"email": ROOT})).await;
    assert_eq!((status, code(&v)), (400, "invalid_json"), "{v}");

    let root = s.login(ROOT).await;
    let (status, failures) = s.get("/admin/v1/login-failures", &root).await;
    assert_eq!(status, 200, "{failures}");
    let count = |scope: &str, subject: &str| {
        failures["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["scope"] == scope && f["subject"] == subject)
            .map(|f| f["failures"].as_i64().unwrap())
    };
    // The root account's count was cleared by its successful login; the unknown account's and
    // the address's remain.
    assert_eq!(count("account", ROOT), None);
    assert_eq!(count("account", "nobody@bank.example"), Some(1));
    assert_eq!(count("ip", "127.0.0.1"), Some(2));

    let (status, me) = s.get("/admin/v1/me", &root).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["email"], ROOT);
    assert_eq!(me["user"]["role"], "admin");

    // Every route in the OpenAPI document but login answers 401 without a valid token.
    let (status, doc) = s.get("/admin/v1/openapi.json", &root).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{}", paths.len());
    let mut probed = 0;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            if path == "/admin/v1/login" || path.starts_with("/admin/v1/sso") {
                continue;
            }
            let path = path.replace("{id}", "usr_x");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for token in [None, Some("pcs_forged"), Some("not-a-token")] {
                let (status, v) = s.call(method.clone(), &path, token, Some(json!({}))).await;
                assert_eq!(status, 401, "{method} {path} with {token:?}: {v}");
            }
            probed += 1;
        }
    }
    assert!(probed >= 20);
    let (status, _) = s
        .call(Method::GET, "/admin/v1/nope", Some(&root), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .call(Method::PATCH, "/admin/v1/keys", Some(&root), None)
        .await;
    assert_eq!(status, 405);
}

/// The concurrent-session cap, revocation, logout, logout-all, idle timeout, maximum duration
/// and re-authentication for sensitive actions.
async fn sessions(s: &Admin) {
    s.cli_user("ops@bank.example", "admin", None);
    let first = s.login("ops@bank.example").await;
    let second = s.login("ops@bank.example").await;
    let third = s.login("ops@bank.example").await;
    let fourth = s.login("ops@bank.example").await;
    // max_concurrent = 3: the oldest session was logged out.
    let (status, v) = s.get("/admin/v1/me", &first).await;
    assert_eq!((status, code(&v)), (401, "session_ended"), "{v}");
    let (_, list) = s.get("/admin/v1/sessions", &fourth).await;
    let list = list["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    assert!(
        list.iter().all(|x| !x.to_string().contains("pcs_")),
        "tokens are never listed"
    );

    // Revoke one's own other session.
    let (_, me2) = s.get("/admin/v1/me", &second).await;
    let id2 = me2["session"]["id"].as_str().unwrap();
    let (status, _) = s
        .delete(&format!("/admin/v1/sessions/{id2}"), &fourth)
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.get("/admin/v1/me", &second).await.0, 401);
    // Logout ends this session only; logout-all ends every one.
    let fifth = s.login("ops@bank.example").await;
    assert_eq!(s.post("/admin/v1/logout", &fifth, json!({})).await.0, 200);
    assert_eq!(s.get("/admin/v1/me", &fifth).await.0, 401);
    assert_eq!(s.get("/admin/v1/me", &third).await.0, 200);
    let (status, v) = s.post("/admin/v1/logout-all", &fourth, json!({})).await;
    assert_eq!(
        (status, v["sessions_ended"].as_i64()),
        (200, Some(2)),
        "{v}"
    );
    assert_eq!(s.get("/admin/v1/me", &third).await.0, 401);
    assert_eq!(s.get("/admin/v1/me", &fourth).await.0, 401);

    // A developer cannot see or end an admin's session: it does not exist for them.
    s.cli_user("dev1@bank.example", "developer", Some("acme"));
    let dev = s.login("dev1@bank.example").await;
    let root = s.login(ROOT).await;
    let (_, me) = s.get("/admin/v1/me", &root).await;
    let root_session = me["session"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        s.delete(&format!("/admin/v1/sessions/{root_session}"), &dev)
            .await
            .0,
        404
    );
    assert_eq!(s.get("/admin/v1/sessions?all=true", &dev).await.0, 403);
    let (status, all) = s.get("/admin/v1/sessions?all=true", &root).await;
    assert_eq!(status, 200);
    assert!(all["data"].as_array().unwrap().len() >= 2);

    // Re-authentication: with a 1 s window, a sensitive action soon needs the password again.
    let (status, v) = s
        .put(
            "/admin/v1/security-settings",
            &root,
            json!({"sessions": {"reauth_window_seconds": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let create = json!({"tenant": "acme", "name": "ci"});
    let (status, v) = s.post("/admin/v1/keys", &root, create.clone()).await;
    assert_eq!(
        (status, code(&v)),
        (403, "reauthentication_required"),
        "{v}"
    );
    let ops_id = s.user_id(&root, "ops@bank.example").await;
    let (status, v) = s
        .put(
            &format!("/admin/v1/users/{ops_id}/role"),
            &root,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(
        (status, code(&v)),
        (403, "reauthentication_required"),
        "{v}"
    );
    let (status, v) = s
        .put(
            "/admin/v1/security-settings",
            &root,
            json!({"sessions": {"reauth_window_seconds": 300}}),
        )
        .await;
    assert_eq!(
        (status, code(&v)),
        (403, "reauthentication_required"),
        "{v}"
    );
    let (status, v) = s
        .post("/admin/v1/reauth", &root, json!({"password": "nope"}))
        .await;
    assert_eq!((status, code(&v)), (401, "invalid_credentials"), "{v}");
    let (status, v) = s
        .post("/admin/v1/reauth", &root, json!({"password": PASSWORD}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.post("/admin/v1/keys", &root, create).await;
    assert_eq!(status, 201, "{v}");
    s.saw(v["key"].as_str().unwrap());

    // Idle timeout and maximum duration apply to live sessions.
    let (status, _) = s
        .put(
            "/admin/v1/security-settings",
            &root,
            json!({"sessions": {"idle_timeout_seconds": 1, "reauth_window_seconds": 300}}),
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (status, v) = s.get("/admin/v1/me", &root).await;
    assert_eq!((status, code(&v)), (401, "session_expired"), "{v}");
    // (The setting is in the database: restore it for the other tests, then try the maximum.)
    let root = s.login(ROOT).await;
    let (status, _) = s
        .put(
            "/admin/v1/security-settings",
            &root,
            json!({"sessions": {"idle_timeout_seconds": 1800, "max_duration_seconds": 1}}),
        )
        .await;
    assert_eq!(status, 200);
    let short = s.login("ops@bank.example").await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (status, v) = s.get("/admin/v1/me", &short).await;
    assert_eq!((status, code(&v)), (401, "session_expired"), "{v}");
    let (status, v) = s.get("/admin/v1/me", &root).await;
    assert_eq!((status, code(&v)), (401, "session_expired"), "{v}");
    let root = s.login(ROOT).await;
    // Another login is already past one second by the time it is checked only if slow: restore
    // straight away.
    let (status, v) = s
        .put(
            "/admin/v1/security-settings",
            &root,
            json!({"sessions": {"max_duration_seconds": 43200}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, settings) = s
        .get("/admin/v1/security-settings", &s.login(ROOT).await)
        .await;
    assert_eq!(settings["sessions"]["max_duration_seconds"], 43200);
    assert_eq!(settings["password_policy"]["min_length"], 12);
}

/// Roles, tenant scoping, keys (secret once, rotation, revocation) and key permissions on the
/// data plane.
async fn rbac_and_keys(s: &Admin) {
    s.cli_user("mgr@bank.example", "manager", Some("acme"));
    s.cli_user("dev@bank.example", "developer", Some("acme"));
    s.cli_user("viewer@bank.example", "viewer", None);
    s.cli_user("gmgr@bank.example", "manager", Some("globex"));
    let root = s.login(ROOT).await;
    let mgr = s.login("mgr@bank.example").await;
    let dev = s.login("dev@bank.example").await;
    let viewer = s.login("viewer@bank.example").await;
    let gmgr = s.login("gmgr@bank.example").await;

    // Admin-only endpoints refuse the other roles.
    for token in [&mgr, &dev, &viewer] {
        let (status, v) = s.get("/admin/v1/security-settings", token).await;
        assert_eq!((status, code(&v)), (403, "permission_denied"), "{v}");
        assert_eq!(
            s.put("/admin/v1/security-settings", token, json!({}))
                .await
                .0,
            403
        );
        assert_eq!(
            s.post("/admin/v1/tenants", token, json!({"name": "x"}))
                .await
                .0,
            403
        );
        assert_eq!(
            s.post(
                "/admin/v1/users",
                token,
                json!({"email": "e@bank.example", "password": PASSWORD, "role": "admin"})
            )
            .await
            .0,
            403
        );
        assert_eq!(s.get("/admin/v1/login-failures", token).await.0, 403);
    }
    let dev_id = s.user_id(&root, "dev@bank.example").await;
    for token in [&mgr, &dev, &viewer] {
        let (status, _) = s
            .put(
                &format!("/admin/v1/users/{dev_id}/role"),
                token,
                json!({"role": "admin"}),
            )
            .await;
        assert_eq!(status, 403);
    }
    // A viewer reads but never writes; a developer has no user list.
    assert_eq!(s.get("/admin/v1/keys", &viewer).await.0, 200);
    assert_eq!(
        s.post(
            "/admin/v1/keys",
            &viewer,
            json!({"tenant": "acme", "name": "v"})
        )
        .await
        .0,
        403
    );
    assert_eq!(s.get("/admin/v1/users", &dev).await.0, 403);
    assert_eq!(s.get("/admin/v1/roles", &viewer).await.0, 200);

    // Keys: the secret is returned once; lists show prefixes only.
    let (status, admin_key) = s
        .post(
            "/admin/v1/keys",
            &root,
            json!({"tenant": "acme", "name": "root-app"}),
        )
        .await;
    assert_eq!(status, 201, "{admin_key}");
    let admin_secret = admin_key["key"].as_str().unwrap().to_string();
    s.saw(&admin_secret);
    assert!(admin_secret.starts_with("pc_"));
    let (status, globex_key) = s
        .post(
            "/admin/v1/keys",
            &gmgr,
            json!({"tenant": "globex", "name": "g"}),
        )
        .await;
    assert_eq!(status, 201, "{globex_key}");
    let (status, dev_key) = s
        .post(
            "/admin/v1/keys",
            &dev,
            json!({"tenant": "acme", "name": "mine"}),
        )
        .await;
    assert_eq!(status, 201, "{dev_key}");
    let (status, v) = s
        .post(
            "/admin/v1/keys",
            &dev,
            json!({"tenant": "globex", "name": "theirs"}),
        )
        .await;
    assert_eq!((status, code(&v)), (403, "permission_denied"), "{v}");
    let (_, all) = s.get("/admin/v1/keys", &root).await;
    let text = all.to_string();
    assert!(
        !text.contains(&admin_secret) && !text.contains("key_hash"),
        "{text}"
    );
    assert_eq!(all["data"].as_array().unwrap().len(), 3, "{all}");

    // Tenant scoping: acme's manager sees acme only, and globex's resources do not exist for them.
    let (status, v) = s.get("/admin/v1/keys?tenant=globex", &mgr).await;
    assert_eq!((status, code(&v)), (403, "permission_denied"), "{v}");
    let (_, mine) = s.get("/admin/v1/keys", &mgr).await;
    assert!(
        mine["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["tenant"] == "acme"),
        "{mine}"
    );
    let globex_id = globex_key["id"].as_str().unwrap();
    assert_eq!(
        s.delete(&format!("/admin/v1/keys/{globex_id}"), &mgr)
            .await
            .0,
        404
    );
    let (_, tenants) = s.get("/admin/v1/tenants", &mgr).await;
    assert_eq!(tenants["data"].as_array().unwrap().len(), 1);
    let (_, users) = s.get("/admin/v1/users", &gmgr).await;
    assert!(
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["tenant"] == "globex"),
        "{users}"
    );
    // A developer sees and manages only their own keys.
    let (_, own) = s.get("/admin/v1/keys", &dev).await;
    assert_eq!(own["data"].as_array().unwrap().len(), 1, "{own}");
    let admin_key_id = admin_key["id"].as_str().unwrap();
    assert_eq!(
        s.delete(&format!("/admin/v1/keys/{admin_key_id}"), &dev)
            .await
            .0,
        404
    );

    // Rotation: a new key works now, the old keeps working until its new expiry.
    assert_eq!(s.chat(&admin_secret).await, 200);
    let (status, rotated) = s
        .post(
            &format!("/admin/v1/keys/{admin_key_id}/rotate"),
            &root,
            json!({"overlap_seconds": 3600}),
        )
        .await;
    assert_eq!(status, 201, "{rotated}");
    let new_secret = rotated["key"].as_str().unwrap();
    s.saw(new_secret);
    assert_ne!(new_secret, admin_secret);
    assert_eq!(s.chat(new_secret).await, 200);
    assert_eq!(s.chat(&admin_secret).await, 200);
    // The old key now expires an hour from now (it had no expiry before).
    let in_an_hour = (now() as i64 + 3600) * 1000;
    let old_expiry = rotated["replaces"]["expires_at"].as_i64().unwrap();
    assert!((old_expiry - in_an_hour).abs() < 60_000, "{rotated}");
    // Revocation.
    let new_id = rotated["id"].as_str().unwrap();
    let (status, _) = s.delete(&format!("/admin/v1/keys/{new_id}"), &root).await;
    assert_eq!(status, 200);
    let (_, list) = s.get("/admin/v1/keys?tenant=acme", &root).await;
    let revoked = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == new_id)
        .unwrap()
        .clone();
    assert_eq!(revoked["status"], "revoked");

    // API-key permissions on the data plane.
    let (_, ro) = s
        .post(
            "/admin/v1/keys",
            &root,
            json!({"tenant": "acme", "name": "ro", "permissions": "read_only"}),
        )
        .await;
    let ro = ro["key"].as_str().unwrap();
    s.saw(ro);
    assert_eq!(s.models(ro).await, 200);
    assert_eq!(s.chat(ro).await, 403);
    let (_, custom) = s
        .post(
            "/admin/v1/keys",
            &root,
            json!({"tenant": "acme", "name": "c", "permissions": ["/v1/chat/completions"]}),
        )
        .await;
    let custom = custom["key"].as_str().unwrap();
    s.saw(custom);
    assert_eq!(s.chat(custom).await, 200);
    assert_eq!(s.models(custom).await, 403);
    let (status, v) = s
        .post(
            "/admin/v1/keys",
            &root,
            json!({"tenant": "acme", "name": "bad", "permissions": "everything"}),
        )
        .await;
    assert_eq!(status, 400, "{v}");

    // Usage and audit records, scoped: a developer sees their own keys' usage, a manager of
    // globex none of acme's, and only roles with audit read get records.
    let dev_secret = dev_key["key"].as_str().unwrap();
    s.saw(dev_secret);
    assert_eq!(s.chat(dev_secret).await, 200);
    let dev_key_id = dev_key["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let usage = loop {
        let (status, usage) = s.get("/admin/v1/usage?since=1h", &dev).await;
        assert_eq!(status, 200, "{usage}");
        if !usage["data"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break usage;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{usage}");
    assert_eq!(rows[0]["key_id"], dev_key_id);
    assert_eq!(rows[0]["requests"], 1);
    assert!(rows[0]["total_tokens"].as_u64().unwrap() > 0, "{usage}");
    let (_, all_usage) = s.get("/admin/v1/usage", &root).await;
    assert!(
        all_usage["data"].as_array().unwrap().len() >= 2,
        "{all_usage}"
    );
    let (_, globex_usage) = s.get("/admin/v1/usage", &gmgr).await;
    assert!(globex_usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["tenant"] == "globex"));
    assert_eq!(s.get("/admin/v1/usage?tenant=acme", &gmgr).await.0, 403);
    assert_eq!(s.get("/admin/v1/audit/records", &dev).await.0, 403);
    let (status, records) = s
        .get("/admin/v1/audit/records?action=key.created", &gmgr)
        .await;
    assert_eq!(status, 200, "{records}");
    let records = records["data"].as_array().unwrap();
    assert!(
        !records.is_empty() && records.iter().all(|r| r["tenant"] == "globex"),
        "{records:?}"
    );
    assert_eq!(
        s.get("/admin/v1/audit/records?since=yesterday-ish", &root)
            .await
            .0,
        400
    );

    // Users: policy enforced; role changes end the user's sessions.
    let (status, v) = s
        .post(
            "/admin/v1/users",
            &root,
            json!({"email": "weak@bank.example", "password": "short", "role": "viewer"}),
        )
        .await;
    assert_eq!((status, code(&v)), (400, "weak_password"), "{v}");
    let (status, v) = s
        .post("/admin/v1/users", &root, json!({"email": "new@bank.example", "password": PASSWORD, "role": "viewer", "tenant": "globex"}))
        .await;
    assert_eq!(status, 201, "{v}");
    assert!(!v.to_string().contains(PASSWORD));
    let (status, v) = s
        .put(
            &format!("/admin/v1/users/{dev_id}/role"),
            &root,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.get("/admin/v1/me", &dev).await.0, 401);
    let dev = s.login("dev@bank.example").await;
    let (_, me) = s.get("/admin/v1/me", &dev).await;
    assert_eq!(me["user"]["role"], "viewer");

    // Password change: the policy and the history apply.
    let (status, v) = s
        .put(
            "/admin/v1/me/password",
            &dev,
            json!({"current_password": PASSWORD, "new_password": PASSWORD}),
        )
        .await;
    assert_eq!((status, code(&v)), (400, "password_reused"), "{v}");
    let (status, v) = s
        .put(
            "/admin/v1/me/password",
            &dev,
            json!({"current_password": PASSWORD, "new_password": "Another-Good-Pass-7"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = s
        .login_with(json!({"email": "dev@bank.example", "password": "Another-Good-Pass-7"}))
        .await;
    assert_eq!(status, 200);

    // A password older than max_age_days (90): the session may only change it.
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&s.db_url)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET password_changed_at = 1 WHERE email = 'viewer@bank.example'")
        .execute(&mut db)
        .await
        .unwrap();
    let (status, v) = s
        .login_with(json!({"email": "viewer@bank.example", "password": PASSWORD}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["restriction"]["code"], "password_expired", "{v}");
    let old = v["token"].as_str().unwrap().to_string();
    let (status, v) = s.get("/admin/v1/keys", &old).await;
    assert_eq!((status, code(&v)), (403, "session_restricted"), "{v}");
    let (status, v) = s
        .put(
            "/admin/v1/me/password",
            &old,
            json!({"current_password": PASSWORD, "new_password": "Fresh-Password-2026!"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.get("/admin/v1/keys", &old).await.0, 200);

    // An admin scoped to a tenant runs that tenant only: nothing gateway-wide, nobody else's.
    s.cli_user("acme-admin@bank.example", "admin", Some("acme"));
    let scoped = s.login("acme-admin@bank.example").await;
    for (method, path) in [
        (Method::GET, "/admin/v1/security-settings"),
        (Method::PUT, "/admin/v1/security-settings"),
        (Method::GET, "/admin/v1/login-failures"),
        (Method::POST, "/admin/v1/tenants"),
    ] {
        let (status, v) = s
            .call(
                method.clone(),
                path,
                Some(&scoped),
                Some(json!({"name": "t2"})),
            )
            .await;
        assert_eq!(
            (status, code(&v)),
            (403, "permission_denied"),
            "{method} {path}: {v}"
        );
    }
    let (status, v) = s
        .post("/admin/v1/users", &scoped, json!({"email": "x@bank.example", "password": PASSWORD, "role": "admin", "tenant": "globex"}))
        .await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = s
        .post(
            "/admin/v1/users",
            &scoped,
            json!({"email": "y@bank.example", "password": PASSWORD, "role": "admin"}),
        )
        .await;
    assert_eq!(
        (status, v["tenant"].as_str()),
        (201, Some("acme")),
        "created in its own tenant: {v}"
    );
    let gmgr_id = s.user_id(&root, "gmgr@bank.example").await;
    let (status, _) = s
        .put(
            &format!("/admin/v1/users/{gmgr_id}/role"),
            &scoped,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post(
            &format!("/admin/v1/users/{gmgr_id}/reset-mfa"),
            &scoped,
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, all) = s.get("/admin/v1/sessions?all=true", &scoped).await;
    assert_eq!(status, 200);
    let gmgr_sessions = s
        .get(&format!("/admin/v1/sessions?user_id={gmgr_id}"), &root)
        .await
        .1;
    let gmgr_session = gmgr_sessions["data"][0]["id"].as_str().unwrap();
    assert!(!all.to_string().contains(gmgr_session), "{all}");
    let (_, users) = s.get("/admin/v1/users", &scoped).await;
    assert!(
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["tenant"] == "acme"),
        "{users}"
    );

    // Admin actions reach the audit trail, by user id and without secrets.
    let out =
        s.gw.cli(&["audit", "search", "--action", "key.rotated", "--json"]);
    let found = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && found.contains("key.rotated"),
        "{found}"
    );
    assert!(!found.contains(new_secret));
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// TOTP enrolment, login with codes, replay refusal, recovery codes, the MFA requirement and
/// its grace period, and `users reset-mfa`.
async fn mfa(s: &Admin) {
    s.cli_user("mfa@bank.example", "manager", Some("acme"));
    let token = s.login("mfa@bank.example").await;
    let (status, enrol) = s.post("/admin/v1/me/mfa/totp", &token, json!({})).await;
    assert_eq!(status, 200, "{enrol}");
    s.saw(enrol["secret"].as_str().unwrap());
    let secret = totp::decode_secret(enrol["secret"].as_str().unwrap()).unwrap();
    let uri = enrol["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Portcullis:mfa%40bank.example?secret="),
        "{uri}"
    );
    assert!(enrol["qr_svg"].as_str().unwrap().contains("<svg"));
    let (status, v) = s
        .post(
            "/admin/v1/me/mfa/totp/confirm",
            &token,
            json!({"code": "000000"}),
        )
        .await;
    // (One in a million: the wrong code is right. Then the test still passes below.)
    assert!(status == 401 || status == 200, "{v}");
    let step = totp::step_of(now());
    let code_now = format!("{:06}", totp::code_at(&secret, step));
    let (status, confirmed) = s
        .post(
            "/admin/v1/me/mfa/totp/confirm",
            &token,
            json!({"code": code_now}),
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    for p in ["Another-Good-Pass-7", "Fresh-Password-2026!"] {
        s.saw(p);
    }
    let recovery: Vec<String> =
        serde_json::from_value(confirmed["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);
    for code in &recovery {
        s.saw(code);
    }

    let login = |extra: Value| {
        let mut body = json!({"email": "mfa@bank.example", "password": PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s.login_with(body)
    };
    let (status, v) = login(json!({})).await;
    assert_eq!((status, code(&v)), (401, "mfa_required"), "{v}");
    let (status, v) = login(json!({"totp": "12345"})).await;
    assert_eq!((status, code(&v)), (401, "invalid_mfa_code"), "{v}");
    // The code used to confirm enrolment cannot be used again (replay within its time step).
    let (status, v) = login(json!({"totp": code_now})).await;
    assert_eq!((status, code(&v)), (401, "invalid_mfa_code"), "{v}");
    // The next step's code (clock drift allowance) works once.
    let next = format!("{:06}", totp::code_at(&secret, step + 1));
    let (status, v) = login(json!({"totp": next})).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = login(json!({"totp": next})).await;
    assert_eq!(
        (status, code(&v)),
        (401, "invalid_mfa_code"),
        "replayed: {v}"
    );
    // A recovery code works once.
    let (status, v) = login(json!({"recovery_code": recovery[0].to_uppercase()})).await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = login(json!({"recovery_code": recovery[0]})).await;
    assert_eq!(status, 401);

    // The MFA requirement for a role: past the grace period, a session can only enrol.
    s.cli_user("late@bank.example", "viewer", None);
    let root = s.login(ROOT).await;
    let (status, v) = s
        .put(
            "/admin/v1/security-settings",
            &root,
            json!({"mfa": {"required_for_roles": ["viewer"], "grace_period_seconds": 0}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, v) = s
        .login_with(json!({"email": "late@bank.example", "password": PASSWORD}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["restriction"]["code"], "mfa_enrollment_required", "{v}");
    let late = v["token"].as_str().unwrap().to_string();
    let (status, v) = s.get("/admin/v1/keys", &late).await;
    assert_eq!((status, code(&v)), (403, "session_restricted"), "{v}");
    assert_eq!(
        s.post("/admin/v1/me/mfa/totp", &late, json!({})).await.0,
        200
    );
    // Within a grace period the session is whole, and tells the deadline.
    let (status, _) = s
        .put(
            "/admin/v1/security-settings",
            &root,
            json!({"mfa": {"grace_period_seconds": 3600}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, v) = s
        .login_with(json!({"email": "late@bank.example", "password": PASSWORD}))
        .await;
    assert_eq!(status, 200);
    assert!(v["restriction"].is_null(), "{v}");
    assert!(v["mfa_enrollment_deadline"].as_i64().unwrap() > 0, "{v}");
    let (status, _) = s
        .put(
            "/admin/v1/security-settings",
            &root,
            json!({"mfa": {"required_for_roles": []}}),
        )
        .await;
    assert_eq!(status, 200);

    // Lost device: `users reset-mfa`, then the password alone logs in.
    let out =
        s.gw.cli(&["users", "reset-mfa", "--email", "mfa@bank.example"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, v) = login(json!({})).await;
    assert_eq!(status, 200, "{v}");
}

/// Secrets and passwords never reach the log.
fn log_holds_no_secrets(s: &Admin) {
    let log = s.gw.log();
    let secrets = s.secrets.lock().unwrap();
    assert!(secrets.len() >= 20, "{}", secrets.len());
    for secret in secrets.iter() {
        assert!(!log.contains(secret.as_str()), "the log holds a secret");
    }
    assert!(!log.contains("pcs_"), "the log holds an admin token");
}

async fn all(database_url: Option<&str>) {
    let s = setup(database_url, 5);
    login_and_every_route_needs_a_token(&s).await;
    rbac_and_keys(&s).await;
    mfa(&s).await;
    sessions(&s).await;
    log_holds_no_secrets(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_sqlite() {
    all(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_postgres() {
    let db = TempDatabase::create().await;
    all(Some(&db.url)).await;
    db.drop_database().await;
}

/// Unknown accounts and wrong passwords take about as long: both run one bcrypt at the
/// configured cost. Medians of interleaved attempts, compared as a ratio.
async fn no_enumeration_by_timing(database_url: Option<&str>) {
    let s = setup(database_url, 10);
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..9 {
        for (email, into) in [
            (ROOT, &mut wrong),
            (&*format!("ghost{i}@bank.example"), &mut unknown),
        ] {
            let start = Instant::now();
            let (status, _) = s
                .login_with(json!({"email": email, "password": "Wrong-password-1!"}))
                .await;
            into.push(start.elapsed());
            assert_eq!(status, 401);
        }
    }
    wrong.sort();
    unknown.sort();
    let ratio = unknown[4].as_secs_f64() / wrong[4].as_secs_f64();
    assert!(
        (0.6..=1.6).contains(&ratio),
        "unknown/wrong median login time ratio {ratio:.2} ({:?} vs {:?})",
        unknown[4],
        wrong[4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_accounts_take_as_long_as_wrong_passwords_on_sqlite() {
    no_enumeration_by_timing(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_accounts_take_as_long_as_wrong_passwords_on_postgres() {
    let db = TempDatabase::create().await;
    no_enumeration_by_timing(Some(&db.url)).await;
    db.drop_database().await;
}
