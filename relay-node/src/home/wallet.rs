//! The home node as an OpenID4VP verifier (OpenID for Verifiable
//! Presentations 1.0, `SPEC.md` §8.3): a person logs in with the PID in
//! their EU Digital Identity Wallet.
//!
//! A login in progress is a *transaction*: started by a browser (bound to
//! it by a cookie whose hash is kept), shown as a QR code and a link that
//! carry the node's client id and the `request_uri` of a signed request
//! object (JAR, signed with the node's TLS key, its certificate in `x5c`), answered by the
//! wallet with `direct_post` to the `response_uri`. The answer is verified
//! at once (the wallet is told if it is refused) and kept until the
//! browser that started the transaction picks it up; only then does a
//! session start, so a presentation opens a session only in the browser
//! that asked for it. Transactions are bounded in number and time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use estafette_spec::assertion::{AssertionError, AssertionPolicy, PidProof};
use estafette_spec::pid::{
    PID_FORMAT, PID_REQUESTED_CLAIMS, PID_VCT, PidError, PidPresentation, StatusError,
    presentation_status_reference, verifier_client_id,
};
use estafette_spec::{IdentityProof, NodeId, Timestamp, TrustList};
use rand_core::{OsRng, RngCore};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::home::oidc::{ProviderHttp, ProviderHttpError, Purpose};

/// Most wallet logins in progress at once.
pub const MAX_PENDING_WALLET_LOGINS: usize = 10_000;
/// How long a person may take to open their wallet and answer.
pub const WALLET_LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// Largest `direct_post` body accepted from a wallet.
pub const MAX_WALLET_RESPONSE_BYTES: usize = 128 * 1024;
/// Most status lists kept, and how long one is used before it is fetched
/// again.
pub const MAX_CACHED_STATUS_LISTS: usize = 64;
pub const STATUS_LIST_CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// Why a wallet login failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalletError {
    #[error(
        "the node's TLS key cannot sign wallet requests (an Ed25519 or ECDSA P-256 key is needed): {0}"
    )]
    Key(String),
    #[error(
        "the node's TLS certificate is not the one the trust list has for it, so wallets could not check its requests"
    )]
    CertificateNotInTrustList,
    #[error("{0}")]
    Client(String),
    #[error("too many wallet logins in progress")]
    Busy,
    #[error("this wallet login did not start here, was already finished, or took too long")]
    UnknownTransaction,
    #[error("this wallet login was started in another browser")]
    OtherBrowser,
    #[error("the wallet's answer is not a presentation of the PID asked for: {0}")]
    Response(&'static str),
    #[error("the PID's status list could not be fetched: {0}")]
    StatusList(#[from] ProviderHttpError),
    #[error("{0}")]
    Refused(String),
}

/// Where a transaction stands.
enum Answer {
    Waiting,
    /// The wallet answered with this verified proof.
    Presented(IdentityProof),
    /// The wallet's answer was refused, for this reason (shown to the
    /// person).
    Refused(String),
}

/// A wallet login in progress, kept under its id, which is also the
/// request's `state` (the wallet learns both from the request anyway).
struct Transaction {
    nonce: String,
    browser: [u8; 32],
    purpose: Purpose,
    started: Instant,
    request_fetched: bool,
    /// Given to the wallet for the same-device redirect; must come back.
    response_code: String,
    answer: Answer,
}

/// The node's TLS key, which signs its request objects: Ed25519 (EdDSA,
/// the federation's node keys) or P-256 (ES256).
enum RequestKey {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl RequestKey {
    fn from_pkcs8(der: &[u8]) -> Result<RequestKey, WalletError> {
        if let Ok(key) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(RequestKey::Ed25519(key));
        }
        EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
            &ring::rand::SystemRandom::new(),
        )
        .map(RequestKey::P256)
        .map_err(|e| WalletError::Key(e.to_string()))
    }

    fn alg(&self) -> &'static str {
        match self {
            RequestKey::Ed25519(_) => "EdDSA",
            RequestKey::P256(_) => "ES256",
        }
    }

    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, WalletError> {
        match self {
            RequestKey::Ed25519(key) => Ok(key.sign(input).as_ref().to_vec()),
            RequestKey::P256(key) => key
                .sign(&ring::rand::SystemRandom::new(), input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| WalletError::Key("signing failed".into())),
        }
    }
}

/// What the browser's page shows of a transaction.
pub enum Progress {
    /// Still waiting: the authorization request to show as QR code and link.
    Waiting { request: String },
    /// The wallet presented: the proof and the nonce it must carry.
    Presented {
        proof: IdentityProof,
        nonce: String,
        purpose: Purpose,
    },
}

/// The node's wallet logins.
pub struct WalletLogins {
    node: NodeId,
    trust: Arc<dyn Fn() -> Arc<TrustList> + Send + Sync>,
    now: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    public_url: String,
    key: RequestKey,
    /// The node's certificate (DER, base64 for `x5c`).
    x5c: Vec<String>,
    http: ProviderHttp,
    pending: Mutex<HashMap<String, Transaction>>,
    status_lists: Mutex<HashMap<String, (String, Instant)>>,
}

fn random_text(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl WalletLogins {
    /// The verifier of home node `node`, signing with its TLS key
    /// (PKCS#8 DER) and certificate (DER), which must be the trust
    /// list's.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: NodeId,
        public_url: &str,
        trust: Arc<dyn Fn() -> Arc<TrustList> + Send + Sync>,
        now: Arc<dyn Fn() -> Timestamp + Send + Sync>,
        tls_key_pkcs8: &[u8],
        tls_cert: &[u8],
        status_ca_file: Option<&std::path::Path>,
    ) -> Result<WalletLogins, WalletError> {
        let key = RequestKey::from_pkcs8(tls_key_pkcs8)?;
        let logins = WalletLogins {
            node,
            trust,
            now,
            public_url: public_url.trim_end_matches('/').to_owned(),
            key,
            x5c: vec![STANDARD.encode(tls_cert)],
            http: ProviderHttp::new(status_ca_file).map_err(WalletError::StatusList)?,
            pending: Mutex::new(HashMap::new()),
            status_lists: Mutex::new(HashMap::new()),
        };
        let expected = format!(
            "{}{}",
            estafette_spec::pid::X509_HASH_PREFIX,
            URL_SAFE_NO_PAD.encode(Sha256::digest(tls_cert))
        );
        if logins.client_id()? != expected {
            return Err(WalletError::CertificateNotInTrustList);
        }
        Ok(logins)
    }

    /// Whether the trust list has a PID provider (else the login page does
    /// not offer the wallet).
    pub fn available(&self) -> bool {
        (self.trust)()
            .content()
            .identity_providers
            .iter()
            .any(|p| p.pid.is_some())
    }

    /// This node's client id as a verifier: `x509_hash:…`.
    pub fn client_id(&self) -> Result<String, WalletError> {
        verifier_client_id(&(self.trust)(), &self.node)
            .map_err(|e| WalletError::Client(e.to_string()))
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, Transaction>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a wallet login: the transaction's id (in the page's address)
    /// and the value of the cookie that binds it to this browser.
    pub fn start(&self, purpose: Purpose) -> Result<(String, String), WalletError> {
        let id = random_text(16);
        let browser = random_text(32);
        let transaction = Transaction {
            nonce: random_text(16),
            browser: hash(&browser),
            purpose,
            started: Instant::now(),
            request_fetched: false,
            response_code: random_text(16),
            answer: Answer::Waiting,
        };
        let mut pending = self.pending();
        if pending.len() >= MAX_PENDING_WALLET_LOGINS {
            pending.retain(|_, t| t.started.elapsed() < WALLET_LOGIN_TTL);
            if pending.len() >= MAX_PENDING_WALLET_LOGINS {
                return Err(WalletError::Busy);
            }
        }
        pending.insert(id.clone(), transaction);
        Ok((id, browser))
    }

    /// The authorization request a wallet opens (QR code and link):
    /// `openid4vp://` with the client id and the request object's address.
    pub fn authorization_request(&self, id: &str) -> Result<String, WalletError> {
        let mut url =
            Url::parse("openid4vp://").map_err(|_| WalletError::Response("the request address"))?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id()?)
            .append_pair(
                "request_uri",
                &format!("{}/wallet/request/{id}", self.public_url),
            );
        Ok(url.to_string())
    }

    /// The signed request object of transaction `id`, fetched once by the
    /// wallet.
    pub fn request_object(&self, id: &str) -> Result<String, WalletError> {
        let nonce = {
            let mut pending = self.pending();
            let t = pending
                .get_mut(id)
                .filter(|t| t.started.elapsed() < WALLET_LOGIN_TTL)
                .ok_or(WalletError::UnknownTransaction)?;
            if t.request_fetched || !matches!(t.answer, Answer::Waiting) {
                return Err(WalletError::UnknownTransaction);
            }
            t.request_fetched = true;
            t.nonce.clone()
        };
        let now = (self.now)().0;
        let claims: Vec<_> = PID_REQUESTED_CLAIMS
            .iter()
            .map(|c| json!({"path": [c]}))
            .collect();
        let client_id = self.client_id()?;
        let payload = json!({
            "iss": client_id,
            "aud": "https://self-issued.me/v2",
            "client_id": client_id,
            "response_type": "vp_token",
            "response_mode": "direct_post",
            "response_uri": format!("{}/wallet/response", self.public_url),
            "nonce": nonce,
            "state": id,
            "iat": now,
            "exp": now + WALLET_LOGIN_TTL.as_secs(),
            "dcql_query": {"credentials": [{
                "id": "pid",
                "format": PID_FORMAT,
                "meta": {"vct_values": [PID_VCT]},
                "claims": claims,
            }]},
            "client_metadata": {"vp_formats_supported": {PID_FORMAT: {
                "sd-jwt_alg_values": ["ES256", "EdDSA", "RS256", "PS256"],
                "kb-jwt_alg_values": ["ES256", "EdDSA", "RS256", "PS256"],
            }}},
        });
        let header = json!({"alg": self.key.alg(), "typ": "oauth-authz-req+jwt", "x5c": self.x5c});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = self.key.sign(input.as_bytes())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The wallet's `direct_post`: `vp_token` and `state`. Verified now
    /// (audience, nonce, status and all of §8.3); the wallet learns the
    /// outcome, and the transaction keeps it for the browser. Gives the
    /// address the wallet sends the browser to (same-device).
    pub async fn respond(&self, vp_token: &str, state: &str) -> Result<String, WalletError> {
        let nonce = self.waiting_nonce(state)?;
        let outcome = self.check(vp_token, &nonce).await;
        let id = state;
        let mut pending = self.pending();
        let t = pending.get_mut(id).ok_or(WalletError::UnknownTransaction)?;
        match outcome {
            Ok(proof) => {
                t.answer = Answer::Presented(proof);
                Ok(format!(
                    "{}/login/wallet/{id}?response_code={}",
                    self.public_url, t.response_code
                ))
            }
            Err(e) => {
                t.answer = Answer::Refused(e.to_string());
                Err(e)
            }
        }
    }

    /// The nonce of transaction `state` while it waits for its wallet.
    fn waiting_nonce(&self, state: &str) -> Result<String, WalletError> {
        let pending = self.pending();
        let t = pending
            .get(state)
            .filter(|t| t.started.elapsed() < WALLET_LOGIN_TTL)
            .ok_or(WalletError::UnknownTransaction)?;
        if !matches!(t.answer, Answer::Waiting) {
            return Err(WalletError::UnknownTransaction);
        }
        Ok(t.nonce.clone())
    }

    /// The wallet answered with an error (the person declined, say): the
    /// transaction ends, and its page says so.
    pub fn decline(&self, state: &str, error: &str) -> Result<(), WalletError> {
        self.waiting_nonce(state)?;
        if let Some(t) = self.pending().get_mut(state) {
            let error: String = error
                .chars()
                .filter(char::is_ascii_graphic)
                .take(64)
                .collect();
            t.answer = Answer::Refused(format!("the wallet answered {error}: nothing was shared"));
        }
        Ok(())
    }

    /// The presentation in `vp_token`, with its status list, verified for
    /// this node and this transaction's nonce.
    async fn check(&self, vp_token: &str, nonce: &str) -> Result<IdentityProof, WalletError> {
        let token: serde_json::Value = serde_json::from_str(vp_token)
            .map_err(|_| WalletError::Response("vp_token is not JSON"))?;
        let presentation = match token
            .get("pid")
            .and_then(|p| p.as_array())
            .map(Vec::as_slice)
        {
            Some([one]) => one
                .as_str()
                .ok_or(WalletError::Response("the presentation is not a string"))?,
            _ => return Err(WalletError::Response("vp_token has not exactly one pid")),
        };
        let mut proof = PidProof {
            presentation: presentation.to_owned(),
            status_list: None,
        };
        let verify = |proof: &PidProof| {
            let policy = AssertionPolicy {
                audience: self.node.clone(),
                min_level: crate::home::api::MIN_LEVEL,
                now: (self.now)(),
            };
            PidPresentation::verify(
                &proof.presentation,
                proof.status_list.as_deref(),
                &(self.trust)(),
                &policy,
            )
        };
        let verified = match verify(&proof) {
            // Fetched only once everything before the status verified: the
            // address comes from a credential whose issuer signed it.
            Err(AssertionError::Pid(PidError::Status(StatusError::Missing))) => {
                let reference = presentation_status_reference(&proof.presentation)
                    .ok()
                    .flatten()
                    .ok_or(WalletError::Response("no status reference"))?;
                proof.status_list = Some(self.status_list(&reference.uri).await?);
                verify(&proof)
            }
            other => other,
        }
        .map_err(|e| WalletError::Refused(e.to_string()))?;
        if verified.claims.nonce != nonce.as_bytes() {
            return Err(WalletError::Refused(
                "this presentation answers another request (its nonce is not this login's); scan the code again".into(),
            ));
        }
        Ok(IdentityProof::Pid(proof))
    }

    /// The status list token at `uri`, from the cache or fetched.
    async fn status_list(&self, uri: &str) -> Result<String, WalletError> {
        let cached = {
            let lists = self.status_lists.lock().unwrap_or_else(|p| p.into_inner());
            lists
                .get(uri)
                .filter(|(_, at)| at.elapsed() < STATUS_LIST_CACHE_TTL)
                .map(|(token, _)| token.clone())
        };
        if let Some(token) = cached {
            return Ok(token);
        }
        let url = Url::parse(uri).map_err(|_| WalletError::Response("status list address"))?;
        let token = self
            .http
            .get_text(&url, "application/statuslist+jwt")
            .await?;
        let mut lists = self.status_lists.lock().unwrap_or_else(|p| p.into_inner());
        if lists.len() >= MAX_CACHED_STATUS_LISTS {
            lists.retain(|_, (_, at)| at.elapsed() < STATUS_LIST_CACHE_TTL);
            if lists.len() >= MAX_CACHED_STATUS_LISTS {
                lists.clear();
            }
        }
        lists.insert(uri.to_owned(), (token.clone(), Instant::now()));
        Ok(token)
    }

    /// Where transaction `id` stands, for the browser that started it
    /// (`browser` is its cookie). A presented or refused answer is given
    /// once: the transaction ends with it.
    pub fn progress(
        &self,
        id: &str,
        browser: Option<&str>,
        response_code: Option<&str>,
    ) -> Result<Progress, WalletError> {
        let mut pending = self.pending();
        let t = pending
            .get(id)
            .filter(|t| t.started.elapsed() < WALLET_LOGIN_TTL)
            .ok_or(WalletError::UnknownTransaction)?;
        let same_browser = browser.is_some_and(|b| hash(b) == t.browser);
        if !same_browser {
            return Err(WalletError::OtherBrowser);
        }
        if response_code.is_some_and(|c| c != t.response_code) {
            return Err(WalletError::UnknownTransaction);
        }
        if matches!(t.answer, Answer::Waiting) {
            drop(pending);
            return Ok(Progress::Waiting {
                request: self.authorization_request(id)?,
            });
        }
        let t = pending.remove(id).ok_or(WalletError::UnknownTransaction)?;
        match t.answer {
            Answer::Presented(proof) => Ok(Progress::Presented {
                proof,
                nonce: t.nonce,
                purpose: t.purpose,
            }),
            Answer::Refused(why) => Err(WalletError::Refused(why)),
            Answer::Waiting => Err(WalletError::UnknownTransaction),
        }
    }
}
