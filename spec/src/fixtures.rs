//! A complete test federation from fixed seeds: the keys and trust list that
//! the test vectors in `spec/vectors/` are made from, and that tests use.
//! Every private key here is public knowledge: never use them outside tests.
//! Compiled only with the `fixtures` feature.

use ed25519_dalek::SigningKey;
use sha2::{Digest as _, Sha256};

use crate::bytes::Ed25519PublicKey;
use crate::cose::Digest;
use crate::envelope::HpkeKeyPair;
use crate::ids::{NodeId, Oin};
use crate::text::Timestamp;
use crate::trust::*;

/// 2027-01-01T00:00:00Z: the "now" of every vector.
pub const T0: Timestamp = Timestamp(1_798_761_600);

/// A deterministic "random" source: SHA-256 in counter mode over a label.
/// For vectors only, so that HPKE sealing and ids are reproducible.
pub struct FixedRng {
    seed: [u8; 32],
    counter: u64,
    buffer: [u8; 32],
    used: usize,
}

impl FixedRng {
    pub fn new(label: &str) -> FixedRng {
        FixedRng {
            seed: Sha256::digest(label.as_bytes()).into(),
            counter: 0,
            buffer: [0; 32],
            used: 32,
        }
    }
}

impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == 32 {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.buffer = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.buffer[self.used];
            self.used += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for FixedRng {}

/// The Ed25519 key with seed SHA-256("estafette test key: " + label).
pub fn key(label: &str) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("estafette test key: {label}")).into();
    SigningKey::from_bytes(&seed)
}

/// The HPKE key pair derived (RFC 9180 DeriveKeyPair) from
/// "estafette test hpke key: " + label.
pub fn hpke(label: &str) -> HpkeKeyPair {
    HpkeKeyPair::derive(format!("estafette test hpke key: {label}").as_bytes())
}

fn id(text: &str) -> NodeId {
    // Fixture ids are literals that parse.
    text.parse()
        .unwrap_or_else(|_| unreachable!("fixture node id {text}"))
}

fn oin(text: &str) -> Oin {
    text.parse()
        .unwrap_or_else(|_| unreachable!("fixture OIN {text}"))
}

pub const GATEWAY: &str = "gateway.test";
pub const RELAY: &str = "relay-a.test";
pub const HOME: &str = "home-1.test";
pub const AGENCY_OIN: &str = "00000001003214345000";
pub const AGENCY2_OIN: &str = "00000003273318220000";
pub const REVOKED_AGENCY_OIN: &str = "00000001823288444000";
pub const NATIONAL_IDP: &str = "idp.nl.test";
pub const GERMAN_EID: &str = "eid.de.test";
pub const COURT: &str = "court.test";

pub fn gateway_id() -> NodeId {
    id(GATEWAY)
}
pub fn relay_id() -> NodeId {
    id(RELAY)
}
pub fn home_id() -> NodeId {
    id(HOME)
}

fn node(name: &str, roles: Vec<NodeRole>, routes: Vec<Route>) -> NodeEntry {
    NodeEntry {
        id: id(name),
        address: format!("{name}:4433"),
        roles,
        tls_cert_sha256: Digest::of(name.as_bytes()),
        signing_key: Ed25519PublicKey::from_key(&key(name).verifying_key()),
        hpke_key: hpke(name).public,
        routes,
    }
}

/// The test federation's trust list content (version 1, valid 30 days from [`T0`]).
pub fn trust_list_content() -> TrustListContent {
    TrustListContent {
        version: 1,
        issued_at: T0,
        next_update: T0.plus_s(30 * 86_400),
        test_federation: true,
        gateway: Some(node(
            GATEWAY,
            vec![NodeRole::Gateway],
            vec![Route {
                destination: id(HOME),
                via: id(RELAY),
            }],
        )),
        nodes: vec![
            node(RELAY, vec![NodeRole::Transit], vec![]),
            node(HOME, vec![NodeRole::Home], vec![]),
        ],
        agencies: vec![
            AgencyEntry {
                oin: oin(AGENCY_OIN),
                name: "Belastingdienst (test)".into(),
                seal_key: Ed25519PublicKey::from_key(&key(AGENCY_OIN).verifying_key()),
                sectors: vec![Sector::Financial],
            },
            AgencyEntry {
                oin: oin(AGENCY2_OIN),
                name: "Gemeente Voorbeeld (test)".into(),
                seal_key: Ed25519PublicKey::from_key(&key(AGENCY2_OIN).verifying_key()),
                sectors: vec![],
            },
        ],
        identity_providers: vec![
            IdentityProviderEntry {
                id: id(NATIONAL_IDP),
                country: crate::ids::CountryCode::NL,
                max_loa: LevelOfAssurance::High,
                key: Ed25519PublicKey::from_key(&key(NATIONAL_IDP).verifying_key()),
            },
            IdentityProviderEntry {
                id: id(GERMAN_EID),
                country: "DE".parse().unwrap_or(crate::ids::CountryCode::NL),
                max_loa: LevelOfAssurance::Substantial,
                key: Ed25519PublicKey::from_key(&key(GERMAN_EID).verifying_key()),
            },
        ],
        court_registries: vec![CourtRegistryEntry {
            id: id(COURT),
            key: Ed25519PublicKey::from_key(&key(COURT).verifying_key()),
        }],
        revoked: vec![RevokedEntry {
            subject: REVOKED_AGENCY_OIN.into(),
            key_ids: vec![crate::cose::KeyId::of(
                &key(REVOKED_AGENCY_OIN).verifying_key(),
            )],
            cert_serials: vec!["1f".into()],
            revoked_at: T0,
            reason: "key compromise".into(),
        }],
    }
}

/// The test federation's trust list, checked and indexed.
pub fn trust_list() -> TrustList {
    match TrustList::new(trust_list_content()) {
        Ok(t) => t,
        Err(e) => unreachable!("fixture trust list is valid: {e}"),
    }
}

/// The federation root key.
pub fn root_key() -> SigningKey {
    key("root")
}
