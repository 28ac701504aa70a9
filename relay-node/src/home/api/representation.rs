//! Mandates and clients in the citizen API: granting, accepting and
//! revoking mandates, registering a court's legal representation, the
//! list of clients, and a representative reading a client's letters (each
//! access checked with the gateway at that moment).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use estafette_spec::citizen::{
    AccessDecision, CitizenAction, CitizenReply, ClientView, MandateGrant, PostalAddress,
};
use estafette_spec::mandate::{Mandate, MandateId};
use estafette_spec::{Actor, ActorRole, InboxId, Oin, ReasonCode};
use serde::{Deserialize, Serialize};

use super::{CitizenApi, LetterSummary, OpenedLetter, Problem, envelope_id, json_body, unexpected};
use crate::home::HomeError;
use crate::home::session::Session;

#[derive(Serialize, Deserialize)]
pub struct MandateCreated {
    pub id: MandateId,
}

pub(super) async fn grant_mandate(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    body: Bytes,
) -> Result<(StatusCode, Json<MandateCreated>), Problem> {
    let grant: MandateGrant = json_body(&body)?;
    let id = api
        .mandate_change(&session, CitizenAction::GrantMandate { grant })
        .await?;
    Ok((StatusCode::CREATED, Json(MandateCreated { id })))
}

fn mandate_id(text: &str) -> Result<MandateId, Problem> {
    text.parse()
        .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "no-such-mandate", "no such mandate"))
}

pub(super) async fn accept_mandate(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<MandateCreated>, Problem> {
    let id = mandate_id(&id)?;
    let id = api
        .mandate_change(&session, CitizenAction::AcceptMandate { id })
        .await?;
    Ok(Json(MandateCreated { id }))
}

pub(super) async fn revoke_mandate(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<MandateCreated>, Problem> {
    let id = mandate_id(&id)?;
    let id = api
        .mandate_change(&session, CitizenAction::RevokeMandate { id })
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

pub(super) async fn register_legal(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    body: Bytes,
) -> Result<(StatusCode, Json<MandateCreated>), Problem> {
    let b: LegalBody = json_body(&body)?;
    let attestation = attestation_bytes(&b.attestation)
        .ok_or_else(|| Problem::malformed("attestation: expected hex"))?;
    let action = CitizenAction::RegisterLegalRepresentation {
        attestation: serde_bytes::ByteBuf::from(attestation),
        correspondence: b.correspondence,
        office_address: b.office_address,
    };
    let id = api.mandate_change(&session, action).await?;
    Ok((StatusCode::CREATED, Json(MandateCreated { id })))
}

/// An attestation in hex, within its size limit.
fn attestation_bytes(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() > 2 * estafette_spec::mandate::MAX_ATTESTATION_BYTES {
        return None;
    }
    estafette_spec::bytes::from_hex(text)
}

pub(super) async fn list_mandates(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
) -> Result<Json<Vec<Mandate>>, Problem> {
    match api.ask(&session, CitizenAction::Mandates).await? {
        CitizenReply::Mandates(m) => Ok(Json(m)),
        _ => Err(unexpected()),
    }
}

pub(super) async fn clients(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
) -> Result<Json<Vec<ClientView>>, Problem> {
    match api.ask(&session, CitizenAction::Clients).await? {
        CitizenReply::Clients(c) => Ok(Json(c)),
        _ => Err(unexpected()),
    }
}

/// The gateway's decision, now, on this representative reading a letter
/// from `sender` under `mandate` (no decision is cached).
pub(crate) async fn check_access(
    api: &CitizenApi,
    session: &Session,
    mandate: MandateId,
    sender: &Oin,
) -> Result<Option<AccessDecision>, Problem> {
    match api
        .ask(
            session,
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

pub(super) async fn client_letters(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    Path(mandate): Path<String>,
) -> Result<Json<Vec<LetterSummary>>, Problem> {
    Ok(Json(api.client_letters_of(&session, &mandate).await?))
}

pub(super) async fn open_client_letter(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    Path((mandate, envelope)): Path<(String, String)>,
) -> Result<Json<OpenedLetter>, Problem> {
    Ok(Json(
        api.open_client(&session, &mandate, &envelope).await?.0,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientConsentBody {
    digital: bool,
}

/// A representative with the manage right sets a client's consent.
pub(super) async fn set_client_consent(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    Path((mandate, sender)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<MandateCreated>, Problem> {
    let mandate = mandate_id(&mandate)?;
    let sender: Oin = sender
        .parse()
        .map_err(|e: estafette_spec::ids::OinError| Problem::malformed(e.to_string()))?;
    let b: ClientConsentBody = json_body(&body)?;
    let action = CitizenAction::SetClientConsent {
        mandate,
        sender,
        digital: b.digital,
    };
    let id = api.mandate_change(&session, action).await?;
    Ok(Json(MandateCreated { id }))
}

impl CitizenApi {
    /// The client of `mandate` (as the gateway says now), with its inbox
    /// here.
    async fn client_of(
        &self,
        session: &Session,
        mandate: MandateId,
    ) -> Result<(ClientView, InboxId), Problem> {
        let clients = match self.ask(session, CitizenAction::Clients).await? {
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
        Ok((c, inbox))
    }

    /// A client's letters within the mandate (each sender checked now).
    pub(crate) async fn client_letters_of(
        &self,
        session: &Session,
        mandate: &str,
    ) -> Result<Vec<LetterSummary>, Problem> {
        Ok(self.client_with_letters(session, mandate).await?.1)
    }

    /// The client of `mandate` as the gateway says now, and their letters
    /// within the mandate.
    pub(crate) async fn client_with_letters(
        &self,
        session: &Session,
        mandate: &str,
    ) -> Result<(ClientView, Vec<LetterSummary>), Problem> {
        let mandate = mandate_id(mandate)?;
        let (client, inbox) = self.client_of(session, mandate).await?;
        let letters = self.client_letters_in(session, mandate, inbox).await?;
        Ok((client, letters))
    }

    /// The letters in the client's `inbox` that `mandate` lets the session's
    /// person see now: one access check per sender.
    pub(crate) async fn client_letters_in(
        &self,
        session: &Session,
        mandate: MandateId,
        inbox: InboxId,
    ) -> Result<Vec<LetterSummary>, Problem> {
        let mut decisions: HashMap<Oin, bool> = HashMap::new();
        let mut out = Vec::new();
        for (id, record) in self.node.store().inbox_list(&inbox)? {
            let summary = self.summary(id, &record);
            if !decisions.contains_key(&summary.sender) {
                let d = check_access(self, session, mandate, &summary.sender).await?;
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
        session: &Session,
        mandate: &str,
        envelope: &str,
    ) -> Result<(OpenedLetter, String), Problem> {
        let mandate = mandate_id(mandate)?;
        let envelope = envelope_id(envelope)?;
        let (client, inbox) = self.client_of(session, mandate).await?;
        let name = client.client_name.unwrap_or_default();
        let sender = self
            .node
            .store()
            .inbox_get(&inbox, &envelope)?
            .ok_or(HomeError::NoSuchLetter)?
            .sender;
        // Checked at this access, against the mandates as they stand now;
        // outside the scope the letter does not exist for the representative.
        let decision = check_access(self, session, mandate, &sender)
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
