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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use estafette_spec::citizen::{
    AccessDecision, CitizenAction, CitizenReply, CitizenRequest, ClientView, MandateGrant,
    PersonView, PostalAddress,
};
use estafette_spec::mandate::{Mandate, MandateId};
use estafette_spec::trust::LevelOfAssurance;
use estafette_spec::{
    Actor, ActorRole, AssertionPolicy, EnvelopeId, IdentityAssertion, InboxId, Oin, ReasonCode,
    Recipient, SignedMessage, Timestamp,
};
use rand_core::{OsRng, RngCore};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::home::HomeError;
use crate::node::Node;
use crate::store::{Op, StoreError};

/// Assertion nonces this home node has started sessions with: nonce → expiry.
const NONCES: TableDefinition<&[u8], u64> = TableDefinition::new("citizen_nonces");

/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login, whatever happens.
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 3600);
/// Most sessions held at once; the oldest idle ones go first.
pub const MAX_SESSIONS: usize = 100_000;
/// Largest request body of the citizen API.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most access-log entries in one answer (the newest).
pub const MAX_ACCESS_LOG_ENTRIES: usize = 10_000;
/// Most expired nonces removed per new session.
const NONCE_PRUNE_BATCH: usize = 64;

/// The minimum level of assurance for a session.
pub const MIN_LEVEL: LevelOfAssurance = LevelOfAssurance::Substantial;

struct Session {
    recipient: Recipient,
    /// The newest assertion: it authorises changes while it is fresh.
    assertion: Vec<u8>,
    assertion_expires_at: Timestamp,
    person: PersonView,
    started: Instant,
    last_seen: Instant,
}

/// The citizen API's state.
pub struct CitizenApi {
    pub(crate) node: Arc<Node>,
    public_url: String,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

/// An RFC 9457 problem; `type` is `urn:estafette:problem:<code>`.
#[derive(Debug)]
pub struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) detail: String,
}

impl Problem {
    fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code: code.into(),
            detail: detail.into(),
        }
    }

    fn refused(reason: ReasonCode, detail: String) -> Problem {
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

    fn unauthenticated() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "no-session",
            "log in first: no valid session",
        )
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

impl From<HomeError> for Problem {
    fn from(e: HomeError) -> Problem {
        match e {
            HomeError::Gateway(detail) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "gateway-unreachable",
                format!("the gateway could not be reached; try again later ({detail})"),
            ),
            HomeError::NoSuchLetter => {
                Problem::new(StatusCode::NOT_FOUND, "no-such-letter", "no such letter")
            }
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The answer to a login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionStarted {
    /// Bearer token (64 hex characters) for `Authorization: Bearer …`.
    pub session: String,
    pub person: PersonView,
}

/// A letter in the inbox list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LetterSummary {
    pub envelope_id: EnvelopeId,
    pub message_id: estafette_spec::MessageId,
    pub sender: Oin,
    pub sender_name: String,
    pub subject: String,
    pub nature: estafette_spec::Nature,
    pub legal_effect: bool,
    pub expected_action: String,
    pub response_deadline: Option<Timestamp>,
    pub received_at: Timestamp,
    pub opened: bool,
}

/// An opened letter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenedLetter {
    pub summary: LetterSummary,
    pub body: String,
    pub attachments: Vec<AttachmentSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachmentSummary {
    pub name: String,
    pub media_type: String,
    pub size_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    language: String,
    postal_address: Option<PostalAddress>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    digital: bool,
}

impl CitizenApi {
    pub fn new(node: Arc<Node>, public_url: String) -> Arc<CitizenApi> {
        Arc::new(CitizenApi {
            node,
            public_url,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session named by the request's bearer token, refreshed.
    pub(crate) fn session(&self, headers: &HeaderMap) -> Result<[u8; 32], Problem> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| unhex::<32>(t.trim()))
            .ok_or_else(Problem::unauthenticated)?;
        let mut sessions = self.sessions();
        let now = Instant::now();
        let live = sessions.get_mut(&token).is_some_and(|s| {
            let live = now.duration_since(s.last_seen) < SESSION_IDLE
                && now.duration_since(s.started) < SESSION_MAX;
            if live {
                s.last_seen = now;
            }
            live
        });
        if !live {
            sessions.remove(&token);
            return Err(Problem::unauthenticated());
        }
        Ok(token)
    }

    /// Verifies an assertion for this node and uses up its nonce.
    async fn accept_assertion(
        &self,
        bytes: &[u8],
    ) -> Result<estafette_spec::VerifiedAssertion, Problem> {
        let policy = AssertionPolicy {
            audience: self.node.id.clone(),
            min_level: MIN_LEVEL,
            now: estafette_pki::now(),
        };
        let verified = IdentityAssertion::verify(bytes, &self.node.trust(), &policy)
            .map_err(|e| Problem::refused(e.reason(), e.to_string()))?;
        let nonce = verified.claims.nonce.clone();
        let expires_at = verified.claims.expires_at.0;
        let now = policy.now.0;
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
        if !rx.await.unwrap_or(false) {
            return Err(Problem::refused(
                ReasonCode::Replayed,
                "this login was already used; log in again".into(),
            ));
        }
        Ok(verified)
    }

    /// Carries a request to the gateway; refusals become problems.
    async fn ask_gateway(
        &self,
        assertion: Option<Vec<u8>>,
        action: CitizenAction,
    ) -> Result<CitizenReply, Problem> {
        let request = CitizenRequest {
            assertion: assertion.map(serde_bytes::ByteBuf::from),
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
        headers: &HeaderMap,
        action: CitizenAction,
    ) -> Result<PersonView, Problem> {
        let token = self.session(headers)?;
        let assertion = self.fresh_assertion(&token)?;
        match self.ask_gateway(Some(assertion), action).await? {
            CitizenReply::Person(view) => {
                self.merge_inboxes(&view).await?;
                if let Some(s) = self.sessions().get_mut(&token) {
                    s.person = view.clone();
                }
                Ok(view)
            }
            _ => Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "gateway-answer",
                "the gateway answered with something else",
            )),
        }
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
        headers: &HeaderMap,
        action: CitizenAction,
    ) -> Result<CitizenReply, Problem> {
        let token = self.session(headers)?;
        let assertion = self
            .sessions()
            .get(&token)
            .map(|s| s.assertion.clone())
            .ok_or_else(Problem::unauthenticated)?;
        self.ask_gateway(Some(assertion), action).await
    }

    /// The session's assertion, if it is fresh enough for a change.
    fn fresh_assertion(&self, token: &[u8; 32]) -> Result<Vec<u8>, Problem> {
        let sessions = self.sessions();
        let s = sessions.get(token).ok_or_else(Problem::unauthenticated)?;
        if s.assertion_expires_at <= estafette_pki::now() {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "reauthentication-required",
                "changes need a login of at most five minutes ago: log in again to confirm",
            ));
        }
        Ok(s.assertion.clone())
    }

    /// A change about mandates, with a fresh assertion; gives the mandate id.
    pub(crate) async fn mandate_change(
        &self,
        headers: &HeaderMap,
        action: CitizenAction,
    ) -> Result<MandateId, Problem> {
        let token = self.session(headers)?;
        let assertion = self.fresh_assertion(&token)?;
        match self.ask_gateway(Some(assertion), action).await? {
            CitizenReply::Mandate(id) => Ok(id),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn inbox_of(&self, headers: &HeaderMap) -> Result<InboxId, Problem> {
        let token = self.session(headers)?;
        let sessions = self.sessions();
        let s = sessions.get(&token).ok_or_else(Problem::unauthenticated)?;
        s.person.inbox.ok_or_else(|| {
            Problem::refused(
                ReasonCode::NotRegistered,
                "you have no inbox at this node; register first".into(),
            )
        })
    }

    /// A letter in a list: from the small record the relay wrote at
    /// delivery (no letter read, nothing hashed).
    fn summary(
        &self,
        envelope_id: EnvelopeId,
        record: &crate::store::InboxRecord,
    ) -> LetterSummary {
        let sender_name = self
            .node
            .trust()
            .agency(&record.sender)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| record.sender.to_string());
        LetterSummary {
            envelope_id,
            message_id: record.message_id,
            sender: record.sender.clone(),
            sender_name,
            subject: record.subject.clone(),
            nature: record.nature,
            legal_effect: record.legal_effect,
            expected_action: record.expected_action.clone(),
            response_deadline: record.response_deadline,
            received_at: record.received_at,
            opened: record.opened_at.is_some(),
        }
    }
}

impl CitizenApi {
    /// Starts a session from an assertion: verified here (nonce used up),
    /// announced to the gateway; gives the bearer token and the person.
    pub(crate) async fn log_in(&self, assertion: &[u8]) -> Result<([u8; 32], PersonView), Problem> {
        let verified = self.accept_assertion(assertion).await?;
        let reply = self
            .ask_gateway(Some(assertion.to_vec()), CitizenAction::SessionStarted)
            .await?;
        let CitizenReply::Person(person) = reply else {
            return Err(unexpected());
        };
        self.merge_inboxes(&person).await?;
        let mut token = [0u8; 32];
        OsRng.fill_bytes(&mut token);
        let now = Instant::now();
        let mut sessions = self.sessions();
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| {
                now.duration_since(s.last_seen) < SESSION_IDLE
                    && now.duration_since(s.started) < SESSION_MAX
            });
            if sessions.len() >= MAX_SESSIONS {
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too-many-sessions",
                    "too many people are logged in; try again in a few minutes",
                ));
            }
        }
        sessions.insert(
            token,
            Session {
                recipient: verified.claims.subject.clone(),
                assertion: assertion.to_vec(),
                assertion_expires_at: verified.claims.expires_at,
                person: person.clone(),
                started: now,
                last_seen: now,
            },
        );
        Ok((token, person))
    }

    /// The person's view as the gateway has it now (an e-mail verified in
    /// another window, say), kept in the session.
    pub(crate) async fn refresh(&self, headers: &HeaderMap) -> Result<PersonView, Problem> {
        let token = self.session(headers)?;
        match self.ask(headers, CitizenAction::SessionStarted).await? {
            CitizenReply::Person(view) => {
                self.merge_inboxes(&view).await?;
                if let Some(s) = self.sessions().get_mut(&token) {
                    s.person = view.clone();
                }
                Ok(view)
            }
            _ => Err(unexpected()),
        }
    }

    /// Ends a session.
    pub(crate) fn log_out(&self, token: &[u8; 32]) {
        self.sessions().remove(token);
    }

    /// The person of a live session.
    pub(crate) fn person_of(&self, token: &[u8; 32]) -> Option<PersonView> {
        self.sessions().get(token).map(|s| s.person.clone())
    }
}

async fn start_session(
    State(api): State<Arc<CitizenApi>>,
    body: Bytes,
) -> Result<impl IntoResponse, Problem> {
    let (token, person) = api.log_in(&body).await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionStarted {
            session: hex(&token),
            person,
        }),
    ))
}

async fn renew_session(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let token = api.session(&headers)?;
    let verified = api.accept_assertion(&body).await?;
    let mut sessions = api.sessions();
    let s = sessions
        .get_mut(&token)
        .ok_or_else(Problem::unauthenticated)?;
    if s.recipient != verified.claims.subject {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "other-person",
            "this login is for another person than the session's",
        ));
    }
    s.assertion = body.to_vec();
    s.assertion_expires_at = verified.claims.expires_at;
    Ok(Json(s.person.clone()))
}

async fn end_session(State(api): State<Arc<CitizenApi>>, headers: HeaderMap) -> StatusCode {
    if let Ok(token) = api.session(&headers) {
        api.sessions().remove(&token);
    }
    StatusCode::NO_CONTENT
}

async fn me(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
) -> Result<Json<PersonView>, Problem> {
    let token = api.session(&headers)?;
    let sessions = api.sessions();
    let s = sessions.get(&token).ok_or_else(Problem::unauthenticated)?;
    Ok(Json(s.person.clone()))
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "malformed", e.to_string()))
}

async fn register(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let b: RegisterBody = json_body(&body)?;
    let action = CitizenAction::Register {
        language: b.language,
        postal_address: b.postal_address,
    };
    Ok(Json(api.change(&headers, action).await?))
}

async fn add_email(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let b: EmailBody = json_body(&body)?;
    let action = CitizenAction::AddEmail { address: b.address };
    Ok(Json(api.change(&headers, action).await?))
}

async fn verify(api: &CitizenApi, token: &str) -> Result<PersonView, Problem> {
    let token = unhex::<16>(token.trim()).ok_or_else(|| {
        Problem::refused(
            ReasonCode::InvalidToken,
            "the link is incomplete; copy the whole link from the e-mail".into(),
        )
    })?;
    match api
        .ask_gateway(
            None,
            CitizenAction::VerifyEmail {
                token: token.to_vec(),
            },
        )
        .await?
    {
        CitizenReply::Person(view) => Ok(view),
        _ => Err(Problem::new(
            StatusCode::BAD_GATEWAY,
            "gateway-answer",
            "the gateway answered with something else",
        )),
    }
}

async fn verify_email(
    State(api): State<Arc<CitizenApi>>,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let b: TokenBody = json_body(&body)?;
    Ok(Json(verify(&api, &b.token).await?))
}

async fn verify_email_link(
    State(api): State<Arc<CitizenApi>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<&'static str, Problem> {
    let token = q.get("token").map(String::as_str).unwrap_or("");
    verify(&api, token).await?;
    Ok("Your e-mail address is confirmed. / Uw e-mailadres is bevestigd.\n")
}

async fn activate(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
) -> Result<Json<PersonView>, Problem> {
    Ok(Json(api.change(&headers, CitizenAction::Activate).await?))
}

async fn set_consent(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    Path(sender): Path<String>,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let sender: Oin = sender.parse().map_err(|e: estafette_spec::ids::OinError| {
        Problem::new(StatusCode::BAD_REQUEST, "malformed", e.to_string())
    })?;
    let b: ConsentBody = json_body(&body)?;
    let action = CitizenAction::SetConsent {
        sender,
        digital: b.digital,
    };
    Ok(Json(api.change(&headers, action).await?))
}

/// Links a second identity of the session's holder (its assertion is the body).
async fn link(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    api.session(&headers)?;
    api.accept_assertion(&body).await?;
    let action = CitizenAction::Link {
        other: serde_bytes::ByteBuf::from(body.to_vec()),
    };
    Ok(Json(api.change(&headers, action).await?))
}

async fn all_paper(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
) -> Result<Json<PersonView>, Problem> {
    Ok(Json(api.change(&headers, CitizenAction::AllPaper).await?))
}

async fn history(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
) -> Result<Json<Vec<estafette_spec::citizen::ChangeEntry>>, Problem> {
    let token = api.session(&headers)?;
    let assertion = api
        .sessions()
        .get(&token)
        .map(|s| s.assertion.clone())
        .ok_or_else(Problem::unauthenticated)?;
    match api
        .ask_gateway(Some(assertion), CitizenAction::History)
        .await
    {
        Ok(CitizenReply::History(h)) => Ok(Json(h)),
        Ok(_) => Err(Problem::new(
            StatusCode::BAD_GATEWAY,
            "gateway-answer",
            "the gateway answered with something else",
        )),
        Err(p) if p.code == "expired" => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "reauthentication-required",
            "the history needs a login of at most five minutes ago: log in again",
        )),
        Err(p) => Err(p),
    }
}

async fn letters(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
) -> Result<Json<Vec<LetterSummary>>, Problem> {
    Ok(Json(api.letters_of(&headers)?))
}

/// A letter's signed evidence: a CBOR array of COSE_Sign1 objects.
async fn letter_evidence(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    Path(envelope): Path<String>,
) -> Result<Response, Problem> {
    let (_, list) = api.letter_evidence(&headers, &envelope).await?;
    let body = estafette_spec::cbor::to_vec(
        &list
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect::<Vec<_>>(),
    );
    Ok(([(header::CONTENT_TYPE, "application/cbor")], body).into_response())
}

async fn open_letter(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    Path(envelope): Path<String>,
) -> Result<Json<OpenedLetter>, Problem> {
    let inbox = api.inbox_of(&headers)?;
    let envelope: EnvelopeId = envelope
        .parse()
        .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "no-such-letter", "no such letter"))?;
    let actor = Actor {
        role: ActorRole::Holder,
        representative: None,
        mandate: None,
    };
    Ok(Json(api.open_in(&inbox, &envelope, actor).await?))
}

impl CitizenApi {
    /// The letters of the session's inbox, newest first.
    pub(crate) fn letters_of(&self, headers: &HeaderMap) -> Result<Vec<LetterSummary>, Problem> {
        let inbox = self.inbox_of(headers)?;
        let mut out: Vec<LetterSummary> = self
            .node
            .store()
            .inbox_list(&inbox)?
            .iter()
            .map(|(id, record)| self.summary(*id, record))
            .collect();
        out.sort_by_key(|l| std::cmp::Reverse(l.received_at));
        Ok(out)
    }

    /// Opens a letter of `inbox` for `actor`: ContentHandover first, then the letter.
    pub(crate) async fn open_in(
        &self,
        inbox: &InboxId,
        envelope: &EnvelopeId,
        actor: Actor,
    ) -> Result<OpenedLetter, Problem> {
        // The letter is given only after its ContentHandover is on disk;
        // it is read (and parsed) once, here.
        let (record, message) =
            crate::home::inbox::open_letter(&self.node, inbox, envelope, actor).await?;
        let letter = SignedMessage::read_stored(&message)
            .map_err(|_| HomeError::NoSuchLetter)?
            .letter;
        Ok(OpenedLetter {
            summary: self.summary(*envelope, &record),
            body: letter.body,
            attachments: letter
                .attachments
                .iter()
                .map(|a| AttachmentSummary {
                    // Shown to people: no path, no invisible controls.
                    name: estafette_spec::text::display_file_name(&a.name),
                    media_type: a.media_type.clone(),
                    size_bytes: a.content.len(),
                })
                .collect(),
        })
    }

    /// The signed evidence of one of the session's letters, from the
    /// gateway, in chain order.
    pub(crate) async fn letter_evidence(
        &self,
        headers: &HeaderMap,
        envelope: &str,
    ) -> Result<(estafette_spec::MessageId, Vec<Vec<u8>>), Problem> {
        let inbox = self.inbox_of(headers)?;
        let envelope: EnvelopeId = envelope
            .parse()
            .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "no-such-letter", "no such letter"))?;
        let record = self
            .node
            .store()
            .inbox_get(&inbox, &envelope)?
            .ok_or(HomeError::NoSuchLetter)?;
        let action = CitizenAction::LetterEvidence {
            message: record.message_id,
        };
        match self.ask(headers, action).await? {
            CitizenReply::Evidence(list) => Ok((
                record.message_id,
                list.into_iter().map(|b| b.into_vec()).collect(),
            )),
            _ => Err(unexpected()),
        }
    }

    /// An attachment (name, content) of one of the session's letters that
    /// was opened (the opening is the handover).
    pub(crate) fn attachment(
        &self,
        headers: &HeaderMap,
        envelope: &str,
        index: usize,
    ) -> Result<(String, Vec<u8>), Problem> {
        let inbox = self.inbox_of(headers)?;
        let envelope: EnvelopeId = envelope.parse().map_err(|_| HomeError::NoSuchLetter)?;
        let record = self
            .node
            .store()
            .inbox_get(&inbox, &envelope)?
            .ok_or(HomeError::NoSuchLetter)?;
        if record.opened_at.is_none() {
            return Err(Problem::from(HomeError::NoSuchLetter));
        }
        let message = self
            .node
            .store()
            .letter(&envelope)?
            .ok_or(HomeError::NoSuchLetter)?;
        let letter = SignedMessage::read_stored(&message)
            .map_err(|_| HomeError::NoSuchLetter)?
            .letter;
        let a = letter
            .attachments
            .into_iter()
            .nth(index)
            .ok_or(HomeError::NoSuchLetter)?;
        Ok((a.name, a.content))
    }

    /// The session's inbox's access log.
    pub(crate) fn access_entries(
        &self,
        headers: &HeaderMap,
    ) -> Result<Vec<crate::store::AccessEntry>, Problem> {
        let inbox = self.inbox_of(headers)?;
        Ok(self
            .node
            .store()
            .access_log(&inbox, MAX_ACCESS_LOG_ENTRIES)?)
    }

    /// The client of `mandate` (as the gateway says now): inbox here and name.
    async fn client_of(
        &self,
        headers: &HeaderMap,
        mandate: MandateId,
    ) -> Result<(InboxId, String), Problem> {
        let clients = match self.ask(headers, CitizenAction::Clients).await? {
            CitizenReply::Clients(c) => c,
            _ => return Err(unexpected()),
        };
        let c = clients
            .into_iter()
            .find(|c| c.mandate == mandate)
            .ok_or_else(|| Problem::refused(ReasonCode::NoMandate, "no such client here".into()))?;
        let inbox = c.inbox.ok_or_else(|| {
            Problem::refused(
                ReasonCode::NoMandate,
                "no mandate of yours for a client with an inbox here".into(),
            )
        })?;
        Ok((inbox, c.client_name.unwrap_or_default()))
    }

    /// A client's letters within the mandate (each sender checked now).
    pub(crate) async fn client_letters_of(
        &self,
        headers: &HeaderMap,
        mandate: &str,
    ) -> Result<Vec<LetterSummary>, Problem> {
        let mandate = mandate_id(mandate)?;
        let (inbox, _) = self.client_of(headers, mandate).await?;
        let mut decisions: HashMap<Oin, bool> = HashMap::new();
        let mut out = Vec::new();
        for (id, record) in self.node.store().inbox_list(&inbox)? {
            let summary = self.summary(id, &record);
            if !decisions.contains_key(&summary.sender) {
                let d = check_access(self, headers, mandate, &summary.sender).await?;
                decisions.insert(summary.sender.clone(), d.is_some());
            }
            if decisions.get(&summary.sender) == Some(&true) {
                out.push(summary);
            }
        }
        out.sort_by_key(|l| std::cmp::Reverse(l.received_at));
        Ok(out)
    }

    /// Opens a client's letter after a fresh access check; gives the
    /// letter and the client's name.
    pub(crate) async fn open_client(
        &self,
        headers: &HeaderMap,
        mandate: &str,
        envelope: &str,
    ) -> Result<(OpenedLetter, String), Problem> {
        let mandate = mandate_id(mandate)?;
        let envelope: EnvelopeId = envelope
            .parse()
            .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "no-such-letter", "no such letter"))?;
        let (inbox, name) = self.client_of(headers, mandate).await?;
        let sender = self
            .node
            .store()
            .inbox_get(&inbox, &envelope)?
            .ok_or(HomeError::NoSuchLetter)?
            .sender;
        // Checked at this access, against the mandates as they stand now;
        // outside the scope the letter does not exist for the representative.
        let decision = check_access(self, headers, mandate, &sender)
            .await?
            .ok_or(HomeError::NoSuchLetter)?;
        let actor = Actor {
            role: ActorRole::Representative,
            representative: Some(decision.representative.clone()),
            mandate: Some(decision.mandate.to_string()),
        };
        Ok((self.open_in(&inbox, &envelope, actor).await?, name))
    }
}

/// Problem texts people read, per problem code, in Dutch, English, German
/// and French (the first language of `Accept-Language` that we have; else
/// the API's own English detail).
#[allow(clippy::too_many_lines)] // replaced by the text catalogue next
pub(crate) fn localized(code: &str, language: &str) -> Option<&'static str> {
    let texts: [&'static str; 4] = match code {
        "no-session" => [
            "Log eerst in.",
            "Please log in first.",
            "Bitte melden Sie sich zuerst an.",
            "Connectez-vous d'abord.",
        ],
        "reauthentication-required" => [
            "Log opnieuw in om deze wijziging te bevestigen.",
            "Please log in again to confirm this change.",
            "Bitte melden Sie sich erneut an, um diese Änderung zu bestätigen.",
            "Reconnectez-vous pour confirmer ce changement.",
        ],
        "expired" | "not_yet_valid" => [
            "Uw inlog is verlopen. Log opnieuw in.",
            "Your login has expired. Please log in again.",
            "Ihre Anmeldung ist abgelaufen. Bitte melden Sie sich erneut an.",
            "Votre connexion a expiré. Reconnectez-vous.",
        ],
        "replayed" => [
            "Deze inlog is al gebruikt. Log opnieuw in.",
            "This login was already used. Please log in again.",
            "Diese Anmeldung wurde schon benutzt. Bitte melden Sie sich erneut an.",
            "Cette connexion a déjà été utilisée. Reconnectez-vous.",
        ],
        "wrong_audience" => [
            "Deze inlog is voor een andere dienst.",
            "This login is for another service.",
            "Diese Anmeldung gilt für einen anderen Dienst.",
            "Cette connexion est destinée à un autre service.",
        ],
        "assurance_too_low" => [
            "Voor uw brievenbus is een inlog met betrouwbaarheid 'substantieel' nodig.",
            "Your inbox needs a login of assurance level 'substantial'.",
            "Für Ihren Briefkasten ist eine Anmeldung mit Vertrauensniveau 'substanziell' nötig.",
            "Votre boîte aux lettres exige une connexion de niveau 'substantiel'.",
        ],
        "unknown_signer" | "bad_signature" | "revoked" | "wrong_role" => [
            "Deze inlog komt niet van een erkende inlogdienst.",
            "This login does not come from a recognised login service.",
            "Diese Anmeldung stammt nicht von einem anerkannten Anmeldedienst.",
            "Cette connexion ne provient pas d'un service reconnu.",
        ],
        "country_mismatch" => [
            "Deze inlogdienst mag niet voor deze persoon of dit land inloggen.",
            "This login service may not vouch for this person or country.",
            "Dieser Anmeldedienst darf für diese Person oder dieses Land nicht bürgen.",
            "Ce service de connexion ne peut pas se porter garant de cette personne ou de ce pays.",
        ],
        "not_registered" => [
            "U hebt nog geen digitale brievenbus. Meld u eerst aan.",
            "You have no digital inbox yet. Please register first.",
            "Sie haben noch keinen digitalen Briefkasten. Bitte registrieren Sie sich zuerst.",
            "Vous n'avez pas encore de boîte aux lettres numérique. Inscrivez-vous d'abord.",
        ],
        "no_notification_channel" => [
            "Bevestig eerst uw e-mailadres. Zo hoort u van nieuwe brieven.",
            "Please confirm your e-mail address first. That is how you hear of new letters.",
            "Bitte bestätigen Sie zuerst Ihre E-Mail-Adresse. So erfahren Sie von neuen Briefen.",
            "Confirmez d'abord votre adresse e-mail. C'est ainsi que vous apprenez l'arrivée de courriers.",
        ],
        "invalid_token" => [
            "Deze link werkt niet (meer). Geef uw e-mailadres opnieuw op.",
            "This link does not work (any more). Please enter your e-mail address again.",
            "Dieser Link funktioniert nicht (mehr). Bitte geben Sie Ihre E-Mail-Adresse erneut an.",
            "Ce lien ne fonctionne pas (plus). Saisissez à nouveau votre adresse e-mail.",
        ],
        "no-such-letter" => [
            "Deze brief bestaat niet.",
            "There is no such letter.",
            "Diesen Brief gibt es nicht.",
            "Ce courrier n'existe pas.",
        ],
        "gateway-unreachable" | "storage_failure" | "too-many-sessions" => [
            "Het lukt nu even niet. Probeer het over een paar minuten opnieuw.",
            "This is not possible right now. Please try again in a few minutes.",
            "Das geht gerade nicht. Bitte versuchen Sie es in ein paar Minuten erneut.",
            "Ce n'est pas possible pour le moment. Réessayez dans quelques minutes.",
        ],
        "malformed" | "too_large" => [
            "Er klopt iets niet in wat u hebt ingevuld.",
            "Something in what you entered is not right.",
            "Etwas an Ihrer Eingabe stimmt nicht.",
            "Quelque chose ne va pas dans ce que vous avez saisi.",
        ],
        _ => return None,
    };
    let index = match language {
        "nl" => 0,
        "en" => 1,
        "de" => 2,
        "fr" => 3,
        _ => return None,
    };
    Some(texts[index])
}

/// The first language of `Accept-Language` that the citizen API speaks.
pub fn preferred_language(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
    value.split(',').find_map(|part| {
        let tag = part.split(';').next()?.trim();
        match tag.split('-').next()?.to_ascii_lowercase().as_str() {
            "nl" => Some("nl"),
            "en" => Some("en"),
            "de" => Some("de"),
            "fr" => Some("fr"),
            _ => None,
        }
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

fn unexpected() -> Problem {
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "gateway-answer",
        "the gateway answered with something else",
    )
}

#[derive(Serialize, Deserialize)]
pub struct MandateCreated {
    pub id: MandateId,
}

async fn grant_mandate(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<MandateCreated>), Problem> {
    let grant: MandateGrant = json_body(&body)?;
    let id = api
        .mandate_change(&headers, CitizenAction::GrantMandate { grant })
        .await?;
    Ok((StatusCode::CREATED, Json(MandateCreated { id })))
}

fn mandate_id(text: &str) -> Result<MandateId, Problem> {
    text.parse()
        .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "no-such-mandate", "no such mandate"))
}

async fn accept_mandate(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<MandateCreated>, Problem> {
    let id = mandate_id(&id)?;
    let id = api
        .mandate_change(&headers, CitizenAction::AcceptMandate { id })
        .await?;
    Ok(Json(MandateCreated { id }))
}

async fn revoke_mandate(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<MandateCreated>, Problem> {
    let id = mandate_id(&id)?;
    let id = api
        .mandate_change(&headers, CitizenAction::RevokeMandate { id })
        .await?;
    Ok(Json(MandateCreated { id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegalBody {
    /// The court registry's attestation (COSE_Sign1), hex.
    attestation: String,
    correspondence: bool,
    office_address: Option<PostalAddress>,
}

async fn register_legal(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<MandateCreated>), Problem> {
    let b: LegalBody = json_body(&body)?;
    let attestation = unhex_vec(&b.attestation).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "attestation: expected hex",
        )
    })?;
    let action = CitizenAction::RegisterLegalRepresentation {
        attestation: serde_bytes::ByteBuf::from(attestation),
        correspondence: b.correspondence,
        office_address: b.office_address,
    };
    let id = api.mandate_change(&headers, action).await?;
    Ok((StatusCode::CREATED, Json(MandateCreated { id })))
}

fn unhex_vec(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2)
        || text.len() > 2 * estafette_spec::mandate::MAX_ATTESTATION_BYTES
    {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn list_mandates(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
) -> Result<Json<Vec<Mandate>>, Problem> {
    match api.ask(&headers, CitizenAction::Mandates).await? {
        CitizenReply::Mandates(m) => Ok(Json(m)),
        _ => Err(unexpected()),
    }
}

async fn clients(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ClientView>>, Problem> {
    match api.ask(&headers, CitizenAction::Clients).await? {
        CitizenReply::Clients(c) => Ok(Json(c)),
        _ => Err(unexpected()),
    }
}

/// The gateway's decision, now, on this representative reading a letter
/// from `sender` under `mandate` (no decision is cached).
pub(crate) async fn check_access(
    api: &CitizenApi,
    headers: &HeaderMap,
    mandate: MandateId,
    sender: &Oin,
) -> Result<Option<AccessDecision>, Problem> {
    match api
        .ask(
            headers,
            CitizenAction::CheckAccess {
                mandate,
                sender: sender.clone(),
            },
        )
        .await
    {
        Ok(CitizenReply::Access(d)) => Ok(Some(d)),
        Ok(_) => Err(unexpected()),
        Err(p) if p.code == "no_mandate" => Ok(None),
        Err(p) => Err(p),
    }
}

async fn client_letters(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    Path(mandate): Path<String>,
) -> Result<Json<Vec<LetterSummary>>, Problem> {
    Ok(Json(api.client_letters_of(&headers, &mandate).await?))
}

async fn open_client_letter(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    Path((mandate, envelope)): Path<(String, String)>,
) -> Result<Json<OpenedLetter>, Problem> {
    Ok(Json(
        api.open_client(&headers, &mandate, &envelope).await?.0,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientConsentBody {
    digital: bool,
}

/// A representative with the manage right sets a client's consent.
async fn set_client_consent(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    Path((mandate, sender)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<MandateCreated>, Problem> {
    let mandate = mandate_id(&mandate)?;
    let sender: Oin = sender.parse().map_err(|e: estafette_spec::ids::OinError| {
        Problem::new(StatusCode::BAD_REQUEST, "malformed", e.to_string())
    })?;
    let b: ClientConsentBody = json_body(&body)?;
    let action = CitizenAction::SetClientConsent {
        mandate,
        sender,
        digital: b.digital,
    };
    let id = api.mandate_change(&headers, action).await?;
    Ok(Json(MandateCreated { id }))
}

/// The holder's access log: who opened which letter, when, under which mandate.
async fn access_log(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
) -> Result<Json<Vec<crate::store::AccessEntry>>, Problem> {
    Ok(Json(api.access_entries(&headers)?))
}

/// The citizen API's routes.
pub fn router(api: Arc<CitizenApi>) -> axum::Router {
    axum::Router::new()
        .route("/v1/session", post(start_session).delete(end_session))
        .route("/v1/session/renew", post(renew_session))
        .route("/v1/me", get(me))
        .route("/v1/register", post(register))
        .route("/v1/email", post(add_email))
        .route("/v1/email/verify", post(verify_email))
        .route("/verify-email", get(verify_email_link))
        .route("/v1/activate", post(activate))
        .route("/v1/consent/{sender}", put(set_consent))
        .route("/v1/all-paper", post(all_paper))
        .route("/v1/link", post(link))
        .route("/v1/mandates", post(grant_mandate).get(list_mandates))
        .route("/v1/mandates/{id}/accept", post(accept_mandate))
        .route("/v1/mandates/{id}", axum::routing::delete(revoke_mandate))
        .route("/v1/legal-representations", post(register_legal))
        .route("/v1/clients", get(clients))
        .route("/v1/clients/{mandate}/letters", get(client_letters))
        .route(
            "/v1/clients/{mandate}/letters/{envelope}",
            get(open_client_letter),
        )
        .route("/v1/access-log", get(access_log))
        .route(
            "/v1/clients/{mandate}/consent/{sender}",
            put(set_client_consent),
        )
        .route("/v1/history", get(history))
        .route("/v1/letters", get(letters))
        .route("/v1/letters/{envelope}", get(open_letter))
        .route("/v1/letters/{envelope}/evidence", get(letter_evidence))
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
    let metrics = node.metrics.clone();
    let api = CitizenApi::new(node, public_url);
    let web = crate::home::web::Web::new(api.clone(), test_idp);
    tracing::info!(%addr, "citizen API and web inbox listening");
    Ok((addr, tokio::spawn(serve(listener, tls, api, web, metrics))))
}
