// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! OIDC single sign-on for the admin plane against a real OIDC provider started by the test
//! (tests/support/idp.rs: discovery, JWKS, /authorize, /token with PKCE), on SQLite and on
//! the real Postgres. The test plays the browser: it follows the gateway's redirect to the
//! provider and the provider's redirect back to the gateway's callback, carrying the cookie.

mod support;

use reqwest::redirect::Policy;
use serde_json::{json, Value};
use support::gateway::TestGateway;
use support::idp::{SigningKey, TestIdp};
use support::postgres::TempDatabase;

const CLIENT_ID: &str = "portcullis-admin";
const CLIENT_SECRET: &str = "test-only-sso-client-secret";
/// The callback registered at the provider. The provider never calls it (the browser does), so
/// it need not be the gateway's port; the gateway checks it ends with its callback path.
const REDIRECT: &str = "http://localhost/admin/v1/sso/test/callback";
/// A second provider, bound to tenant acme (same client at the same test provider).
const ACME_REDIRECT: &str = "http://localhost/admin/v1/sso/acme/callback";

struct Sso {
    idp: TestIdp,
    gw: TestGateway,
    http: reqwest::Client,
    _secret_dir: tempfile::TempDir,
}

async fn setup(database_url: Option<&str>) -> Sso {
    let idp = TestIdp::start(vec![SigningKey::rs256("rsa-1")]).await;
    idp.register_client(CLIENT_ID, CLIENT_SECRET, &[REDIRECT, ACME_REDIRECT]);
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("sso-secret");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    let body = format!(
        r#"
[[providers]]
name = "demo"
kind = "mock"
[[routes]]
model = "*"
provider = "demo"

[users]
bcrypt_cost = 4

[[users.sso]]
name = "test"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "file:{secret}"
redirect_url = "{REDIRECT}"
scopes = ["openid", "email", "groups"]
role_claim = "groups"
allowed_domains = ["bank.example"]
[users.sso.role_mapping]
"portcullis-admins" = "admin"
"auditors" = "viewer"

[[users.sso]]
name = "acme"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "file:{secret}"
redirect_url = "{ACME_REDIRECT}"
tenant = "acme"
default_role = "developer"
"#,
        issuer = idp.issuer(),
        secret = secret.display(),
    );
    let gw = TestGateway::start_with_database(&body, "", "", database_url);
    gw.create_tenant("acme");
    Sso {
        idp,
        gw,
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        _secret_dir: secret_dir,
    }
}

/// What the browser would end up with: the callback's status and body.
struct Flow {
    callback_url: String,
    cookie: String,
}

impl Sso {
    /// Login at the gateway, then sign in at the provider as `claims`; the callback to call.
    async fn start(&self, claims: Value) -> Flow {
        self.start_at("test", claims).await
    }

    async fn start_at(&self, provider: &str, claims: Value) -> Flow {
        self.idp.sign_in_as(claims);
        let resp = self
            .http
            .get(
                self.gw
                    .admin_url(&format!("/admin/v1/sso/{provider}/login")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 302);
        let authorize = resp.headers()["location"].to_str().unwrap().to_string();
        let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        assert!(authorize.starts_with(&format!("{}/authorize?", self.idp.issuer())));
        assert!(
            authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );
        let resp = self.http.get(&authorize).send().await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            302,
            "{}",
            resp.text().await.unwrap()
        );
        let back = resp.headers()["location"].to_str().unwrap().to_string();
        let callback = format!("/admin/v1/sso/{provider}/callback");
        let query = back
            .strip_prefix(&format!("http://localhost{callback}"))
            .unwrap();
        Flow {
            callback_url: self.gw.admin_url(&format!("{callback}{query}")),
            cookie,
        }
    }

    async fn finish(&self, flow: &Flow) -> (u16, Value) {
        self.callback(&flow.callback_url, Some(&flow.cookie)).await
    }

    async fn callback(&self, url: &str, cookie: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(url);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn login(&self, claims: Value) -> (u16, Value) {
        let flow = self.start(claims).await;
        self.finish(&flow).await
    }

    async fn me(&self, token: &str) -> Value {
        let resp = self
            .http
            .get(self.gw.admin_url("/admin/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn ann(groups: &[&str]) -> Value {
    json!({"sub": "idp-user-1", "email": "Ann@Bank.Example", "email_verified": true, "groups": groups})
}

async fn sso_flows(s: &Sso) {
    // Providers are listed without a token; an unknown one is 404.
    let list: Value = s
        .http
        .get(s.gw.admin_url("/admin/v1/sso"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["name"], "test");
    let status = s
        .http
        .get(s.gw.admin_url("/admin/v1/sso/nope/login"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 404);

    // First login: the account is created with the mapped role and no password.
    let (status, v) = s.login(ann(&["portcullis-admins", "auditors"])).await;
    assert_eq!(status, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let me = s.me(&token).await;
    assert_eq!(me["user"]["email"], "ann@bank.example");
    assert_eq!(
        me["user"]["role"], "admin",
        "the most privileged mapped role"
    );
    assert_eq!(me["session"]["method"], "sso");
    let password_login = s
        .http
        .post(s.gw.admin_url("/admin/v1/login"))
        .json(&json!({"email": "ann@bank.example", "password": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(password_login.status().as_u16(), 401);

    // The provider's groups stay the source of truth for the role.
    let (status, v) = s.login(ann(&["auditors"])).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        s.me(v["token"].as_str().unwrap()).await["user"]["role"],
        "viewer"
    );

    // A callback works once.
    let flow = s.start(ann(&["auditors"])).await;
    assert_eq!(s.finish(&flow).await.0, 200);
    let (status, v) = s.finish(&flow).await;
    assert_eq!((status, code(&v)), (401, "sso_state_invalid"), "{v}");
    // The state must come back to the browser that started the login.
    let flow = s.start(ann(&["auditors"])).await;
    let (status, v) = s.callback(&flow.callback_url, None).await;
    assert_eq!((status, code(&v)), (401, "sso_state_mismatch"), "{v}");
    let (status, v) = s
        .callback(&flow.callback_url, Some("portcullis_sso_state=forged"))
        .await;
    assert_eq!((status, code(&v)), (401, "sso_state_mismatch"), "{v}");
    // A forged code is refused by the provider.
    let flow = s.start(ann(&["auditors"])).await;
    let forged = flow.callback_url.replacen("code=code_", "code=forged_", 1);
    let (status, v) = s.callback(&forged, Some(&flow.cookie)).await;
    assert_eq!((status, code(&v)), (401, "sso_code_rejected"), "{v}");
    // An ID token that does not carry this login's nonce is refused.
    s.idp
        .state
        .wrong_nonce
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, v) = s.login(ann(&["auditors"])).await;
    assert_eq!((status, code(&v)), (401, "sso_invalid_id_token"), "{v}");
    s.idp
        .state
        .wrong_nonce
        .store(false, std::sync::atomic::Ordering::SeqCst);

    // Claims the configuration does not accept.
    let (status, v) = s.login(ann(&["interns"])).await;
    assert_eq!((status, code(&v)), (401, "sso_no_role"), "{v}");
    let (status, v) = s
        .login(json!({"sub": "x-2", "email": "eve@evil.example", "email_verified": true, "groups": ["portcullis-admins"]}))
        .await;
    assert_eq!((status, code(&v)), (401, "sso_domain_not_allowed"), "{v}");
    let (status, v) = s
        .login(json!({"sub": "x-3", "email": "bob@bank.example", "email_verified": false, "groups": ["auditors"]}))
        .await;
    assert_eq!((status, code(&v)), (401, "sso_email_unverified"), "{v}");
    // Ann's address, but another identity at the provider (the address was re-assigned).
    let (status, v) = s
        .login(json!({"sub": "idp-user-2", "email": "ann@bank.example", "email_verified": true, "groups": ["portcullis-admins"]}))
        .await;
    assert_eq!((status, code(&v)), (401, "sso_subject_mismatch"), "{v}");

    // Without email_verified the provider does not vouch for the address.
    let (status, v) = s
        .login(json!({"sub": "x-4", "email": "carl@bank.example", "groups": ["auditors"]}))
        .await;
    assert_eq!((status, code(&v)), (401, "sso_email_unverified"), "{v}");
    // Ann's identity with a new address: the old account is not handed to a new one.
    let (status, v) = s
        .login(json!({"sub": "idp-user-1", "email": "ann.new@bank.example", "email_verified": true, "groups": ["auditors"]}))
        .await;
    assert_eq!((status, code(&v)), (401, "sso_subject_mismatch"), "{v}");
    // A password account is never taken over on the provider's word.
    let mut child = std::process::Command::new(support::gateway::BIN)
        .args([
            "users",
            "create",
            "--email",
            "root@bank.example",
            "--role",
            "admin",
            "--config",
        ])
        .arg(&s.gw.config_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"Correct-Horse-9-Battery\n").unwrap();
    assert!(child.wait().unwrap().success());
    let (status, v) = s
        .login(json!({"sub": "attacker", "email": "root@bank.example", "email_verified": true, "groups": ["portcullis-admins"]}))
        .await;
    assert_eq!((status, code(&v)), (401, "sso_account_has_password"), "{v}");
    // A provider bound to tenant acme creates acme users, and cannot log into others.
    let flow = s
        .start_at(
            "acme",
            json!({"sub": "acme-1", "email": "dora@bank.example", "email_verified": true}),
        )
        .await;
    let (status, v) = s.finish(&flow).await;
    assert_eq!(status, 200, "{v}");
    let me = s.me(v["token"].as_str().unwrap()).await;
    assert_eq!(
        (me["user"]["tenant"].as_str(), me["user"]["role"].as_str()),
        (Some("acme"), Some("developer"))
    );
    let flow = s
        .start_at(
            "acme",
            json!({"sub": "idp-user-1", "email": "ann@bank.example", "email_verified": true}),
        )
        .await;
    let (status, v) = s.finish(&flow).await;
    assert_eq!((status, code(&v)), (401, "sso_tenant_mismatch"), "{v}");

    // The provider refusing the login.
    s.idp.sign_in_as(ann(&["auditors"]));
    let resp = s
        .http
        .get(s.gw.admin_url("/admin/v1/sso/test/login"))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let authorize = resp.headers()["location"].to_str().unwrap().to_string();
    let back = s
        .http
        .get(format!("{authorize}&deny=1"))
        .send()
        .await
        .unwrap();
    let query = back.headers()["location"]
        .to_str()
        .unwrap()
        .strip_prefix(REDIRECT)
        .unwrap()
        .to_string();
    let (status, v) = s
        .callback(
            &s.gw
                .admin_url(&format!("/admin/v1/sso/test/callback{query}")),
            Some(&cookie),
        )
        .await;
    assert_eq!((status, code(&v)), (401, "sso_denied"), "{v}");

    // Failures were counted against the client's address, and the secret never logged.
    let log = s.gw.log();
    assert!(!log.contains(CLIENT_SECRET));
    assert!(!log.contains("pcs_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_on_sqlite() {
    let s = setup(None).await;
    sso_flows(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_on_postgres() {
    let db = TempDatabase::create().await;
    let s = setup(Some(&db.url)).await;
    sso_flows(&s).await;
    drop(s);
    db.drop_database().await;
}
