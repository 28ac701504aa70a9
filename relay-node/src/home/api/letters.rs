//! Letters in the citizen API: the inbox list (from the small inbox
//! records: no letter read, nothing hashed), opening a letter (its
//! ContentHandover first), its evidence from the gateway, attachments and
//! the access log.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use estafette_spec::citizen::{CitizenAction, CitizenReply};
use estafette_spec::{Actor, ActorRole, EnvelopeId, InboxId, Oin, SignedMessage, Timestamp};
use serde::{Deserialize, Serialize};

use super::{CitizenApi, MAX_ACCESS_LOG_ENTRIES, Problem, envelope_id, unexpected};
use crate::home::HomeError;
use crate::home::session::Session;
use crate::store::InboxCursor;

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

/// Letters in a page of the inbox list when the caller does not say.
pub const LETTERS_PAGE: usize = 100;
/// Most letters one page of the inbox list holds.
pub const MAX_LETTERS_PAGE: usize = 1_000;

/// `?before=<cursor>&limit=<n>`: both optional, read by hand so that a bad
/// value gets a problem naming it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    before: Option<String>,
    limit: Option<String>,
}

impl PageQuery {
    /// Where the page starts and how long it is.
    pub(crate) fn read(
        before: Option<&str>,
        limit: Option<&str>,
        default: usize,
    ) -> Result<(Option<InboxCursor>, usize), Problem> {
        let limit = match limit {
            None => default,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LETTERS_PAGE).contains(l))
                .ok_or_else(|| {
                    Problem::malformed(format!("limit is a number from 1 to {MAX_LETTERS_PAGE}"))
                })?,
        };
        let before = before
            .map(str::parse::<InboxCursor>)
            .transpose()
            .map_err(|e| Problem::malformed(format!("before: {e}")))?;
        Ok((before, limit))
    }
}

/// One page of the inbox, newest first (a JSON array); a `Link` header
/// with `rel="next"` points at the next page when there is one. The next
/// page's cursor is also `<received_at>.<envelope_id>` of the page's last
/// letter.
pub(super) async fn letters(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    Query(query): Query<PageQuery>,
) -> Result<Response, Problem> {
    let (before, limit) = PageQuery::read(
        query.before.as_deref(),
        query.limit.as_deref(),
        LETTERS_PAGE,
    )?;
    let (letters, next) = api.letters_page(&session, before, limit)?;
    let mut response = Json(letters).into_response();
    if let Some(next) = next
        && let Ok(link) = header::HeaderValue::from_str(&format!(
            "</v1/letters?before={next}&limit={limit}>; rel=\"next\""
        ))
    {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// A letter's signed evidence: a CBOR array of COSE_Sign1 objects.
pub(super) async fn letter_evidence(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    Path(envelope): Path<String>,
) -> Result<Response, Problem> {
    let (_, list) = api.letter_evidence(&session, &envelope).await?;
    let body = estafette_spec::cbor::to_vec(
        &list
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect::<Vec<_>>(),
    );
    Ok(([(header::CONTENT_TYPE, "application/cbor")], body).into_response())
}

pub(super) async fn open_letter(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
    Path(envelope): Path<String>,
) -> Result<Json<OpenedLetter>, Problem> {
    let inbox = api.inbox_of(&session)?;
    let envelope = envelope_id(&envelope)?;
    let actor = Actor {
        role: ActorRole::Holder,
        representative: None,
        mandate: None,
    };
    Ok(Json(api.open_in(&inbox, &envelope, actor).await?))
}

/// The holder's access log: who opened which letter, when, under which mandate.
pub(super) async fn access_log(
    State(api): State<Arc<CitizenApi>>,
    session: Session,
) -> Result<Json<Vec<crate::store::AccessEntry>>, Problem> {
    Ok(Json(api.access_entries(&session)?))
}

impl CitizenApi {
    /// A page of the session's inbox, newest first, and where the next
    /// one starts.
    pub(crate) fn letters_page(
        &self,
        session: &Session,
        before: Option<InboxCursor>,
        limit: usize,
    ) -> Result<(Vec<LetterSummary>, Option<InboxCursor>), Problem> {
        let inbox = self.inbox_of(session)?;
        let page = self.node.store().inbox_page(&inbox, before, limit)?;
        let letters = page
            .letters
            .iter()
            .map(|(id, record)| self.summary(*id, record))
            .collect();
        Ok((letters, page.next))
    }

    /// How many letters of the session's inbox are not opened yet.
    pub(crate) fn unread_of(&self, session: &Session) -> Result<usize, Problem> {
        let inbox = self.inbox_of(session)?;
        Ok(self.node.store().count_unread(&inbox)?)
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
        session: &Session,
        envelope: &str,
    ) -> Result<(estafette_spec::MessageId, Vec<Vec<u8>>), Problem> {
        let inbox = self.inbox_of(session)?;
        let envelope = envelope_id(envelope)?;
        let record = self
            .node
            .store()
            .inbox_get(&inbox, &envelope)?
            .ok_or(HomeError::NoSuchLetter)?;
        let action = CitizenAction::LetterEvidence {
            message: record.message_id,
        };
        match self.ask(session, action).await? {
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
        session: &Session,
        envelope: &str,
        index: usize,
    ) -> Result<(String, Vec<u8>), Problem> {
        let inbox = self.inbox_of(session)?;
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
        session: &Session,
    ) -> Result<Vec<crate::store::AccessEntry>, Problem> {
        let inbox = self.inbox_of(session)?;
        Ok(self
            .node
            .store()
            .access_log(&inbox, MAX_ACCESS_LOG_ENTRIES)?)
    }

    /// A letter in a list: from the small record the relay wrote at
    /// delivery (no letter read, nothing hashed).
    pub(crate) fn summary(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InboxRecord, Op, Placement};
    use crate::testkit::{TestFederation, random_inbox};
    use estafette_pki::NodeKind;
    use estafette_spec::citizen::PersonView;
    use estafette_spec::{Digest, Letter};

    /// A session of the letter's recipient, without a real login.
    async fn session_of(
        api: &CitizenApi,
        letter: &Letter,
        inbox: InboxId,
        now: estafette_spec::Timestamp,
    ) -> Session {
        let person = PersonView {
            recipient: letter.recipient.clone(),
            inbox: Some(inbox),
            home_node: Some(api.node.id.clone()),
            active: true,
            digital_senders: vec![letter.sender.clone()],
            channels: vec![],
            language: "nl".into(),
            merged_inboxes: vec![],
            linked: vec![],
        };
        let unused = estafette_spec::IdentityProof::Assertion(serde_bytes::ByteBuf::new());
        api.sessions
            .start(
                letter.recipient.clone(),
                (unused, now.plus_s(300)),
                (person, false),
            )
            .await
            .unwrap()
    }

    /// A page's size and cursor: the edges, and clear refusals.
    #[test]
    fn a_page_is_one_to_the_most_letters_from_a_cursor() {
        let read = |before, limit| PageQuery::read(before, limit, LETTERS_PAGE);
        assert_eq!(read(None, None).unwrap(), (None, LETTERS_PAGE));
        assert_eq!(read(None, Some("1")).unwrap().1, 1);
        assert_eq!(read(None, Some("1000")).unwrap().1, MAX_LETTERS_PAGE);
        for bad in ["0", "1001", "-1", "ten", ""] {
            let problem = read(None, Some(bad)).unwrap_err();
            assert_eq!(problem.code, "malformed", "{bad}");
            assert!(problem.detail.contains("limit"), "{bad}");
        }
        let cursor = "1800000000.000102030405060708090a0b0c0d0e0f";
        let (before, _) = read(Some(cursor), None).unwrap();
        let before = before.unwrap();
        assert_eq!(before.received_at, Timestamp(1_800_000_000));
        assert_eq!(before.to_string(), cursor, "written as read");
        for bad in [
            "1800000000",
            "x.000102030405060708090a0b0c0d0e0f",
            "1.00",
            "1.zz0102030405060708090a0b0c0d0e0f",
        ] {
            let problem = read(Some(bad), None).unwrap_err();
            assert!(problem.detail.contains("before"), "{bad}");
        }
    }

    /// Page by page, the largest pages: every one of `letters` once,
    /// newest first (all arrived in the same second: the envelope id
    /// breaks the tie), and the last full page says it is the last.
    fn every_page(api: &CitizenApi, session: &Session, letters: usize) -> Vec<LetterSummary> {
        let mut list = Vec::new();
        let mut before = None;
        for _ in 0..letters / MAX_LETTERS_PAGE {
            let (page, next) = api.letters_page(session, before, MAX_LETTERS_PAGE).unwrap();
            assert_eq!(page.len(), MAX_LETTERS_PAGE);
            list.extend(page);
            before = next;
        }
        assert_eq!(before, None, "the last full page says it is the last");
        assert_eq!(list.len(), letters);
        let mut order: Vec<_> = list
            .iter()
            .map(|l| (l.received_at, l.envelope_id))
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] > w[1]),
            "newest first, each once"
        );
        order.dedup();
        assert_eq!(order.len(), letters);
        list
    }

    /// Listing comes from the small records written at delivery: an inbox
    /// of 10,000 letters is listed without reading one letter (the store
    /// counts every letter it reads), so nothing is parsed or hashed;
    /// opening reads exactly one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listing_ten_thousand_letters_reads_no_letter() {
        const LETTERS: usize = 10_000;
        let fed = TestFederation::new(&[("home.test", NodeKind::Home)], &["home.test"]);
        let node = crate::node::Node::start(fed.relay("home.test").config.clone())
            .await
            .unwrap();
        let inbox = random_inbox();
        let (_, message, header) = fed.envelope("home.test", inbox, &"x".repeat(4096));
        let letter: Letter = SignedMessage::read_stored(&message).unwrap().letter;
        let now = node.core().clock.now();
        // Written as a delivery writes them, many per commit.
        let mut writes = tokio::task::JoinSet::new();
        for _ in 0..LETTERS {
            let mut header = header.clone();
            header.envelope_id = EnvelopeId::random(&mut rand_core::OsRng);
            let record = InboxRecord::delivered(&header, &letter, now, Digest::of(b"ours"));
            let (node, message) = (node.clone(), message.clone());
            writes.spawn(async move {
                node.store()
                    .write(Op::Accept {
                        envelope_id: header.envelope_id,
                        evidence: None,
                        placement: Placement::Inbox {
                            inbox_id: inbox,
                            record,
                            message,
                        },
                        now,
                        extra: None,
                        evidence_to: None,
                    })
                    .await
            });
        }
        while let Some(outcome) = writes.join_next().await {
            outcome.unwrap().unwrap();
        }
        let api = CitizenApi::new(node.clone(), "https://home.test/".into());
        let session = session_of(&api, &letter, inbox, now).await;
        let read_before = node.metrics.letters_read.get();
        let list = every_page(&api, &session, LETTERS);
        assert!(
            list.iter()
                .all(|l| l.subject == letter.subject && !l.opened)
        );
        assert_eq!(api.unread_of(&session).unwrap(), LETTERS);
        assert_eq!(
            node.metrics.letters_read.get(),
            read_before,
            "listing read no letter"
        );
        let actor = Actor {
            role: ActorRole::Holder,
            representative: None,
            mandate: None,
        };
        let opened = api
            .open_in(&inbox, &list[0].envelope_id, actor)
            .await
            .unwrap();
        assert_eq!(opened.body, letter.body);
        assert_eq!(
            node.metrics.letters_read.get(),
            read_before + 1,
            "opening read the letter once"
        );
        node.shutdown().await;
    }
}
