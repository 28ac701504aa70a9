//! Each named limit of the formats, tested on both sides of its edge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use estafette_spec::assertion::AssertionPolicy;
use estafette_spec::fixtures::{self, FixedRng, T0};
use estafette_spec::limits::*;
use estafette_spec::message::LetterError;
use estafette_spec::*;

fn letter() -> Letter {
    Letter {
        message_id: MessageId::from_bytes([1; 16]),
        sender: fixtures::AGENCY_OIN.parse().unwrap(),
        recipient: "bsn:999999990".parse().unwrap(),
        created_at: T0,
        subject: "s".into(),
        body: "b".into(),
        attachments: vec![],
        nature: Nature::Information,
        legal_effect: false,
        expected_action: "No action needed".into(),
        response_deadline: None,
        language: "en".into(),
        sender_reference: "r".into(),
    }
}

fn too_long(e: LetterError) -> bool {
    matches!(
        e,
        LetterError::Field(FieldError::TooLong { .. } | FieldError::TooMany { .. })
    )
}

#[test]
fn letter_limits() {
    let key = fixtures::key(fixtures::AGENCY_OIN);
    let mut l = letter();
    l.subject = "é".repeat(MAX_SUBJECT_CHARS);
    assert!(SignedMessage::sign(&l, &key).is_ok());
    l.subject.push('x');
    assert!(too_long(SignedMessage::sign(&l, &key).unwrap_err()));

    let mut l = letter();
    let attachment = Attachment {
        name: "a.pdf".into(),
        media_type: "application/pdf".into(),
        content: vec![0; 10],
    };
    l.attachments = vec![attachment.clone(); MAX_ATTACHMENTS];
    assert!(SignedMessage::sign(&l, &key).is_ok());
    l.attachments.push(attachment);
    assert!(too_long(SignedMessage::sign(&l, &key).unwrap_err()));

    let mut l = letter();
    l.body = "a".repeat(MAX_BODY_BYTES);
    assert!(SignedMessage::sign(&l, &key).is_ok());
    l.body.push('a');
    assert!(too_long(SignedMessage::sign(&l, &key).unwrap_err()));

    let mut l = letter();
    l.expected_action = "a".repeat(MAX_SHORT_TEXT_CHARS + 1);
    assert!(too_long(SignedMessage::sign(&l, &key).unwrap_err()));
    let mut l = letter();
    l.response_deadline = Some(T0.minus_s(1));
    assert_eq!(
        SignedMessage::sign(&l, &key).unwrap_err(),
        LetterError::DeadlineBeforeCreation
    );
    let mut l = letter();
    l.attachments = vec![Attachment {
        name: "../etc/passwd".into(),
        media_type: "text/plain".into(),
        content: vec![],
    }];
    assert!(matches!(
        SignedMessage::sign(&l, &key).unwrap_err(),
        LetterError::Field(FieldError::Invalid { .. })
    ));
}

#[test]
fn message_size_edge() {
    // A letter whose COSE bytes exceed MAX_MESSAGE_BYTES by attachments is
    // refused by size before anything is decoded.
    let key = fixtures::key(fixtures::AGENCY_OIN);
    let mut l = letter();
    l.attachments = vec![Attachment {
        name: "big.bin".into(),
        media_type: "application/octet-stream".into(),
        content: vec![0; MAX_MESSAGE_BYTES],
    }];
    let bytes = SignedMessage::sign(&l, &key).unwrap();
    assert!(bytes.len() > MAX_MESSAGE_BYTES);
    let err = SignedMessage::verify(&bytes, &fixtures::trust_list()).unwrap_err();
    assert_eq!(err.reason(), ReasonCode::TooLarge, "{err}");
    // Just under the limit verifies.
    let overhead = bytes.len() - MAX_MESSAGE_BYTES;
    l.attachments[0]
        .content
        .truncate(MAX_MESSAGE_BYTES - overhead - 16);
    let bytes = SignedMessage::sign(&l, &key).unwrap();
    assert!(bytes.len() <= MAX_MESSAGE_BYTES);
    SignedMessage::verify(&bytes, &fixtures::trust_list()).unwrap();
}

#[test]
fn envelope_limits() {
    let home = fixtures::hpke(fixtures::HOME);
    let gateway = fixtures::key(fixtures::GATEWAY);
    let mut rng = FixedRng::new("edges");
    let header = |hop_limit: u8, life: u64| RoutingHeader {
        envelope_id: EnvelopeId::from_bytes([1; 16]),
        home_node: fixtures::home_id(),
        inbox_id: InboxId::from_bytes([2; 16]),
        message_id: MessageId::from_bytes([3; 16]),
        message_digest: Digest::of(b"m"),
        hop_limit,
        created_at: T0,
        expires_at: T0.plus_s(life),
    };
    assert!(
        Envelope::seal(
            header(MAX_HOP_LIMIT, 60),
            b"m",
            &home.public,
            &gateway,
            &mut rng
        )
        .is_ok()
    );
    assert!(matches!(
        Envelope::seal(
            header(MAX_HOP_LIMIT + 1, 60),
            b"m",
            &home.public,
            &gateway,
            &mut rng
        ),
        Err(EnvelopeError::HopLimitOutOfRange(17))
    ));
    assert!(matches!(
        Envelope::seal(header(0, 60), b"m", &home.public, &gateway, &mut rng),
        Err(EnvelopeError::HopLimitOutOfRange(0))
    ));
    assert!(
        Envelope::seal(
            header(1, MAX_ENVELOPE_LIFETIME_S),
            b"m",
            &home.public,
            &gateway,
            &mut rng
        )
        .is_ok()
    );
    assert!(matches!(
        Envelope::seal(
            header(1, MAX_ENVELOPE_LIFETIME_S + 1),
            b"m",
            &home.public,
            &gateway,
            &mut rng
        ),
        Err(EnvelopeError::LifetimeTooLong { .. })
    ));
    assert!(matches!(
        Envelope::seal(header(1, 0), b"m", &home.public, &gateway, &mut rng),
        Err(EnvelopeError::ExpiresBeforeCreation { .. })
    ));
    let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        Envelope::seal(header(1, 60), &big, &home.public, &gateway, &mut rng),
        Err(EnvelopeError::MessageTooLarge { .. })
    ));
    // Created in the future beyond the tolerated skew.
    let bytes = Envelope::seal(header(1, 600), b"m", &home.public, &gateway, &mut rng).unwrap();
    let trust = fixtures::trust_list();
    assert!(Envelope::verify(&bytes, &trust, T0.minus_s(MAX_CLOCK_SKEW_S)).is_ok());
    assert!(matches!(
        Envelope::verify(&bytes, &trust, T0.minus_s(MAX_CLOCK_SKEW_S + 1)),
        Err(EnvelopeError::NotYetValid { .. })
    ));
}

#[test]
fn assertion_limits() {
    let key = fixtures::key(fixtures::NATIONAL_IDP);
    let claims = |nonce: usize, life: u64| IdentityClaims {
        issuer: fixtures::NATIONAL_IDP.parse().unwrap(),
        subject: "bsn:999999990".parse().unwrap(),
        family_name: "Jansen".into(),
        given_names: "Anna".into(),
        birth_date: "1956-03-14".into(),
        level_of_assurance: LevelOfAssurance::Substantial,
        audience: fixtures::home_id(),
        nonce: vec![7; nonce],
        issued_at: T0,
        expires_at: T0.plus_s(life),
    };
    assert!(IdentityAssertion::sign(&claims(MIN_NONCE_BYTES, 60), &key).is_ok());
    assert!(matches!(
        IdentityAssertion::sign(&claims(MIN_NONCE_BYTES - 1, 60), &key),
        Err(AssertionError::Nonce(15))
    ));
    assert!(IdentityAssertion::sign(&claims(MAX_NONCE_BYTES, 60), &key).is_ok());
    assert!(matches!(
        IdentityAssertion::sign(&claims(MAX_NONCE_BYTES + 1, 60), &key),
        Err(AssertionError::Nonce(65))
    ));
    assert!(IdentityAssertion::sign(&claims(16, MAX_ASSERTION_LIFETIME_S), &key).is_ok());
    assert!(matches!(
        IdentityAssertion::sign(&claims(16, MAX_ASSERTION_LIFETIME_S + 1), &key),
        Err(AssertionError::LifetimeTooLong(_))
    ));
    // Valid until the last second before it expires.
    let bytes = IdentityAssertion::sign(&claims(16, 60), &key).unwrap();
    let policy = |now| AssertionPolicy {
        audience: fixtures::home_id(),
        min_level: LevelOfAssurance::Substantial,
        now,
    };
    let trust = fixtures::trust_list();
    assert!(IdentityAssertion::verify(&bytes, &trust, &policy(T0.plus_s(59))).is_ok());
    assert!(matches!(
        IdentityAssertion::verify(&bytes, &trust, &policy(T0.plus_s(60))),
        Err(AssertionError::Expired(_))
    ));
}

#[test]
fn trust_list_rules() {
    let root = fixtures::root_key();
    let content = fixtures::trust_list_content();
    // Stale after next_update.
    let bytes = TrustList::sign(&content, &root);
    assert!(TrustList::verify(&bytes, &root.verifying_key(), content.next_update).is_ok());
    assert!(matches!(
        TrustList::verify(&bytes, &root.verifying_key(), content.next_update.plus_s(1)),
        Err(TrustListError::Stale { .. })
    ));
    // Never back to an older version.
    let known = TrustList::verify(&bytes, &root.verifying_key(), T0).unwrap();
    let mut older = content.clone();
    older.version = 0;
    let older = TrustList::sign(&older, &root);
    assert!(matches!(
        TrustList::verify_update(&older, &root.verifying_key(), T0, &known),
        Err(TrustListError::Rollback {
            offered: 0,
            known: 1
        })
    ));
    assert!(TrustList::verify_update(&bytes, &root.verifying_key(), T0, &known).is_ok());
    // Signed by another key.
    let bytes = TrustList::sign(&content, &fixtures::key("not the root"));
    assert!(matches!(
        TrustList::verify(&bytes, &root.verifying_key(), T0),
        Err(TrustListError::NotSignedByRoot)
    ));
    // Test OIN outside a test federation.
    let mut c = content.clone();
    c.test_federation = false;
    c.agencies[0].oin = "00000099000000000001".parse().unwrap();
    assert!(matches!(
        TrustList::new(c),
        Err(TrustListError::Agency { .. })
    ));
    // A key used twice.
    let mut c = content.clone();
    c.agencies[1].seal_key = c.agencies[0].seal_key;
    assert!(matches!(
        TrustList::new(c),
        Err(TrustListError::Duplicate(_))
    ));
    // A node at several addresses (the gateway's instances): up to
    // MAX_NODE_ADDRESSES, tried in order; none more, and an entry without
    // them encodes as before (the field is absent).
    let mut c = content.clone();
    let gateway = c.gateway.as_mut().unwrap();
    let others: Vec<String> = (2..=limits::MAX_NODE_ADDRESSES)
        .map(|i| format!("gateway-{i}.example:4430"))
        .collect();
    gateway.other_addresses = others.clone();
    let trust = TrustList::new(c.clone()).unwrap();
    let addresses: Vec<&str> = trust.gateway().unwrap().addresses().collect();
    assert_eq!(addresses.len(), limits::MAX_NODE_ADDRESSES);
    assert_eq!(addresses[1], others[0]);
    let signed = TrustList::sign(&c, &root);
    let read = TrustList::verify(&signed, &root.verifying_key(), T0).unwrap();
    assert_eq!(read.gateway().unwrap().other_addresses, others);
    c.gateway
        .as_mut()
        .unwrap()
        .other_addresses
        .push("one-too-many.example:4430".into());
    assert!(TrustList::new(c).is_err(), "more than MAX_NODE_ADDRESSES");
    let plain = estafette_spec::cbor::to_vec(&content.gateway);
    assert!(
        !plain.windows(15).any(|w| w == b"other_addresses"),
        "absent when empty"
    );
    // A route to a node that is not a home node.
    let mut c = content.clone();
    c.nodes[0].routes = vec![Route {
        destination: fixtures::gateway_id(),
        via: fixtures::home_id(),
    }];
    assert!(matches!(
        TrustList::new(c),
        Err(TrustListError::BadRoute { .. })
    ));
    // A route via a node that does not relay.
    let mut c = content.clone();
    c.nodes[0].routes = vec![Route {
        destination: fixtures::home_id(),
        via: fixtures::home_id(),
    }];
    assert!(matches!(
        TrustList::new(c),
        Err(TrustListError::BadRoute { .. })
    ));
    // Routing: gateway → relay (the gateway's route) → home (no route: direct).
    let trust = fixtures::trust_list();
    assert_eq!(
        trust
            .next_hop(&fixtures::gateway_id(), &fixtures::home_id())
            .unwrap()
            .id,
        fixtures::relay_id()
    );
    assert_eq!(
        trust
            .next_hop(&fixtures::relay_id(), &fixtures::home_id())
            .unwrap()
            .id,
        fixtures::home_id()
    );
    assert!(
        trust
            .next_hop(&fixtures::gateway_id(), &fixtures::relay_id())
            .is_none()
    );
}
