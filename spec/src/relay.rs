//! The node-to-node protocol, without I/O: frames, what a receiving node
//! decides about an offered envelope, the evidence it signs for that, and
//! the retry schedule of a forwarding node. `estafette-relay` moves these
//! values over QUIC and through its durable store.

use serde::{Deserialize, Serialize};

use crate::cbor::{self, CborError};
use crate::cose::Digest;
use crate::envelope::{Envelope, EnvelopeContent, EnvelopeError, HpkeKeyPair, RoutingHeader};
use crate::evidence::{EvidenceEvent, EvidenceRecord, ReasonCode};
use crate::ids::{EvidenceId, NodeId};
use crate::limits::*;
use crate::message::{Letter, SignedMessage};
use crate::text::Timestamp;
use crate::trust::{NodeEntry, NodeRole, TrustList};

/// ALPN of protocol version 1.
pub const ALPN: &[u8] = b"estafette/1";
/// Largest frame: an envelope plus the offer's own fields.
pub const MAX_FRAME_BYTES: usize = MAX_ENVELOPE_BYTES + 1024;
/// Most evidence objects in one delivery to the gateway.
pub const MAX_EVIDENCE_PER_DELIVERY: usize = 512;

/// One envelope offered to the next node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// Relay hops the envelope has taken before this one (0 from the gateway).
    pub hops_taken: u8,
    /// SHA-256 of the evidence the offering node signed for this envelope,
    /// so that the receiver's evidence links to it.
    pub previous_evidence: Option<Digest>,
    #[serde(with = "crate::bytes::vec_hex")]
    pub envelope: Vec<u8>,
}

/// A request, one per QUIC stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Take responsibility for this envelope.
    Offer(Offer),
    /// Evidence objects for the gateway to store (only the gateway accepts these).
    Evidence(Vec<serde_bytes::ByteBuf>),
    /// A person's request, carried by their home node to the gateway (only
    /// home nodes send these, only the gateway accepts them).
    Citizen(Box<crate::citizen::CitizenRequest>),
    /// A node's log checkpoint for this node to witness (SPEC.md §15, C2SP
    /// tlog-witness's add-checkpoint).
    AddCheckpoint(AddCheckpoint),
}

/// A checkpoint offered to a witness: the size the log believes the
/// witness knows, the consistency proof from there, the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCheckpoint {
    pub old_size: u64,
    /// At most [`crate::merkle::MAX_PROOF_HASHES`] hashes.
    pub consistency: Vec<Digest>,
    /// The COSE checkpoint (root embedded, no cosignatures needed).
    #[serde(with = "serde_bytes")]
    pub checkpoint: Vec<u8>,
}

impl Request {
    /// Whether sending this request twice has the effect of sending it
    /// once: offers and evidence deliveries are de-duplicated by id, and
    /// some citizen actions are reads or set a state.
    pub fn is_repeatable(&self) -> bool {
        match self {
            Request::Offer(_) | Request::Evidence(_) | Request::AddCheckpoint(_) => true,
            Request::Citizen(request) => request.action.is_repeatable(),
        }
    }
}

/// The answer on the same stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Stored durably: the responder's signed RelayAcceptance or ContentConsignment.
    Accepted(serde_bytes::ByteBuf),
    /// Refused and not stored: the responder's signed RelayRejection.
    Rejected(serde_bytes::ByteBuf),
    /// The gateway stored this many evidence objects durably.
    EvidenceStored(u32),
    /// The gateway's answer to a citizen request.
    Citizen(crate::citizen::CitizenReply),
    /// The request itself is not allowed or not readable; nothing was stored.
    Refused { reason: ReasonCode, detail: String },
    /// The witness cosigned the checkpoint: `[kid, time, signature]`.
    Cosigned(serde_bytes::ByteBuf),
    /// The witness did not cosign: tlog-witness's status (400, 403, 409,
    /// 422), the size it knows of the log, and why.
    CheckpointRefused {
        status: u16,
        known_size: u64,
        detail: String,
    },
}

/// Why a frame is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the limit of {max} bytes", max = MAX_FRAME_BYTES)]
    TooLarge(u64),
    #[error("frame: {0}")]
    Cbor(#[from] CborError),
}

/// Encodes a frame body (the QUIC stream carries one body; its end marks the end).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    cbor::to_vec(value)
}

/// Decodes a frame body with the frame limits.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(bytes.len() as u64));
    }
    Ok(cbor::from_slice(bytes, MAX_FRAME_BYTES)?)
}

/// What a receiving node does with an offer it accepts.
#[derive(Debug, Clone)]
pub enum OfferDecision {
    /// Store, then forward to `next_hop`.
    Forward {
        header: RoutingHeader,
        next_hop: NodeId,
    },
    /// Store in the inbox named by the header (home role).
    Deliver {
        header: RoutingHeader,
        message: Vec<u8>,
        letter: Box<Letter>,
    },
}

impl OfferDecision {
    pub fn header(&self) -> &RoutingHeader {
        match self {
            OfferDecision::Forward { header, .. } | OfferDecision::Deliver { header, .. } => header,
        }
    }
}

/// Why an offer is refused; the header is there when its signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRefusal {
    pub reason: ReasonCode,
    pub detail: String,
    pub header: Option<Box<RoutingHeader>>,
}

/// Why a peer may not make a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct PeerRefusal {
    pub reason: ReasonCode,
    pub detail: String,
}

/// The receiving side of the protocol for one node.
pub struct Receiver<'a> {
    pub trust: &'a TrustList,
    /// This node's id.
    pub me: &'a NodeId,
}

impl Receiver<'_> {
    fn my_entry(&self) -> Option<&NodeEntry> {
        self.trust.node(self.me)
    }

    /// The authentication point: the peer (named by its certificate) must be
    /// the gateway or a node in the trust list, and not revoked.
    pub fn authorize_peer(&self, peer: &NodeId) -> Result<&NodeEntry, PeerRefusal> {
        if let Some(entry) = self.trust.node(peer) {
            return Ok(entry);
        }
        let revoked = self
            .trust
            .content()
            .revoked
            .iter()
            .any(|r| r.subject == peer.as_str());
        Err(PeerRefusal {
            reason: if revoked {
                ReasonCode::Revoked
            } else {
                ReasonCode::UnknownSigner
            },
            detail: format!(
                "node {peer} is {} the trust list",
                if revoked { "revoked in" } else { "not in" }
            ),
        })
    }

    /// May `peer` deliver evidence here? Only to the gateway, only from nodes.
    pub fn authorize_evidence_delivery(&self, peer: &NodeId) -> Result<(), PeerRefusal> {
        self.authorize_peer(peer)?;
        let i_am_gateway = self.trust.gateway().is_some_and(|g| &g.id == self.me);
        if !i_am_gateway {
            return Err(PeerRefusal {
                reason: ReasonCode::NotForThisNode,
                detail: "only the gateway accepts evidence deliveries".into(),
            });
        }
        Ok(())
    }

    /// May `peer` carry a citizen request here? Only a home node, only to the gateway.
    pub fn authorize_citizen_request(&self, peer: &NodeId) -> Result<(), PeerRefusal> {
        let entry = self.authorize_peer(peer)?;
        if !entry.roles.contains(&NodeRole::Home) {
            return Err(PeerRefusal {
                reason: ReasonCode::WrongRole,
                detail: format!(
                    "{peer} is not a home node; only home nodes carry citizen requests"
                ),
            });
        }
        if self.trust.gateway().is_none_or(|g| &g.id != self.me) {
            return Err(PeerRefusal {
                reason: ReasonCode::NotForThisNode,
                detail: "only the gateway takes citizen requests".into(),
            });
        }
        Ok(())
    }

    /// Checks an offer: size, the gateway's signature, expiry, hops, and
    /// routing; on a home node also opens the payload and checks the
    /// agency's signature. Pure: stores nothing.
    pub fn check_offer(
        &self,
        offer: &Offer,
        now: Timestamp,
        hpke: Option<&HpkeKeyPair>,
    ) -> Result<OfferDecision, OfferRefusal> {
        let refuse =
            |reason: ReasonCode, detail: String, header: Option<RoutingHeader>| OfferRefusal {
                reason,
                detail,
                header: header.map(Box::new),
            };
        let verified = Envelope::verify(&offer.envelope, self.trust, now).map_err(|e| {
            // A rejection names only what it could authenticate: a header
            // whose signature did not verify is the sender's claim, and
            // naming it would sign that claim (a signing oracle).
            let header = match &e {
                EnvelopeError::Verify(_) | EnvelopeError::Content(_) => None,
                _ => peek_header(&offer.envelope),
            };
            refuse(e.reason(), e.to_string(), header)
        })?;
        let header = verified.content.header.clone();
        Envelope::check_hops(&header, offer.hops_taken)
            .map_err(|e| refuse(e.reason(), e.to_string(), Some(header.clone())))?;
        let me = self.my_entry().ok_or_else(|| {
            refuse(
                ReasonCode::NotForThisNode,
                format!("this node ({}) is not in the trust list", self.me),
                Some(header.clone()),
            )
        })?;
        if &header.home_node == self.me {
            if !me.roles.contains(&NodeRole::Home) {
                return Err(refuse(
                    ReasonCode::NotForThisNode,
                    "envelope is for this node, which is not a home node".into(),
                    Some(header),
                ));
            }
            let keys = hpke.ok_or_else(|| {
                refuse(
                    ReasonCode::NotForThisNode,
                    "no HPKE key loaded".into(),
                    Some(header.clone()),
                )
            })?;
            let message = verified
                .open(keys)
                .map_err(|e| refuse(e.reason(), e.to_string(), Some(header.clone())))?;
            let letter = SignedMessage::verify(&message, self.trust)
                .map_err(|e| refuse(e.reason(), e.to_string(), Some(header.clone())))?
                .letter;
            if letter.message_id != header.message_id {
                return Err(refuse(
                    ReasonCode::Malformed,
                    "the sealed letter's id differs from the routing header's".into(),
                    Some(header),
                ));
            }
            return Ok(OfferDecision::Deliver {
                header,
                message,
                letter: Box::new(letter),
            });
        }
        if !me.roles.contains(&NodeRole::Transit) {
            return Err(refuse(
                ReasonCode::NotForThisNode,
                format!(
                    "envelope is for {}, and this node does not relay",
                    header.home_node
                ),
                Some(header),
            ));
        }
        let next_hop = self
            .trust
            .next_hop(self.me, &header.home_node)
            .ok_or_else(|| {
                refuse(
                    ReasonCode::NoRoute,
                    format!("no route to {}", header.home_node),
                    Some(header.clone()),
                )
            })?
            .id
            .clone();
        Ok(OfferDecision::Forward { header, next_hop })
    }

    /// The evidence this node signs about an offered envelope.
    pub fn evidence(
        &self,
        event: EvidenceEvent,
        header: Option<&RoutingHeader>,
        offer: &Offer,
        reason: Option<ReasonCode>,
        now: Timestamp,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> EvidenceRecord {
        relay_evidence(
            self.me,
            event,
            header,
            Digest::of(&offer.envelope),
            offer.previous_evidence,
            reason,
            now,
            rng,
        )
    }
}

/// Evidence by node `issuer` about an envelope (with digest `envelope_digest`).
#[allow(clippy::too_many_arguments)]
pub fn relay_evidence(
    issuer: &NodeId,
    event: EvidenceEvent,
    header: Option<&RoutingHeader>,
    envelope_digest: Digest,
    previous: Option<Digest>,
    reason: Option<ReasonCode>,
    now: Timestamp,
    rng: &mut impl rand_core::CryptoRngCore,
) -> EvidenceRecord {
    EvidenceRecord {
        evidence_id: EvidenceId::random(rng),
        event,
        envelope_id: header.map(|h| h.envelope_id),
        message_id: header.map(|h| h.message_id),
        message_digest: header.map(|h| h.message_digest),
        envelope_digest: Some(envelope_digest),
        issuer: issuer.clone(),
        issued_at: now,
        reason,
        actor: None,
        previous,
    }
}

/// The routing header of envelope bytes, without checking the signature:
/// only to name the envelope in a rejection.
pub fn peek_header(bytes: &[u8]) -> Option<RoutingHeader> {
    use coset::{CborSerializable, TaggedCborSerializable};
    cbor::prescan(bytes, MAX_ENVELOPE_BYTES).ok()?;
    let sign1 = coset::CoseSign1::from_tagged_slice(bytes)
        .or_else(|_| coset::CoseSign1::from_slice(bytes))
        .ok()?;
    let content: EnvelopeContent =
        cbor::from_slice(sign1.payload.as_deref()?, MAX_ENVELOPE_BYTES).ok()?;
    Some(content.header)
}

/// Capped exponential backoff with jitter, and the horizon after which a
/// forwarding node gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub base_ms: u64,
    /// Longest delay between two attempts.
    pub cap_ms: u64,
    /// Give up this long after the first attempt (or at the envelope's expiry, if earlier).
    pub horizon_s: u64,
}

impl RetryPolicy {
    /// Delay before attempt `attempts + 1`, given a uniform random `jitter`
    /// in [0, 1): between half and all of `min(cap, base * 2^attempts)`.
    pub fn delay_ms(&self, attempts: u32, jitter: f64) -> u64 {
        let exp = self.base_ms.saturating_mul(1u64 << attempts.min(32));
        let full = exp.min(self.cap_ms);
        let jitter = jitter.clamp(0.0, 1.0);
        full / 2 + ((full / 2) as f64 * jitter) as u64
    }

    /// Whether to give up at `now`.
    pub fn gives_up(
        &self,
        first_attempt: Timestamp,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Option<ReasonCode> {
        if now >= expires_at {
            Some(ReasonCode::Expired)
        } else if now.0.saturating_sub(first_attempt.0) >= self.horizon_s {
            Some(ReasonCode::RetryHorizonExceeded)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let p = RetryPolicy {
            base_ms: 100,
            cap_ms: 10_000,
            horizon_s: 3600,
        };
        assert_eq!(p.delay_ms(0, 0.0), 50);
        assert_eq!(p.delay_ms(0, 0.999_999), 99);
        assert_eq!(p.delay_ms(3, 0.0), 400);
        assert_eq!(p.delay_ms(20, 0.0), 5_000);
        assert_eq!(p.delay_ms(200, 0.5), 7_500);
        assert_eq!(
            p.gives_up(Timestamp(0), Timestamp(100), Timestamp(100)),
            Some(ReasonCode::Expired)
        );
        assert_eq!(
            p.gives_up(Timestamp(0), Timestamp(10_000), Timestamp(3600)),
            Some(ReasonCode::RetryHorizonExceeded)
        );
        assert_eq!(
            p.gives_up(Timestamp(0), Timestamp(10_000), Timestamp(3599)),
            None
        );
    }

    #[test]
    fn only_home_nodes_carry_citizen_requests_and_only_to_the_gateway() {
        let trust = crate::fixtures::trust_list();
        let at_gateway = Receiver {
            trust: &trust,
            me: &crate::fixtures::gateway_id(),
        };
        assert!(
            at_gateway
                .authorize_citizen_request(&crate::fixtures::home_id())
                .is_ok()
        );
        let transit = at_gateway
            .authorize_citizen_request(&crate::fixtures::relay_id())
            .unwrap_err();
        assert_eq!(transit.reason, ReasonCode::WrongRole);
        let stranger = at_gateway
            .authorize_citizen_request(&"agency.example".parse().unwrap())
            .unwrap_err();
        assert_eq!(stranger.reason, ReasonCode::UnknownSigner);
        let at_relay = Receiver {
            trust: &trust,
            me: &crate::fixtures::relay_id(),
        };
        let wrong_place = at_relay
            .authorize_citizen_request(&crate::fixtures::home_id())
            .unwrap_err();
        assert_eq!(wrong_place.reason, ReasonCode::NotForThisNode);
    }

    #[test]
    fn only_requests_with_the_effect_of_one_are_sent_twice() {
        let offer = Request::Offer(Offer {
            hops_taken: 0,
            previous_evidence: None,
            envelope: vec![],
        });
        assert!(offer.is_repeatable(), "offers are de-duplicated by id");
        assert!(Request::Evidence(vec![]).is_repeatable());
        let citizen = |action| {
            Request::Citizen(Box::new(crate::citizen::CitizenRequest {
                identity: None,
                action,
                inbox_url: None,
            }))
        };
        use crate::citizen::CitizenAction as A;
        assert!(citizen(A::History).is_repeatable());
        assert!(citizen(A::AllPaper).is_repeatable(), "sets a state");
        assert!(
            !citizen(A::AddEmail {
                address: "a@example.nl".into()
            })
            .is_repeatable(),
            "sends another verification mail"
        );
        assert!(
            !citizen(A::VerifyEmail { token: vec![1] }).is_repeatable(),
            "spends a single-use token"
        );
    }

    #[test]
    fn frames_roundtrip_and_refuse_oversize() {
        let req = Request::Offer(Offer {
            hops_taken: 1,
            previous_evidence: Some(Digest([1; 32])),
            envelope: vec![1, 2, 3],
        });
        assert_eq!(decode::<Request>(&encode(&req)).unwrap(), req);
        let resp = Response::Refused {
            reason: ReasonCode::UnknownSigner,
            detail: "x".into(),
        };
        assert_eq!(decode::<Response>(&encode(&resp)).unwrap(), resp);
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            decode::<Request>(&big),
            Err(FrameError::TooLarge(_))
        ));
        assert!(decode::<Request>(&[0xff]).is_err());
    }
}
