//! A small OpenID Connect provider for the tests, served over real HTTP on 127.0.0.1: the
//! discovery document and the JWKS the gateway fetches, and signing of tokens with the keys
//! it publishes. Tests can rotate keys and count how often the keys were fetched. It also runs
//! the authorization code flow for SSO: `/authorize` (signs in whoever the test chose with
//! [`TestIdp::sign_in_as`], checks the parameters, redirects back with a code) and `/token`
//! (client authentication, single-use codes, redirect URI and PKCE S256 checks; answers an
//! RS256 ID token carrying the login's nonce).
//!
//! Its keys are test-only PEM files in `tests/support/keys/` (generated with openssl).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::Digest;
use tokio::net::TcpListener;

pub const RS256_PEM: &[u8] = include_bytes!("keys/rs256.pem");
pub const RS256_ROTATED_PEM: &[u8] = include_bytes!("keys/rs256-rotated.pem");
pub const ES256_PEM: &[u8] = include_bytes!("keys/es256.pem");

/// A signing key the provider holds.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub pem: &'static [u8],
}

impl SigningKey {
    pub fn rs256(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            pem: RS256_PEM,
        }
    }
    pub fn rs256_rotated(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            pem: RS256_ROTATED_PEM,
        }
    }
    pub fn es256(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            pem: ES256_PEM,
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(self.pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(self.pem).unwrap(),
        }
    }

    fn public_jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding_key(), self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk
    }

    /// A token with `claims`, signed by this key, `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }
}

pub struct IdpState {
    /// Published in the JWKS.
    pub published: Mutex<Vec<SigningKey>>,
    pub discovery_fetches: AtomicUsize,
    pub jwks_fetches: AtomicUsize,
    /// The registered client: (client_id, client_secret, redirect_uris).
    pub client: Mutex<Option<(String, String, Vec<String>)>>,
    /// Claims of whoever signs in at `/authorize` next (sub, email, groups …).
    pub user: Mutex<Value>,
    /// Codes issued and not yet redeemed.
    codes: Mutex<HashMap<String, IssuedCode>>,
    /// Put a different nonce in ID tokens (a provider that does not echo it, or a replay).
    pub wrong_nonce: AtomicBool,
    pub token_requests: AtomicUsize,
}

struct IssuedCode {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    claims: Value,
}

pub struct TestIdp {
    pub addr: SocketAddr,
    pub state: Arc<IdpState>,
}

impl TestIdp {
    /// Serves on a free port of 127.0.0.1, on the current tokio runtime.
    pub async fn start(keys: Vec<SigningKey>) -> TestIdp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(IdpState {
            published: Mutex::new(keys),
            discovery_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            client: Mutex::new(None),
            user: Mutex::new(json!({})),
            codes: Mutex::new(HashMap::new()),
            wrong_nonce: AtomicBool::new(false),
            token_requests: AtomicUsize::new(0),
        });
        let accept_state = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, addr, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestIdp { addr, state }
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn publish(&self, keys: Vec<SigningKey>) {
        *self.state.published.lock().unwrap() = keys;
    }

    /// Registers the one client the provider knows.
    pub fn register_client(&self, client_id: &str, secret: &str, redirect_uris: &[&str]) {
        *self.state.client.lock().unwrap() = Some((
            client_id.into(),
            secret.into(),
            redirect_uris.iter().map(|u| u.to_string()).collect(),
        ));
    }

    /// An ID token issued by the provider itself, through the authorization code flow over
    /// HTTP (authorize with PKCE, then redeem the code at `/token` with the client's secret),
    /// for `claims` (`aud` is the registered client's id).
    pub async fn issue_id_token(&self, claims: Value) -> String {
        let (client_id, secret, redirects) = self.state.client.lock().unwrap().clone().unwrap();
        self.sign_in_as(claims);
        let verifier = "a-test-pkce-verifier-that-is-long-enough-for-rfc-7636-00";
        let challenge = data_encoding::BASE64URL_NOPAD.encode(&sha2::Sha256::digest(verifier));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let authorize = url_with(
            &format!("{}/authorize", self.issuer()),
            &[
                ("response_type", "code"),
                ("client_id", &client_id),
                ("redirect_uri", &redirects[0]),
                ("scope", "openid"),
                ("state", "s"),
                ("nonce", "n"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        let resp = http.get(authorize).send().await.unwrap();
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let code = params(location.split_once('?').unwrap().1)["code"].clone();
        let token: Value = http
            .post(format!("{}/token", self.issuer()))
            .basic_auth(&client_id, Some(&secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirects[0]),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["id_token"].as_str().unwrap().to_string()
    }

    /// Who signs in at `/authorize` next: their `sub` and any other claims.
    pub fn sign_in_as(&self, claims: Value) {
        *self.state.user.lock().unwrap() = claims;
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn params(text: &str) -> HashMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// `/authorize`: the user (chosen by the test) signs in and is sent back with a code.
fn authorize(query: &str, state: &IdpState) -> Response<Full<Bytes>> {
    let q = params(query);
    let client = state.client.lock().unwrap().clone().unwrap();
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let problems = [
        (get("response_type") != "code", "response_type must be code"),
        (get("client_id") != client.0, "unknown client_id"),
        (
            !client.2.contains(&get("redirect_uri")),
            "redirect_uri not registered",
        ),
        (
            !get("scope").split(' ').any(|s| s == "openid"),
            "scope lacks openid",
        ),
        (get("state").is_empty(), "no state"),
        (get("nonce").is_empty(), "no nonce"),
        (get("code_challenge_method") != "S256", "PKCE S256 required"),
        (get("code_challenge").len() != 43, "bad code_challenge"),
    ];
    if let Some((_, problem)) = problems.iter().find(|(bad, _)| *bad) {
        return reply(
            400,
            json!({"error": "invalid_request", "error_description": problem}),
        );
    }
    let code = portcullis::ids::new_id("code").unwrap();
    state.codes.lock().unwrap().insert(
        code.clone(),
        IssuedCode {
            nonce: get("nonce"),
            challenge: get("code_challenge"),
            redirect_uri: get("redirect_uri"),
            claims: state.user.lock().unwrap().clone(),
        },
    );
    let redirect = get("redirect_uri");
    let mut location = url_with(&redirect, &[("code", &code), ("state", &get("state"))]);
    if q.contains_key("deny") {
        location = url_with(
            &redirect,
            &[("error", "access_denied"), ("state", &get("state"))],
        );
    }
    Response::builder()
        .status(302)
        .header("location", location)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn url_with(base: &str, pairs: &[(&str, &str)]) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{base}?{query}")
}

/// `/token`: redeems a code once, for the registered client, with the PKCE verifier.
fn token(
    headers: &hyper::HeaderMap,
    body: &str,
    issuer: &str,
    state: &IdpState,
) -> Response<Full<Bytes>> {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let form = params(body);
    let (client_id, secret, _) = state.client.lock().unwrap().clone().unwrap();
    // client_secret_basic (the default of the gateway's OIDC client) or client_secret_post.
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let authenticated = match basic {
        Some(pair) => {
            let (id, pw) = pair.split_once(':').unwrap_or_default();
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .unwrap()
                    .1
                    .into_owned()
            };
            decode(id) == client_id && decode(pw) == secret
        }
        None => {
            form.get("client_id") == Some(&client_id) && form.get("client_secret") == Some(&secret)
        }
    };
    if !authenticated {
        return reply(401, json!({"error": "invalid_client"}));
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return reply(400, json!({"error": "unsupported_grant_type"}));
    }
    let Some(issued) = form
        .get("code")
        .and_then(|c| state.codes.lock().unwrap().remove(c))
    else {
        return reply(
            400,
            json!({"error": "invalid_grant", "error_description": "unknown or used code"}),
        );
    };
    if form.get("redirect_uri") != Some(&issued.redirect_uri) {
        return reply(
            400,
            json!({"error": "invalid_grant", "error_description": "redirect_uri mismatch"}),
        );
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge =
        data_encoding::BASE64URL_NOPAD.encode(&sha2::Sha256::digest(verifier.as_bytes()));
    if challenge != issued.challenge {
        return reply(
            400,
            json!({"error": "invalid_grant", "error_description": "PKCE verification failed"}),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let nonce = if state.wrong_nonce.load(Ordering::SeqCst) {
        "not-the-nonce-of-this-login".to_string()
    } else {
        issued.nonce
    };
    let mut claims = json!({
        "iss": issuer, "aud": client_id, "iat": now, "exp": now + 300, "nonce": nonce,
    });
    claims
        .as_object_mut()
        .unwrap()
        .extend(issued.claims.as_object().unwrap().clone());
    let key = state.published.lock().unwrap()[0].clone();
    reply(
        200,
        json!({"access_token": portcullis::ids::new_id("at").unwrap(), "token_type": "Bearer",
               "expires_in": 300, "id_token": key.sign(&claims)}),
    )
}

async fn handle(
    req: Request<Incoming>,
    addr: SocketAddr,
    state: &IdpState,
) -> Response<Full<Bytes>> {
    let issuer = format!("http://{addr}");
    match req.uri().path() {
        "/authorize" => return authorize(req.uri().query().unwrap_or_default(), state),
        "/token" if req.method() == hyper::Method::POST => {
            let headers = req.headers().clone();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            return token(&headers, &String::from_utf8_lossy(&body), &issuer, state);
        }
        _ => {}
    }
    let body = match req.uri().path() {
        "/.well-known/openid-configuration" => {
            state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            })
        }
        "/jwks" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let keys = state
                .published
                .lock()
                .unwrap()
                .iter()
                .map(SigningKey::public_jwk)
                .collect();
            let mut doc = serde_json::to_value(JwkSet { keys }).unwrap();
            // A key of a type the gateway does not use must not hide the others.
            doc["keys"]
                .as_array_mut()
                .unwrap()
                .push(json!({"kty": "OKP-unknown", "kid": "weird", "x": "AAAA"}));
            doc
        }
        _ => {
            return Response::builder()
                .status(404)
                .body(Full::new(Bytes::from_static(b"not found")))
                .unwrap()
        }
    };
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
