//! A small OpenID Connect provider for the tests, served over real HTTP on 127.0.0.1: the
//! discovery document and the JWKS the gateway fetches, and signing of tokens with the keys
//! it publishes. Tests can rotate keys and count how often the keys were fetched.
//!
//! Its keys are test-only PEM files in `tests/support/keys/` (generated with openssl).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
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
                        async move { Ok::<_, std::convert::Infallible>(handle(req, addr, &state)) }
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
}

fn handle(req: Request<Incoming>, addr: SocketAddr, state: &IdpState) -> Response<Full<Bytes>> {
    let issuer = format!("http://{addr}");
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
