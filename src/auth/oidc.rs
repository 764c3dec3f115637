//! OpenID Connect for administrators' single sign-on, with the `openidconnect` crate: the
//! authorization code flow with PKCE (S256), `state` and `nonce`. The provider's discovery
//! document (and with it its signing keys) is cached for [`METADATA_TTL`] and fetched again
//! once when an ID token does not verify, in case the keys rotated.

use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use tokio::sync::Mutex;

use crate::config::SsoProvider;

const METADATA_TTL: Duration = Duration::from_secs(600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot read the provider's discovery document: {0}")]
    Discovery(String),
    #[error("the provider refused the authorization code: {0}")]
    Exchange(String),
    #[error("the provider's ID token is not acceptable: {0}")]
    IdToken(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl OidcError {
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Discovery(_) => "sso_provider_unavailable",
            OidcError::Exchange(_) => "sso_code_rejected",
            OidcError::IdToken(_) => "sso_invalid_id_token",
            OidcError::Http(_) => "sso_http_client",
        }
    }
}

/// One configured provider.
pub struct OidcClient {
    pub provider: SsoProvider,
    http: openidconnect::reqwest::Client,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

/// A login to send the browser off with; `state`, `nonce` and the PKCE verifier are kept
/// server-side until the callback.
pub struct Started {
    pub authorization_url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Who the provider says logged in, after every check on the ID token.
pub struct Identity {
    pub subject: String,
    /// Every claim of the verified ID token (for the e-mail and role claims, whatever their
    /// names at this provider).
    pub claims: serde_json::Value,
}

impl OidcClient {
    pub fn new(provider: SsoProvider) -> Result<OidcClient, OidcError> {
        let http = openidconnect::reqwest::Client::builder()
            // Following redirects would let a provider's endpoint send us anywhere (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| OidcError::Http(e.to_string()))?;
        Ok(OidcClient {
            provider,
            http,
            metadata: Mutex::new(None),
        })
    }

    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, metadata)) = cached.as_ref() {
            if !refresh && at.elapsed() < METADATA_TTL {
                return Ok(metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(self.provider.issuer.clone())
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        // Also checks that the document's `issuer` is exactly the configured one.
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
        *cached = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(&self, metadata: CoreProviderMetadata) -> Result<Client, OidcError> {
        let redirect = RedirectUrl::new(self.provider.redirect_url.clone())
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.provider.client_id.clone()),
            self.provider
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        )
        .set_redirect_uri(redirect))
    }

    pub async fn start(&self) -> Result<Started, OidcError> {
        let client = self.client(self.metadata(false).await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.provider.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Started {
            authorization_url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token: signature by the
    /// provider's keys, `iss`, `aud`/`azp`, `exp`, `iat` and the `nonce` of this login.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, OidcError> {
        let client = self.client(self.metadata(false).await?)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        use openidconnect::TokenResponse;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::IdToken("the token response has no id_token".into()))?;
        let nonce = Nonce::new(nonce.to_string());
        let subject = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.subject().to_string(),
            Err(first) => {
                // The provider may have rotated its keys since the discovery document was read.
                let fresh = self.client(self.metadata(true).await?)?;
                let verifier = fresh.id_token_verifier();
                let subject = match id_token.claims(&verifier, &nonce) {
                    Ok(claims) => claims.subject().to_string(),
                    Err(_) => return Err(OidcError::IdToken(first.to_string())),
                };
                subject
            }
        };
        // The token verified; its payload is read again as plain JSON for the claims the
        // crate's standard types do not carry (groups, roles, tenant).
        let claims = payload(&id_token.to_string())
            .ok_or_else(|| OidcError::IdToken("unreadable payload".into()))?;
        Ok(Identity { subject, claims })
    }
}

fn payload(jwt: &str) -> Option<serde_json::Value> {
    let part = jwt.split('.').nth(1)?;
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(part.trim_end_matches('=').as_bytes())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
