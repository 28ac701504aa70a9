//! The home node as an OpenID Connect relying party: the authorization code
//! flow with PKCE (S256), `state` and `nonce`, as a confidential client
//! (`client_secret_basic`). Which providers exist, their issuers, keys and
//! this node's client id at each come from the trust list; this node's
//! configuration adds only the client secret and the button's label.
//!
//! A login in progress is kept here (bounded, ten minutes) under its
//! `state`, bound to the browser that started it by a cookie whose hash is
//! kept with it: a callback with an unknown `state`, from another browser,
//! or late, is refused and nothing is changed. The ID token that comes back
//! is verified by `estafette_spec::oidc` like every identity proof, here and
//! again at the gateway.

mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use estafette_spec::oidc::OidcProvider;
use estafette_spec::{IdentityProof, NodeId, TrustList};
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};
use url::Url;

pub use http::{MAX_PROVIDER_ANSWER_BYTES, PROVIDER_TIMEOUT, ProviderHttp, ProviderHttpError};

use crate::config::OidcClientConfig;
use crate::home::session::SessionToken;

/// Most logins in progress at once (each holds a few hundred bytes).
pub const MAX_PENDING_LOGINS: usize = 10_000;
/// How long a person may take at the provider's login page.
pub const PENDING_LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a discovery document is used before it is fetched again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(60 * 60);

/// Why a login through a provider failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    #[error("no OpenID provider {0} is configured at this node")]
    UnknownProvider(String),
    #[error(
        "identity provider {provider} has no OpenID side or no client id for this node in the trust list (estafette-pki oidc client …)"
    )]
    NotInTrustList { provider: NodeId },
    #[error("client secret {path}: {detail}")]
    Secret { path: String, detail: String },
    #[error("{0}")]
    Http(#[from] ProviderHttpError),
    #[error("discovery document of {issuer}: {detail}")]
    Discovery { issuer: String, detail: String },
    #[error("too many logins in progress")]
    Busy,
    #[error("this login did not start here, was already finished, or took too long")]
    UnknownState,
    #[error("this login was started in another browser")]
    OtherBrowser,
    #[error("the provider answered for issuer {found:?}, not {expected:?}")]
    MixUp { expected: String, found: String },
    #[error("the provider did not log the person in: {0}")]
    Refused(String),
    #[error("the token endpoint's answer has no id_token")]
    NoIdToken,
}

/// What a finished login is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A new session.
    Login,
    /// A fresh login for this session (a change needs one of minutes ago).
    Renew(SessionToken),
    /// A second identity for this session's person (a wallet, say).
    Link(SessionToken),
}

/// The outcome of a callback: the proof, what it is for, and the nonce the
/// ID token must carry.
pub struct Finished {
    pub proof: IdentityProof,
    pub purpose: Purpose,
    pub nonce: String,
    pub provider: NodeId,
}

/// The provider's answer on the redirect back (`/login/oidc/callback`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: the issuer that answers (a defence against mix-ups).
    pub iss: Option<String>,
}

struct Endpoints {
    authorization: Url,
    token: Url,
    fetched: Instant,
}

/// One configured provider.
struct RelyingParty {
    provider: NodeId,
    label: String,
    client_secret: String,
    scope: String,
    acr_values: Option<String>,
    http: ProviderHttp,
    endpoints: tokio::sync::Mutex<Option<Endpoints>>,
}

struct Pending {
    provider: usize,
    nonce: String,
    verifier: String,
    browser: [u8; 32],
    purpose: Purpose,
    started: Instant,
}

/// The node's OpenID logins: its providers and the logins in progress.
pub struct OidcLogins {
    trust: Arc<dyn Fn() -> Arc<TrustList> + Send + Sync>,
    node: NodeId,
    redirect_uri: String,
    parties: Vec<RelyingParty>,
    pending: Mutex<HashMap<String, Pending>>,
}

fn random_text() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl OidcLogins {
    /// The configured providers, checked against the trust list now.
    pub fn new(
        node: NodeId,
        public_url: &str,
        trust: Arc<dyn Fn() -> Arc<TrustList> + Send + Sync>,
        configs: &[OidcClientConfig],
    ) -> Result<OidcLogins, OidcError> {
        let mut parties = Vec::new();
        for config in configs {
            client_of(&trust(), &config.provider, &node)?;
            parties.push(RelyingParty {
                provider: config.provider.clone(),
                label: config
                    .label
                    .clone()
                    .unwrap_or_else(|| config.provider.to_string()),
                client_secret: read_secret(&config.client_secret_file)?,
                scope: config.scope.clone(),
                acr_values: config.acr_values.clone(),
                http: ProviderHttp::new(config.ca_file.as_deref())?,
                endpoints: tokio::sync::Mutex::new(None),
            });
        }
        Ok(OidcLogins {
            trust,
            node,
            redirect_uri: format!("{}/login/oidc/callback", public_url.trim_end_matches('/')),
            parties,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The providers a person can log in with: id and label.
    pub fn providers(&self) -> impl Iterator<Item = (&NodeId, &str)> {
        self.parties.iter().map(|p| (&p.provider, p.label.as_str()))
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a login at `provider`: the address to send the browser to, and
    /// the value of the cookie that binds the login to that browser.
    pub async fn start(
        &self,
        provider: &str,
        purpose: Purpose,
    ) -> Result<(String, String), OidcError> {
        let index = self
            .parties
            .iter()
            .position(|p| p.provider.as_str() == provider)
            .ok_or_else(|| OidcError::UnknownProvider(provider.chars().take(100).collect()))?;
        let party = &self.parties[index];
        let trust = (self.trust)();
        let (oidc, client_id) = client_of(&trust, &party.provider, &self.node)?;
        let endpoint = party.authorization_endpoint(oidc).await?;
        let (state, nonce, verifier, browser) =
            (random_text(), random_text(), random_text(), random_text());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = endpoint;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("scope", &party.scope)
                .append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(acr) = &party.acr_values {
                query.append_pair("acr_values", acr);
            }
            // A fresh login, or another account's: the provider must ask,
            // not hand back the account the browser is logged in with.
            if let Purpose::Renew(_) | Purpose::Link(_) = purpose {
                query
                    .append_pair("prompt", "login")
                    .append_pair("max_age", "0");
            }
        }
        self.remember(
            state,
            Pending {
                provider: index,
                nonce,
                verifier,
                browser: Sha256::digest(browser.as_bytes()).into(),
                purpose,
                started: Instant::now(),
            },
        )?;
        Ok((url.to_string(), browser))
    }

    fn remember(&self, state: String, login: Pending) -> Result<(), OidcError> {
        let mut pending = self.pending();
        if pending.len() >= MAX_PENDING_LOGINS {
            pending.retain(|_, p| p.started.elapsed() < PENDING_LOGIN_TTL);
            if pending.len() >= MAX_PENDING_LOGINS {
                return Err(OidcError::Busy);
            }
        }
        pending.insert(state, login);
        Ok(())
    }

    /// Finishes a login from the provider's redirect: the login must have
    /// started here, in this browser (`browser` is its cookie), minutes ago;
    /// then the code is exchanged for the ID token. Single use: a second
    /// callback with the same `state` is refused.
    pub async fn finish(
        &self,
        callback: &Callback,
        browser: Option<&str>,
    ) -> Result<Finished, OidcError> {
        let state = callback.state.as_deref().ok_or(OidcError::UnknownState)?;
        let login = self
            .pending()
            .remove(state)
            .ok_or(OidcError::UnknownState)?;
        if login.started.elapsed() >= PENDING_LOGIN_TTL {
            return Err(OidcError::UnknownState);
        }
        let from_same_browser = browser
            .is_some_and(|b| <[u8; 32]>::from(Sha256::digest(b.as_bytes())) == login.browser);
        if !from_same_browser {
            return Err(OidcError::OtherBrowser);
        }
        let party = &self.parties[login.provider];
        let trust = (self.trust)();
        let (oidc, client_id) = client_of(&trust, &party.provider, &self.node)?;
        if let Some(iss) = &callback.iss
            && iss != &oidc.issuer
        {
            return Err(OidcError::MixUp {
                expected: oidc.issuer.clone(),
                found: iss.chars().take(100).collect(),
            });
        }
        if let Some(error) = &callback.error {
            return Err(OidcError::Refused(error.chars().take(100).collect()));
        }
        let code = callback
            .code
            .as_deref()
            .ok_or_else(|| OidcError::Refused("no code".into()))?;
        let token = party.token_endpoint(oidc).await?;
        let answer = party
            .http
            .post_form(
                &token,
                (client_id, &party.client_secret),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &self.redirect_uri),
                    ("code_verifier", &login.verifier),
                ],
            )
            .await?;
        let id_token = answer["id_token"].as_str().ok_or(OidcError::NoIdToken)?;
        Ok(Finished {
            proof: IdentityProof::IdToken(id_token.to_owned()),
            purpose: login.purpose,
            nonce: login.nonce,
            provider: party.provider.clone(),
        })
    }
}

impl RelyingParty {
    async fn authorization_endpoint(&self, oidc: &OidcProvider) -> Result<Url, OidcError> {
        Ok(self.endpoints(oidc).await?.0)
    }

    async fn token_endpoint(&self, oidc: &OidcProvider) -> Result<Url, OidcError> {
        Ok(self.endpoints(oidc).await?.1)
    }

    /// The provider's endpoints from its discovery document (OpenID Connect
    /// Discovery 1.0), fetched at most once an hour. Its `issuer` must be the
    /// trust list's, and both endpoints https.
    async fn endpoints(&self, oidc: &OidcProvider) -> Result<(Url, Url), OidcError> {
        let mut cached = self.endpoints.lock().await;
        if let Some(e) = cached.as_ref()
            && e.fetched.elapsed() < DISCOVERY_TTL
        {
            return Ok((e.authorization.clone(), e.token.clone()));
        }
        let bad = |detail: &str| OidcError::Discovery {
            issuer: oidc.issuer.clone(),
            detail: detail.to_owned(),
        };
        let url = Url::parse(&format!(
            "{}/.well-known/openid-configuration",
            oidc.issuer.trim_end_matches('/')
        ))
        .map_err(|_| bad("the issuer is not a URL"))?;
        let document = self.http.get_json(&url).await?;
        if document["issuer"].as_str() != Some(oidc.issuer.as_str()) {
            return Err(bad("its issuer is not the trust list's"));
        }
        let endpoint = |name: &str| -> Result<Url, OidcError> {
            document[name]
                .as_str()
                .and_then(|u| Url::parse(u).ok())
                .filter(|u| u.scheme() == "https")
                .ok_or_else(|| bad(&format!("no https {name}")))
        };
        let found = Endpoints {
            authorization: endpoint("authorization_endpoint")?,
            token: endpoint("token_endpoint")?,
            fetched: Instant::now(),
        };
        let both = (found.authorization.clone(), found.token.clone());
        *cached = Some(found);
        Ok(both)
    }
}

/// The provider's OpenID side and this node's client id there.
fn client_of<'t>(
    trust: &'t TrustList,
    provider: &NodeId,
    node: &NodeId,
) -> Result<(&'t OidcProvider, &'t str), OidcError> {
    trust
        .content()
        .identity_providers
        .iter()
        .find(|p| &p.id == provider)
        .and_then(|p| p.oidc.as_ref())
        .and_then(|oidc| Some((oidc, oidc.client_of(node)?)))
        .ok_or_else(|| OidcError::NotInTrustList {
            provider: provider.clone(),
        })
}

/// A client secret from its file, which only the node's user may read.
fn read_secret(path: &std::path::Path) -> Result<String, OidcError> {
    let bad = |detail: String| OidcError::Secret {
        path: path.display().to_string(),
        detail,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| bad(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "readable by others (mode {:o}); chmod 600 it",
                mode & 0o777
            )));
        }
    }
    let secret = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(bad("it is empty".into()));
    }
    Ok(secret.to_owned())
}
