//! `Evidence`: a record by the node that did something, named after ETSI
//! EN 319 522 events, with the receipt that proves it is in that node's
//! evidence log (SPEC.md §7, §15): `[record, receipt]`. No record carries a
//! signature of its own; the node signs one checkpoint per commit. The
//! evidence for one message forms a hash chain: each record carries the
//! SHA-256 of the previous record's bytes.

use serde::{Deserialize, Serialize};

use crate::cbor::{self, CborError};
use crate::cose::Digest;
use crate::ids::{EnvelopeId, EvidenceId, MessageId, NodeId};
use crate::limits::*;
use crate::receipt::{CheckpointCache, Receipt, ReceiptError};
use crate::text::{FieldError, Timestamp, check_line};
use crate::trust::{TrustError, TrustList};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EvidenceEvent {
    /// The gateway accepted the agency's submission.
    SubmissionAcceptance,
    /// The gateway refused the agency's submission.
    SubmissionRejection,
    /// A node stored the envelope durably and took over responsibility.
    RelayAcceptance,
    /// A node refused the envelope.
    RelayRejection,
    /// A node gave up forwarding (expired, retry horizon reached).
    RelayFailure,
    /// The home node put the letter into the recipient's inbox.
    ContentConsignment,
    /// The recipient (or a representative) was notified.
    ConsignmentNotification,
    /// Notification failed (bounced, no working channel).
    ConsignmentNotificationFailure,
    /// The letter was opened, by the holder or a representative.
    ContentHandover,
    /// The letter went (also) on paper.
    PaperFallback,
    /// The letter cannot go on paper (no postal address is known): it will
    /// not reach the recipient unless the sender acts. Ours: ETSI EN 319
    /// 522 has no paper events.
    PaperFailure,
}

impl EvidenceEvent {
    /// Events that report something going wrong carry a reason code.
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            EvidenceEvent::SubmissionRejection
                | EvidenceEvent::RelayRejection
                | EvidenceEvent::RelayFailure
                | EvidenceEvent::ConsignmentNotificationFailure
                | EvidenceEvent::PaperFailure
        )
    }

    /// Events signed by a relay node about an envelope it was offered.
    pub fn is_relay_event(self) -> bool {
        matches!(
            self,
            EvidenceEvent::RelayAcceptance
                | EvidenceEvent::RelayRejection
                | EvidenceEvent::RelayFailure
                | EvidenceEvent::ContentConsignment
        )
    }

    /// Events that must say why (negative ones and paper fallback).
    pub fn needs_reason(self) -> bool {
        self.is_negative() || self == EvidenceEvent::PaperFallback
    }
}

/// Why something was refused, failed or went to paper. Stable codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Bytes are not well-formed CBOR/COSE or not of the schema.
    Malformed,
    /// Over a size or count limit.
    TooLarge,
    /// A signature does not verify.
    BadSignature,
    /// The signing key is not in the trust list.
    UnknownSigner,
    /// The signing key or certificate was revoked.
    Revoked,
    /// The signer's role may not sign this kind of object.
    WrongRole,
    /// Past its expiry time.
    Expired,
    /// Created in the future.
    NotYetValid,
    /// More hops than the hop limit allows.
    HopLimitExceeded,
    /// The peer may not send this to this node, or it is not routed here.
    NotForThisNode,
    /// No route to the destination.
    NoRoute,
    /// Forwarding retried past the retry horizon.
    RetryHorizonExceeded,
    /// The agency's certificate and the message sender differ.
    SenderMismatch,
    /// The recipient identifier is not valid.
    InvalidRecipient,
    /// The same message id was submitted with other bytes.
    DuplicateConflict,
    /// The recipient has no inbox.
    NoInbox,
    /// The recipient has not chosen digital mail from this sender.
    NoConsent,
    /// The inbox is not activated.
    InboxInactive,
    /// No verified notification channel.
    NoNotificationChannel,
    /// The notification bounced permanently.
    NotificationBounced,
    /// Not opened within the time allowed.
    UnreadTooLong,
    /// Not opened and the response deadline is near.
    DeadlineApproaching,
    /// The account holds unread mail and has not been visited for long.
    DormantAccount,
    /// The node could not store it (disk full, storage failure).
    StorageFailure,
    /// An identity assertion is for another node.
    WrongAudience,
    /// An identity assertion's level of assurance is too low.
    AssuranceTooLow,
    /// A single-use value (an assertion's nonce, a verification token) was used again.
    Replayed,
    /// The person has no registration (no inbox) yet.
    NotRegistered,
    /// A verification token is unknown or past its expiry.
    InvalidToken,
    /// A letter on paper because it could not be delivered digitally.
    DeliveryFailed,
    /// An identity provider asserted a person of another country, or an
    /// identifier not issued for use here.
    CountryMismatch,
    /// No mandate in force covers this access.
    NoMandate,
    /// No postal address is known for the recipient (or their
    /// representative's office): a paper letter cannot be printed.
    NoPostalAddress,
    /// Two logins presented to link identities are not the same person.
    IdentityMismatch,
}

impl ReasonCode {
    /// The stable text code, as on the wire.
    pub fn code(self) -> &'static str {
        match self {
            ReasonCode::Malformed => "malformed",
            ReasonCode::TooLarge => "too_large",
            ReasonCode::BadSignature => "bad_signature",
            ReasonCode::UnknownSigner => "unknown_signer",
            ReasonCode::Revoked => "revoked",
            ReasonCode::WrongRole => "wrong_role",
            ReasonCode::Expired => "expired",
            ReasonCode::NotYetValid => "not_yet_valid",
            ReasonCode::HopLimitExceeded => "hop_limit_exceeded",
            ReasonCode::NotForThisNode => "not_for_this_node",
            ReasonCode::NoRoute => "no_route",
            ReasonCode::RetryHorizonExceeded => "retry_horizon_exceeded",
            ReasonCode::SenderMismatch => "sender_mismatch",
            ReasonCode::InvalidRecipient => "invalid_recipient",
            ReasonCode::DuplicateConflict => "duplicate_conflict",
            ReasonCode::NoInbox => "no_inbox",
            ReasonCode::NoConsent => "no_consent",
            ReasonCode::InboxInactive => "inbox_inactive",
            ReasonCode::NoNotificationChannel => "no_notification_channel",
            ReasonCode::NotificationBounced => "notification_bounced",
            ReasonCode::UnreadTooLong => "unread_too_long",
            ReasonCode::DeadlineApproaching => "deadline_approaching",
            ReasonCode::DormantAccount => "dormant_account",
            ReasonCode::StorageFailure => "storage_failure",
            ReasonCode::WrongAudience => "wrong_audience",
            ReasonCode::AssuranceTooLow => "assurance_too_low",
            ReasonCode::Replayed => "replayed",
            ReasonCode::NotRegistered => "not_registered",
            ReasonCode::InvalidToken => "invalid_token",
            ReasonCode::DeliveryFailed => "delivery_failed",
            ReasonCode::CountryMismatch => "country_mismatch",
            ReasonCode::NoMandate => "no_mandate",
            ReasonCode::NoPostalAddress => "no_postal_address",
            ReasonCode::IdentityMismatch => "identity_mismatch",
        }
    }
}

/// Who opened a letter (on ContentHandover).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub role: ActorRole,
    /// For a representative: who (a recipient id, or an OIN with an employee name).
    pub representative: Option<String>,
    /// For a representative: the mandate or attestation under which it acted.
    pub mandate: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorRole {
    Holder,
    Representative,
}

/// The content of an evidence record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    pub evidence_id: EvidenceId,
    pub event: EvidenceEvent,
    /// Absent only when no envelope exists yet (a rejected submission) or
    /// the offered envelope could not be read.
    pub envelope_id: Option<EnvelopeId>,
    /// Absent only on a RelayRejection of an offer that could not be read.
    pub message_id: Option<MessageId>,
    /// SHA-256 of the `SignedMessage` bytes; absent exactly when `message_id` is.
    pub message_digest: Option<Digest>,
    /// SHA-256 of the envelope bytes as offered, on the events of relay
    /// nodes (RelayAcceptance, RelayRejection, RelayFailure, ContentConsignment).
    pub envelope_digest: Option<Digest>,
    /// The node (or gateway) that did it and signed this record.
    pub issuer: NodeId,
    pub issued_at: Timestamp,
    pub reason: Option<ReasonCode>,
    pub actor: Option<Actor>,
    /// SHA-256 of the previous evidence record's bytes for this message
    /// (the record, not its receipt); absent on the first.
    pub previous: Option<Digest>,
}

/// Why evidence is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence content: {0}")]
    Content(#[from] CborError),
    #[error("evidence: {0}")]
    Field(#[from] FieldError),
    #[error("evidence {event:?} must carry a reason code")]
    MissingReason { event: EvidenceEvent },
    #[error("evidence {event:?} must not carry a reason code")]
    UnexpectedReason { event: EvidenceEvent },
    #[error("ContentHandover evidence must name who opened the letter")]
    MissingActor,
    #[error("only ContentHandover evidence names an actor")]
    UnexpectedActor,
    #[error("evidence {event:?} must name the message (id and digest)")]
    MissingMessage { event: EvidenceEvent },
    #[error("evidence names a message id without its digest, or a digest without its id")]
    HalfMessage,
    #[error("evidence {event:?} must carry the digest of the envelope it is about")]
    MissingEnvelopeDigest { event: EvidenceEvent },
    #[error("a representative actor must name the representative and the mandate")]
    IncompleteRepresentative,
    #[error("evidence names issuer {claimed}, but is in the evidence log of {signer}")]
    IssuerMismatch { claimed: NodeId, signer: String },
    #[error("evidence chain: record {index} is for another message")]
    ChainOtherMessage { index: usize },
    #[error("evidence chain: record {index} does not link to an earlier record of the chain")]
    ChainBroken { index: usize },
    #[error("evidence chain is empty")]
    ChainEmpty,
    #[error("evidence is not [record, receipt] in its one encoding")]
    NotEvidence,
    #[error("evidence receipt: {0}")]
    Receipt(#[from] ReceiptError),
}

impl EvidenceError {
    /// The reason code a rejection of this evidence carries.
    pub fn reason(&self) -> ReasonCode {
        match self {
            EvidenceError::Content(e) => e.reason(),
            EvidenceError::IssuerMismatch { .. } => ReasonCode::WrongRole,
            EvidenceError::Receipt(e) => match e {
                ReceiptError::Cbor(e) => e.reason(),
                ReceiptError::Trust(TrustError::UnknownKey(_)) => ReasonCode::UnknownSigner,
                ReceiptError::Trust(TrustError::Revoked { .. }) => ReasonCode::Revoked,
                ReceiptError::BadSignature | ReceiptError::BadCosignature { .. } => {
                    ReasonCode::BadSignature
                }
                e if e.code() == "wrong_role" => ReasonCode::WrongRole,
                _ => ReasonCode::Malformed,
            },
            _ => ReasonCode::Malformed,
        }
    }
}

impl EvidenceRecord {
    pub fn validate(&self) -> Result<(), EvidenceError> {
        if self.message_id.is_some() != self.message_digest.is_some() {
            return Err(EvidenceError::HalfMessage);
        }
        // A rejection names only an envelope whose signature verified
        // (SPEC.md §10.1): of any other offer it cannot name the message.
        let unauthenticated_offer = self.event == EvidenceEvent::RelayRejection;
        if self.message_id.is_none() && !unauthenticated_offer {
            return Err(EvidenceError::MissingMessage { event: self.event });
        }
        if self.event.is_relay_event() && self.envelope_digest.is_none() {
            return Err(EvidenceError::MissingEnvelopeDigest { event: self.event });
        }
        match (self.event.needs_reason(), self.reason.is_some()) {
            (true, false) => return Err(EvidenceError::MissingReason { event: self.event }),
            (false, true) => return Err(EvidenceError::UnexpectedReason { event: self.event }),
            _ => {}
        }
        match (self.event == EvidenceEvent::ContentHandover, &self.actor) {
            (true, None) => return Err(EvidenceError::MissingActor),
            (false, Some(_)) => return Err(EvidenceError::UnexpectedActor),
            (true, Some(actor)) => {
                for text in [&actor.representative, &actor.mandate]
                    .into_iter()
                    .flatten()
                {
                    check_line("actor", text, MAX_SHORT_TEXT_CHARS)?;
                }
                if actor.role == ActorRole::Representative
                    && (actor.representative.is_none() || actor.mandate.is_none())
                {
                    return Err(EvidenceError::IncompleteRepresentative);
                }
            }
            (false, None) => {}
        }
        Ok(())
    }
}

/// Evidence that passed verification (or, from [`Evidence::read_stored`],
/// that this node verified before).
#[derive(Debug, Clone)]
pub struct VerifiedEvidence {
    pub record: EvidenceRecord,
    /// SHA-256 of the record's bytes: what the next record's `previous` holds.
    pub digest: Digest,
    /// Where the record is: which log, which leaf, which checkpoint.
    pub log: LogPlace,
}

/// A record's place in its issuer's log, as its receipt proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPlace {
    pub origin: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// When the checkpoint the receipt proves against was signed.
    pub checkpoint_at: Timestamp,
    /// Witnesses whose cosignatures verified (none from `read_stored`).
    pub witnesses: Vec<NodeId>,
}

/// Makes and checks evidence objects.
pub struct Evidence;

impl Evidence {
    /// The bytes of a record: the log entry, and what the receipt proves.
    pub fn record_bytes(record: &EvidenceRecord) -> Result<Vec<u8>, EvidenceError> {
        record.validate()?;
        Ok(cbor::to_vec(record))
    }

    /// The evidence object: `[record, receipt]`, both as byte strings.
    pub fn assemble(record: &[u8], receipt: &[u8]) -> Vec<u8> {
        cbor::to_vec(&(
            serde_bytes::Bytes::new(record),
            serde_bytes::Bytes::new(receipt),
        ))
    }

    /// The record's and the receipt's bytes of an evidence object, which
    /// must be in its one encoding.
    pub fn split(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), EvidenceError> {
        let (record, receipt): (serde_bytes::ByteBuf, serde_bytes::ByteBuf) =
            cbor::from_slice(bytes, MAX_EVIDENCE_BYTES)?;
        if Self::assemble(&record, &receipt) != bytes {
            return Err(EvidenceError::NotEvidence);
        }
        Ok((record.into_vec(), receipt.into_vec()))
    }

    /// Checks the receipt against the trust list (a node's or the gateway's
    /// log), that the log is the record's issuer's, and the record's fields.
    pub fn verify(bytes: &[u8], trust: &TrustList) -> Result<VerifiedEvidence, EvidenceError> {
        Self::verify_with(bytes, trust, &CheckpointCache::new())
    }

    /// [`Self::verify`] remembering checkpoints in `cache`: the receipts of
    /// one commit cost one signature check.
    pub fn verify_with(
        bytes: &[u8],
        trust: &TrustList,
        cache: &CheckpointCache,
    ) -> Result<VerifiedEvidence, EvidenceError> {
        let (record_bytes, receipt) = Self::split(bytes)?;
        let record: EvidenceRecord = cbor::from_slice(&record_bytes, MAX_EVIDENCE_BYTES)?;
        record.validate()?;
        let receipt = Receipt::parse(&receipt, &record_bytes)?;
        let verified = receipt.verify(trust, cache, 0)?;
        if verified.log_owner != record.issuer {
            return Err(EvidenceError::IssuerMismatch {
                claimed: record.issuer,
                signer: verified.log_owner.to_string(),
            });
        }
        Ok(VerifiedEvidence {
            record,
            digest: Digest::of(&record_bytes),
            log: LogPlace {
                origin: verified.checkpoint.origin,
                leaf_index: verified.leaf_index,
                tree_size: verified.checkpoint.tree_size,
                checkpoint_at: verified.checkpoint.issued_at,
                witnesses: verified.witnesses,
            },
        })
    }

    /// Reads evidence this node verified before storing it, without checking
    /// the receipt's signature again (the monitor reads the same records
    /// every cycle).
    pub fn read_stored(bytes: &[u8]) -> Result<VerifiedEvidence, EvidenceError> {
        let (record_bytes, receipt) = Self::split(bytes)?;
        let record: EvidenceRecord = cbor::from_slice(&record_bytes, MAX_EVIDENCE_BYTES)?;
        let receipt = Receipt::parse(&receipt, &record_bytes)?;
        let checkpoint = &receipt.checkpoint.checkpoint;
        Ok(VerifiedEvidence {
            log: LogPlace {
                origin: checkpoint.origin.clone(),
                leaf_index: receipt.proof.leaf_index,
                tree_size: checkpoint.tree_size,
                checkpoint_at: checkpoint.issued_at,
                witnesses: Vec::new(),
            },
            record,
            digest: Digest::of(&record_bytes),
        })
    }

    /// Appends `records` (made by the log's node) to `log` under one
    /// checkpoint signed with `node_key` at `now`: their evidence objects.
    pub fn log(
        log: &mut crate::memory_log::MemoryLog,
        records: &[&EvidenceRecord],
        node_key: &ed25519_dalek::SigningKey,
        now: Timestamp,
    ) -> Result<Vec<Vec<u8>>, EvidenceError> {
        let entries = records
            .iter()
            .map(|r| Self::record_bytes(r))
            .collect::<Result<Vec<_>, _>>()?;
        let receipts = log.append(&entries, node_key, now);
        Ok(entries
            .iter()
            .zip(receipts)
            .map(|(entry, receipt)| Self::assemble(entry, &receipt))
            .collect())
    }

    /// The chain digest of an evidence object (SHA-256 of its record's
    /// bytes), `None` if it is not one.
    pub fn chain_digest(bytes: &[u8]) -> Option<Digest> {
        Self::split(bytes)
            .ok()
            .map(|(record, _)| Digest::of(&record))
    }

    /// Puts one message's evidence objects (in any order) into chain order:
    /// the record without `previous` first, then every record after the one
    /// it links to, earlier issue times first. Records that link to nothing
    /// in the set keep their place at the end, by issue time, so that
    /// [`Self::verify_chain`] reports them.
    pub fn order_chain(items: Vec<Vec<u8>>, trust: &TrustList) -> Vec<Vec<u8>> {
        let cache = CheckpointCache::new();
        let mut parsed: Vec<(Option<VerifiedEvidence>, Vec<u8>)> = items
            .into_iter()
            .map(|b| (Self::verify_with(&b, trust, &cache).ok(), b))
            .collect();
        parsed.sort_by_key(|(v, _)| v.as_ref().map(|v| v.record.issued_at));
        let mut out: Vec<(Option<VerifiedEvidence>, Vec<u8>)> = Vec::with_capacity(parsed.len());
        let mut placed: Vec<Digest> = Vec::new();
        loop {
            let next = parsed.iter().position(|(v, _)| match v {
                Some(v) => match v.record.previous {
                    None => placed.is_empty(),
                    Some(p) => placed.contains(&p),
                },
                None => false,
            });
            match next {
                Some(i) => {
                    let item = parsed.remove(i);
                    if let Some(v) = &item.0 {
                        placed.push(v.digest);
                    }
                    out.push(item);
                }
                None => break,
            }
        }
        out.extend(parsed);
        out.into_iter().map(|(_, b)| b).collect()
    }

    /// Verifies every record of one message's evidence, in the order they
    /// were issued, and the links between them: the first record has no
    /// `previous`; every later one links to a record before it. (Usually the
    /// one just before; events signed concurrently by different nodes may
    /// link to the same record, so the links form a tree.)
    pub fn verify_chain(
        chain: &[Vec<u8>],
        trust: &TrustList,
    ) -> Result<Vec<VerifiedEvidence>, EvidenceError> {
        let cache = CheckpointCache::new();
        let mut out: Vec<VerifiedEvidence> = Vec::with_capacity(chain.len());
        for (index, bytes) in chain.iter().enumerate() {
            let verified = Self::verify_with(bytes, trust, &cache)?;
            match (out.first(), verified.record.previous) {
                (None, None) => {}
                (None, Some(_)) => return Err(EvidenceError::ChainBroken { index }),
                (Some(first), previous) => {
                    if first.record.message_id != verified.record.message_id
                        || first.record.message_digest != verified.record.message_digest
                    {
                        return Err(EvidenceError::ChainOtherMessage { index });
                    }
                    if !previous.is_some_and(|p| out.iter().any(|e| e.digest == p)) {
                        return Err(EvidenceError::ChainBroken { index });
                    }
                }
            }
            out.push(verified);
        }
        if out.is_empty() {
            return Err(EvidenceError::ChainEmpty);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_match_their_wire_form() {
        for code in [
            ReasonCode::Malformed,
            ReasonCode::RetryHorizonExceeded,
            ReasonCode::NoNotificationChannel,
            ReasonCode::AssuranceTooLow,
        ] {
            let wire = crate::cbor::to_vec(&code);
            let text: String = crate::cbor::from_slice(&wire, 100).unwrap();
            assert_eq!(text, code.code());
        }
    }
}
