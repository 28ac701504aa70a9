//! COSE_Sign1 (RFC 9052) with Ed25519, the envelope of everything we sign.
//!
//! What we emit: a tagged COSE_Sign1 (CBOR tag 18) whose protected header
//! holds exactly `alg` (1) = EdDSA (-8), `content type` (3) = the media type
//! of the object kind, and `kid` (4) = the signer's [`KeyId`]; the
//! unprotected header is empty; the payload is embedded; the external AAD is
//! empty. What we accept: tagged or untagged, `alg` EdDSA (-8) or Ed25519
//! (-19), the content type of the kind the caller expects, an empty
//! unprotected header. Signatures are checked with `verify_strict`.

use coset::{CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::cbor::{self, CborError};

/// COSE algorithm id we emit: EdDSA (RFC 9053), with the Ed25519 curve.
pub const ALG_EMITTED: i64 = -8;
/// COSE algorithm ids we accept: EdDSA (-8) and the fully specified
/// Ed25519 (-19).
pub const ALGS_ACCEPTED: [i64; 2] = [-8, -19];

/// Which kind of object a COSE_Sign1 carries, bound into the signature
/// through the protected content type so that one kind can never be passed
/// off as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Message,
    Envelope,
    Assertion,
    TrustList,
    Attestation,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Message,
        ObjectKind::Envelope,
        ObjectKind::Assertion,
        ObjectKind::TrustList,
        ObjectKind::Attestation,
    ];

    /// The protected content type of this kind.
    pub fn content_type(self) -> &'static str {
        match self {
            ObjectKind::Message => "application/vnd.estafette.message.v1+cbor",
            ObjectKind::Envelope => "application/vnd.estafette.envelope.v1+cbor",
            ObjectKind::Assertion => "application/vnd.estafette.assertion.v1+cbor",
            ObjectKind::TrustList => "application/vnd.estafette.trust-list.v1+cbor",
            ObjectKind::Attestation => "application/vnd.estafette.attestation.v1+cbor",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<ObjectKind> {
        Self::ALL.into_iter().find(|k| k.content_type() == ct)
    }

    /// Largest accepted COSE bytes for this kind.
    pub fn max_bytes(self) -> usize {
        use crate::limits::*;
        match self {
            ObjectKind::Message => MAX_MESSAGE_BYTES,
            ObjectKind::Envelope => MAX_ENVELOPE_BYTES,
            ObjectKind::Assertion => MAX_ASSERTION_BYTES,
            ObjectKind::TrustList => MAX_TRUST_LIST_BYTES,
            ObjectKind::Attestation => crate::mandate::MAX_ATTESTATION_BYTES,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Message => "signed message",
            ObjectKind::Envelope => "envelope",
            ObjectKind::Assertion => "identity assertion",
            ObjectKind::TrustList => "trust list",
            ObjectKind::Attestation => "attestation of legal representation",
        }
    }
}

/// A signer's key id: the first 16 bytes of SHA-256 over the raw 32-byte
/// Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        KeyId(id)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::ids::to_hex(&self.0))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a COSE_Sign1 was refused before or at its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseError {
    #[error("{0}")]
    Cbor(#[from] CborError),
    #[error("not a COSE_Sign1 structure: {0}")]
    Structure(String),
    #[error("unsupported COSE algorithm {0:?}: only EdDSA (-8) and Ed25519 (-19) are accepted")]
    Algorithm(Option<i64>),
    #[error("protected header has no content type")]
    NoContentType,
    #[error("expected a {expected}, this is a {found}")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("protected header has no key id (kid) of 16 bytes")]
    NoKeyId,
    #[error(
        "protected header carries unexpected fields: only alg, content type and kid are allowed"
    )]
    ExtraProtectedFields,
    #[error("unprotected header must be empty")]
    UnprotectedNotEmpty,
    #[error("no embedded payload")]
    NoPayload,
    #[error("signature is not 64 bytes")]
    SignatureLength,
    #[error("signature does not verify with the signer's key")]
    BadSignature,
    #[error("key id in the header does not match the key that verified it")]
    KeyIdMismatch,
}

impl CoseError {
    /// The reason code a rejection for this error carries.
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            CoseError::Cbor(e) => e.reason(),
            CoseError::BadSignature | CoseError::KeyIdMismatch | CoseError::SignatureLength => {
                ReasonCode::BadSignature
            }
            _ => ReasonCode::Malformed,
        }
    }
}

/// A parsed COSE_Sign1 whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedSign1 {
    pub kind: ObjectKind,
    pub key_id: KeyId,
    pub alg: i64,
    sign1: CoseSign1,
}

impl UnverifiedSign1 {
    /// Parses and checks the structure and protected header of `bytes`,
    /// expecting an object of `kind`.
    pub fn parse(bytes: &[u8], kind: ObjectKind) -> Result<Self, CoseError> {
        cbor::prescan(bytes, kind.max_bytes())?;
        let sign1 = if bytes.first() == Some(&0xd2) {
            CoseSign1::from_tagged_slice(bytes)
        } else {
            CoseSign1::from_slice(bytes)
        }
        .map_err(|e| CoseError::Structure(e.to_string()))?;
        let header = &sign1.protected.header;
        let alg = match &header.alg {
            Some(coset::RegisteredLabelWithPrivate::Assigned(a)) => *a as i64,
            Some(coset::RegisteredLabelWithPrivate::PrivateUse(a)) => *a,
            Some(coset::RegisteredLabelWithPrivate::Text(_)) | None => {
                return Err(CoseError::Algorithm(None));
            }
        };
        if !ALGS_ACCEPTED.contains(&alg) {
            return Err(CoseError::Algorithm(Some(alg)));
        }
        let found = match &header.content_type {
            Some(coset::ContentType::Text(t)) => t.clone(),
            Some(coset::ContentType::Assigned(a)) => format!("CoAP content format {}", *a as i64),
            None => return Err(CoseError::NoContentType),
        };
        if found != kind.content_type() {
            let found = ObjectKind::from_content_type(&found)
                .map(|k| k.name().to_owned())
                .unwrap_or_else(|| "object of unknown content type".to_owned());
            return Err(CoseError::WrongKind {
                expected: kind.name(),
                found,
            });
        }
        let key_id: [u8; 16] = header
            .key_id
            .as_slice()
            .try_into()
            .map_err(|_| CoseError::NoKeyId)?;
        if header.crit.len()
            + header.counter_signatures.len()
            + header.rest.len()
            + header.iv.len()
            + header.partial_iv.len()
            != 0
        {
            return Err(CoseError::ExtraProtectedFields);
        }
        if !sign1.unprotected.is_empty() {
            return Err(CoseError::UnprotectedNotEmpty);
        }
        if sign1.payload.is_none() {
            return Err(CoseError::NoPayload);
        }
        Ok(UnverifiedSign1 {
            kind,
            key_id: KeyId(key_id),
            alg,
            sign1,
        })
    }

    /// The payload without checking the signature: only for objects this
    /// node verified before it stored them.
    pub fn payload_of_verified(self) -> Result<Vec<u8>, CoseError> {
        self.sign1.payload.ok_or(CoseError::NoPayload)
    }

    /// Checks the signature with `key` (strict Ed25519) and gives the payload.
    pub fn verify(self, key: &VerifyingKey) -> Result<Vec<u8>, CoseError> {
        if KeyId::of(key) != self.key_id {
            return Err(CoseError::KeyIdMismatch);
        }
        self.sign1.verify_signature(&[], |sig, tbs| {
            let sig: [u8; 64] = sig.try_into().map_err(|_| CoseError::SignatureLength)?;
            key.verify_strict(tbs, &Signature::from_bytes(&sig))
                .map_err(|_| CoseError::BadSignature)
        })?;
        self.sign1.payload.ok_or(CoseError::NoPayload)
    }
}

/// Signs `payload` as a tagged COSE_Sign1 of `kind`.
pub fn sign(kind: ObjectKind, payload: Vec<u8>, key: &SigningKey) -> Vec<u8> {
    let protected = HeaderBuilder::new()
        .algorithm(coset::iana::Algorithm::EdDSA)
        .content_type(kind.content_type().to_owned())
        .key_id(KeyId::of(&key.verifying_key()).0.to_vec())
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(&[], |tbs| key.sign(tbs).to_bytes().to_vec())
        .build();
    match sign1.to_tagged_vec() {
        Ok(bytes) => bytes,
        Err(e) => {
            // Serialising a well-formed in-memory structure cannot fail.
            debug_assert!(false, "COSE encoding failed: {e}");
            Vec::new()
        }
    }
}

/// SHA-256 of some bytes: used for message digests and the evidence chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::ids::to_hex(&self.0))
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({self})")
    }
}

crate::fixed_bytes_serde!(Digest, 32);
crate::fixed_bytes_serde!(KeyId, 16);
