//! The person's own side of the citizen API: sessions, the person's view,
//! registration, e-mail and its verification link, activation, consent
//! per sender, all on paper, linking a second identity, the history.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use estafette_spec::citizen::{CitizenAction, CitizenReply, PersonView, PostalAddress};
use estafette_spec::{IdentityProof, Oin, ReasonCode};
use serde::{Deserialize, Serialize};

use super::{CitizenApi, Problem, json_body, preferred_language, unexpected};
use crate::home::session::Session;

/// The answer to a login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionStarted {
    /// Bearer token (64 hex characters) for `Authorization: Bearer …`.
    pub session: String,
    pub person: PersonView,
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

/// A login's proof from a request body: a COSE assertion
/// (`application/cose`, the default) or an OpenID Connect ID token
/// (`application/jwt`) for this node's client id.
fn proof_of(headers: &HeaderMap, body: &Bytes) -> Result<IdentityProof, Problem> {
    let media_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/cose");
    if media_type.starts_with("application/jwt") {
        let token = std::str::from_utf8(body).map_err(|_| {
            Problem::refused(ReasonCode::Malformed, "an ID token is ASCII text".into())
        })?;
        Ok(IdentityProof::IdToken(token.trim().to_owned()))
    } else {
        Ok(IdentityProof::Assertion(serde_bytes::ByteBuf::from(
            body.to_vec(),
        )))
    }
}

pub(super) async fn start_session(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, Problem> {
    let (session, person) = api.log_in(proof_of(&headers, &body)?, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionStarted {
            session: session.token().to_string(),
            person,
        }),
    ))
}

pub(super) async fn renew_session(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    Ok(Json(
        api.renew(&session, proof_of(&headers, &body)?, None)
            .await?,
    ))
}

/// Logging out of a session that already ended is fine too.
pub(super) async fn end_session(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    if let Some(session) = api.bearer_session(&headers) {
        api.log_out(&session).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The person as the gateway has them now (a change made in another
/// session, a link on the web say, shows at once); the session's copy when
/// the gateway cannot be asked, as the web pages do.
pub(super) async fn me(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
) -> Result<Json<PersonView>, Problem> {
    match api.refresh(&session).await {
        Ok(view) => Ok(Json(view)),
        Err(p) if p.code == "no-session" => Err(p),
        Err(_) => api
            .person_of(&session)
            .map(Json)
            .ok_or_else(Problem::unauthenticated),
    }
}

pub(super) async fn register(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let b: RegisterBody = json_body(&body)?;
    let action = CitizenAction::Register {
        language: b.language,
        postal_address: b.postal_address,
    };
    Ok(Json(api.change(&session, action).await?))
}

pub(super) async fn add_email(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let b: EmailBody = json_body(&body)?;
    let action = CitizenAction::AddEmail { address: b.address };
    Ok(Json(api.change(&session, action).await?))
}

impl CitizenApi {
    /// Follows an e-mail's verification link (no session: the link is the proof).
    pub(crate) async fn verify_token(&self, token: &str) -> Result<PersonView, Problem> {
        let token = estafette_spec::bytes::from_hex(token.trim())
            .filter(|t| t.len() == estafette_spec::citizen::VERIFICATION_TOKEN_BYTES)
            .ok_or_else(|| {
                Problem::refused(
                    ReasonCode::InvalidToken,
                    "the link is incomplete; copy the whole link from the e-mail".into(),
                )
            })?;
        match self
            .ask_gateway(None, CitizenAction::VerifyEmail { token })
            .await?
        {
            CitizenReply::Person(view) => Ok(view),
            _ => Err(unexpected()),
        }
    }
}

pub(super) async fn verify_email(
    State(api): State<Arc<CitizenApi>>,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let b: TokenBody = json_body(&body)?;
    Ok(Json(api.verify_token(&b.token).await?))
}

pub(super) async fn verify_email_link(
    State(api): State<Arc<CitizenApi>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<String, Problem> {
    let token = q.get("token").map(String::as_str).unwrap_or("");
    api.verify_token(token).await?;
    // The link may be opened anywhere: the browser's language, and English.
    let language = preferred_language(&headers).unwrap_or("nl");
    let theirs = crate::texts::catalogue_or(language, crate::texts::FALLBACK);
    let english = crate::texts::catalogue_or(crate::texts::FALLBACK, "nl");
    let (a, b) = (
        theirs.text("web.email-confirmed"),
        english.text("web.email-confirmed"),
    );
    Ok(if a == b {
        format!("{a}\n")
    } else {
        format!("{a} / {b}\n")
    })
}

pub(super) async fn activate(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
) -> Result<Json<PersonView>, Problem> {
    Ok(Json(api.change(&session, CitizenAction::Activate).await?))
}

pub(super) async fn set_consent(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    Path(sender): Path<String>,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let sender: Oin = sender
        .parse()
        .map_err(|e: estafette_spec::ids::OinError| Problem::malformed(e.to_string()))?;
    let b: ConsentBody = json_body(&body)?;
    let action = CitizenAction::SetConsent {
        sender,
        digital: b.digital,
    };
    Ok(Json(api.change(&session, action).await?))
}

/// Links a second identity of the session's holder (its assertion is the body).
pub(super) async fn link(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let other = proof_of(&headers, &body)?;
    api.accept_login(&other, None).await?;
    let action = CitizenAction::Link { other };
    Ok(Json(api.change(&session, action).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LanguageBody {
    language: String,
}

/// The language of the person's e-mails and paper letters (a preference:
/// taken during the session, without a fresh login).
pub(super) async fn set_language(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    body: Bytes,
) -> Result<Json<PersonView>, Problem> {
    let b: LanguageBody = json_body(&body)?;
    Ok(Json(api.set_language(&session, b.language).await?))
}

pub(super) async fn all_paper(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
) -> Result<Json<PersonView>, Problem> {
    Ok(Json(api.change(&session, CitizenAction::AllPaper).await?))
}

pub(super) async fn history(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
) -> Result<Json<Vec<estafette_spec::citizen::ChangeEntry>>, Problem> {
    match api.ask(&session, CitizenAction::History).await {
        Ok(CitizenReply::History(h)) => Ok(Json(h)),
        Ok(_) => Err(unexpected()),
        Err(p) if p.code == "expired" => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "reauthentication-required",
            "the history needs a login of at most five minutes ago: log in again",
        )),
        Err(p) => Err(p),
    }
}
