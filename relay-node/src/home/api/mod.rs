//! The citizen API of a home node: HTTPS (server TLS only) for people and
//! the apps and web pages that act for them.
//!
//! A session starts with an `IdentityAssertion` from a trusted identity
//! provider, for this node, at least `substantial`, at most five minutes
//! old, with a nonce never seen before. That assertion also goes to the
//! gateway with every change (registration, e-mail, activation, consent),
//! which verifies it itself; a change more than five minutes after login
//! needs a fresh assertion (`POST /v1/session/renew`). Production identity
//! providers plug in as issuers of such assertions (a login page of the
//! provider hands the browser an assertion for this node's audience).
//!
//! Opening a letter signs ContentHandover evidence naming the holder.
//!
//! This file holds what every request needs (sessions, the way to the
//! gateway, problems, the routes); the person's own settings are in
//! `person`, letters in `letters`, mandates and clients in `representation`.

mod letters;
mod person;
mod representation;

pub(crate) use letters::PageQuery;
pub use letters::{AttachmentSummary, LETTERS_PAGE, LetterSummary, MAX_LETTERS_PAGE, OpenedLetter};
pub use person::SessionStarted;
pub use representation::MandateCreated;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use estafette_spec::citizen::{CitizenAction, CitizenReply, CitizenRequest, PersonView};
use estafette_spec::mandate::MandateId;
use estafette_spec::trust::LevelOfAssurance;
use estafette_spec::{AssertionPolicy, EnvelopeId, IdentityProof, InboxId, ReasonCode, Timestamp};
use redb::{ReadableTable, TableDefinition};

use crate::home::HomeError;
use crate::home::session::{KeepError, Session, SessionToken, Sessions, StartError};
use crate::node::Node;
use crate::store::{Op, StoreError};

pub use crate::home::session::{LAST_SEEN_KEPT_EVERY, MAX_SESSIONS, SESSION_IDLE, SESSION_MAX};

/// Assertion nonces this home node has started sessions with: nonce → expiry.
const NONCES: TableDefinition<&[u8], u64> = TableDefinition::new("citizen_nonces");

/// Largest request body of the citizen API.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most access-log entries in one answer (the newest).
pub const MAX_ACCESS_LOG_ENTRIES: usize = 10_000;
/// Most expired nonces removed per new session.
const NONCE_PRUNE_BATCH: usize = 64;

/// The minimum level of assurance for a session.
pub const MIN_LEVEL: LevelOfAssurance = LevelOfAssurance::Substantial;

/// The citizen API's state.
pub struct CitizenApi {
    pub(crate) node: Arc<Node>,
    public_url: String,
    sessions: Sessions,
}

/// An RFC 9457 problem; `type` is `urn:estafette:problem:<code>`.
#[derive(Debug)]
pub struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) detail: String,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code: code.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn refused(reason: ReasonCode, detail: String) -> Problem {
        let status = match reason {
            ReasonCode::Malformed
            | ReasonCode::TooLarge
            | ReasonCode::InvalidRecipient
            | ReasonCode::InvalidToken
            | ReasonCode::UnknownSigner => StatusCode::BAD_REQUEST,
            ReasonCode::Expired
            | ReasonCode::NotYetValid
            | ReasonCode::Replayed
            | ReasonCode::WrongAudience
            | ReasonCode::AssuranceTooLow
            | ReasonCode::BadSignature
            | ReasonCode::WrongRole
            | ReasonCode::Revoked => StatusCode::UNAUTHORIZED,
            ReasonCode::StorageFailure => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::CONFLICT,
        };
        Problem::new(status, reason.code(), detail)
    }

    pub(crate) fn unauthenticated() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "no-session",
            "log in first: no valid session",
        )
    }

    pub(crate) fn no_such_letter() -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "no-such-letter", "no such letter")
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "malformed", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("urn:estafette:problem:{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        Problem::from(HomeError::Store(e))
    }
}

impl From<StartError> for Problem {
    fn from(e: StartError) -> Problem {
        match e {
            StartError::TooMany => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-sessions",
                "too many people are logged in; try again in a few minutes",
            ),
            StartError::Store(e) => Problem::from(e),
        }
    }
}

impl From<KeepError> for Problem {
    fn from(e: KeepError) -> Problem {
        match e {
            KeepError::Ended => Problem::unauthenticated(),
            KeepError::Store(e) => Problem::from(e),
        }
    }
}

impl From<HomeError> for Problem {
    fn from(e: HomeError) -> Problem {
        match e {
            HomeError::Gateway(detail) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "gateway-unreachable",
                format!("the gateway could not be reached; try again later ({detail})"),
            ),
            HomeError::NoSuchLetter => Problem::no_such_letter(),
            other => {
                tracing::error!(error = %other, "citizen API");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_failure",
                    "the inbox could not be read or written; try again",
                )
            }
        }
    }
}

/// The session of an API request: its `Authorization: Bearer` token names
/// a live session, or the request is answered 401.
impl FromRequestParts<Arc<CitizenApi>> for Session {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &Arc<CitizenApi>,
    ) -> Result<Session, Problem> {
        api.bearer_session(&parts.headers)
            .ok_or_else(Problem::unauthenticated)
    }
}

impl CitizenApi {
    pub fn new(node: Arc<Node>, public_url: String) -> Arc<CitizenApi> {
        let sessions = Sessions::new(node.store().clone(), node.core().clock.clone());
        Arc::new(CitizenApi {
            node,
            public_url,
            sessions,
        })
    }

    /// The live session named by a request's `Authorization: Bearer` token.
    pub(crate) fn bearer_session(&self, headers: &HeaderMap) -> Option<Session> {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| t.parse::<SessionToken>().ok())
            .and_then(|token| self.sessions.check(token))
    }

    /// The live session named by `token` (the web inbox's cookie).
    pub(crate) fn session(&self, token: SessionToken) -> Option<Session> {
        self.sessions.check(token)
    }

    /// What is kept of a session; 401 once it ended.
    fn kept<T>(
        &self,
        session: &Session,
        f: impl FnOnce(&crate::home::session::SessionState) -> T,
    ) -> Result<T, Problem> {
        self.sessions
            .with(session, f)
            .ok_or_else(Problem::unauthenticated)
    }

    /// Verifies a login's proof for this node and uses up its nonce; an ID
    /// token from this node's own login flow must carry the nonce it sent.
    pub(crate) async fn accept_login(
        &self,
        proof: &IdentityProof,
        expected_nonce: Option<&[u8]>,
    ) -> Result<estafette_spec::VerifiedAssertion, Problem> {
        let policy = AssertionPolicy {
            audience: self.node.id.clone(),
            min_level: MIN_LEVEL,
            now: self.node.core().clock.now(),
        };
        let verified = proof
            .verify(&self.node.trust(), &policy)
            .map_err(|e| Problem::refused(e.reason(), e.to_string()))?;
        if expected_nonce.is_some_and(|n| n != verified.claims.nonce.as_slice()) {
            return Err(Problem::refused(
                ReasonCode::Replayed,
                "this login's nonce is not the one this node asked for; log in again".into(),
            ));
        }
        if !self
            .use_nonce(verified.claims.nonce.clone(), verified.claims.expires_at.0)
            .await?
        {
            return Err(Problem::refused(
                ReasonCode::Replayed,
                "this login was already used; log in again".into(),
            ));
        }
        Ok(verified)
    }

    /// Records a login's nonce (forgetting a few expired ones); false if
    /// it was used before.
    async fn use_nonce(&self, nonce: Vec<u8>, expires_at: u64) -> Result<bool, Problem> {
        let now = self.node.core().clock.now().0;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let op = Op::Apply(Box::new(move |_tables, txn| {
            let mut table = txn.open_table(NONCES)?;
            let fresh = table.get(nonce.as_slice())?.is_none();
            if fresh {
                table.insert(nonce.as_slice(), expires_at)?;
                let expired: Vec<Vec<u8>> = table
                    .iter()?
                    .filter_map(Result::ok)
                    .filter(|(_, v)| v.value() < now)
                    .take(NONCE_PRUNE_BATCH)
                    .map(|(k, _)| k.value().to_vec())
                    .collect();
                for k in expired {
                    table.remove(k.as_slice())?;
                }
            }
            let _ = tx.send(fresh);
            Ok(())
        }));
        self.node.store().write(op).await.map_err(Problem::from)?;
        Ok(rx.await.unwrap_or(false))
    }

    /// Carries a request to the gateway; refusals become problems.
    async fn ask_gateway(
        &self,
        identity: Option<IdentityProof>,
        action: CitizenAction,
    ) -> Result<CitizenReply, Problem> {
        let request = CitizenRequest {
            identity,
            action,
            inbox_url: Some(self.public_url.clone()),
        };
        let reply = crate::home::carry(&self.node, request)
            .await
            .map_err(HomeError::from)?;
        match reply {
            CitizenReply::Refused { reason, detail } => Err(Problem::refused(reason, detail)),
            other => Ok(other),
        }
    }

    /// A change on behalf of the session's holder, with its assertion.
    pub(crate) async fn change(
        &self,
        session: &Session,
        action: CitizenAction,
    ) -> Result<PersonView, Problem> {
        let identity = self.fresh_login(session)?;
        match self.ask_gateway(Some(identity), action).await? {
            CitizenReply::Person(view) => self.keep_person(session, view).await,
            _ => Err(unexpected()),
        }
    }

    /// The person as the gateway answered: merged inboxes moved, kept in the session.
    async fn keep_person(
        &self,
        session: &Session,
        view: PersonView,
    ) -> Result<PersonView, Problem> {
        self.merge_inboxes(&view).await?;
        self.sessions
            .change(session, |s| s.person = view.clone())
            .await?;
        Ok(view)
    }

    /// Moves the letters of inboxes the gateway merged (a link of two
    /// identities) into the person's inbox. Idempotent: done again at every
    /// session, so a crash in between loses nothing.
    async fn merge_inboxes(&self, view: &PersonView) -> Result<(), Problem> {
        let Some(into) = view.inbox else {
            return Ok(());
        };
        if view.merged_inboxes.is_empty() {
            return Ok(());
        }
        let from = view.merged_inboxes.clone();
        let op = Op::Apply(Box::new(move |tables, txn| {
            for f in &from {
                tables.merge_inbox(txn, f, &into)?;
            }
            Ok(())
        }));
        self.node.store().write(op).await.map_err(Problem::from)?;
        Ok(())
    }

    /// A question that changes nothing, with the session's assertion (the
    /// gateway accepts it for the length of a session).
    pub(crate) async fn ask(
        &self,
        session: &Session,
        action: CitizenAction,
    ) -> Result<CitizenReply, Problem> {
        let identity = self.kept(session, |s| s.identity.clone())?;
        self.ask_gateway(Some(identity), action).await
    }

    /// The session's login proof, if it is fresh enough for a change.
    fn fresh_login(&self, session: &Session) -> Result<IdentityProof, Problem> {
        let now = self.node.core().clock.now();
        let (identity, changes_until) =
            self.kept(session, |s| (s.identity.clone(), s.changes_until))?;
        if changes_until <= now {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "reauthentication-required",
                "changes need a login of at most five minutes ago: log in again to confirm",
            ));
        }
        Ok(identity)
    }

    /// A change about mandates, with a fresh assertion; gives the mandate id.
    pub(crate) async fn mandate_change(
        &self,
        session: &Session,
        action: CitizenAction,
    ) -> Result<MandateId, Problem> {
        let identity = self.fresh_login(session)?;
        match self.ask_gateway(Some(identity), action).await? {
            CitizenReply::Mandate(id) => Ok(id),
            _ => Err(unexpected()),
        }
    }

    /// The session's inbox at this node.
    pub(crate) fn inbox_of(&self, session: &Session) -> Result<InboxId, Problem> {
        self.kept(session, |s| s.person.inbox)?.ok_or_else(|| {
            Problem::refused(
                ReasonCode::NotRegistered,
                "you have no inbox at this node; register first".into(),
            )
        })
    }

    /// Starts a session from a login's proof: verified here (nonce used
    /// up), announced to the gateway; gives the session and the person.
    pub(crate) async fn log_in(
        &self,
        proof: IdentityProof,
        expected_nonce: Option<&[u8]>,
    ) -> Result<(Session, PersonView), Problem> {
        let verified = self.accept_login(&proof, expected_nonce).await?;
        let reply = self
            .ask_gateway(Some(proof.clone()), CitizenAction::SessionStarted)
            .await?;
        let CitizenReply::Person(person) = reply else {
            return Err(unexpected());
        };
        self.merge_inboxes(&person).await?;
        let represents = self
            .represents_anyone(&proof, &verified.claims.subject)
            .await;
        let session = self
            .sessions
            .start(
                verified.claims.subject.clone(),
                (proof, changes_until(&verified)),
                (person.clone(), represents),
            )
            .await?;
        Ok((session, person))
    }

    /// A fresh login for the session's person (a change needs one of at
    /// most five minutes ago); refused for another person's login.
    pub(crate) async fn renew(
        &self,
        session: &Session,
        proof: IdentityProof,
        expected_nonce: Option<&[u8]>,
    ) -> Result<PersonView, Problem> {
        let verified = self.accept_login(&proof, expected_nonce).await?;
        let subject = verified.claims.subject.clone();
        if self.kept(session, |s| s.recipient != subject)? {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "other-person",
                "this login is for another person than the session's",
            ));
        }
        self.sessions
            .change(session, |s| {
                s.identity = proof;
                s.changes_until = changes_until(&verified);
                s.person.clone()
            })
            .await
            .map_err(Problem::from)
    }

    /// The language of the person's e-mails and paper letters: a
    /// preference, carried with the session's login however old (the
    /// gateway takes it for the length of a session).
    pub(crate) async fn set_language(
        &self,
        session: &Session,
        language: String,
    ) -> Result<PersonView, Problem> {
        let action = CitizenAction::SetLanguage { language };
        action
            .validate()
            .map_err(|e| Problem::malformed(e.to_string()))?;
        match self.ask(session, action).await? {
            CitizenReply::Person(view) => self.keep_person(session, view).await,
            _ => Err(unexpected()),
        }
    }

    /// The person's view as the gateway has it now (an e-mail verified in
    /// another window, say), kept in the session.
    pub(crate) async fn refresh(&self, session: &Session) -> Result<PersonView, Problem> {
        match self.ask(session, CitizenAction::SessionStarted).await? {
            CitizenReply::Person(view) => self.keep_person(session, view).await,
            _ => Err(unexpected()),
        }
    }

    /// Ends a session (deleted from the store before this returns).
    pub(crate) async fn log_out(&self, session: &Session) -> Result<(), Problem> {
        self.sessions.end(session).await.map_err(Problem::from)
    }

    /// Whether `who` represents someone or is asked to (a mandate naming
    /// them that is not revoked); false when the gateway cannot say.
    async fn represents_anyone(
        &self,
        proof: &IdentityProof,
        who: &estafette_spec::Recipient,
    ) -> bool {
        match self
            .ask_gateway(Some(proof.clone()), CitizenAction::Mandates)
            .await
        {
            Ok(CitizenReply::Mandates(mandates)) => mandates
                .iter()
                .any(|m| &m.representative.person == who && m.revoked_at.is_none()),
            _ => false,
        }
    }

    /// Whether the session's person represents someone, as last seen.
    pub(crate) fn represents(&self, session: &Session) -> bool {
        self.sessions
            .with(session, |s| s.represents)
            .unwrap_or(false)
    }

    /// Keeps what the clients page found: whether the menu offers it.
    pub(crate) async fn note_represents(&self, session: &Session, represents: bool) {
        if self.represents(session) != represents
            && let Err(e) = self
                .sessions
                .change(session, |s| s.represents = represents)
                .await
        {
            tracing::warn!(error = %e, "the menu's state was not kept");
        }
    }

    /// The person of a live session.
    pub(crate) fn person_of(&self, session: &Session) -> Option<PersonView> {
        self.sessions.with(session, |s| s.person.clone())
    }
}

/// The envelope id of a path, or 404.
fn envelope_id(text: &str) -> Result<EnvelopeId, Problem> {
    text.parse().map_err(|_| Problem::no_such_letter())
}

/// A JSON request body, or 400 naming what was wrong.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::malformed(e.to_string()))
}

/// The text people read for a problem code, in `language` (from the text
/// catalogue); `None` when the catalogue has none, and the API's own
/// English detail stands.
pub(crate) fn localized(code: &str, language: &str) -> Option<&'static str> {
    crate::texts::catalogue(language)?.get(&format!("problem.{code}"))
}

/// The first language of `Accept-Language` that the citizen API speaks.
pub fn preferred_language(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
    value.split(',').find_map(|part| {
        let tag = part.split(';').next()?.trim();
        crate::texts::catalogue(tag).map(|c| c.language())
    })
}

/// Puts the `detail` of every problem answer in the asker's language
/// (`Content-Language` says which); the code in `type` stays the same.
async fn localize_problems(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let language = preferred_language(request.headers());
    let response = next.run(request).await;
    let Some(language) = language else {
        return response;
    };
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    if !is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "problem body").into_response();
    };
    let mut problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = problem["type"]
        .as_str()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("")
        .to_owned();
    if let Some(text) = localized(&code, language) {
        problem["detail"] = serde_json::Value::String(text.into());
        parts.headers.insert(
            header::CONTENT_LANGUAGE,
            axum::http::HeaderValue::from_static(language),
        );
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(problem.to_string()))
}

pub(crate) fn unexpected() -> Problem {
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "gateway-answer",
        "the gateway answered with something else",
    )
}

/// The citizen API's routes.
pub fn router(api: Arc<CitizenApi>) -> axum::Router {
    use letters as l;
    use person as p;
    use representation as r;
    axum::Router::new()
        .route("/v1/session", post(p::start_session).delete(p::end_session))
        .route("/v1/session/renew", post(p::renew_session))
        .route("/v1/me", get(p::me))
        .route("/v1/register", post(p::register))
        .route("/v1/email", post(p::add_email))
        .route("/v1/email/verify", post(p::verify_email))
        .route("/verify-email", get(p::verify_email_link))
        .route("/v1/activate", post(p::activate))
        .route("/v1/consent/{sender}", put(p::set_consent))
        .route("/v1/all-paper", post(p::all_paper))
        .route("/v1/language", post(p::set_language))
        .route("/v1/link", post(p::link))
        .route("/v1/history", get(p::history))
        .route("/v1/mandates", post(r::grant_mandate).get(r::list_mandates))
        .route("/v1/mandates/{id}/accept", post(r::accept_mandate))
        .route(
            "/v1/mandates/{id}",
            axum::routing::delete(r::revoke_mandate),
        )
        .route("/v1/legal-representations", post(r::register_legal))
        .route("/v1/clients", get(r::clients))
        .route("/v1/clients/{mandate}/letters", get(r::client_letters))
        .route(
            "/v1/clients/{mandate}/letters/{envelope}",
            get(r::open_client_letter),
        )
        .route(
            "/v1/clients/{mandate}/consent/{sender}",
            put(r::set_client_consent),
        )
        .route("/v1/access-log", get(l::access_log))
        .route("/v1/letters", get(l::letters))
        .route("/v1/letters/{envelope}", get(l::open_letter))
        .route("/v1/letters/{envelope}/evidence", get(l::letter_evidence))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(localize_problems))
        .with_state(api)
}

/// Serves the citizen API until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<CitizenApi>,
    web: Arc<crate::home::web::Web>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let app = router(api)
        .merge(crate::home::web::router(web).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)));
    let app_for = move |_: &rustls::ServerConnection| Some(app.clone());
    let admission = crate::https::Admission::new(crate::https::HttpsLimits::citizen());
    crate::https::serve_tls(listener, tls, admission, "citizen", metrics, None, app_for).await;
}

/// Until when a login may authorise changes: while its proof is valid, and
/// at most [`MAX_ASSERTION_LIFETIME_S`] after the person logged in (the
/// gateway refuses a change with an older login anyway).
fn changes_until(verified: &estafette_spec::VerifiedAssertion) -> Timestamp {
    let login_limit = verified
        .authenticated_at
        .plus_s(estafette_spec::limits::MAX_ASSERTION_LIFETIME_S);
    verified.claims.expires_at.min(login_limit)
}

/// The node's wallet verifier, signing with its TLS key and certificate.
fn wallet_logins(
    node: &Arc<Node>,
    public_url: &str,
    config: &crate::config::WalletConfig,
) -> Result<crate::home::wallet::WalletLogins, HomeError> {
    let pki = &node.core().config.pki;
    let cert = estafette_pki::tls::load_certs(&pki.cert)?;
    let key = estafette_pki::tls::load_private_key(&pki.key)?;
    let leaf = cert
        .first()
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    let for_trust = node.clone();
    let for_clock = node.clone();
    Ok(crate::home::wallet::WalletLogins::new(
        node.id.clone(),
        public_url,
        Arc::new(move || for_trust.trust()),
        Arc::new(move || for_clock.core().clock.now()),
        key.secret_der(),
        &leaf,
        config.status_ca_file.as_deref(),
    )?)
}

/// Starts the citizen API of `node` as configured (server TLS only: people
/// log in with identity assertions, not certificates); gives its address.
pub async fn start(
    node: Arc<Node>,
    config: &crate::config::CitizenApiConfig,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), HomeError> {
    let pki = &node.core().config.pki;
    let certs = estafette_pki::tls::load_certs(config.cert.as_ref().unwrap_or(&pki.cert))?;
    let key = estafette_pki::tls::load_private_key(config.key.as_ref().unwrap_or(&pki.key))?;
    let tls = estafette_pki::tls::server_config(
        certs,
        key,
        estafette_pki::tls::ClientAuth::None,
        &[b"h2", b"http/1.1"],
    )?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| HomeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| HomeError::Listen {
        addr: config.listen,
        source,
    })?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{addr}"));
    // A test identity provider only in a test federation.
    let test_idp = match &config.test_idp {
        Some(t) if node.trust().content().test_federation => Some(crate::home::web::TestIdp {
            id: t.id.clone(),
            key: estafette_pki::keys::read_ed25519(&t.key)?,
        }),
        Some(_) => return Err(HomeError::TestIdpOutsideTestFederation),
        None => None,
    };
    let oidc = if config.oidc.is_empty() {
        None
    } else {
        let for_trust = node.clone();
        let logins = crate::home::oidc::OidcLogins::new(
            node.id.clone(),
            &public_url,
            Arc::new(move || for_trust.trust()),
            &config.oidc,
        )?;
        Some(Arc::new(logins))
    };
    let wallet = match &config.wallet {
        Some(w) => Some(Arc::new(wallet_logins(&node, &public_url, w)?)),
        None => None,
    };
    let metrics = node.metrics.clone();
    let api = CitizenApi::new(node, public_url);
    let web = crate::home::web::Web::new(api.clone(), test_idp, oidc, wallet);
    tracing::info!(%addr, "citizen API and web inbox listening");
    Ok((addr, tokio::spawn(serve(listener, tls, api, web, metrics))))
}
