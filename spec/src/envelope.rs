//! `Envelope`: what travels between nodes. A routing header every relay may
//! read, and the `SignedMessage` bytes sealed to the home node with HPKE
//! (RFC 9180, mode base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305). The gateway signs header and sealed payload together.

use ed25519_dalek::SigningKey;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};

use crate::bytes::X25519PublicKey;
use crate::cbor::{self, CborError};
use crate::cose::{self, Digest, ObjectKind};
use crate::ids::{EnvelopeId, InboxId, MessageId, NodeId};
use crate::limits::*;
use crate::text::Timestamp;
use crate::trust::{TrustList, VerifyError};

/// HPKE `info`: binds the key schedule to this protocol and use.
pub const HPKE_INFO: &[u8] = b"estafette/1 envelope payload";

/// The part of an envelope every relay reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingHeader {
    pub envelope_id: EnvelopeId,
    /// The home node whose HPKE key the payload is sealed to.
    pub home_node: NodeId,
    pub inbox_id: InboxId,
    /// The letter inside, so that every node's evidence names it. The id is
    /// the agency's random id; the digest is SHA-256 of the sealed bytes.
    pub message_id: MessageId,
    pub message_digest: Digest,
    /// Most relay hops this envelope may take (1..=MAX_HOP_LIMIT).
    pub hop_limit: u8,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The HPKE output: encapsulated key and ciphertext (with its tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedPayload {
    #[serde(with = "crate::bytes::vec_hex")]
    pub enc: Vec<u8>,
    #[serde(with = "crate::bytes::vec_hex")]
    pub ciphertext: Vec<u8>,
}

/// The COSE payload of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeContent {
    pub header: RoutingHeader,
    pub sealed: SealedPayload,
}

/// Why an envelope is refused or cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope: {0}")]
    Verify(#[from] VerifyError),
    #[error("envelope content: {0}")]
    Content(#[from] CborError),
    #[error("envelope expired at {expires_at}")]
    Expired { expires_at: Timestamp },
    #[error("envelope created at {created_at}, in the future")]
    NotYetValid { created_at: Timestamp },
    #[error("envelope lifetime is {lifetime_s} s, at most {limit_s} s is allowed", limit_s = MAX_ENVELOPE_LIFETIME_S)]
    LifetimeTooLong { lifetime_s: u64 },
    #[error("envelope expires at {expires_at}, not after its creation at {created_at}")]
    ExpiresBeforeCreation {
        created_at: Timestamp,
        expires_at: Timestamp,
    },
    #[error("envelope hop limit {0} is outside 1..={max}", max = MAX_HOP_LIMIT)]
    HopLimitOutOfRange(u8),
    #[error("envelope has taken {hops_taken} hops, its hop limit is {hop_limit}")]
    HopLimitExceeded { hops_taken: u8, hop_limit: u8 },
    #[error("the sealed letter's digest differs from the one in the routing header")]
    MessageDigestMismatch,
    #[error("envelope payload could not be sealed: {0}")]
    Seal(String),
    #[error("envelope payload does not open with this node's key (wrong node, or altered)")]
    Open,
    #[error("envelope payload encapsulated key is not 32 bytes")]
    EncapsulatedKey,
    #[error("sealed message is {actual} bytes, the limit is {limit} bytes", limit = MAX_MESSAGE_BYTES)]
    MessageTooLarge { actual: usize },
}

impl EnvelopeError {
    /// The reason code a rejection for this error carries.
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            EnvelopeError::Verify(e) => e.reason(),
            EnvelopeError::Content(e) => e.reason(),
            EnvelopeError::Expired { .. } => ReasonCode::Expired,
            EnvelopeError::NotYetValid { .. } => ReasonCode::NotYetValid,
            EnvelopeError::HopLimitExceeded { .. } => ReasonCode::HopLimitExceeded,
            EnvelopeError::MessageTooLarge { .. } => ReasonCode::TooLarge,
            EnvelopeError::Open => ReasonCode::NotForThisNode,
            _ => ReasonCode::Malformed,
        }
    }
}

/// HPKE associated data: the deterministic CBOR array
/// `[envelope_id (bstr 16), home_node (tstr), inbox_id (bstr 16)]`, so the
/// ciphertext cannot be moved under another header.
pub fn hpke_aad(header: &RoutingHeader) -> Vec<u8> {
    #[derive(Serialize)]
    struct Aad<'a>(&'a EnvelopeId, &'a NodeId, &'a InboxId);
    cbor::to_vec(&Aad(
        &header.envelope_id,
        &header.home_node,
        &header.inbox_id,
    ))
}

/// An HPKE key pair of a home node.
pub struct HpkeKeyPair {
    private: <X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    pub public: X25519PublicKey,
}

impl HpkeKeyPair {
    /// From the 32-byte X25519 private key.
    pub fn from_private_bytes(bytes: &[u8; 32]) -> Result<HpkeKeyPair, EnvelopeError> {
        let private = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map_err(|_| EnvelopeError::Open)?;
        let public = X25519HkdfSha256::sk_to_pk(&private);
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&public.to_bytes());
        Ok(HpkeKeyPair {
            private,
            public: X25519PublicKey(pk),
        })
    }

    /// Derives a key pair from input keying material (RFC 9180 DeriveKeyPair).
    pub fn derive(ikm: &[u8]) -> HpkeKeyPair {
        let (private, public) = X25519HkdfSha256::derive_keypair(ikm);
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&public.to_bytes());
        HpkeKeyPair {
            private,
            public: X25519PublicKey(pk),
        }
    }

    pub fn private_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.private.to_bytes());
        out
    }
}

/// An envelope that passed signature and header checks.
#[derive(Debug, Clone)]
pub struct VerifiedEnvelope {
    pub content: EnvelopeContent,
    /// SHA-256 of the envelope bytes as signed.
    pub digest: Digest,
}

impl VerifiedEnvelope {
    /// Opens the sealed payload with the home node's key: the `SignedMessage` bytes.
    pub fn open(&self, keys: &HpkeKeyPair) -> Result<Vec<u8>, EnvelopeError> {
        let enc =
            <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&self.content.sealed.enc)
                .map_err(|_| EnvelopeError::EncapsulatedKey)?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &keys.private,
            &enc,
            HPKE_INFO,
            &self.content.sealed.ciphertext,
            &hpke_aad(&self.content.header),
        )
        .map_err(|_| EnvelopeError::Open)
        .and_then(|message| {
            if Digest::of(&message) == self.content.header.message_digest {
                Ok(message)
            } else {
                Err(EnvelopeError::MessageDigestMismatch)
            }
        })
    }
}

/// Seals and checks envelopes.
pub struct Envelope;

impl Envelope {
    /// Seals `message` (SignedMessage bytes) to the home node's HPKE key and
    /// signs the envelope with the gateway's key.
    pub fn seal(
        header: RoutingHeader,
        message: &[u8],
        home_key: &X25519PublicKey,
        gateway_key: &SigningKey,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<Vec<u8>, EnvelopeError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(EnvelopeError::MessageTooLarge {
                actual: message.len(),
            });
        }
        check_header_shape(&header)?;
        if Digest::of(message) != header.message_digest {
            return Err(EnvelopeError::MessageDigestMismatch);
        }
        let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&home_key.0)
            .map_err(|e| EnvelopeError::Seal(e.to_string()))?;
        let (enc, ciphertext) =
            hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
                &OpModeS::Base,
                &pk,
                HPKE_INFO,
                message,
                &hpke_aad(&header),
                rng,
            )
            .map_err(|e| EnvelopeError::Seal(e.to_string()))?;
        let content = EnvelopeContent {
            header,
            sealed: SealedPayload {
                enc: enc.to_bytes().to_vec(),
                ciphertext,
            },
        };
        Ok(cose::sign(
            ObjectKind::Envelope,
            cbor::to_vec(&content),
            gateway_key,
        ))
    }

    /// What every relay checks: the gateway's signature against the trust
    /// list, the header's shape, and that it has not expired at `now`.
    pub fn verify(
        bytes: &[u8],
        trust: &TrustList,
        now: Timestamp,
    ) -> Result<VerifiedEnvelope, EnvelopeError> {
        let (_, payload) = trust.verify_signed(bytes, ObjectKind::Envelope)?;
        let content: EnvelopeContent = cbor::from_slice(&payload, MAX_ENVELOPE_BYTES)?;
        let header = &content.header;
        check_header_shape(header)?;
        if content.sealed.enc.len() != 32 {
            return Err(EnvelopeError::EncapsulatedKey);
        }
        if now >= header.expires_at {
            return Err(EnvelopeError::Expired {
                expires_at: header.expires_at,
            });
        }
        if header.created_at > now.plus_s(MAX_CLOCK_SKEW_S) {
            return Err(EnvelopeError::NotYetValid {
                created_at: header.created_at,
            });
        }
        Ok(VerifiedEnvelope {
            content,
            digest: Digest::of(bytes),
        })
    }

    /// The hop check a receiving node makes with the hop count of the offer.
    pub fn check_hops(header: &RoutingHeader, hops_taken: u8) -> Result<(), EnvelopeError> {
        if hops_taken >= header.hop_limit {
            return Err(EnvelopeError::HopLimitExceeded {
                hops_taken,
                hop_limit: header.hop_limit,
            });
        }
        Ok(())
    }
}

fn check_header_shape(header: &RoutingHeader) -> Result<(), EnvelopeError> {
    if header.hop_limit == 0 || header.hop_limit > MAX_HOP_LIMIT {
        return Err(EnvelopeError::HopLimitOutOfRange(header.hop_limit));
    }
    if header.expires_at <= header.created_at {
        return Err(EnvelopeError::ExpiresBeforeCreation {
            created_at: header.created_at,
            expires_at: header.expires_at,
        });
    }
    let lifetime_s = header.expires_at.0 - header.created_at.0;
    if lifetime_s > MAX_ENVELOPE_LIFETIME_S {
        return Err(EnvelopeError::LifetimeTooLong { lifetime_s });
    }
    Ok(())
}
