//! # estafette-pki: the federation's certificate authority and trust list
//!
//! A federation lives in one directory: the root CA (Ed25519), the CRL, the
//! signed trust list, and one folder per member with its certificate and
//! keys. Every change (issue, revoke) publishes a new CRL and a new trust
//! list version in the same step. The `estafette-pki` binary is a thin CLI
//! over [`Federation`].
//!
//! ```text
//! DIR/federation.json           public state: members, certificates, revocations
//! DIR/root/ca.crt.pem           root certificate (the trust anchor)
//! DIR/root/ca.key.pem           root key (0600): signs certificates, CRL, trust list
//! DIR/crl.pem                   certificate revocation list
//! DIR/trust-list.cose           signed trust list
//! DIR/agencies/<OIN>/           tls.crt.pem, tls.key.pem, seal.key.pem
//! DIR/nodes/<id>/               tls.crt.pem, tls.key.pem, signing.key.pem, hpke.key.pem
//! DIR/identity-providers/<id>/  signing.key.pem
//! DIR/court-registries/<id>/    signing.key.pem
//! ```
#![forbid(unsafe_code)]
// No function over about 80 lines (clippy.toml): a long one reads as named steps.
#![warn(clippy::too_many_lines)]

pub mod explain;
pub mod keys;
mod members;
pub mod oidc;
pub mod report;
pub mod tls;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use estafette_spec::{
    Digest, KeyId, LevelOfAssurance, NodeId, NodeRole, Oin, RevokedEntry, Timestamp, TrustList,
    TrustListContent, TrustListError,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How long certificates of members are valid.
pub const MEMBER_CERT_VALIDITY_DAYS: i64 = 2 * 365;
/// How long the root certificate is valid.
pub const ROOT_CERT_VALIDITY_DAYS: i64 = 10 * 365;
/// How long a published CRL and trust list stay fresh; republish before then.
pub const PUBLICATION_VALIDITY_DAYS: u64 = 30;

/// The person an assertion is about (see [`Federation::mint_assertion`]).
#[derive(Debug, Clone)]
pub struct AssertedPerson {
    pub subject: estafette_spec::Recipient,
    pub family_name: String,
    pub given_names: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    pub level: LevelOfAssurance,
}

impl AssertedPerson {
    /// A person with placeholder names, at level substantial.
    pub fn test(subject: estafette_spec::Recipient) -> AssertedPerson {
        AssertedPerson {
            subject,
            family_name: "Tester".into(),
            given_names: "Test".into(),
            birth_date: "1970-01-01".into(),
            level: LevelOfAssurance::Substantial,
        }
    }
}

/// What went wrong in the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists: keys are never overwritten")]
    KeyExists(PathBuf),
    #[error("{0} is not a federation directory (run `estafette-pki init --dir {0}` first)")]
    NotAFederation(PathBuf),
    #[error("{0} already holds a federation")]
    AlreadyInitialised(PathBuf),
    #[error("{0} is already a member of this federation")]
    AlreadyMember(String),
    #[error("no member or certificate matches {0}")]
    NoSuchMember(String),
    #[error("{0}")]
    Invalid(String),
    #[error("key: {0}")]
    Key(String),
    #[error("PEM: {0}")]
    Pem(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("trust list: {0}")]
    TrustList(#[from] TrustListError),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Certificate(e.to_string())
    }
}

/// One certificate the CA issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateRecord {
    pub serial_hex: String,
    /// The OIN or entity id it was issued to.
    pub subject: String,
    pub sha256: Digest,
    pub revoked: Option<Timestamp>,
}

/// The federation's public state, kept in `federation.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub crl_number: u64,
    pub certificates: Vec<CertificateRecord>,
    /// The members and revocations, as in the last published trust list.
    pub trust_list: TrustListContent,
}

/// Kinds of node the CLI issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Transit,
    Home,
    Both,
}

impl NodeKind {
    fn roles(self) -> Vec<NodeRole> {
        match self {
            NodeKind::Transit => vec![NodeRole::Transit],
            NodeKind::Home => vec![NodeRole::Home],
            NodeKind::Both => vec![NodeRole::Transit, NodeRole::Home],
        }
    }
}

/// What to revoke.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// A certificate serial number (hex); revokes the member that holds it.
    Serial(String),
    /// A member: an OIN or a node, provider or registry id.
    Member(String),
}

/// A federation directory, opened.
pub struct Federation {
    dir: PathBuf,
    state: State,
}

/// The current time, in whole seconds.
pub fn now() -> Timestamp {
    estafette_spec::Clock::now(&SystemClock)
}

/// The system's clock, for every part that is given a clock
/// (`estafette_spec::Clock`) in production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl estafette_spec::Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

fn offset_time(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.0 as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Federation {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn root_cert_path(&self) -> PathBuf {
        self.dir.join("root/ca.crt.pem")
    }
    fn root_key_path(&self) -> PathBuf {
        self.dir.join("root/ca.key.pem")
    }
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    pub fn trust_list_path(&self) -> PathBuf {
        self.dir.join("trust-list.cose")
    }
    fn state_path(dir: &Path) -> PathBuf {
        dir.join("federation.json")
    }
    /// Folder of an agency's files.
    pub fn agency_dir(&self, oin: &Oin) -> PathBuf {
        self.dir.join("agencies").join(oin.as_str())
    }
    /// Folder of a node's (or the gateway's) files.
    pub fn node_dir(&self, id: &NodeId) -> PathBuf {
        self.dir.join("nodes").join(id.as_str())
    }
    pub fn identity_provider_dir(&self, id: &NodeId) -> PathBuf {
        self.dir.join("identity-providers").join(id.as_str())
    }
    pub fn court_registry_dir(&self, id: &NodeId) -> PathBuf {
        self.dir.join("court-registries").join(id.as_str())
    }

    /// Creates a federation: root CA, empty CRL, first trust list.
    pub fn init(dir: &Path, name: &str, test_federation: bool) -> Result<Federation, PkiError> {
        if Self::state_path(dir).exists() {
            return Err(PkiError::AlreadyInitialised(dir.to_path_buf()));
        }
        let mut fed = Federation {
            dir: dir.to_path_buf(),
            state: State {
                name: name.to_owned(),
                crl_number: 0,
                certificates: vec![],
                trust_list: TrustListContent {
                    version: 0,
                    issued_at: now(),
                    next_update: now(),
                    test_federation,
                    gateway: None,
                    nodes: vec![],
                    agencies: vec![],
                    identity_providers: vec![],
                    court_registries: vec![],
                    revoked: vec![],
                },
            },
        };
        let root_key = keys::new_ed25519(&fed.root_key_path())?;
        let key_pair = rcgen_key(&root_key)?;
        let params = fed.root_params()?;
        let cert = params.self_signed(&key_pair)?;
        keys::write_public(&fed.root_cert_path(), cert.pem().as_bytes())?;
        fed.publish()?;
        Ok(fed)
    }

    /// Opens an existing federation directory.
    pub fn open(dir: &Path) -> Result<Federation, PkiError> {
        let path = Self::state_path(dir);
        let text = std::fs::read_to_string(&path)
            .map_err(|_| PkiError::NotAFederation(dir.to_path_buf()))?;
        let state = serde_json::from_str(&text).map_err(|e| PkiError::State {
            path,
            message: e.to_string(),
        })?;
        Ok(Federation {
            dir: dir.to_path_buf(),
            state,
        })
    }

    fn root_params(&self) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("Estafette federation root: {}", self.state.name),
        );
        dn.push(DnType::OrganizationName, "Estafette federation");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let start = now();
        params.not_before = offset_time(start.minus_s(3600));
        params.not_after = offset_time(start.plus_s(ROOT_CERT_VALIDITY_DAYS as u64 * 86_400));
        Ok(params)
    }

    fn root_key(&self) -> Result<SigningKey, PkiError> {
        keys::read_ed25519(&self.root_key_path())
    }

    /// The root's public key: what the trust list is verified with.
    pub fn root_public_key(&self) -> Result<ed25519_dalek::VerifyingKey, PkiError> {
        Ok(self.root_key()?.verifying_key())
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let pem =
            std::fs::read_to_string(self.root_cert_path()).map_err(|source| PkiError::Io {
                path: self.root_cert_path(),
                source,
            })?;
        Ok(Issuer::from_ca_cert_pem(
            &pem,
            rcgen_key(&self.root_key()?)?,
        )?)
    }

    /// Issues a certificate for `key` and records it.
    fn issue_certificate(
        &mut self,
        subject: &str,
        mut params: CertificateParams,
        key: &SigningKey,
        path: &Path,
    ) -> Result<CertificateRecord, PkiError> {
        let mut serial = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
        serial[0] = (serial[0] & 0x7f) | 0x01; // positive and without a leading zero
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let start = now();
        params.not_before = offset_time(start.minus_s(3600));
        params.not_after = offset_time(start.plus_s(MEMBER_CERT_VALIDITY_DAYS as u64 * 86_400));
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.signed_by(&rcgen_key(key)?, &self.issuer()?)?;
        keys::write_public(path, cert.pem().as_bytes())?;
        let record = CertificateRecord {
            serial_hex: hex::encode(serial),
            subject: subject.to_owned(),
            sha256: Digest::of(cert.der()),
            revoked: None,
        };
        self.state.certificates.push(record.clone());
        Ok(record)
    }

    fn ensure_new_member(&self, id: &str) -> Result<(), PkiError> {
        let s = &self.state;
        let taken = s.trust_list.agencies.iter().any(|a| a.oin.as_str() == id)
            || s.trust_list
                .gateway
                .iter()
                .chain(&s.trust_list.nodes)
                .any(|n| n.id.as_str() == id)
            || s.trust_list
                .identity_providers
                .iter()
                .any(|i| i.id.as_str() == id)
            || s.trust_list
                .court_registries
                .iter()
                .any(|c| c.id.as_str() == id)
            || s.trust_list.revoked.iter().any(|r| r.subject == id);
        if taken {
            return Err(PkiError::AlreadyMember(id.to_owned()));
        }
        Ok(())
    }

    /// Revokes a member: its certificates go into the CRL, its keys move
    /// from the trust list's entries to its revoked list. Publishes both.
    pub fn revoke(
        &mut self,
        target: &RevokeTarget,
        reason: &str,
    ) -> Result<RevokedEntry, PkiError> {
        estafette_spec::text::check_line(
            "reason",
            reason,
            estafette_spec::limits::MAX_SHORT_TEXT_CHARS,
        )
        .map_err(|e| PkiError::Invalid(e.to_string()))?;
        let subject = self.revocation_subject(target)?;
        let s = &mut self.state;
        let key_ids = take_member_keys(&mut s.trust_list, &subject)?;
        // Routes may no longer name a revoked home node.
        for node in s
            .trust_list
            .gateway
            .iter_mut()
            .chain(s.trust_list.nodes.iter_mut())
        {
            node.routes
                .retain(|r| r.destination.as_str() != subject && r.via.as_str() != subject);
        }
        let at = now();
        let mut cert_serials = Vec::new();
        for cert in s
            .certificates
            .iter_mut()
            .filter(|c| c.subject == subject && c.revoked.is_none())
        {
            cert.revoked = Some(at);
            cert_serials.push(cert.serial_hex.clone());
        }
        let entry = RevokedEntry {
            subject,
            key_ids,
            cert_serials,
            revoked_at: at,
            reason: reason.to_owned(),
        };
        s.trust_list.revoked.push(entry.clone());
        self.publish()?;
        Ok(entry)
    }

    /// The member a revocation is about: named, or by a certificate's serial.
    fn revocation_subject(&self, target: &RevokeTarget) -> Result<String, PkiError> {
        match target {
            RevokeTarget::Member(id) => Ok(id.clone()),
            RevokeTarget::Serial(serial) => {
                let serial = serial
                    .trim_start_matches("0x")
                    .replace(':', "")
                    .to_lowercase();
                self.state
                    .certificates
                    .iter()
                    .find(|c| c.serial_hex == serial)
                    .map(|c| c.subject.clone())
                    .ok_or_else(|| PkiError::NoSuchMember(format!("certificate serial {serial}")))
            }
        }
    }

    /// The trust list content for the current state, as a new version.
    fn next_trust_list(&self, issued_at: Timestamp) -> TrustListContent {
        let mut content = TrustListContent {
            version: self.state.trust_list.version + 1,
            issued_at,
            next_update: issued_at.plus_s(PUBLICATION_VALIDITY_DAYS * 86_400),
            ..self.state.trust_list.clone()
        };
        assign_witnesses(&mut content);
        content
    }

    /// Publishes a new CRL and a new trust list version, then saves the state.
    pub fn publish(&mut self) -> Result<TrustList, PkiError> {
        let at = now();
        let content = self.next_trust_list(at);
        // Check before anything is written: a list that does not verify is never published.
        let trust = TrustList::new(content.clone())?;
        let root_key = self.root_key()?;
        let issuer = self.issuer()?;
        let crl = CertificateRevocationListParams {
            this_update: offset_time(at),
            next_update: offset_time(at.plus_s(PUBLICATION_VALIDITY_DAYS * 86_400)),
            crl_number: SerialNumber::from(self.state.crl_number + 1),
            issuing_distribution_point: None,
            revoked_certs: self
                .state
                .certificates
                .iter()
                .filter_map(|c| {
                    Some(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&hex::decode(&c.serial_hex).ok()?),
                        revocation_time: offset_time(c.revoked?),
                        reason_code: Some(RevocationReason::Unspecified),
                        invalidity_date: None,
                    })
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)?;
        keys::write_public(&self.crl_path(), crl.pem()?.as_bytes())?;
        keys::write_public(
            &self.trust_list_path(),
            &TrustList::sign(&content, &root_key),
        )?;
        self.state.trust_list = content;
        self.state.crl_number += 1;
        self.save()?;
        Ok(trust)
    }

    fn save(&self) -> Result<(), PkiError> {
        let path = Self::state_path(&self.dir);
        let json = serde_json::to_string_pretty(&self.state).map_err(|e| PkiError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        keys::write_public(&path, json.as_bytes())
    }

    /// Reads and verifies the published trust list.
    pub fn trust_list(&self, now: Timestamp) -> Result<TrustList, PkiError> {
        let path = self.trust_list_path();
        let bytes = std::fs::read(&path).map_err(|source| PkiError::Io { path, source })?;
        Ok(TrustList::verify(&bytes, &self.root_public_key()?, now)?)
    }
}

/// Removes the member `subject` from the trust list's entries; its key ids.
fn take_member_keys(list: &mut TrustListContent, subject: &str) -> Result<Vec<KeyId>, PkiError> {
    let key = if let Some(i) = list.agencies.iter().position(|a| a.oin.as_str() == subject) {
        Some(list.agencies.remove(i).seal_key)
    } else if let Some(i) = list.nodes.iter().position(|n| n.id.as_str() == subject) {
        Some(list.nodes.remove(i).signing_key)
    } else if list
        .gateway
        .as_ref()
        .is_some_and(|g| g.id.as_str() == subject)
    {
        match list.gateway.take() {
            Some(g) => Some(g.signing_key),
            None => return Err(PkiError::NoSuchMember(subject.to_owned())),
        }
    } else if let Some(i) = list
        .identity_providers
        .iter()
        .position(|p| p.id.as_str() == subject)
    {
        list.identity_providers.remove(i).key
    } else if let Some(i) = list
        .court_registries
        .iter()
        .position(|c| c.id.as_str() == subject)
    {
        Some(list.court_registries.remove(i).key)
    } else {
        return Err(PkiError::NoSuchMember(subject.to_owned()));
    };
    // An OpenID-only provider has no key of ours: removing its entry is
    // enough, its ID tokens name an issuer no longer in the list.
    Ok(key.and_then(|k| k.key_id()).into_iter().collect())
}

fn rcgen_key(key: &SigningKey) -> Result<KeyPair, PkiError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| PkiError::Key(format!("encoding key: {e}")))?;
    KeyPair::try_from(der.as_bytes()).map_err(|e| PkiError::Key(format!("loading key: {e}")))
}

fn check_address(address: &str) -> Result<(), PkiError> {
    let bad = || PkiError::Invalid(format!("address {address:?} is not host:port"));
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// How many witnesses each member of the federation gets.
pub const DEFAULT_WITNESSES: usize = 2;

/// Names the witnesses of every member (the gateway and the nodes), anew
/// at each publication so that members issued later take their turn: the
/// next [`DEFAULT_WITNESSES`] members after it in the order of their ids,
/// round the circle, so that every member witnesses as many logs as it has
/// witnesses (SPEC.md §15).
fn assign_witnesses(content: &mut TrustListContent) {
    let mut ids: Vec<estafette_spec::NodeId> = content
        .gateway
        .iter()
        .chain(&content.nodes)
        .map(|n| n.id.clone())
        .collect();
    ids.sort();
    let pick = |id: &estafette_spec::NodeId| -> Vec<estafette_spec::NodeId> {
        let Some(at) = ids.iter().position(|i| i == id) else {
            return Vec::new();
        };
        (1..ids.len())
            .map(|step| ids[(at + step) % ids.len()].clone())
            .take(DEFAULT_WITNESSES)
            .collect()
    };
    for node in content.gateway.iter_mut().chain(content.nodes.iter_mut()) {
        node.witnesses = pick(&node.id);
    }
}
