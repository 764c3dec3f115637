// Integration tests: panicking on a broken setup is the right failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! JWTs on the data plane: HS256 with a shared secret, RS256 / ES256 through the JWKS of an
//! OIDC provider started by the test (discovery, caching, bounded refresh on unknown `kid`s),
//! claim mapping, and every kind of bad token — on SQLite and on the real Postgres.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::gateway::TestGateway;
use support::idp::{SigningKey, TestIdp};
use support::mock_upstream::MockUpstream;
use support::postgres::TempDatabase;

const HS_SECRET: &str = "test-only-hs256-secret-of-32-bytes-or-more";
const AUDIENCE: &str = "portcullis-gateway";
const HS_ISSUER: &str = "https://tokens.acme.test";

struct Setup {
    _upstream: MockUpstream,
    _secret_dir: tempfile::TempDir,
    idp: TestIdp,
    gw: TestGateway,
    http: reqwest::Client,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn setup(database_url: Option<&str>) -> Setup {
    let upstream = MockUpstream::start().await;
    let idp = TestIdp::start(vec![SigningKey::rs256("rsa-1"), SigningKey::es256("ec-1")]).await;
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_path = secret_dir.path().join("jwt-secret");
    std::fs::write(&secret_path, HS_SECRET).unwrap();
    let body = format!(
        r#"
[[providers]]
name = "up"
kind = "openai"
base_url = "{base}"
api_key = "env:PORTCULLIS_TEST_UPSTREAM_KEY"

[[routes]]
model = "mock-*"
provider = "up"

[guardrails]
default_policy = "off"
[guardrails.policies.off.request]

[auth.jwt]
hs256_secret = "file:{secret}"
issuer = "{HS_ISSUER}"
audience = "{AUDIENCE}"
tenant_claim = "tenant"
leeway_seconds = 5
jwks_min_refresh_seconds = 2

[[auth.jwt.issuers]]
issuer = "{issuer}"
audience = "{AUDIENCE}"
tenant_claim = "org"
models_claim = "allowed_models"
required_scope = "llm:invoke"
"#,
        base = upstream.base_url(),
        secret = secret_path.display(),
        issuer = idp.issuer(),
    );
    let gw = TestGateway::start_with_database(&body, "", "", database_url);
    gw.create_tenant("acme");
    Setup {
        _upstream: upstream,
        _secret_dir: secret_dir,
        idp,
        gw,
        http: reqwest::Client::new(),
    }
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn hs_claims() -> Value {
    json!({
        "sub": "alice@acme.test",
        "iss": HS_ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
        "iat": now(),
        "tenant": "acme",
    })
}

fn idp_claims(idp: &TestIdp) -> Value {
    json!({
        "sub": "bob@acme.test",
        "iss": idp.issuer(),
        "aud": AUDIENCE,
        "exp": now() + 600,
        "iat": now(),
        "org": "acme",
        "scope": "openid llm:invoke",
        "allowed_models": ["mock-*"],
    })
}

impl Setup {
    async fn chat(&self, token: &str, model: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.gw.url("/v1/chat/completions"))
            .bearer_auth(token)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn expect_401(&self, token: &str, needle: &str) {
        let (status, body) = self.chat(token, "mock-json").await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "invalid_token", "{body}");
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

/// A token whose header or payload was replaced after signing.
fn replace_part(token: &str, index: usize, json: &Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[index] = BASE64URL_NOPAD.encode(json.to_string().as_bytes());
    parts.join(".")
}

async fn accepted_tokens(s: &Setup) {
    // HS256 with the shared secret.
    let (status, body) = s.chat(&hs256(&hs_claims()), "mock-json").await;
    assert_eq!(status, 200, "{body}");
    // RS256 and ES256 from the provider, keys found through discovery.
    let rs = SigningKey::rs256("rsa-1").sign(&idp_claims(&s.idp));
    let (status, body) = s.chat(&rs, "mock-json").await;
    assert_eq!(status, 200, "{body}");
    let es = SigningKey::es256("ec-1").sign(&idp_claims(&s.idp));
    let (status, body) = s.chat(&es, "mock-json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        s.idp
            .state
            .discovery_fetches
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(s.idp.jwks_fetches(), 1, "keys are cached");

    // Within the leeway, exp just passed is still accepted.
    let mut claims = hs_claims();
    claims["exp"] = json!(now() - 2);
    assert_eq!(s.chat(&hs256(&claims), "mock-json").await.0, 200);

    // The caller shows up by a pseudonym, never by its subject (an e-mail address here).
    let log = s.gw.log();
    assert!(log.contains("jwt_"), "{log}");
    assert!(!log.contains("alice@acme.test") && !log.contains("bob@acme.test"));
}

async fn refused_tokens(s: &Setup) {
    let idp = &s.idp;
    s.expect_401("eyJhbGciOi.eyJzdWIi.c2ln", "header").await;

    let mut claims = hs_claims();
    claims["exp"] = json!(now() - 120);
    s.expect_401(&hs256(&claims), "expired").await;

    let mut claims = hs_claims();
    claims["nbf"] = json!(now() + 120);
    s.expect_401(&hs256(&claims), "not valid yet").await;

    let mut claims = hs_claims();
    claims["aud"] = json!("someone-else");
    s.expect_401(&hs256(&claims), "audience").await;

    let mut claims = hs_claims();
    claims["iss"] = json!("https://evil.test");
    s.expect_401(&hs256(&claims), "issuer").await;

    let mut claims = hs_claims();
    claims.as_object_mut().unwrap().remove("exp");
    s.expect_401(&hs256(&claims), "required claim").await;

    // Signed with another secret; and a payload swapped after signing.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &hs_claims(),
        &EncodingKey::from_secret(b"another-secret-another-secret-another"),
    )
    .unwrap();
    s.expect_401(&forged, "signature").await;
    let mut other = hs_claims();
    other["tenant"] = json!("globex");
    s.expect_401(&replace_part(&hs256(&hs_claims()), 1, &other), "signature")
        .await;

    // alg: none, with and without a signature part.
    let none = replace_part(
        &hs256(&hs_claims()),
        0,
        &json!({"alg": "none", "typ": "JWT"}),
    );
    s.expect_401(&none, "header").await;
    let unsigned = format!("{}.", none.rsplit_once('.').unwrap().0);
    s.expect_401(&unsigned, "header").await;

    // Algorithm confusion: HS256 "signed" with the provider's public key as the secret, and an
    // RS256 header over an HMAC signature.
    let public_jwk = serde_json::to_vec(
        &jsonwebtoken::jwk::Jwk::from_encoding_key(
            &EncodingKey::from_rsa_pem(support::idp::RS256_PEM).unwrap(),
            Algorithm::RS256,
        )
        .unwrap(),
    )
    .unwrap();
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &idp_claims(idp),
        &EncodingKey::from_secret(&public_jwk),
    )
    .unwrap();
    s.expect_401(&confused, "signature").await;
    let rs_header = replace_part(
        &hs256(&idp_claims(idp)),
        0,
        &json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}),
    );
    s.expect_401(&rs_header, "signature").await;

    // Untrusted issuer; a key of the wrong family for its kid; RS256 signed by a key the
    // provider does not publish.
    let mut claims = idp_claims(idp);
    claims["iss"] = json!("http://127.0.0.1:1");
    s.expect_401(&SigningKey::rs256("rsa-1").sign(&claims), "not trusted")
        .await;
    s.expect_401(
        &SigningKey::rs256_rotated("rsa-1").sign(&idp_claims(idp)),
        "signature",
    )
    .await;
    let mut claims = idp_claims(idp);
    claims["aud"] = json!("another-api");
    s.expect_401(&SigningKey::rs256("rsa-1").sign(&claims), "audience")
        .await;

    // Claims: no tenant, a tenant that does not exist.
    let mut claims = hs_claims();
    claims.as_object_mut().unwrap().remove("tenant");
    s.expect_401(&hs256(&claims), "\"tenant\" claim").await;
    let mut claims = hs_claims();
    claims["tenant"] = json!("globex");
    s.expect_401(&hs256(&claims), "does not exist").await;

    // Authenticated but not allowed: a missing scope, a model outside the token's list.
    let mut claims = idp_claims(idp);
    claims["scope"] = json!("openid");
    let (status, body) = s
        .chat(&SigningKey::rs256("rsa-1").sign(&claims), "mock-json")
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_scope");
    let mut claims = idp_claims(idp);
    claims["allowed_models"] = json!(["mock-other"]);
    let (status, body) = s
        .chat(&SigningKey::rs256("rsa-1").sign(&claims), "mock-json")
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_are_checked_on_sqlite() {
    let s = setup(None).await;
    accepted_tokens(&s).await;
    refused_tokens(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_are_checked_on_postgres() {
    let db = TempDatabase::create().await;
    let s = setup(Some(&db.url)).await;
    accepted_tokens(&s).await;
    refused_tokens(&s).await;
    drop(s);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_refetch_keys_at_a_bounded_rate_and_rotation_works() {
    let s = setup(None).await;
    let claims = idp_claims(&s.idp);
    assert_eq!(
        s.chat(&SigningKey::rs256("rsa-1").sign(&claims), "mock-json")
            .await
            .0,
        200
    );
    assert_eq!(s.idp.jwks_fetches(), 1);

    // A flood of unknown kids within jwks_min_refresh (2 s): at most one more fetch.
    let wait = tokio::time::sleep(std::time::Duration::from_millis(2100));
    wait.await;
    for i in 0..30 {
        let token = SigningKey::rs256(&format!("nope-{i}")).sign(&claims);
        s.expect_401(&token, "unknown").await;
    }
    assert_eq!(s.idp.jwks_fetches(), 2, "one refetch for 30 unknown kids");

    // The provider rotates to a new key: once the refresh interval has passed, the new kid
    // triggers a fetch and is accepted; the retired kid is refused.
    s.idp.publish(vec![SigningKey::rs256_rotated("rsa-2")]);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = s
        .chat(
            &SigningKey::rs256_rotated("rsa-2").sign(&claims),
            "mock-json",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.idp.jwks_fetches(), 3);
    s.expect_401(&SigningKey::rs256("rsa-1").sign(&claims), "unknown")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_are_refused_without_jwt_config_and_bad_config_names_the_key() {
    let upstream = MockUpstream::start().await;
    let body = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"env:PORTCULLIS_TEST_UPSTREAM_KEY\"\n[[routes]]\nmodel = \"mock-*\"\nprovider = \"up\"\n",
        upstream.base_url()
    );
    let gw = TestGateway::start(&body, "", "");
    gw.create_tenant("acme");
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(hs256(&hs_claims()))
        .json(&json!({"model": "mock-json", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("[auth.jwt]"));

    // check-config names the key path of each problem.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let short = dir.path().join("short-secret");
    std::fs::write(&short, "too-short").unwrap();
    std::fs::write(
        &path,
        format!("[auth.jwt]\nhs256_secret = \"file:{}\"\n[[auth.jwt.issuers]]\nissuer = \"http://idp.example.com\"\naudience = \"x\"\nalgorithms = [\"HS256\"]\n", short.display()),
    )
    .unwrap();
    let out = support::gateway::cli(&path, &["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.jwt.hs256_secret"), "{err}");
    assert!(err.contains("auth.jwt.issuers[0].issuer"), "{err}");
    assert!(err.contains("auth.jwt.issuers[0].algorithms[0]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_is_refused_once_it_expires() {
    let s = setup(None).await;
    let mut claims = hs_claims();
    // leeway_seconds = 5: accepted until exp + 5 s, refused after, cached or not.
    claims["exp"] = json!(now() + 1);
    let token = hs256(&claims);
    assert_eq!(s.chat(&token, "mock-json").await.0, 200);
    assert_eq!(
        s.chat(&token, "mock-json").await.0,
        200,
        "served from the cache"
    );
    tokio::time::sleep(std::time::Duration::from_millis(7_200)).await;
    s.expect_401(&token, "expired").await;
}
