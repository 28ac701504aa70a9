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
use crate::oidc::{IdentifierKind, JwsAlgorithm, OidcKey, OidcProvider, OidcPublicKey};
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
/// The German PID provider (EU Digital Identity Wallet PIDs).
pub const GERMAN_PID: &str = "pid.de.test";
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
        other_addresses: vec![],
        roles,
        tls_cert_sha256: Digest::of(name.as_bytes()),
        signing_key: Ed25519PublicKey::from_key(&key(name).verifying_key()),
        hpke_key: hpke(name).public,
        routes,
        // Each member of the test federation witnesses the other two.
        witnesses: [GATEWAY, RELAY, HOME]
            .into_iter()
            .filter(|&w| w != name)
            .map(id)
            .collect(),
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
        identity_providers: identity_providers(),
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

/// The test federation's identity providers: the national login, the
/// German eID and the German PID provider.
fn identity_providers() -> Vec<IdentityProviderEntry> {
    vec![
        IdentityProviderEntry {
            id: id(NATIONAL_IDP),
            country: crate::ids::CountryCode::NL,
            max_loa: LevelOfAssurance::High,
            key: Some(Ed25519PublicKey::from_key(
                &key(NATIONAL_IDP).verifying_key(),
            )),
            oidc: Some(oidc_provider(
                NATIONAL_OIDC_ISSUER,
                NATIONAL_IDP,
                ("bsn", IdentifierKind::Bsn),
            )),
            pid: None,
        },
        IdentityProviderEntry {
            id: id(GERMAN_EID),
            country: "DE".parse().unwrap_or(crate::ids::CountryCode::NL),
            max_loa: LevelOfAssurance::Substantial,
            key: Some(Ed25519PublicKey::from_key(&key(GERMAN_EID).verifying_key())),
            oidc: Some(oidc_provider(
                GERMAN_OIDC_ISSUER,
                GERMAN_EID,
                ("person_identifier", IdentifierKind::EidasPersonId),
            )),
            pid: None,
        },
        IdentityProviderEntry {
            id: id(GERMAN_PID),
            country: "DE".parse().unwrap_or(crate::ids::CountryCode::NL),
            max_loa: LevelOfAssurance::High,
            key: None,
            oidc: None,
            pid: Some(crate::pid::PidProvider {
                issuer: GERMAN_PID_ISSUER.into(),
                keys: vec![oidc_public_key(GERMAN_PID)],
            }),
        },
    ]
}

/// The `iss` of the national provider's ID tokens.
pub const NATIONAL_OIDC_ISSUER: &str = "https://login.nl.test";
/// The `iss` of the German provider's ID tokens.
pub const GERMAN_OIDC_ISSUER: &str = "https://eid.de.test";
/// The German PID provider: the `iss` of its PIDs.
pub const GERMAN_PID_ISSUER: &str = "https://pid.de.test";
/// The home node's client id at every test provider.
pub const HOME_CLIENT_ID: &str = "estafette-home-1";
/// The `acr` values of the test providers.
pub const ACR_SUBSTANTIAL: &str = "urn:test:loa:substantial";
pub const ACR_HIGH: &str = "urn:test:loa:high";
pub const ACR_LOW: &str = "urn:test:loa:low";

/// The key an OpenID provider of the fixtures signs ID tokens with
/// (EdDSA, so that signed vectors are reproducible), and its `kid`.
pub fn oidc_key(provider: &str) -> (SigningKey, String) {
    (key(&format!("oidc:{provider}")), format!("{provider}-1"))
}

fn oidc_provider(
    issuer: &str,
    provider: &str,
    (claim, kind): (&str, IdentifierKind),
) -> OidcProvider {
    OidcProvider {
        issuer: issuer.into(),
        identifier_claim: claim.into(),
        identifier_kind: kind,
        acr_levels: [
            (ACR_LOW.to_owned(), LevelOfAssurance::Low),
            (ACR_SUBSTANTIAL.to_owned(), LevelOfAssurance::Substantial),
            (ACR_HIGH.to_owned(), LevelOfAssurance::High),
        ]
        .into(),
        clients: [(home_id(), HOME_CLIENT_ID.to_owned())].into(),
        keys: vec![oidc_public_key(provider)],
    }
}

/// The public key of [`oidc_key`], as the trust list lists it.
pub fn oidc_public_key(provider: &str) -> OidcKey {
    let (signing, kid) = oidc_key(provider);
    OidcKey {
        kid: Some(kid),
        alg: Some(JwsAlgorithm::EdDSA),
        key: OidcPublicKey::Ed25519 {
            x: serde_bytes::ByteBuf::from(signing.verifying_key().to_bytes().to_vec()),
        },
    }
}

/// A compact JWS (EdDSA) over `claims`, as an OpenID provider signs an ID
/// token. For tests and vectors; the verifier is [`crate::oidc::IdToken`].
pub fn sign_jws(claims: &serde_json::Value, signer: &SigningKey, kid: Option<&str>) -> String {
    sign_typed_jws(claims, signer, kid, "JWT")
}

/// A compact JWS (EdDSA) over `claims` with header `typ`.
pub fn sign_typed_jws(
    claims: &serde_json::Value,
    signer: &SigningKey,
    kid: Option<&str>,
    typ: &str,
) -> String {
    use ed25519_dalek::Signer as _;
    let mut header = serde_json::json!({"alg": "EdDSA", "typ": typ});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = signer.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A PID presentation of the fixtures' German PID provider, as a wallet
/// makes one (SD-JWT VC, EdDSA, fixed salts): for tests and vectors; the
/// verifier is [`crate::pid::PidPresentation`].
#[derive(Debug, Clone)]
pub struct TestPid {
    /// The credential's plain claims (`iss`, `vct`, times, `cnf`…).
    pub payload: serde_json::Value,
    /// (salt, claim, value) of each selectively disclosable claim.
    pub claims: Vec<(String, String, serde_json::Value)>,
    /// The key the PID is signed with, and its `kid`.
    pub issuer_key: SigningKey,
    pub issuer_kid: String,
    pub holder: SigningKey,
}

impl TestPid {
    /// Jonas Müller's German PID, issued a day before `now`, for a year,
    /// held by the key labelled `holder`, with personal administrative
    /// number `number`.
    pub fn german(number: &str, holder: &str, now: Timestamp) -> TestPid {
        let holder = key(&format!("holder:{holder}"));
        let (issuer_key, issuer_kid) = oidc_key(GERMAN_PID);
        let x = b64(&holder.verifying_key().to_bytes());
        TestPid {
            payload: serde_json::json!({
                "iss": GERMAN_PID_ISSUER,
                "vct": crate::pid::PID_VCT,
                "iat": now.0.saturating_sub(86_400),
                "exp": now.0 + 365 * 86_400,
                "_sd_alg": "sha-256",
                "cnf": {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}},
            }),
            claims: [
                ("family_name", serde_json::json!("Müller")),
                ("given_name", serde_json::json!("Jonas")),
                ("birthdate", serde_json::json!("1985-07-14")),
                ("issuing_country", serde_json::json!("DE")),
                ("personal_administrative_number", serde_json::json!(number)),
                ("nationalities", serde_json::json!(["DE"])),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, (name, value))| (format!("salt-{i}-{number}"), name.to_owned(), value))
            .collect(),
            issuer_key,
            issuer_kid,
            holder,
        }
    }

    /// The disclosure of each claim, in order.
    pub fn disclosures(&self) -> Vec<String> {
        self.claims
            .iter()
            .map(|(salt, name, value)| {
                b64(serde_json::json!([salt, name, value])
                    .to_string()
                    .as_bytes())
            })
            .collect()
    }

    /// The issuer-signed JWT, with a digest for each claim (and a decoy).
    pub fn issuer_jwt(&self) -> String {
        let mut digests: Vec<String> = self
            .disclosures()
            .iter()
            .map(|d| b64(&Sha256::digest(d.as_bytes())))
            .collect();
        digests.push(b64(&Sha256::digest(b"decoy")));
        digests.sort();
        let mut payload = self.payload.clone();
        payload["_sd"] = digests.into();
        sign_typed_jws(
            &payload,
            &self.issuer_key,
            Some(&self.issuer_kid),
            crate::pid::PID_FORMAT,
        )
    }

    /// The presentation of `disclosures`, bound for verifier `aud` with
    /// `nonce` at `iat` by `holder` (or with no key binding).
    pub fn present_with(
        &self,
        disclosures: &[String],
        holder: Option<&SigningKey>,
        aud: &str,
        nonce: &str,
        iat: Timestamp,
    ) -> String {
        let mut bound = self.issuer_jwt() + "~";
        for d in disclosures {
            bound += d;
            bound += "~";
        }
        let Some(holder) = holder else {
            return bound;
        };
        let kb = serde_json::json!({
            "iat": iat.0, "aud": aud, "nonce": nonce,
            "sd_hash": b64(&Sha256::digest(bound.as_bytes())),
        });
        let kb_jwt = sign_typed_jws(&kb, holder, None, "kb+jwt");
        bound + &kb_jwt
    }

    /// Everything disclosed, bound by its holder for the fixtures' home
    /// node at `iat`.
    pub fn present(&self, nonce: &str, iat: Timestamp) -> String {
        self.present_with(
            &self.disclosures(),
            Some(&self.holder),
            &home_client_id(),
            nonce,
            iat,
        )
    }
}

/// The verifier client id of the fixtures' home node (OpenID4VP).
pub fn home_client_id() -> String {
    match crate::pid::verifier_client_id(&trust_list(), &home_id()) {
        Ok(id) => id,
        Err(e) => unreachable!("the fixtures' home node is a home node: {e}"),
    }
}

/// A Token Status List token of the German PID provider: `statuses` of
/// `bits` each, issued at `iat`, for list `uri`.
pub fn status_list_token(uri: &str, bits: u8, statuses: &[u8], iat: Timestamp) -> String {
    let per_byte = 8 / usize::from(bits.max(1));
    let mut bytes = vec![0u8; statuses.len().div_ceil(per_byte)];
    for (i, status) in statuses.iter().enumerate() {
        let bit = i * usize::from(bits);
        if let Some(b) = bytes.get_mut(bit / 8) {
            *b |= status << (bit % 8);
        }
    }
    let lst = b64(&miniz_oxide::deflate::compress_to_vec_zlib(&bytes, 9));
    let (key, kid) = oidc_key(GERMAN_PID);
    sign_typed_jws(
        &serde_json::json!({
            "sub": uri, "iat": iat.0, "exp": iat.0 + 86_400,
            "status_list": {"bits": bits, "lst": lst},
        }),
        &key,
        Some(&kid),
        "statuslist+jwt",
    )
}

/// The claims of an ID token of the national provider for the home node,
/// issued at `now`, a login at `now`, valid for an hour.
pub fn id_token_claims(subject_bsn: &str, nonce: &str, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "iss": NATIONAL_OIDC_ISSUER,
        "sub": "pairwise-subject-1",
        "aud": HOME_CLIENT_ID,
        "exp": now.0 + 3600,
        "iat": now.0,
        "auth_time": now.0,
        "nonce": nonce,
        "acr": ACR_SUBSTANTIAL,
        "bsn": subject_bsn,
        "family_name": "Jansen",
        "given_name": "Anna",
        "birthdate": "1980-04-01",
    })
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

/// Each issuer's evidence log in this process, for [`logged_evidence`].
static TEST_LOGS: std::sync::Mutex<
    Option<std::collections::HashMap<String, crate::memory_log::MemoryLog>>,
> = std::sync::Mutex::new(None);

/// Evidence as a node makes it: `record` appended to its issuer's log
/// (one per process, in memory) under a checkpoint signed with `key` at the
/// record's time. What tests use where a node would use its stored log.
pub fn logged_evidence(
    record: &crate::EvidenceRecord,
    key: &SigningKey,
) -> Result<Vec<u8>, crate::EvidenceError> {
    let mut logs = TEST_LOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let origin = record.issuer.to_string();
    let log = logs
        .get_or_insert_with(Default::default)
        .entry(origin.clone())
        .or_insert_with(|| crate::memory_log::MemoryLog::new(origin));
    let mut made = crate::Evidence::log(log, &[record], key, record.issued_at)?;
    Ok(made.remove(0))
}
