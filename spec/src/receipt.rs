//! Checkpoints, receipts and cosignatures of a node's evidence log.
//!
//! Every node keeps an append-only Merkle log of the evidence records it
//! makes ([`crate::merkle`]). A **checkpoint** says "my log `origin` has
//! `tree_size` records and this root"; the node signs one per commit, not one
//! per record. A **receipt** proves one record is in the log: the record's
//! inclusion proof plus the signed checkpoint, as a COSE Receipt
//! (draft-ietf-cose-merkle-tree-proofs, verifiable data structure
//! RFC9162_SHA256): a COSE_Sign1 whose detached payload is the root, so that
//! any COSE library plus SHA-256 can check it. A **cosignature** is a
//! witness's statement that it saw this checkpoint and found it consistent
//! with every earlier one it saw (C2SP tlog-cosignature, over the C2SP
//! checkpoint text), so a log cannot show two histories to two parties.
//!
//! One signature, three encodings: the checkpoint's protected header and
//! signature are the same bytes whether the root travels embedded (a
//! checkpoint) or is computed from a record and a proof (a receipt).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use ciborium::Value;
use coset::{
    CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, Label, TaggedCborSerializable,
};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::cbor::{self, CborError};
use crate::cose::{ALGS_ACCEPTED, KeyId};
use crate::ids::NodeId;
use crate::merkle::{self, Hash, MAX_PROOF_HASHES, MerkleError};
use crate::text::Timestamp;
use crate::trust::{NodeEntry, Signer, TrustError, TrustList};

/// Content type in a checkpoint's protected header: binds the kind into the
/// signature, so a checkpoint can never pass for any other signed object.
pub const CHECKPOINT_CONTENT_TYPE: &str = "application/vnd.estafette.checkpoint.v1";
/// COSE header parameter `receipts` (draft-ietf-cose-merkle-tree-proofs).
pub const HEADER_RECEIPTS: i64 = 394;
/// COSE header parameter `vds`: the verifiable data structure.
pub const HEADER_VDS: i64 = 395;
/// COSE header parameter `vdp`: its proofs.
pub const HEADER_VDP: i64 = 396;
/// COSE header parameter `CWT Claims` (RFC 9597).
pub const HEADER_CWT_CLAIMS: i64 = 15;
/// CWT claim `iss`: the log's origin.
pub const CWT_ISS: i64 = 1;
/// CWT claim `iat`: when the checkpoint was signed (seconds since 1970).
pub const CWT_IAT: i64 = 6;
/// Private-use protected header parameter: the tree size the root is of.
pub const HEADER_TREE_SIZE: i64 = -65537;
/// Private-use unprotected header parameter: witnesses' cosignatures.
pub const HEADER_COSIGNATURES: i64 = -65538;
/// `vds` value RFC9162_SHA256.
pub const VDS_RFC9162_SHA256: i64 = 1;
/// Key of the inclusion proofs in the `vdp` map.
pub const VDP_INCLUSION_PROOFS: i64 = -1;

/// Largest checkpoint or receipt, cosignatures included: the largest a
/// log can make (an origin of 255 bytes, a path of 64 hashes, 16
/// cosignatures) is 4,116 bytes.
pub const MAX_RECEIPT_BYTES: usize = 5 * 1024;
/// Most cosignatures one checkpoint or receipt carries.
pub const MAX_COSIGNATURES: usize = 16;
/// Longest origin: `<node id>` or `<node id>/<log name>`.
pub const MAX_ORIGIN_BYTES: usize = 255;
/// Verified checkpoints a [`CheckpointCache`] remembers before it starts over.
pub const MAX_CACHED_CHECKPOINTS: usize = 4096;

/// Why a checkpoint, receipt or cosignature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("{0}")]
    Cbor(#[from] CborError),
    #[error("not a COSE_Sign1 structure: {0}")]
    Structure(String),
    #[error("not in the one encoding allowed (shortest forms, null for no payload)")]
    NotCanonical,
    #[error("unsupported COSE algorithm {0:?}: only EdDSA (-8) and Ed25519 (-19) are accepted")]
    Algorithm(Option<i64>),
    #[error("expected a checkpoint (content type {CHECKPOINT_CONTENT_TYPE}), found {0:?}")]
    WrongKind(Option<String>),
    #[error("protected header has no key id (kid) of 16 bytes")]
    NoKeyId,
    #[error("protected header: {0} missing or malformed")]
    MissingField(&'static str),
    #[error("protected header: verifiable data structure {0} is not RFC9162_SHA256 (1)")]
    DataStructure(i64),
    #[error("{0} header carries a parameter that is not allowed here: {1}")]
    UnexpectedField(&'static str, String),
    #[error("log origin {0:?} is not a node id, optionally followed by /name")]
    Origin(String),
    #[error("a checkpoint carries the root as its payload; a receipt carries none")]
    Payload,
    #[error("a receipt carries exactly one inclusion proof, this one {0}")]
    ProofCount(usize),
    #[error("inclusion proof is malformed: {0}")]
    Proof(String),
    #[error("inclusion proof is for a tree of {proof} records, the checkpoint signs {checkpoint}")]
    ProofTreeSize { proof: u64, checkpoint: u64 },
    #[error("the record is not in the log: {0}")]
    Merkle(#[from] MerkleError),
    #[error("more than {MAX_COSIGNATURES} cosignatures")]
    TooManyCosignatures,
    #[error("checkpoint signer: {0}")]
    Trust(#[from] TrustError),
    #[error("checkpoint signed by {0}, which keeps no evidence log (not a node or the gateway)")]
    NotANode(String),
    #[error("log {origin:?} does not belong to its signer {signer}")]
    OriginNotSigner { origin: String, signer: NodeId },
    #[error("the record names issuer {issuer}, the log is {signer}'s")]
    IssuerNotSigner { issuer: NodeId, signer: NodeId },
    #[error("signature does not verify with the log's key")]
    BadSignature,
    #[error("cosignature by {witness}, which does not witness log {origin:?}")]
    UnlistedWitness { witness: String, origin: String },
    #[error("cosignature by {witness} does not verify")]
    BadCosignature { witness: String },
    #[error("{found} cosignatures from distinct witnesses, {needed} are required")]
    NotEnoughCosignatures { needed: usize, found: usize },
    #[error("log {origin:?} signed two different roots for {tree_size} records: a forked log")]
    SplitView { origin: String, tree_size: u64 },
}

impl ReceiptError {
    /// A short code for this error (SPEC.md §15), as the test vectors list
    /// them: `malformed`, `too_large`, `unknown_signer`, `revoked`,
    /// `wrong_role`, `bad_signature`, `wrong_tree_size`, `bad_proof`,
    /// `unlisted_witness`, `bad_cosignature`, `too_few_cosignatures`,
    /// `split_view`.
    pub fn code(&self) -> &'static str {
        match self {
            ReceiptError::Cbor(e) => e.reason().code(),
            ReceiptError::Trust(TrustError::UnknownKey(_)) => "unknown_signer",
            ReceiptError::Trust(TrustError::Revoked { .. }) => "revoked",
            ReceiptError::Trust(TrustError::WrongRole { .. })
            | ReceiptError::NotANode(_)
            | ReceiptError::OriginNotSigner { .. }
            | ReceiptError::IssuerNotSigner { .. } => "wrong_role",
            ReceiptError::BadSignature => "bad_signature",
            ReceiptError::ProofTreeSize { .. } => "wrong_tree_size",
            ReceiptError::Merkle(_) => "bad_proof",
            ReceiptError::UnlistedWitness { .. } => "unlisted_witness",
            ReceiptError::BadCosignature { .. } => "bad_cosignature",
            ReceiptError::NotEnoughCosignatures { .. } => "too_few_cosignatures",
            ReceiptError::SplitView { .. } => "split_view",
            _ => "malformed",
        }
    }
}

/// What a node commits to: its log `origin` holds `tree_size` records with
/// this `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
    pub issued_at: Timestamp,
}

impl Checkpoint {
    /// The checkpoint as C2SP tlog-checkpoint text (origin, size, base64
    /// root, each on a line): what a witness's cosignature covers.
    pub fn note_body(&self) -> String {
        let root = base64::engine::general_purpose::STANDARD.encode(self.root);
        format!("{}\n{}\n{root}\n", self.origin, self.tree_size)
    }

    fn protected_header(&self, key_id: KeyId) -> coset::Header {
        let claims = Value::Map(vec![
            (CWT_ISS.into(), Value::Text(self.origin.clone())),
            (CWT_IAT.into(), self.issued_at.0.into()),
        ]);
        HeaderBuilder::new()
            .algorithm(coset::iana::Algorithm::EdDSA)
            .content_type(CHECKPOINT_CONTENT_TYPE.to_owned())
            .key_id(key_id.0.to_vec())
            .value(HEADER_CWT_CLAIMS, claims)
            .value(HEADER_VDS, VDS_RFC9162_SHA256.into())
            .value(HEADER_TREE_SIZE, self.tree_size.into())
            .build()
    }
}

/// Checks the form of a log origin: a node id, or a node id, `/` and a name
/// of `a-z0-9-` (a gateway instance's log).
pub fn check_origin(origin: &str) -> Result<NodeId, ReceiptError> {
    let bad = || ReceiptError::Origin(origin.chars().take(MAX_ORIGIN_BYTES).collect());
    if origin.len() > MAX_ORIGIN_BYTES {
        return Err(bad());
    }
    let (node, name) = match origin.split_once('/') {
        Some((node, name)) => (node, Some(name)),
        None => (origin, None),
    };
    if let Some(name) = name
        && (name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        return Err(bad());
    }
    node.parse().map_err(|_| bad())
}

/// A witness's cosignature of a checkpoint (C2SP tlog-cosignature v1): an
/// Ed25519 signature over `cosignature/v1\ntime <time>\n` and the
/// checkpoint's note body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    pub witness: KeyId,
    /// Seconds since 1970 when the witness cosigned.
    pub time: u64,
    pub signature: [u8; 64],
}

impl Cosignature {
    /// The bytes a witness signs.
    pub fn message(checkpoint: &Checkpoint, time: u64) -> Vec<u8> {
        format!("cosignature/v1\ntime {time}\n{}", checkpoint.note_body()).into_bytes()
    }

    pub fn sign(checkpoint: &Checkpoint, time: u64, witness_key: &SigningKey) -> Cosignature {
        Cosignature {
            witness: KeyId::of(&witness_key.verifying_key()),
            time,
            signature: witness_key
                .sign(&Self::message(checkpoint, time))
                .to_bytes(),
        }
    }

    pub fn verify(&self, checkpoint: &Checkpoint, key: &VerifyingKey) -> bool {
        KeyId::of(key) == self.witness
            && key
                .verify_strict(
                    &Self::message(checkpoint, self.time),
                    &Signature::from_bytes(&self.signature),
                )
                .is_ok()
    }

    /// `[kid, time, signature]` as CBOR bytes (a witness's answer).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = ciborium::ser::into_writer(&self.to_value(), &mut out);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Cosignature, ReceiptError> {
        cbor::prescan(bytes, 256)?;
        let value: Value =
            ciborium::de::from_reader(bytes).map_err(|e| ReceiptError::Structure(e.to_string()))?;
        let cosignature = Self::from_value(value)?;
        if cosignature.to_bytes() != bytes {
            return Err(ReceiptError::NotCanonical);
        }
        Ok(cosignature)
    }

    fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::Bytes(self.witness.0.to_vec()),
            self.time.into(),
            Value::Bytes(self.signature.to_vec()),
        ])
    }

    fn from_value(value: Value) -> Result<Cosignature, ReceiptError> {
        let bad = || ReceiptError::UnexpectedField("unprotected", "malformed cosignature".into());
        let Value::Array(items) = value else {
            return Err(bad());
        };
        match <[Value; 3]>::try_from(items) {
            Ok([Value::Bytes(kid), Value::Integer(time), Value::Bytes(sig)]) => Ok(Cosignature {
                witness: KeyId(kid.try_into().map_err(|_| bad())?),
                time: u64::try_from(time).map_err(|_| bad())?,
                signature: sig.try_into().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

/// A checkpoint with its signature, and the exact protected header bytes the
/// signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub key_id: KeyId,
    protected: Vec<u8>,
    signature: [u8; 64],
}

impl SignedCheckpoint {
    /// Signs `checkpoint` with the log's key: one Ed25519 signature over the
    /// COSE Sig_structure whose payload is the root.
    pub fn sign(checkpoint: Checkpoint, key: &SigningKey) -> SignedCheckpoint {
        let key_id = KeyId::of(&key.verifying_key());
        let sign1 = CoseSign1Builder::new()
            .protected(checkpoint.protected_header(key_id))
            .create_detached_signature(&checkpoint.root, &[], |tbs| {
                key.sign(tbs).to_bytes().to_vec()
            })
            .build();
        let protected = sign1.protected.clone().to_vec().unwrap_or_default();
        let signature = sign1.signature.try_into().unwrap_or([0; 64]);
        SignedCheckpoint {
            checkpoint,
            key_id,
            protected,
            signature,
        }
    }

    /// The checkpoint as a COSE_Sign1 with the root as its payload, and the
    /// cosignatures it has gathered.
    pub fn to_cose(&self, cosignatures: &[Cosignature]) -> Vec<u8> {
        let mut unprotected = coset::Header::default();
        if !cosignatures.is_empty() {
            unprotected.rest.push(cosignatures_entry(cosignatures));
        }
        self.encode(unprotected, Some(self.checkpoint.root.to_vec()))
    }

    fn encode(&self, unprotected: coset::Header, payload: Option<Vec<u8>>) -> Vec<u8> {
        let protected =
            coset::ProtectedHeader::from_cbor_bstr(Value::Bytes(self.protected.clone()));
        let sign1 = CoseSign1 {
            protected: protected.unwrap_or_default(),
            unprotected,
            payload,
            signature: self.signature.to_vec(),
        };
        // Encoding a structure we built cannot fail.
        sign1.to_tagged_vec().unwrap_or_default()
    }

    /// Reads a checkpoint (root embedded) and its cosignatures; checks the
    /// form only, not the signature.
    pub fn parse(bytes: &[u8]) -> Result<(SignedCheckpoint, Vec<Cosignature>), ReceiptError> {
        let (sign1, checkpoint_fields) = parse_sign1(bytes)?;
        let Some(root) = sign1.payload.as_deref() else {
            return Err(ReceiptError::Payload);
        };
        let root: Hash = root.try_into().map_err(|_| ReceiptError::Payload)?;
        let mut unprotected = sign1.unprotected.clone();
        let cosignatures = take_cosignatures(&mut unprotected)?;
        if !unprotected.is_empty() {
            return Err(ReceiptError::UnexpectedField(
                "unprotected",
                "only cosignatures may be added to a checkpoint".into(),
            ));
        }
        Ok((checkpoint_fields.finish(root, sign1)?, cosignatures))
    }

    /// The node whose log this is, from the trust list, and that the log's
    /// origin is that node's.
    pub fn signer<'t>(
        &self,
        trust: &'t TrustList,
    ) -> Result<(&'t NodeEntry, VerifyingKey), ReceiptError> {
        let (signer, key) = trust.signer_key(&self.key_id)?;
        let entry = match signer {
            Signer::Node(entry) | Signer::Gateway(entry) => entry,
            other => return Err(ReceiptError::NotANode(other.id())),
        };
        let origin_node = check_origin(&self.checkpoint.origin)?;
        if origin_node != entry.id {
            return Err(ReceiptError::OriginNotSigner {
                origin: self.checkpoint.origin.clone(),
                signer: entry.id.clone(),
            });
        }
        Ok((entry, key))
    }

    /// Checks the signature with `key` (strict Ed25519).
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<(), ReceiptError> {
        if KeyId::of(key) != self.key_id {
            return Err(ReceiptError::BadSignature);
        }
        key.verify_strict(
            &self.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| ReceiptError::BadSignature)
    }

    /// Checks the checkpoint against the trust list: a node's or the
    /// gateway's log, signed with its key. Uses `cache` to skip a signature
    /// it verified before and to notice a second root for the same size.
    pub fn verify<'t>(
        &self,
        trust: &'t TrustList,
        cache: &CheckpointCache,
    ) -> Result<&'t NodeEntry, ReceiptError> {
        let (entry, key) = self.signer(trust)?;
        cache.verify(self, &key)?;
        Ok(entry)
    }

    /// The COSE Sig_structure: `["Signature1", protected, h'', root]`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        coset::sig_structure_data(
            coset::SignatureContext::CoseSign1,
            coset::ProtectedHeader::from_cbor_bstr(Value::Bytes(self.protected.clone()))
                .unwrap_or_default(),
            None,
            &[],
            &self.checkpoint.root,
        )
    }

    /// The signature, for batch verification.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(&self.protected);
        h.update(self.checkpoint.root);
        h.update(self.signature);
        h.finalize().into()
    }
}

fn cosignatures_entry(cosignatures: &[Cosignature]) -> (Label, Value) {
    (
        Label::Int(HEADER_COSIGNATURES),
        Value::Array(cosignatures.iter().map(Cosignature::to_value).collect()),
    )
}

fn take_cosignatures(header: &mut coset::Header) -> Result<Vec<Cosignature>, ReceiptError> {
    let Some(i) = header
        .rest
        .iter()
        .position(|(l, _)| *l == Label::Int(HEADER_COSIGNATURES))
    else {
        return Ok(Vec::new());
    };
    let (_, value) = header.rest.remove(i);
    let Value::Array(items) = value else {
        return Err(ReceiptError::UnexpectedField(
            "unprotected",
            "cosignatures are not an array".into(),
        ));
    };
    if items.len() > MAX_COSIGNATURES {
        return Err(ReceiptError::TooManyCosignatures);
    }
    items.into_iter().map(Cosignature::from_value).collect()
}

/// The fields of a checkpoint's protected header, read before its root is
/// known (a receipt computes the root from the record).
struct CheckpointFields {
    origin: String,
    tree_size: u64,
    issued_at: Timestamp,
    key_id: KeyId,
}

impl CheckpointFields {
    fn finish(self, root: Hash, sign1: CoseSign1) -> Result<SignedCheckpoint, ReceiptError> {
        let signature = sign1
            .signature
            .try_into()
            .map_err(|_| ReceiptError::BadSignature)?;
        Ok(SignedCheckpoint {
            checkpoint: Checkpoint {
                origin: self.origin,
                tree_size: self.tree_size,
                root,
                issued_at: self.issued_at,
            },
            key_id: self.key_id,
            protected: sign1.protected.original_data.unwrap_or_default(),
            signature,
        })
    }
}

fn parse_sign1(bytes: &[u8]) -> Result<(CoseSign1, CheckpointFields), ReceiptError> {
    cbor::prescan(bytes, MAX_RECEIPT_BYTES)?;
    let sign1 = if bytes.first() == Some(&0xd2) {
        CoseSign1::from_tagged_slice(bytes)
    } else {
        CoseSign1::from_slice(bytes)
    }
    .map_err(|e| ReceiptError::Structure(e.to_string()))?;
    // One encoding only, so that no byte can change without the object
    // being refused (CBOR `undefined` reads as null, integers have longer
    // forms): the bytes must be what encoding the parsed value gives.
    let again = if bytes.first() == Some(&0xd2) {
        sign1.clone().to_tagged_vec()
    } else {
        sign1.clone().to_vec()
    };
    if again.as_deref().ok() != Some(bytes) {
        return Err(ReceiptError::NotCanonical);
    }
    let fields = read_protected(&sign1.protected.header)?;
    Ok((sign1, fields))
}

fn read_protected(header: &coset::Header) -> Result<CheckpointFields, ReceiptError> {
    let alg = match &header.alg {
        Some(coset::RegisteredLabelWithPrivate::Assigned(a)) => *a as i64,
        Some(coset::RegisteredLabelWithPrivate::PrivateUse(a)) => *a,
        _ => return Err(ReceiptError::Algorithm(None)),
    };
    if !ALGS_ACCEPTED.contains(&alg) {
        return Err(ReceiptError::Algorithm(Some(alg)));
    }
    match &header.content_type {
        Some(coset::ContentType::Text(t)) if t == CHECKPOINT_CONTENT_TYPE => {}
        Some(coset::ContentType::Text(t)) => return Err(ReceiptError::WrongKind(Some(t.clone()))),
        _ => return Err(ReceiptError::WrongKind(None)),
    }
    let key_id = KeyId(
        header
            .key_id
            .as_slice()
            .try_into()
            .map_err(|_| ReceiptError::NoKeyId)?,
    );
    if header.crit.len()
        + header.counter_signatures.len()
        + header.iv.len()
        + header.partial_iv.len()
        != 0
    {
        return Err(ReceiptError::UnexpectedField(
            "protected",
            "crit, iv or counter signature".into(),
        ));
    }
    let (mut claims, mut vds, mut tree_size) = (None, None, None);
    for (label, value) in &header.rest {
        match label {
            Label::Int(HEADER_CWT_CLAIMS) => claims = Some(value),
            Label::Int(HEADER_VDS) => vds = Some(value),
            Label::Int(HEADER_TREE_SIZE) => tree_size = Some(value),
            other => {
                return Err(ReceiptError::UnexpectedField(
                    "protected",
                    format!("{other:?}"),
                ));
            }
        }
    }
    let vds = integer(vds).ok_or(ReceiptError::MissingField("vds (395)"))?;
    if vds != i128::from(VDS_RFC9162_SHA256) {
        return Err(ReceiptError::DataStructure(
            i64::try_from(vds).unwrap_or(i64::MAX),
        ));
    }
    let tree_size = integer(tree_size)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or(ReceiptError::MissingField("tree size (-65537)"))?;
    let (origin, issued_at) = read_claims(claims)?;
    Ok(CheckpointFields {
        origin,
        tree_size,
        issued_at,
        key_id,
    })
}

fn integer(value: Option<&Value>) -> Option<i128> {
    match value {
        Some(Value::Integer(i)) => Some(i128::from(*i)),
        _ => None,
    }
}

fn read_claims(claims: Option<&Value>) -> Result<(String, Timestamp), ReceiptError> {
    let missing = ReceiptError::MissingField("CWT claims (15) with exactly iss (1) and iat (6)");
    let Some(Value::Map(claims)) = claims else {
        return Err(missing);
    };
    let (mut origin, mut issued_at) = (None, None);
    for (key, value) in claims {
        match (integer(Some(key)), value) {
            (Some(k), Value::Text(t)) if k == i128::from(CWT_ISS) && origin.is_none() => {
                origin = Some(t.clone());
            }
            (Some(k), Value::Integer(i)) if k == i128::from(CWT_IAT) && issued_at.is_none() => {
                issued_at = u64::try_from(*i).ok().map(Timestamp);
            }
            _ => return Err(missing),
        }
    }
    let (Some(origin), Some(issued_at)) = (origin, issued_at) else {
        return Err(missing);
    };
    check_origin(&origin)?;
    Ok((origin, issued_at))
}

/// An RFC 9162 inclusion proof: leaf `leaf_index` of a tree of `tree_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub tree_size: u64,
    pub leaf_index: u64,
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// `bstr .cbor [tree-size, leaf-index, [* hash]]`, as the draft has it.
    fn to_value(&self) -> Value {
        let path = self.path.iter().map(|h| Value::Bytes(h.to_vec())).collect();
        let proof = Value::Array(vec![
            self.tree_size.into(),
            self.leaf_index.into(),
            Value::Array(path),
        ]);
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = ciborium::ser::into_writer(&proof, &mut bytes);
        Value::Bytes(bytes)
    }

    fn from_value(value: &Value) -> Result<InclusionProof, ReceiptError> {
        let bad = |what: &str| ReceiptError::Proof(what.to_owned());
        let Value::Bytes(bytes) = value else {
            return Err(bad("not a byte string"));
        };
        cbor::prescan(bytes, MAX_RECEIPT_BYTES)?;
        let value: Value =
            ciborium::de::from_reader(bytes.as_slice()).map_err(|_| bad("not CBOR"))?;
        let Value::Array(items) = value else {
            return Err(bad("not [tree-size, leaf-index, path]"));
        };
        let Ok([size, index, Value::Array(path)]) = <[Value; 3]>::try_from(items) else {
            return Err(bad("not [tree-size, leaf-index, path]"));
        };
        if path.len() > MAX_PROOF_HASHES {
            return Err(ReceiptError::Merkle(MerkleError::ProofTooLong(path.len())));
        }
        let number = |v: Value| match v {
            Value::Integer(i) => u64::try_from(i).map_err(|_| bad("size or index out of range")),
            _ => Err(bad("size or index is not an integer")),
        };
        let path = path
            .into_iter()
            .map(|h| match h {
                Value::Bytes(b) => b.try_into().map_err(|_| bad("a hash is not 32 bytes")),
                _ => Err(bad("a hash is not a byte string")),
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        Ok(InclusionProof {
            tree_size: number(size)?,
            leaf_index: number(index)?,
            path,
        })
    }
}

/// A COSE Receipt: proof that one record is in a node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub checkpoint: SignedCheckpoint,
    pub proof: InclusionProof,
    pub cosignatures: Vec<Cosignature>,
}

/// What a verified receipt established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The node whose log holds the record.
    pub log_owner: NodeId,
    pub checkpoint: Checkpoint,
    pub leaf_index: u64,
    /// The distinct witnesses whose cosignatures verified.
    pub witnesses: Vec<NodeId>,
}

impl Receipt {
    /// The receipt as a tagged COSE_Sign1 with a detached payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut unprotected = coset::Header::default();
        let proofs = Value::Map(vec![(
            VDP_INCLUSION_PROOFS.into(),
            Value::Array(vec![self.proof.to_value()]),
        )]);
        unprotected.rest.push((Label::Int(HEADER_VDP), proofs));
        if !self.cosignatures.is_empty() {
            unprotected
                .rest
                .push(cosignatures_entry(&self.cosignatures));
        }
        self.checkpoint.encode(unprotected, None)
    }

    /// Reads a receipt for `entry` (the record's bytes, the log's leaf):
    /// computes the root from the entry and the proof. Checks the form and
    /// the proof, not yet the signature.
    pub fn parse(bytes: &[u8], entry: &[u8]) -> Result<Receipt, ReceiptError> {
        let (sign1, fields) = parse_sign1(bytes)?;
        if sign1.payload.is_some() {
            return Err(ReceiptError::Payload);
        }
        let mut unprotected = sign1.unprotected.clone();
        let cosignatures = take_cosignatures(&mut unprotected)?;
        let proof = take_inclusion_proof(&mut unprotected)?;
        if !unprotected.is_empty() {
            return Err(ReceiptError::UnexpectedField(
                "unprotected",
                "only vdp (396) and cosignatures are allowed".into(),
            ));
        }
        if proof.tree_size != fields.tree_size {
            return Err(ReceiptError::ProofTreeSize {
                proof: proof.tree_size,
                checkpoint: fields.tree_size,
            });
        }
        let root = merkle::root_from_inclusion(
            proof.leaf_index,
            proof.tree_size,
            &merkle::leaf_hash(entry),
            &proof.path,
        )?;
        Ok(Receipt {
            checkpoint: fields.finish(root, sign1)?,
            proof,
            cosignatures,
        })
    }

    /// Checks a parsed receipt against the trust list: the log's signature
    /// (through `cache`), and each cosignature by a witness the trust list
    /// names for this log; at least `min_cosignatures` of them.
    pub fn verify(
        &self,
        trust: &TrustList,
        cache: &CheckpointCache,
        min_cosignatures: usize,
    ) -> Result<VerifiedReceipt, ReceiptError> {
        let entry = self.checkpoint.verify(trust, cache)?;
        let witnesses = verify_cosignatures(
            &self.checkpoint.checkpoint,
            &self.cosignatures,
            entry,
            trust,
        )?;
        if witnesses.len() < min_cosignatures {
            return Err(ReceiptError::NotEnoughCosignatures {
                needed: min_cosignatures,
                found: witnesses.len(),
            });
        }
        Ok(VerifiedReceipt {
            log_owner: entry.id.clone(),
            checkpoint: self.checkpoint.checkpoint.clone(),
            leaf_index: self.proof.leaf_index,
            witnesses,
        })
    }
}

/// Verifies cosignatures of `checkpoint` of `log`'s log: every one must be
/// by a witness the trust list names for it and verify. Gives the distinct
/// witnesses.
pub fn verify_cosignatures(
    checkpoint: &Checkpoint,
    cosignatures: &[Cosignature],
    log: &NodeEntry,
    trust: &TrustList,
) -> Result<Vec<NodeId>, ReceiptError> {
    let mut witnesses: Vec<NodeId> = Vec::new();
    for cosignature in cosignatures {
        let unlisted = || ReceiptError::UnlistedWitness {
            witness: cosignature.witness.to_string(),
            origin: checkpoint.origin.clone(),
        };
        let (signer, key) = trust
            .signer_key(&cosignature.witness)
            .map_err(|_| unlisted())?;
        let witness = match signer {
            Signer::Node(w) | Signer::Gateway(w) if log.witnesses.contains(&w.id) => w,
            _ => return Err(unlisted()),
        };
        if !cosignature.verify(checkpoint, &key) {
            return Err(ReceiptError::BadCosignature {
                witness: witness.id.to_string(),
            });
        }
        if !witnesses.contains(&witness.id) {
            witnesses.push(witness.id.clone());
        }
    }
    Ok(witnesses)
}

fn take_inclusion_proof(header: &mut coset::Header) -> Result<InclusionProof, ReceiptError> {
    let Some(i) = header
        .rest
        .iter()
        .position(|(l, _)| *l == Label::Int(HEADER_VDP))
    else {
        return Err(ReceiptError::ProofCount(0));
    };
    let (_, vdp) = header.rest.remove(i);
    let Value::Map(entries) = vdp else {
        return Err(ReceiptError::Proof("vdp is not a map".into()));
    };
    let Ok([(key, Value::Array(proofs))]) = <[(Value, Value); 1]>::try_from(entries) else {
        return Err(ReceiptError::Proof(
            "vdp must hold inclusion proofs (-1) and nothing else".into(),
        ));
    };
    if integer(Some(&key)) != Some(i128::from(VDP_INCLUSION_PROOFS)) {
        return Err(ReceiptError::Proof(
            "vdp holds no inclusion proofs (-1)".into(),
        ));
    }
    match proofs.as_slice() {
        [proof] => InclusionProof::from_value(proof),
        other => Err(ReceiptError::ProofCount(other.len())),
    }
}

/// (origin, tree size) → (root, fingerprint of the signed checkpoint).
type SeenCheckpoints = HashMap<(String, u64), (Hash, [u8; 32])>;

/// Remembers checkpoints whose signature verified, by (log, tree size), so
/// that the many receipts of one commit cost one signature check, and so
/// that a log signing a second root for a size it signed before is caught.
#[derive(Debug, Default)]
pub struct CheckpointCache {
    seen: Mutex<SeenCheckpoints>,
}

impl CheckpointCache {
    pub fn new() -> CheckpointCache {
        CheckpointCache::default()
    }

    /// Checks `checkpoint`'s signature with `key` unless this very
    /// checkpoint verified before.
    pub fn verify(
        &self,
        checkpoint: &SignedCheckpoint,
        key: &VerifyingKey,
    ) -> Result<(), ReceiptError> {
        let id = (
            checkpoint.checkpoint.origin.clone(),
            checkpoint.checkpoint.tree_size,
        );
        let fingerprint = checkpoint.fingerprint();
        let root = checkpoint.checkpoint.root;
        if self.lock().get(&id).is_some_and(|(_, f)| *f == fingerprint) {
            return Ok(());
        }
        checkpoint.verify_with(key)?;
        let mut seen = self.lock();
        // The same root signed again (another time) is the same history; a
        // second root for the same size is a fork.
        if seen.get(&id).is_some_and(|(r, _)| *r != root) {
            return Err(ReceiptError::SplitView {
                origin: id.0,
                tree_size: id.1,
            });
        }
        if seen.len() >= MAX_CACHED_CHECKPOINTS {
            seen.clear();
        }
        seen.insert(id, (root, fingerprint));
        Ok(())
    }

    /// How many checkpoints are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeenCheckpoints> {
        // A panic while holding this lock leaves a map that is still whole.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
