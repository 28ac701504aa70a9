//! The trust list: who is in the federation, with which role and key,
//! signed by the federation root. Verifying any signed object means: parse
//! the COSE_Sign1, find its key id in the trust list, check that the key's
//! holder has a role allowed to sign that kind of object and is not revoked,
//! then check the signature.

use std::collections::{BTreeSet, HashMap};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::bytes::{Ed25519PublicKey, X25519PublicKey};
use crate::cbor::{self, CborError};
use crate::cose::{self, CoseError, Digest, KeyId, ObjectKind, UnverifiedSign1};
use crate::ids::{CountryCode, NodeId, Oin, OinError};
use crate::limits::*;
use crate::oidc::OidcProvider;
use crate::text::{FieldError, Timestamp, check_count, check_line};

/// What a node does in the federation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Carries envelopes between nodes.
    Transit,
    /// Hosts citizens' inboxes; envelopes are sealed to its HPKE key.
    Home,
    /// The central gateway: agency ingress, registry, routing.
    Gateway,
}

/// A relay node or the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub id: NodeId,
    /// `host:port` where the node listens (QUIC for nodes, HTTPS for the gateway's agency API).
    pub address: String,
    /// More places the same node answers (the gateway's other instances),
    /// tried in order after `address` fails; at most
    /// [`MAX_NODE_ADDRESSES`](crate::limits::MAX_NODE_ADDRESSES) in all.
    /// Absent from the encoding when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_addresses: Vec<String>,
    pub roles: Vec<NodeRole>,
    /// SHA-256 of the DER of the node's current TLS certificate.
    pub tls_cert_sha256: Digest,
    /// Key that signs the node's evidence (and, for the gateway, envelopes).
    pub signing_key: Ed25519PublicKey,
    /// HPKE (X25519) key that envelopes for this node's inboxes are sealed to.
    pub hpke_key: X25519PublicKey,
    /// This node's routing table: to reach home node `destination`, hand the
    /// envelope to `via`. Without a route a node sends straight to the
    /// destination (see [`TrustList::next_hop`]).
    pub routes: Vec<Route>,
    /// The federation members that cosign this node's log checkpoints
    /// (SPEC.md §15); at most [`MAX_WITNESSES`](crate::limits::MAX_WITNESSES).
    /// Absent from the encoding when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<NodeId>,
}

impl NodeEntry {
    /// Every address of the node, in the order to try them.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.address.as_str())
            .chain(self.other_addresses.iter().map(String::as_str))
    }
}

/// One entry of a node's routing table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub destination: NodeId,
    pub via: NodeId,
}

/// Sector marks on an agency, used by mandate scopes (financial
/// administration covers financial senders, mentorship care senders).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sector {
    Financial,
    Care,
}

/// An agency that may send letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyEntry {
    pub oin: Oin,
    pub name: String,
    /// Key that seals the agency's letters.
    pub seal_key: Ed25519PublicKey,
    pub sectors: Vec<Sector>,
}

/// How sure an identity provider is of who the person is (eIDAS levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelOfAssurance {
    Low,
    Substantial,
    High,
}

impl std::str::FromStr for LevelOfAssurance {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Self::Low),
            "substantial" => Ok(Self::Substantial),
            "high" => Ok(Self::High),
            _ => Err(FieldError::Invalid {
                field: "level of assurance",
                problem: "expected low, substantial or high",
            }),
        }
    }
}

/// A national identity provider, a foreign eID node, an eIDAS bridge, or a
/// country's PID provider. It proves logins with COSE assertions signed by
/// `key` (test federations, the demo), with OpenID Connect ID tokens
/// (`oidc`), with wallet PIDs (`pid`), or several of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderEntry {
    pub id: NodeId,
    /// The country whose people it vouches for.
    pub country: CountryCode,
    /// Highest level of assurance this provider may assert.
    pub max_loa: LevelOfAssurance,
    /// The key of its COSE assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Ed25519PublicKey>,
    /// Its OpenID Connect side: issuer, claims, clients, keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcProvider>,
    /// Its PID side: the issuer of its country's EU Digital Identity Wallet
    /// PIDs and their keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<crate::pid::PidProvider>,
}

/// A court registry that signs attestations of legal representation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourtRegistryEntry {
    pub id: NodeId,
    pub key: Ed25519PublicKey,
}

/// A key (and the certificate that went with it) that must no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntry {
    /// Who held it: an OIN or a node, provider or registry id.
    pub subject: String,
    pub key_ids: Vec<KeyId>,
    /// Serial numbers (hex) of the X.509 certificates revoked with it.
    pub cert_serials: Vec<String>,
    pub revoked_at: Timestamp,
    pub reason: String,
}

/// The content of a trust list, as signed by the federation root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustListContent {
    /// Increases with every change; a verifier never goes back to a lower one.
    pub version: u64,
    pub issued_at: Timestamp,
    /// After this time the list is stale and verifiers refuse it.
    pub next_update: Timestamp,
    /// Test OINs (prefix 00000099) are accepted only when this is true.
    pub test_federation: bool,
    pub gateway: Option<NodeEntry>,
    pub nodes: Vec<NodeEntry>,
    pub agencies: Vec<AgencyEntry>,
    pub identity_providers: Vec<IdentityProviderEntry>,
    pub court_registries: Vec<CourtRegistryEntry>,
    pub revoked: Vec<RevokedEntry>,
}

/// The class of key holder, for "may this key sign that".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignerRole {
    Agency,
    Gateway,
    Node,
    IdentityProvider,
    CourtRegistry,
}

impl SignerRole {
    pub fn name(self) -> &'static str {
        match self {
            SignerRole::Agency => "agency",
            SignerRole::Gateway => "gateway",
            SignerRole::Node => "relay node",
            SignerRole::IdentityProvider => "identity provider",
            SignerRole::CourtRegistry => "court registry",
        }
    }
}

impl ObjectKind {
    /// Which key holders may sign this kind of object (the trust list itself
    /// is signed by the root, outside the list).
    pub fn allowed_signers(self) -> &'static [SignerRole] {
        match self {
            ObjectKind::Message => &[SignerRole::Agency],
            ObjectKind::Envelope => &[SignerRole::Gateway],
            ObjectKind::Assertion => &[SignerRole::IdentityProvider],
            ObjectKind::TrustList => &[],
            ObjectKind::Attestation => &[SignerRole::CourtRegistry],
        }
    }
}

/// Who signed an object, as found in the trust list.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    Agency(&'a AgencyEntry),
    Gateway(&'a NodeEntry),
    Node(&'a NodeEntry),
    IdentityProvider(&'a IdentityProviderEntry),
    CourtRegistry(&'a CourtRegistryEntry),
}

impl Signer<'_> {
    pub fn role(&self) -> SignerRole {
        match self {
            Signer::Agency(_) => SignerRole::Agency,
            Signer::Gateway(_) => SignerRole::Gateway,
            Signer::Node(_) => SignerRole::Node,
            Signer::IdentityProvider(_) => SignerRole::IdentityProvider,
            Signer::CourtRegistry(_) => SignerRole::CourtRegistry,
        }
    }

    /// The signer's identifier: an OIN or an entity id.
    pub fn id(&self) -> String {
        match self {
            Signer::Agency(a) => a.oin.to_string(),
            Signer::Gateway(n) | Signer::Node(n) => n.id.to_string(),
            Signer::IdentityProvider(i) => i.id.to_string(),
            Signer::CourtRegistry(c) => c.id.to_string(),
        }
    }

    /// The node id of a node or gateway signer.
    pub fn node_id(&self) -> Option<&NodeId> {
        match self {
            Signer::Gateway(n) | Signer::Node(n) => Some(&n.id),
            _ => None,
        }
    }
}

/// Why a signer is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("signing key {0} is not in the trust list")]
    UnknownKey(KeyId),
    #[error("signing key {key_id} of {subject} was revoked at {revoked_at}: {reason}")]
    Revoked {
        key_id: KeyId,
        subject: String,
        revoked_at: Timestamp,
        reason: String,
    },
    #[error("signed by {signer} '{id}', but only a {expected} may sign a {kind}")]
    WrongRole {
        signer: &'static str,
        id: String,
        expected: &'static str,
        kind: &'static str,
    },
}

/// Why a signed object failed verification against the trust list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Cose(#[from] CoseError),
    #[error("{0}")]
    Trust(#[from] TrustError),
}

impl VerifyError {
    /// The reason code a rejection for this error carries.
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            VerifyError::Cose(e) => e.reason(),
            VerifyError::Trust(TrustError::UnknownKey(_)) => ReasonCode::UnknownSigner,
            VerifyError::Trust(TrustError::Revoked { .. }) => ReasonCode::Revoked,
            VerifyError::Trust(TrustError::WrongRole { .. }) => ReasonCode::WrongRole,
        }
    }
}

/// Why a trust list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustListError {
    #[error("trust list: {0}")]
    Cose(#[from] CoseError),
    #[error("trust list is not signed by this federation's root key")]
    NotSignedByRoot,
    #[error("trust list content: {0}")]
    Content(#[from] CborError),
    #[error("trust list: {0}")]
    Field(#[from] FieldError),
    #[error("trust list version {version} is stale: its next update was due at {next_update}")]
    Stale {
        version: u64,
        next_update: Timestamp,
    },
    #[error("trust list version {offered} is older than the version {known} already in use")]
    Rollback { offered: u64, known: u64 },
    #[error("trust list names {0} twice")]
    Duplicate(String),
    #[error("trust list agency {oin}: {error}")]
    Agency { oin: Oin, error: OinError },
    #[error(
        "trust list identity provider {0} has no assertion key, no OpenID side and no PID side"
    )]
    ProviderWithoutProof(NodeId),
    #[error(
        "trust list identity provider {0} is not of the home country, but its ID tokens carry a BSN"
    )]
    ForeignBsnProvider(NodeId),
    #[error("trust list identity provider {id}: {error}")]
    OidcProvider {
        id: NodeId,
        error: crate::oidc::OidcProviderError,
    },
    #[error("trust list node {0} has no role")]
    NodeWithoutRole(NodeId),
    #[error("trust list gateway entry must have exactly the role 'gateway'")]
    GatewayRoles,
    #[error(
        "trust list node {node} has a route to {destination} via {via}: the destination must be a home node and the via a transit node of the list, and each destination appears once"
    )]
    BadRoute {
        node: NodeId,
        destination: NodeId,
        via: NodeId,
    },
}

/// The limits on how many entries of each kind a trust list holds.
fn check_counts(content: &TrustListContent) -> Result<(), TrustListError> {
    check_count("nodes", content.nodes.len(), MAX_TRUST_LIST_ENTRIES)?;
    check_count("agencies", content.agencies.len(), MAX_TRUST_LIST_ENTRIES)?;
    check_count(
        "identity providers",
        content.identity_providers.len(),
        MAX_TRUST_LIST_ENTRIES,
    )?;
    check_count(
        "court registries",
        content.court_registries.len(),
        MAX_TRUST_LIST_ENTRIES,
    )?;
    check_count("revoked", content.revoked.len(), MAX_TRUST_LIST_ENTRIES)?;
    Ok(())
}

/// Each provider proves logins some way, and each OpenID issuer is one
/// provider's.
fn check_identity_providers(providers: &[IdentityProviderEntry]) -> Result<(), TrustListError> {
    let mut issuers = BTreeSet::new();
    for idp in providers {
        if idp.key.is_none() && idp.oidc.is_none() && idp.pid.is_none() {
            return Err(TrustListError::ProviderWithoutProof(idp.id.clone()));
        }
        if let Some(oidc) = &idp.oidc {
            oidc.validate()
                .map_err(|error| TrustListError::OidcProvider {
                    id: idp.id.clone(),
                    error,
                })?;
            // A BSN only from a provider of the home country (see
            // `assertion::check_provider_vouches`): refused here already.
            if oidc.identifier_kind == crate::oidc::IdentifierKind::Bsn
                && idp.country != crate::assertion::HOME_COUNTRY
            {
                return Err(TrustListError::ForeignBsnProvider(idp.id.clone()));
            }
            if !issuers.insert(oidc.issuer.as_str()) {
                return Err(TrustListError::Duplicate(format!(
                    "OpenID issuer {}",
                    oidc.issuer
                )));
            }
        }
        if let Some(pid) = &idp.pid {
            pid.validate()
                .map_err(|error| TrustListError::OidcProvider {
                    id: idp.id.clone(),
                    error,
                })?;
            if !issuers.insert(pid.issuer.as_str()) {
                return Err(TrustListError::Duplicate(format!(
                    "PID issuer {}",
                    pid.issuer
                )));
            }
        }
    }
    Ok(())
}

/// The keys of a trust list being checked: each key and each holder once.
#[derive(Default)]
struct KeyIndex {
    by_key: HashMap<KeyId, (SignerRole, usize, VerifyingKey)>,
    /// (is an agency, id): agencies' OINs and node ids are separate namespaces.
    ids: BTreeSet<(bool, String)>,
}

impl KeyIndex {
    fn add(
        &mut self,
        key: &Ed25519PublicKey,
        id: String,
        role: SignerRole,
        index: usize,
    ) -> Result<(), TrustListError> {
        let verifying = key
            .key()
            .ok_or_else(|| TrustListError::Duplicate(format!("invalid key of {id}")))?;
        let key_id = KeyId::of(&verifying);
        if self
            .by_key
            .insert(key_id, (role, index, verifying))
            .is_some()
        {
            return Err(TrustListError::Duplicate(format!("key {key_id}")));
        }
        self.add_id(id, role)
    }

    /// A holder's id, once.
    fn add_id(&mut self, id: String, role: SignerRole) -> Result<(), TrustListError> {
        if !self.ids.insert((role == SignerRole::Agency, id.clone())) {
            return Err(TrustListError::Duplicate(id));
        }
        Ok(())
    }

    /// The revoked key ids (none of them also trusted), by entry.
    fn revocations(
        &self,
        content: &TrustListContent,
    ) -> Result<HashMap<KeyId, usize>, TrustListError> {
        let mut revoked = HashMap::new();
        for (i, entry) in content.revoked.iter().enumerate() {
            check_line("revocation reason", &entry.reason, MAX_SHORT_TEXT_CHARS)?;
            for key_id in &entry.key_ids {
                if self.by_key.contains_key(key_id) {
                    return Err(TrustListError::Duplicate(format!(
                        "key {key_id} (both trusted and revoked)"
                    )));
                }
                revoked.insert(*key_id, i);
            }
        }
        Ok(revoked)
    }
}

/// A node's routes must lead to home nodes of the list, via transit nodes
/// other than itself, each destination once.
struct RouteCheck<'a> {
    homes: BTreeSet<&'a NodeId>,
    transits: BTreeSet<&'a NodeId>,
}

impl<'a> RouteCheck<'a> {
    fn of(content: &'a TrustListContent) -> RouteCheck<'a> {
        let with_role = |role: NodeRole| -> BTreeSet<&NodeId> {
            content
                .nodes
                .iter()
                .filter(|n| n.roles.contains(&role))
                .map(|n| &n.id)
                .collect()
        };
        RouteCheck {
            homes: with_role(NodeRole::Home),
            transits: with_role(NodeRole::Transit),
        }
    }

    fn check(&self, node: &NodeEntry) -> Result<(), TrustListError> {
        let mut seen = BTreeSet::new();
        for route in &node.routes {
            if !self.homes.contains(&route.destination)
                || !self.transits.contains(&route.via)
                || route.via == node.id
                || !seen.insert(&route.destination)
            {
                return Err(TrustListError::BadRoute {
                    node: node.id.clone(),
                    destination: route.destination.clone(),
                    via: route.via.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A checked trust list with an index from key id to signer.
#[derive(Debug, Clone)]
pub struct TrustList {
    content: TrustListContent,
    /// Key id → holder, with the key decompressed once (a curve point
    /// decompression costs about as much as a third of a verification).
    by_key: HashMap<KeyId, (SignerRole, usize, VerifyingKey)>,
    revoked: HashMap<KeyId, usize>,
}

impl TrustList {
    /// Checks the content (limits, duplicates, test OINs, routes) and indexes it.
    pub fn new(content: TrustListContent) -> Result<TrustList, TrustListError> {
        check_counts(&content)?;
        let mut index = KeyIndex::default();
        if let Some(gateway) = &content.gateway {
            if gateway.roles != [NodeRole::Gateway] {
                return Err(TrustListError::GatewayRoles);
            }
            check_node(gateway)?;
            index.add(
                &gateway.signing_key,
                gateway.id.to_string(),
                SignerRole::Gateway,
                0,
            )?;
        }
        let routes = RouteCheck::of(&content);
        for (i, node) in content.nodes.iter().enumerate() {
            check_node(node)?;
            if node.roles.is_empty() {
                return Err(TrustListError::NodeWithoutRole(node.id.clone()));
            }
            if node.roles.contains(&NodeRole::Gateway) {
                return Err(TrustListError::GatewayRoles);
            }
            routes.check(node)?;
            index.add(&node.signing_key, node.id.to_string(), SignerRole::Node, i)?;
        }
        for (i, agency) in content.agencies.iter().enumerate() {
            agency
                .oin
                .check_allowed(content.test_federation)
                .map_err(|error| TrustListError::Agency {
                    oin: agency.oin.clone(),
                    error,
                })?;
            check_line("agency name", &agency.name, MAX_SHORT_TEXT_CHARS)?;
            index.add(
                &agency.seal_key,
                agency.oin.to_string(),
                SignerRole::Agency,
                i,
            )?;
        }
        check_identity_providers(&content.identity_providers)?;
        for (i, idp) in content.identity_providers.iter().enumerate() {
            match &idp.key {
                Some(key) => index.add(key, idp.id.to_string(), SignerRole::IdentityProvider, i)?,
                None => index.add_id(idp.id.to_string(), SignerRole::IdentityProvider)?,
            }
        }
        for (i, court) in content.court_registries.iter().enumerate() {
            index.add(
                &court.key,
                court.id.to_string(),
                SignerRole::CourtRegistry,
                i,
            )?;
        }
        let revoked = index.revocations(&content)?;
        Ok(TrustList {
            content,
            by_key: index.by_key,
            revoked,
        })
    }

    pub fn content(&self) -> &TrustListContent {
        &self.content
    }

    /// Signs a trust list with the federation root key.
    pub fn sign(content: &TrustListContent, root: &SigningKey) -> Vec<u8> {
        cose::sign(ObjectKind::TrustList, cbor::to_vec(content), root)
    }

    /// Verifies a signed trust list against the root key and the time.
    pub fn verify(
        bytes: &[u8],
        root: &VerifyingKey,
        now: Timestamp,
    ) -> Result<TrustList, TrustListError> {
        let unverified = UnverifiedSign1::parse(bytes, ObjectKind::TrustList)?;
        if unverified.key_id != KeyId::of(root) {
            return Err(TrustListError::NotSignedByRoot);
        }
        let payload = unverified.verify(root)?;
        let content: TrustListContent = cbor::from_slice(&payload, MAX_TRUST_LIST_BYTES)?;
        if now > content.next_update {
            return Err(TrustListError::Stale {
                version: content.version,
                next_update: content.next_update,
            });
        }
        TrustList::new(content)
    }

    /// Verifies a trust list that is to replace `known`: as [`Self::verify`],
    /// and its version must not be lower (a verifier never goes back).
    pub fn verify_update(
        bytes: &[u8],
        root: &VerifyingKey,
        now: Timestamp,
        known: &TrustList,
    ) -> Result<TrustList, TrustListError> {
        let offered = Self::verify(bytes, root, now)?;
        if offered.content.version < known.content.version {
            return Err(TrustListError::Rollback {
                offered: offered.content.version,
                known: known.content.version,
            });
        }
        Ok(offered)
    }

    /// Finds the holder of a key, or says why it is not trusted.
    pub fn signer(&self, key_id: &KeyId) -> Result<Signer<'_>, TrustError> {
        if let Some(&(role, i, _)) = self.by_key.get(key_id) {
            let c = &self.content;
            // Indices were taken from these very vectors in `new`.
            let signer = match role {
                SignerRole::Agency => c.agencies.get(i).map(Signer::Agency),
                SignerRole::Gateway => c.gateway.as_ref().map(Signer::Gateway),
                SignerRole::Node => c.nodes.get(i).map(Signer::Node),
                SignerRole::IdentityProvider => {
                    c.identity_providers.get(i).map(Signer::IdentityProvider)
                }
                SignerRole::CourtRegistry => c.court_registries.get(i).map(Signer::CourtRegistry),
            };
            if let Some(signer) = signer {
                return Ok(signer);
            }
        }
        if let Some(entry) = self
            .revoked
            .get(key_id)
            .and_then(|&i| self.content.revoked.get(i))
        {
            return Err(TrustError::Revoked {
                key_id: *key_id,
                subject: entry.subject.clone(),
                revoked_at: entry.revoked_at,
                reason: entry.reason.clone(),
            });
        }
        Err(TrustError::UnknownKey(*key_id))
    }

    /// Verifies a signed object of `kind`: trusted, allowed, unrevoked
    /// signer, valid signature. Returns the signer and the payload bytes.
    pub fn verify_signed(
        &self,
        bytes: &[u8],
        kind: ObjectKind,
    ) -> Result<(Signer<'_>, Vec<u8>), VerifyError> {
        let unverified = UnverifiedSign1::parse(bytes, kind)?;
        let signer = self.signer(&unverified.key_id)?;
        if !kind.allowed_signers().contains(&signer.role()) {
            let expected = kind
                .allowed_signers()
                .first()
                .map(|r| r.name())
                .unwrap_or("federation root");
            return Err(TrustError::WrongRole {
                signer: signer.role().name(),
                id: signer.id(),
                expected,
                kind: kind.name(),
            }
            .into());
        }
        let key = self
            .by_key
            .get(&unverified.key_id)
            .map(|(_, _, key)| *key)
            .ok_or(CoseError::BadSignature)?;
        let payload = unverified.verify(&key)?;
        Ok((signer, payload))
    }

    /// The holder of a key and the key itself.
    pub fn signer_key(&self, key_id: &KeyId) -> Result<(Signer<'_>, VerifyingKey), TrustError> {
        let signer = self.signer(key_id)?;
        let key = self
            .by_key
            .get(key_id)
            .map(|(_, _, key)| *key)
            .ok_or(TrustError::UnknownKey(*key_id))?;
        Ok((signer, key))
    }

    pub fn node(&self, id: &NodeId) -> Option<&NodeEntry> {
        if let Some(g) = &self.content.gateway
            && &g.id == id
        {
            return Some(g);
        }
        self.content.nodes.iter().find(|n| &n.id == id)
    }

    pub fn agency(&self, oin: &Oin) -> Option<&AgencyEntry> {
        self.content.agencies.iter().find(|a| &a.oin == oin)
    }

    pub fn gateway(&self) -> Option<&NodeEntry> {
        self.content.gateway.as_ref()
    }

    /// Whether a certificate serial (hex, lower case) was revoked.
    pub fn is_cert_revoked(&self, serial_hex: &str) -> bool {
        self.content.revoked.iter().any(|r| {
            r.cert_serials
                .iter()
                .any(|s| s.eq_ignore_ascii_case(serial_hex))
        })
    }

    /// The next hop from node `from` towards home node `destination`: the
    /// `via` of `from`'s route to it, or else the destination itself. `None`
    /// if the destination is not a home node in the list.
    pub fn next_hop(&self, from: &NodeId, destination: &NodeId) -> Option<&NodeEntry> {
        let home = self.node(destination)?;
        if !home.roles.contains(&NodeRole::Home) {
            return None;
        }
        let via = self
            .node(from)
            .and_then(|n| n.routes.iter().find(|r| &r.destination == destination))
            .and_then(|r| self.node(&r.via));
        Some(via.unwrap_or(home))
    }
}

fn check_node(node: &NodeEntry) -> Result<(), TrustListError> {
    check_line("node address", &node.address, MAX_ADDRESS_CHARS)?;
    check_count(
        "node addresses",
        1 + node.other_addresses.len(),
        crate::limits::MAX_NODE_ADDRESSES,
    )?;
    for address in &node.other_addresses {
        check_line("node address", address, MAX_ADDRESS_CHARS)?;
    }
    check_count("node routes", node.routes.len(), MAX_ROUTES_PER_NODE)?;
    check_count("node roles", node.roles.len(), 3)?;
    check_count(
        "log witnesses",
        node.witnesses.len(),
        crate::limits::MAX_WITNESSES,
    )?;
    Ok(())
}
