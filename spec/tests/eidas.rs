//! People abroad: eIDAS-style identity assertions from foreign eID nodes.
//! Each refusal names its fault; the person identifier stays opaque.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use estafette_spec::assertion::{AssertionError, AssertionPolicy};
use estafette_spec::fixtures::{self, T0};
use estafette_spec::ids::{EidasIdError, RecipientError};
use estafette_spec::*;

fn claims(issuer: &str, subject: &str) -> IdentityClaims {
    IdentityClaims {
        issuer: issuer.parse().unwrap(),
        subject: subject.parse().unwrap(),
        family_name: "Müller".into(),
        given_names: "Jonas".into(),
        birth_date: "1984-07-02".into(),
        level_of_assurance: LevelOfAssurance::Substantial,
        audience: fixtures::home_id(),
        nonce: vec![9; 16],
        issued_at: T0.minus_s(10),
        expires_at: T0.plus_s(290),
    }
}

fn policy() -> AssertionPolicy {
    AssertionPolicy {
        audience: fixtures::home_id(),
        min_level: LevelOfAssurance::Substantial,
        now: T0,
    }
}

fn verify(claims: &IdentityClaims, key: &str) -> Result<VerifiedAssertion, AssertionError> {
    let bytes = IdentityAssertion::sign(claims, &fixtures::key(key)).unwrap();
    IdentityAssertion::verify(&bytes, &fixtures::trust_list(), &policy())
}

const DE_PERSON: &str = "eidas:DE/NL/DE-4711-0815";

#[test]
fn a_german_eid_node_vouches_for_a_german_person_for_use_here() {
    let ok = verify(
        &claims(fixtures::GERMAN_EID, DE_PERSON),
        fixtures::GERMAN_EID,
    )
    .unwrap();
    assert_eq!(ok.claims.subject.to_string(), DE_PERSON);
}

#[test]
fn level_low_is_refused() {
    let mut low = claims(fixtures::GERMAN_EID, DE_PERSON);
    low.level_of_assurance = LevelOfAssurance::Low;
    let e = verify(&low, fixtures::GERMAN_EID).unwrap_err();
    assert!(matches!(e, AssertionError::LevelTooLow { .. }), "{e}");
    assert_eq!(e.reason(), ReasonCode::AssuranceTooLow);
    // Above what the node may assert (the German node: substantial at most).
    let mut high = claims(fixtures::GERMAN_EID, DE_PERSON);
    high.level_of_assurance = LevelOfAssurance::High;
    let e = verify(&high, fixtures::GERMAN_EID).unwrap_err();
    assert!(
        matches!(e, AssertionError::LevelAboveProvider { .. }),
        "{e}"
    );
}

#[test]
fn an_eid_node_not_in_the_trust_list_is_refused() {
    let c = claims("eid.fr.test", "eidas:FR/NL/FR-1");
    let e = verify(&c, "eid.fr.test").unwrap_err();
    assert_eq!(e.reason(), ReasonCode::UnknownSigner, "{e}");
}

#[test]
fn an_identifier_of_another_country_than_its_issuer_is_refused() {
    let e = verify(
        &claims(fixtures::GERMAN_EID, "eidas:FR/NL/FR-1234"),
        fixtures::GERMAN_EID,
    )
    .unwrap_err();
    assert_eq!(e.reason(), ReasonCode::CountryMismatch);
    assert!(e.to_string().contains("issued by FR"), "{e}");
    // Issued for use in Belgium, not here.
    let e = verify(
        &claims(fixtures::GERMAN_EID, "eidas:DE/BE/DE-4711"),
        fixtures::GERMAN_EID,
    )
    .unwrap_err();
    assert!(matches!(e, AssertionError::WrongDestination { .. }), "{e}");
    // A foreign node cannot assert a BSN; the national provider can.
    let e = verify(
        &claims(fixtures::GERMAN_EID, "bsn:999999990"),
        fixtures::GERMAN_EID,
    )
    .unwrap_err();
    assert!(matches!(e, AssertionError::ForeignBsn { .. }), "{e}");
    assert!(
        verify(
            &claims(fixtures::NATIONAL_IDP, "bsn:999999990"),
            fixtures::NATIONAL_IDP
        )
        .is_ok()
    );
    // And the national provider cannot vouch for a German identifier.
    let e = verify(
        &claims(fixtures::NATIONAL_IDP, DE_PERSON),
        fixtures::NATIONAL_IDP,
    )
    .unwrap_err();
    assert_eq!(e.reason(), ReasonCode::CountryMismatch);
}

#[test]
fn expired_and_other_audiences_are_refused() {
    let mut old = claims(fixtures::GERMAN_EID, DE_PERSON);
    old.issued_at = T0.minus_s(400);
    old.expires_at = T0.minus_s(100);
    assert_eq!(
        verify(&old, fixtures::GERMAN_EID).unwrap_err().reason(),
        ReasonCode::Expired
    );
    let mut elsewhere = claims(fixtures::GERMAN_EID, DE_PERSON);
    elsewhere.audience = fixtures::gateway_id();
    assert_eq!(
        verify(&elsewhere, fixtures::GERMAN_EID)
            .unwrap_err()
            .reason(),
        ReasonCode::WrongAudience
    );
}

#[test]
fn names_and_birth_date_are_required() {
    let mut nameless = claims(fixtures::GERMAN_EID, DE_PERSON);
    nameless.family_name = String::new();
    assert!(IdentityAssertion::sign(&nameless, &fixtures::key(fixtures::GERMAN_EID)).is_err());
    let mut undated = claims(fixtures::GERMAN_EID, DE_PERSON);
    undated.birth_date = "1984-02-30".into();
    let e = IdentityAssertion::sign(&undated, &fixtures::key(fixtures::GERMAN_EID)).unwrap_err();
    assert!(e.to_string().contains("birth date"), "{e}");
}

#[test]
fn malformed_identifiers_are_refused_naming_the_fault() {
    type Check = fn(&RecipientError) -> bool;
    let cases: [(&str, Check); 6] = [
        ("eidas:DE/NL", |e| {
            matches!(e, RecipientError::Eidas(EidasIdError::Shape))
        }),
        ("eidas:XX/NL/1", |e| {
            matches!(e, RecipientError::Eidas(EidasIdError::IssuingCountry(_)))
        }),
        ("eidas:DE/nl/1", |e| {
            matches!(
                e,
                RecipientError::Eidas(EidasIdError::DestinationCountry(_))
            )
        }),
        ("eidas:DE/NL/", |e| {
            matches!(e, RecipientError::Eidas(EidasIdError::EmptyIdentifier))
        }),
        ("eidas:DE/NL/a b", |e| {
            matches!(
                e,
                RecipientError::Eidas(EidasIdError::NotPrintable { position: 2 })
            )
        }),
        ("passport:123", |e| {
            matches!(e, RecipientError::UnknownScheme)
        }),
    ];
    for (text, expected) in cases {
        let e = text.parse::<Recipient>().unwrap_err();
        assert!(expected(&e), "{text}: {e}");
        // The message names the fault, not the identifier.
        assert!(!e.to_string().contains("a b"), "{e}");
    }
    let long = format!("eidas:DE/NL/{}", "x".repeat(257));
    assert!(matches!(
        long.parse::<Recipient>().unwrap_err(),
        RecipientError::Eidas(EidasIdError::IdentifierTooLong(257))
    ));
    // Opaque: any printable identifier of the right countries is taken as is.
    let odd: Recipient = "eidas:DE/NL/+49//weird==".parse().unwrap();
    assert_eq!(odd.to_string(), "eidas:DE/NL/+49//weird==");
}
