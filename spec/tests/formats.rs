//! Property tests for every format: encode → sign → verify → decode gives the
//! same value, and flipping any single bit of a signed object makes
//! verification fail with a typed error (a panic would fail the test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use estafette_spec::assertion::AssertionPolicy;
use estafette_spec::fixtures::{self, FixedRng, T0};
use estafette_spec::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// A valid BSN built from eight digits by choosing the ninth.
fn bsn_strategy() -> impl Strategy<Value = Bsn> {
    proptest::array::uniform8(0u8..10).prop_filter_map("no check digit fits", |d| {
        let sum: i32 = d
            .iter()
            .enumerate()
            .map(|(i, x)| (9 - i as i32) * i32::from(*x))
            .sum();
        // sum - last ≡ 0 (mod 11) with last in 0..=9
        let last = sum.rem_euclid(11);
        if last > 9 {
            return None;
        }
        let text: String =
            d.iter().map(|x| char::from(b'0' + x)).collect::<String>() + &last.to_string();
        text.parse().ok()
    })
}

fn recipient_strategy() -> impl Strategy<Value = Recipient> {
    prop_oneof![
        bsn_strategy().prop_map(Recipient::Bsn),
        (
            prop::sample::select(vec!["DE", "BE", "PL", "FR", "EL"]),
            "[!-~]{1,40}"
        )
            .prop_map(|(cc, id)| Recipient::Eidas(format!("{cc}/NL/{id}").parse().unwrap())),
    ]
}

fn id16() -> impl Strategy<Value = [u8; 16]> {
    proptest::array::uniform16(any::<u8>())
}

fn letter_strategy() -> impl Strategy<Value = Letter> {
    (
        id16(),
        recipient_strategy(),
        "[A-Za-z0-9 ëü€-]{1,60}",
        "[A-Za-z0-9 ,.\n€]{1,300}",
        prop::collection::vec(
            (
                "[a-z]{1,12}\\.pdf",
                prop::collection::vec(any::<u8>(), 0..200),
            ),
            0..3,
        ),
        prop::sample::select(vec![
            Nature::Decision,
            Nature::Reminder,
            Nature::Request,
            Nature::Information,
        ]),
        any::<bool>(),
        proptest::option::of(0u64..10_000_000),
        prop::sample::select(vec!["nl", "en", "de", "de-DE", "pl", "fr"]),
    )
        .prop_map(
            |(id, recipient, subject, body, attachments, nature, legal, deadline, lang)| Letter {
                message_id: MessageId::from_bytes(id),
                sender: fixtures::AGENCY_OIN.parse().unwrap(),
                recipient,
                created_at: T0,
                subject,
                body,
                attachments: attachments
                    .into_iter()
                    .map(|(name, content)| Attachment {
                        name,
                        media_type: "application/pdf".into(),
                        content,
                    })
                    .collect(),
                nature,
                legal_effect: legal,
                expected_action: "Betaal voor de deadline".into(),
                response_deadline: deadline.map(|d| T0.plus_s(d)),
                language: lang.into(),
                sender_reference: "REF-2027-001".into(),
            },
        )
}

fn header_for(message: &[u8], e: [u8; 16], i: [u8; 16], hops: u8, life: u64) -> RoutingHeader {
    RoutingHeader {
        envelope_id: EnvelopeId::from_bytes(e),
        home_node: fixtures::home_id(),
        inbox_id: InboxId::from_bytes(i),
        message_id: MessageId::from_bytes(i),
        message_digest: Digest::of(message),
        hop_limit: hops,
        created_at: T0,
        expires_at: T0.plus_s(life),
    }
}

/// A message and a routing header that names it.
fn header_strategy() -> impl Strategy<Value = (Vec<u8>, RoutingHeader)> {
    (
        prop::collection::vec(any::<u8>(), 0..500),
        id16(),
        id16(),
        1u8..=16,
        1u64..=30 * 86_400,
    )
        .prop_map(|(m, e, i, hops, life)| {
            let h = header_for(&m, e, i, hops, life);
            (m, h)
        })
}

fn event_strategy() -> impl Strategy<Value = EvidenceEvent> {
    prop::sample::select(vec![
        EvidenceEvent::SubmissionAcceptance,
        EvidenceEvent::SubmissionRejection,
        EvidenceEvent::RelayAcceptance,
        EvidenceEvent::RelayRejection,
        EvidenceEvent::RelayFailure,
        EvidenceEvent::ContentConsignment,
        EvidenceEvent::ConsignmentNotification,
        EvidenceEvent::ConsignmentNotificationFailure,
        EvidenceEvent::ContentHandover,
        EvidenceEvent::PaperFallback,
    ])
}

fn evidence_strategy() -> impl Strategy<Value = EvidenceRecord> {
    (
        id16(),
        event_strategy(),
        proptest::option::of(id16()),
        id16(),
        proptest::array::uniform32(any::<u8>()),
        proptest::option::of(proptest::array::uniform32(any::<u8>())),
        any::<bool>(),
        proptest::array::uniform32(any::<u8>()),
    )
        .prop_map(
            |(evd, event, env, msg, digest, previous, by_rep, env_digest)| {
                let actor = (event == EvidenceEvent::ContentHandover).then(|| {
                    if by_rep {
                        Actor {
                            role: ActorRole::Representative,
                            representative: Some("bsn:111222333".into()),
                            mandate: Some("mandate-7".into()),
                        }
                    } else {
                        Actor {
                            role: ActorRole::Holder,
                            representative: None,
                            mandate: None,
                        }
                    }
                });
                EvidenceRecord {
                    evidence_id: EvidenceId::from_bytes(evd),
                    event,
                    envelope_id: env.map(EnvelopeId::from_bytes),
                    message_id: Some(MessageId::from_bytes(msg)),
                    message_digest: Some(Digest(digest)),
                    envelope_digest: event.is_relay_event().then_some(Digest(env_digest)),
                    issuer: fixtures::relay_id(),
                    issued_at: T0,
                    reason: event.needs_reason().then_some(ReasonCode::Expired),
                    actor,
                    previous: previous.map(Digest),
                }
            },
        )
}

/// Claims of the national provider: it vouches for BSNs only (eIDAS
/// subjects come from foreign eID nodes; see `tests/eidas.rs`).
fn claims_strategy() -> impl Strategy<Value = IdentityClaims> {
    (
        bsn_strategy().prop_map(Recipient::Bsn),
        "[A-Za-z' -]{1,30}",
        prop::sample::select(vec![LevelOfAssurance::Substantial, LevelOfAssurance::High]),
        prop::collection::vec(any::<u8>(), 16..=64),
        1u64..=300,
    )
        .prop_map(|(subject, name, loa, nonce, life)| IdentityClaims {
            issuer: fixtures::NATIONAL_IDP.parse().unwrap(),
            subject,
            family_name: format!("Jansen{name}"),
            given_names: "Anna".into(),
            birth_date: "1956-03-14".into(),
            level_of_assurance: loa,
            audience: fixtures::home_id(),
            nonce,
            issued_at: T0,
            expires_at: T0.plus_s(life),
        })
}

fn policy() -> AssertionPolicy {
    AssertionPolicy {
        audience: fixtures::home_id(),
        min_level: LevelOfAssurance::Substantial,
        now: T0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn message_roundtrip_and_bit_flips(letter in letter_strategy(), bit in any::<prop::sample::Index>()) {
        let trust = fixtures::trust_list();
        let bytes = SignedMessage::sign(&letter, &fixtures::key(fixtures::AGENCY_OIN)).unwrap();
        let verified = SignedMessage::verify(&bytes, &trust).unwrap();
        prop_assert_eq!(&verified.letter, &letter);
        let flipped = flip(&bytes, bit.index(bytes.len() * 8));
        prop_assert!(SignedMessage::verify(&flipped, &trust).is_err());
    }

    #[test]
    fn envelope_roundtrip_and_bit_flips((message, header) in header_strategy(), bit in any::<prop::sample::Index>()) {
        let trust = fixtures::trust_list();
        let home = fixtures::hpke(fixtures::HOME);
        let mut rng = FixedRng::new("proptest");
        let bytes = Envelope::seal(header.clone(), &message, &home.public, &fixtures::key(fixtures::GATEWAY), &mut rng).unwrap();
        let verified = Envelope::verify(&bytes, &trust, T0).unwrap();
        prop_assert_eq!(&verified.content.header, &header);
        prop_assert_eq!(verified.open(&home).unwrap(), message);
        let flipped = flip(&bytes, bit.index(bytes.len() * 8));
        // A flip must fail verification, or (only inside the ciphertext, which
        // the signature also covers) never get past it.
        prop_assert!(Envelope::verify(&flipped, &trust, T0).is_err());
    }

    #[test]
    fn evidence_roundtrip_and_bit_flips(record in evidence_strategy(), bit in any::<prop::sample::Index>()) {
        let trust = fixtures::trust_list();
        let bytes = fixtures::logged_evidence(&record, &fixtures::key(fixtures::RELAY)).unwrap();
        let verified = Evidence::verify(&bytes, &trust).unwrap();
        prop_assert_eq!(&verified.record, &record);
        let flipped = flip(&bytes, bit.index(bytes.len() * 8));
        prop_assert!(Evidence::verify(&flipped, &trust).is_err());
    }

    #[test]
    fn assertion_roundtrip_and_bit_flips(claims in claims_strategy(), bit in any::<prop::sample::Index>()) {
        let trust = fixtures::trust_list();
        let bytes = IdentityAssertion::sign(&claims, &fixtures::key(fixtures::NATIONAL_IDP)).unwrap();
        let verified = IdentityAssertion::verify(&bytes, &trust, &policy()).unwrap();
        prop_assert_eq!(&verified.claims, &claims);
        let flipped = flip(&bytes, bit.index(bytes.len() * 8));
        prop_assert!(IdentityAssertion::verify(&flipped, &trust, &policy()).is_err());
    }

    #[test]
    fn trust_list_roundtrip_and_bit_flips(version in 1u64..1_000_000, test_federation in any::<bool>(), bit in any::<prop::sample::Index>()) {
        let mut content = fixtures::trust_list_content();
        content.version = version;
        content.test_federation = test_federation;
        let root = fixtures::root_key();
        let bytes = TrustList::sign(&content, &root);
        let verified = TrustList::verify(&bytes, &root.verifying_key(), T0).unwrap();
        prop_assert_eq!(verified.content(), &content);
        let flipped = flip(&bytes, bit.index(bytes.len() * 8));
        prop_assert!(TrustList::verify(&flipped, &root.verifying_key(), T0).is_err());
    }

    #[test]
    fn identifiers_roundtrip(bsn in bsn_strategy(), recipient in recipient_strategy(), id in id16()) {
        prop_assert_eq!(bsn.to_string().parse::<Bsn>().unwrap(), bsn);
        prop_assert_eq!(recipient.to_string().parse::<Recipient>().unwrap(), recipient.clone());
        let env = EnvelopeId::from_bytes(id);
        prop_assert_eq!(env.to_string().parse::<EnvelopeId>().unwrap(), env);
        // CBOR and JSON forms too.
        let cbor = estafette_spec::cbor::to_vec(&recipient);
        prop_assert_eq!(estafette_spec::cbor::from_slice::<Recipient>(&cbor, 1024).unwrap(), recipient);
        let json = serde_json::to_string(&env).unwrap();
        prop_assert_eq!(serde_json::from_str::<EnvelopeId>(&json).unwrap(), env);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let trust = fixtures::trust_list();
        let _ = SignedMessage::verify(&bytes, &trust);
        let _ = Envelope::verify(&bytes, &trust, T0);
        let _ = Evidence::verify(&bytes, &trust);
        let _ = IdentityAssertion::verify(&bytes, &trust, &policy());
        let _ = TrustList::verify(&bytes, &fixtures::root_key().verifying_key(), T0);
    }
}

/// Every single bit of one evidence record and one assertion, exhaustively.
#[test]
fn every_bit_flip_of_small_objects_fails() {
    let trust = fixtures::trust_list();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let record = evidence_strategy().new_tree(&mut runner).unwrap().current();
    let bytes = fixtures::logged_evidence(&record, &fixtures::key(fixtures::RELAY)).unwrap();
    for bit in 0..bytes.len() * 8 {
        assert!(
            Evidence::verify(&flip(&bytes, bit), &trust).is_err(),
            "evidence bit {bit} flipped still verifies"
        );
    }
    let claims = claims_strategy().new_tree(&mut runner).unwrap().current();
    let bytes = IdentityAssertion::sign(&claims, &fixtures::key(fixtures::NATIONAL_IDP)).unwrap();
    for bit in 0..bytes.len() * 8 {
        assert!(
            IdentityAssertion::verify(&flip(&bytes, bit), &trust, &policy()).is_err(),
            "assertion bit {bit} flipped still verifies"
        );
    }
}

#[test]
fn wrong_role_and_revoked_keys_are_named() {
    let trust = fixtures::trust_list();
    // A relay node's key sealing a letter: wrong role.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let letter = letter_strategy().new_tree(&mut runner).unwrap().current();
    let bytes = SignedMessage::sign(&letter, &fixtures::key(fixtures::RELAY)).unwrap();
    let err = SignedMessage::verify(&bytes, &trust).unwrap_err();
    assert!(
        matches!(
            err,
            MessageError::Verify(VerifyError::Trust(TrustError::WrongRole { .. }))
        ),
        "{err}"
    );
    // The revoked agency's key.
    let bytes = SignedMessage::sign(&letter, &fixtures::key(fixtures::REVOKED_AGENCY_OIN)).unwrap();
    let err = SignedMessage::verify(&bytes, &trust).unwrap_err();
    assert!(
        matches!(
            err,
            MessageError::Verify(VerifyError::Trust(TrustError::Revoked { .. }))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("key compromise"));
    // Agency 2 signing a letter that claims agency 1 as sender.
    let bytes = SignedMessage::sign(&letter, &fixtures::key(fixtures::AGENCY2_OIN)).unwrap();
    assert!(matches!(
        SignedMessage::verify(&bytes, &trust),
        Err(MessageError::SenderMismatch { .. })
    ));
    // An evidence record claiming another node as issuer.
    let record = evidence_strategy().new_tree(&mut runner).unwrap().current();
    let mut home_log = estafette_spec::memory_log::MemoryLog::new(fixtures::HOME);
    let bytes = Evidence::log(
        &mut home_log,
        &[&record],
        &fixtures::key(fixtures::HOME),
        T0,
    )
    .unwrap()
    .remove(0);
    assert!(matches!(
        Evidence::verify(&bytes, &trust),
        Err(EvidenceError::IssuerMismatch { .. })
    ));
    // A node signing a checkpoint of another node's log.
    let mut relay_log = estafette_spec::memory_log::MemoryLog::new(fixtures::RELAY);
    let bytes = Evidence::log(
        &mut relay_log,
        &[&record],
        &fixtures::key(fixtures::HOME),
        T0,
    )
    .unwrap()
    .remove(0);
    let err = Evidence::verify(&bytes, &trust).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::Receipt(estafette_spec::receipt::ReceiptError::OriginNotSigner { .. })
        ),
        "{err}"
    );
    assert_eq!(err.reason(), ReasonCode::WrongRole);
    // An evidence object offered where an envelope is expected.
    let record_bytes = fixtures::logged_evidence(&record, &fixtures::key(fixtures::RELAY)).unwrap();
    assert!(Envelope::verify(&record_bytes, &trust, T0).is_err());
}

#[test]
fn assertion_policy_refusals() {
    let trust = fixtures::trust_list();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut claims = claims_strategy().new_tree(&mut runner).unwrap().current();
    claims.level_of_assurance = LevelOfAssurance::Substantial;
    claims.expires_at = T0.plus_s(300);
    let sign = |c: &IdentityClaims, k: &str| IdentityAssertion::sign(c, &fixtures::key(k)).unwrap();
    let ok = sign(&claims, fixtures::NATIONAL_IDP);
    // Expired.
    let late = AssertionPolicy {
        now: T0.plus_s(300),
        ..policy()
    };
    assert!(matches!(
        IdentityAssertion::verify(&ok, &trust, &late),
        Err(AssertionError::Expired(_))
    ));
    // Wrong audience.
    let other = AssertionPolicy {
        audience: fixtures::relay_id(),
        ..policy()
    };
    assert!(matches!(
        IdentityAssertion::verify(&ok, &trust, &other),
        Err(AssertionError::WrongAudience { .. })
    ));
    // Level below what the verifier needs.
    let high = AssertionPolicy {
        min_level: LevelOfAssurance::High,
        ..policy()
    };
    assert!(matches!(
        IdentityAssertion::verify(&ok, &trust, &high),
        Err(AssertionError::LevelTooLow { .. })
    ));
    // An eID node claiming more than it may.
    let mut de = claims.clone();
    de.issuer = fixtures::GERMAN_EID.parse().unwrap();
    de.subject = "eidas:DE/NL/DE-1".parse().unwrap();
    de.level_of_assurance = LevelOfAssurance::High;
    let bytes = sign(&de, fixtures::GERMAN_EID);
    assert!(matches!(
        IdentityAssertion::verify(&bytes, &trust, &policy()),
        Err(AssertionError::LevelAboveProvider { .. })
    ));
    // Signed by an untrusted key.
    let bytes = sign(&claims, "not in the trust list");
    assert!(matches!(
        IdentityAssertion::verify(&bytes, &trust, &policy()),
        Err(AssertionError::Verify(VerifyError::Trust(
            TrustError::UnknownKey(_)
        )))
    ));
    // Lifetime over five minutes cannot even be signed.
    claims.expires_at = T0.plus_s(301);
    assert!(matches!(
        IdentityAssertion::sign(&claims, &fixtures::key(fixtures::NATIONAL_IDP)),
        Err(AssertionError::LifetimeTooLong(301))
    ));
}

#[test]
fn envelope_time_and_hop_checks() {
    let trust = fixtures::trust_list();
    let home = fixtures::hpke(fixtures::HOME);
    let mut rng = FixedRng::new("hops");
    let header = header_for(b"x", [1; 16], [2; 16], 2, 3600);
    let bytes = Envelope::seal(
        header.clone(),
        b"x",
        &home.public,
        &fixtures::key(fixtures::GATEWAY),
        &mut rng,
    )
    .unwrap();
    assert!(matches!(
        Envelope::verify(&bytes, &trust, T0.plus_s(3600)),
        Err(EnvelopeError::Expired { .. })
    ));
    assert!(Envelope::check_hops(&header, 1).is_ok());
    assert!(matches!(
        Envelope::check_hops(&header, 2),
        Err(EnvelopeError::HopLimitExceeded {
            hops_taken: 2,
            hop_limit: 2
        })
    ));
    // Only the gateway may sign envelopes.
    let bytes = Envelope::seal(
        header.clone(),
        b"x",
        &home.public,
        &fixtures::key(fixtures::RELAY),
        &mut rng,
    )
    .unwrap();
    assert!(matches!(
        Envelope::verify(&bytes, &trust, T0),
        Err(EnvelopeError::Verify(VerifyError::Trust(
            TrustError::WrongRole { .. }
        )))
    ));
    // The wrong home key cannot open it.
    let bytes = Envelope::seal(
        header,
        b"x",
        &home.public,
        &fixtures::key(fixtures::GATEWAY),
        &mut rng,
    )
    .unwrap();
    let verified = Envelope::verify(&bytes, &trust, T0).unwrap();
    assert!(matches!(
        verified.open(&fixtures::hpke(fixtures::RELAY)),
        Err(EnvelopeError::Open)
    ));
}

#[test]
fn evidence_chain_links() {
    let trust = fixtures::trust_list();
    let base = EvidenceRecord {
        evidence_id: EvidenceId::from_bytes([1; 16]),
        event: EvidenceEvent::RelayAcceptance,
        envelope_id: Some(EnvelopeId::from_bytes([2; 16])),
        message_id: Some(MessageId::from_bytes([3; 16])),
        message_digest: Some(Digest([4; 32])),
        envelope_digest: Some(Digest([6; 32])),
        issuer: fixtures::relay_id(),
        issued_at: T0,
        reason: None,
        actor: None,
        previous: None,
    };
    let first = fixtures::logged_evidence(&base, &fixtures::key(fixtures::RELAY)).unwrap();
    let second_record = EvidenceRecord {
        evidence_id: EvidenceId::from_bytes([5; 16]),
        event: EvidenceEvent::ContentConsignment,
        issuer: fixtures::home_id(),
        previous: Evidence::chain_digest(&first),
        ..base.clone()
    };
    let second = fixtures::logged_evidence(&second_record, &fixtures::key(fixtures::HOME)).unwrap();
    assert_eq!(
        Evidence::verify_chain(&[first.clone(), second.clone()], &trust)
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        Evidence::verify_chain(&[second.clone(), first.clone()], &trust),
        Err(EvidenceError::ChainBroken { index: 0 })
    ));
    // order_chain puts them right whatever order they come in.
    assert_eq!(
        Evidence::order_chain(vec![second.clone(), first.clone()], &trust),
        vec![first.clone(), second.clone()]
    );
    let unlinked = EvidenceRecord {
        previous: Some(Digest([9; 32])),
        ..second_record
    };
    let unlinked = fixtures::logged_evidence(&unlinked, &fixtures::key(fixtures::HOME)).unwrap();
    assert!(matches!(
        Evidence::verify_chain(&[first, unlinked], &trust),
        Err(EvidenceError::ChainBroken { index: 1 })
    ));
    // A negative event without a reason cannot be signed.
    let no_reason = EvidenceRecord {
        event: EvidenceEvent::RelayFailure,
        ..base
    };
    assert!(matches!(
        fixtures::logged_evidence(&no_reason, &fixtures::key(fixtures::RELAY)),
        Err(EvidenceError::MissingReason { .. })
    ));
}

/// A rejection names only what it authenticated: an envelope signed by a
/// key that may not sign envelopes (an agency's, a relay's), or with a bad
/// signature, is rejected without its header's ids, so that nobody can make
/// a node sign a claim about a real message (a signing oracle).
#[test]
fn a_rejection_never_names_an_unauthenticated_header() {
    use estafette_spec::relay::{Offer, Receiver};
    let trust = fixtures::trust_list();
    let home = fixtures::hpke(fixtures::HOME);
    let mut rng = FixedRng::new("oracle");
    let receiver = Receiver {
        trust: &trust,
        me: &fixtures::relay_id(),
    };
    let header = header_for(b"x", [7; 16], [8; 16], 4, 3600);
    let offer_of = |envelope: Vec<u8>| Offer {
        hops_taken: 0,
        previous_evidence: None,
        envelope,
    };
    for (case, signer) in [
        ("signed by an agency", fixtures::key(fixtures::AGENCY_OIN)),
        ("signed by a relay", fixtures::key(fixtures::RELAY)),
    ] {
        let bytes = Envelope::seal(header.clone(), b"x", &home.public, &signer, &mut rng).unwrap();
        let offer = offer_of(bytes);
        let refusal = receiver.check_offer(&offer, T0, None).unwrap_err();
        assert!(refusal.header.is_none(), "{case}: {refusal:?}");
        let record = receiver.evidence(
            EvidenceEvent::RelayRejection,
            refusal.header.as_deref(),
            &offer,
            Some(refusal.reason),
            T0,
            &mut rng,
        );
        assert_eq!(record.message_id, None, "{case}");
        assert_eq!(record.envelope_id, None, "{case}");
        assert_eq!(record.envelope_digest, Some(Digest::of(&offer.envelope)));
        fixtures::logged_evidence(&record, &fixtures::key(fixtures::RELAY)).unwrap();
    }
    // An authentic but expired envelope is named.
    let bytes = Envelope::seal(
        header.clone(),
        b"x",
        &home.public,
        &fixtures::key(fixtures::GATEWAY),
        &mut rng,
    )
    .unwrap();
    let refusal = receiver
        .check_offer(&offer_of(bytes), T0.plus_s(3600), None)
        .unwrap_err();
    assert_eq!(refusal.reason, ReasonCode::Expired);
    assert_eq!(
        refusal.header.map(|h| h.message_id),
        Some(header.message_id)
    );
}
