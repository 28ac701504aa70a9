//! PID presentations as identity proofs (`SPEC.md` §8.3): a German PID of
//! the fixtures' PID provider, presented to the fixtures' home node, and
//! every way one is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use estafette_spec::assertion::{AssertionError, AssertionPolicy, PidProof};
use estafette_spec::fixtures::{self, T0, TestPid};
use estafette_spec::pid::{PidError, StatusError, pid_subject};
use estafette_spec::sd_jwt::SdJwtError;
use estafette_spec::trust::LevelOfAssurance;
use estafette_spec::{IdentityProof, ReasonCode, VerifiedAssertion};
use proptest::prelude::*;
use serde_json::json;

const NONCE: &str = "wallet-request-nonce-0123";
const NUMBER: &str = "DE-PAN-4711-0815";
const STATUS_URI: &str = "https://pid.de.test/status/1";

fn policy() -> AssertionPolicy {
    AssertionPolicy {
        audience: fixtures::home_id(),
        min_level: LevelOfAssurance::Substantial,
        now: T0,
    }
}

fn verify(
    presentation: String,
    status_list: Option<String>,
) -> Result<VerifiedAssertion, AssertionError> {
    IdentityProof::Pid(PidProof {
        presentation,
        status_list,
    })
    .verify(&fixtures::trust_list(), &policy())
}

fn jonas() -> TestPid {
    TestPid::german(NUMBER, "jonas-phone", T0)
}

#[test]
fn a_german_pid_logs_jonas_in_without_a_bsn() {
    let verified = verify(jonas().present(NONCE, T0.minus_s(5)), None).unwrap();
    let claims = &verified.claims;
    assert_eq!(claims.issuer, fixtures::GERMAN_PID.parse().unwrap());
    let subject = claims.subject.to_string();
    assert!(
        subject.starts_with("eidas:DE/NL/PID-"),
        "an eIDAS identifier of Germany for use here, never a BSN: {subject}"
    );
    assert!(
        !subject.contains(NUMBER),
        "the administrative number itself is not the identifier"
    );
    assert_eq!(
        (claims.family_name.as_str(), claims.given_names.as_str()),
        ("Müller", "Jonas")
    );
    assert_eq!(claims.birth_date, "1985-07-14");
    assert_eq!(
        claims.level_of_assurance,
        LevelOfAssurance::High,
        "the trust list's highest level for the provider"
    );
    assert_eq!(claims.nonce, NONCE.as_bytes(), "the request it answers");
    assert_eq!(verified.authenticated_at, T0.minus_s(5));
}

#[test]
fn the_trust_list_caps_the_level_of_a_pid() {
    let mut content = fixtures::trust_list_content();
    let de = content
        .identity_providers
        .iter_mut()
        .find(|p| p.pid.is_some())
        .unwrap();
    de.max_loa = LevelOfAssurance::Substantial;
    let trust = estafette_spec::trust::TrustList::new(content).unwrap();
    let proof = IdentityProof::Pid(PidProof {
        presentation: jonas().present(NONCE, T0),
        status_list: None,
    });
    let verified = proof.verify(&trust, &policy()).unwrap();
    assert_eq!(
        verified.claims.level_of_assurance,
        LevelOfAssurance::Substantial
    );
    let high = AssertionPolicy {
        min_level: LevelOfAssurance::High,
        ..policy()
    };
    assert!(matches!(
        proof.verify(&trust, &high),
        Err(AssertionError::LevelTooLow { .. })
    ));
}

/// What a refusal must be.
type Expect = fn(&AssertionError) -> bool;

fn sd(e: &AssertionError) -> Option<&SdJwtError> {
    match e {
        AssertionError::Pid(PidError::SdJwt(e)) => Some(e),
        _ => None,
    }
}

#[test]
fn every_refusal_names_its_cause() {
    let pid = jonas();
    let all = pid.disclosures();
    let aud = fixtures::home_client_id();
    let stranger = fixtures::key("stranger");
    let mut tampered = all.clone();
    tampered[1] = TestPid {
        claims: vec![("salt-1-x".into(), "given_name".into(), json!("Johanna"))],
        ..pid.clone()
    }
    .disclosures()
    .remove(0);
    let mut extra = all.clone();
    extra.push(
        TestPid {
            claims: vec![("salt-9".into(), "nationalities".into(), json!(["NL"]))],
            ..pid.clone()
        }
        .disclosures()
        .remove(0),
    );
    let with = |change: &dyn Fn(&mut TestPid)| {
        let mut p = jonas();
        change(&mut p);
        p.present(NONCE, T0)
    };
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "wrong aud",
            pid.present_with(
                &all,
                Some(&pid.holder),
                "x509_hash:another-verifier",
                NONCE,
                T0,
            ),
            |e| matches!(sd(e), Some(SdJwtError::KeyBinding { claim: "aud", .. })),
        ),
        (
            "no key binding",
            pid.present_with(&all, None, &aud, NONCE, T0),
            |e| sd(e) == Some(&SdJwtError::NoKeyBinding),
        ),
        (
            "a key binding by another key",
            pid.present_with(&all, Some(&stranger), &aud, NONCE, T0),
            |e| sd(e) == Some(&SdJwtError::KeyBindingSignature),
        ),
        (
            "an old key binding",
            pid.present_with(&all, Some(&pid.holder), &aud, NONCE, T0.minus_s(600)),
            |e| matches!(sd(e), Some(SdJwtError::KeyBinding { claim: "iat", .. })),
        ),
        (
            "a tampered disclosure",
            pid.present_with(&tampered, Some(&pid.holder), &aud, NONCE, T0),
            |e| matches!(sd(e), Some(SdJwtError::UnmatchedDisclosure { index: 1 })),
        ),
        (
            "an extra disclosure",
            pid.present_with(&extra, Some(&pid.holder), &aud, NONCE, T0),
            |e| matches!(sd(e), Some(SdJwtError::UnmatchedDisclosure { .. })),
        ),
        (
            "an issuer not in the trust list",
            with(&|p| p.payload["iss"] = "https://pid.fr.test".into()),
            |e| matches!(e, AssertionError::Pid(PidError::UnknownIssuer(_))),
        ),
        (
            "the right issuer, signed with a key it does not have",
            with(&|p| p.issuer_key = fixtures::key("stranger")),
            |e| sd(e) == Some(&SdJwtError::IssuerSignature),
        ),
        (
            "a German PID provider issuing for France",
            with(&|p| p.claims[3].2 = json!("FR")),
            |e| matches!(e, AssertionError::CountryMismatch { .. }),
        ),
        (
            "expired",
            with(&|p| p.payload["exp"] = (T0.0 - 1).into()),
            |e| matches!(sd(e), Some(SdJwtError::Expired(_))),
        ),
        (
            "not yet valid",
            with(&|p| p.payload["nbf"] = (T0.0 + 3600).into()),
            |e| matches!(sd(e), Some(SdJwtError::NotYetValid(_))),
        ),
        (
            "not a PID",
            with(&|p| p.payload["vct"] = "urn:eudi:ehic:1".into()),
            |e| matches!(e, AssertionError::Pid(PidError::NotAPid(_))),
        ),
        (
            "no personal administrative number",
            pid.present_with(&all[..4], Some(&pid.holder), &aud, NONCE, T0),
            |e| matches!(e, AssertionError::Pid(PidError::NoPersonIdentifier)),
        ),
        (
            "the names not disclosed",
            pid.present_with(&all[2..], Some(&pid.holder), &aud, NONCE, T0),
            |e| {
                matches!(
                    e,
                    AssertionError::Pid(PidError::Claim {
                        claim: "family_name",
                        ..
                    })
                )
            },
        ),
    ];
    for (case, presentation, expected) in cases {
        let e = verify(presentation, None).expect_err(case);
        assert!(expected(&e), "{case}: {e:?}");
        assert!(!e.to_string().is_empty(), "{case}");
    }
}

#[test]
fn a_pid_is_for_a_home_node_only() {
    let gateway = AssertionPolicy {
        audience: fixtures::gateway_id(),
        ..policy()
    };
    let e = IdentityProof::Pid(PidProof {
        presentation: jonas().present(NONCE, T0),
        status_list: None,
    })
    .verify(&fixtures::trust_list(), &gateway)
    .unwrap_err();
    assert!(
        matches!(e, AssertionError::Pid(PidError::NoClient(_))),
        "{e:?}"
    );
}

fn with_status(index: u64) -> TestPid {
    let mut pid = jonas();
    pid.payload["status"] = json!({"status_list": {"idx": index, "uri": STATUS_URI}});
    pid
}

#[test]
fn the_status_list_decides_revocation() {
    // Entry 0 valid, 1 revoked, 2 suspended, 3 an unknown status.
    let list = |bits| fixtures::status_list_token(STATUS_URI, bits, &[0, 1, 2, 3], T0.minus_s(60));
    for bits in [2, 4, 8] {
        verify(with_status(0).present(NONCE, T0), Some(list(bits))).unwrap();
        let status = |index| match verify(with_status(index).present(NONCE, T0), Some(list(bits))) {
            Err(AssertionError::Pid(PidError::Status(e))) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(1), StatusError::Revoked, "{bits} bits");
        assert_eq!(status(2), StatusError::Suspended);
        assert_eq!(status(3), StatusError::NotValid(3));
        assert!(matches!(
            status(99),
            StatusError::OutOfRange { index: 99, .. }
        ));
    }
    let one_bit = fixtures::status_list_token(STATUS_URI, 1, &[0, 1], T0.minus_s(60));
    verify(with_status(0).present(NONCE, T0), Some(one_bit.clone())).unwrap();
    let revoked = verify(with_status(1).present(NONCE, T0), Some(one_bit)).unwrap_err();
    assert_eq!(revoked.reason(), ReasonCode::Revoked);
    assert!(revoked.to_string().contains("revoked"), "{revoked}");
}

#[test]
fn a_status_list_must_be_the_providers_own_fresh_list() {
    let pid = with_status(0);
    let presentation = pid.present(NONCE, T0);
    let check = |token: Option<String>| match verify(presentation.clone(), token) {
        Err(AssertionError::Pid(PidError::Status(e))) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(check(None), StatusError::Missing);
    let other_list = fixtures::status_list_token("https://pid.de.test/status/2", 1, &[0], T0);
    assert!(matches!(
        check(Some(other_list)),
        StatusError::WrongList { .. }
    ));
    let stale = fixtures::status_list_token(STATUS_URI, 1, &[0], T0.minus_s(2 * 86_400));
    assert!(matches!(
        check(Some(stale)),
        StatusError::Stale(_) | StatusError::Expired(_)
    ));
    let valid = fixtures::status_list_token(STATUS_URI, 1, &[0], T0);
    let forged = {
        let (header_payload, _) = valid.rsplit_once('.').unwrap();
        let stranger = fixtures::sign_typed_jws(
            &json!({}),
            &fixtures::key("stranger"),
            None,
            "statuslist+jwt",
        );
        format!("{header_payload}.{}", stranger.rsplit_once('.').unwrap().1)
    };
    assert_eq!(check(Some(forged)), StatusError::Signature);
    assert_eq!(
        check(Some("x".repeat(
            estafette_spec::limits::MAX_STATUS_LIST_TOKEN_BYTES + 1
        ))),
        StatusError::TooLarge(estafette_spec::limits::MAX_STATUS_LIST_TOKEN_BYTES + 1)
    );
    // A list that decompresses beyond the limit is refused, not inflated.
    let entries = estafette_spec::limits::MAX_STATUS_LIST_BYTES * 8 + 8;
    let bomb = fixtures::status_list_token(STATUS_URI, 1, &vec![0; entries], T0);
    assert!(matches!(check(Some(bomb)), StatusError::Token(_)));
}

#[test]
fn the_same_pid_reissued_to_a_new_phone_gives_the_same_person() {
    let first = verify(jonas().present(NONCE, T0), None).unwrap();
    let new_phone = TestPid::german(NUMBER, "jonas-new-phone", T0);
    let second = verify(new_phone.present("another-request-nonce-42", T0), None).unwrap();
    assert_eq!(first.claims.subject, second.claims.subject);
    assert_ne!(first.digest, second.digest);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same number gives the same identifier at every login; two
    /// different numbers never share one, and neither do two providers or
    /// two countries with the same number.
    #[test]
    fn identifiers_are_stable_and_never_shared(
        a in "[A-Za-z0-9 ./-]{1,40}",
        b in "[A-Za-z0-9 ./-]{1,40}",
    ) {
        let de: estafette_spec::ids::CountryCode = "DE".parse().unwrap();
        let fr: estafette_spec::ids::CountryCode = "FR".parse().unwrap();
        let provider = fixtures::GERMAN_PID.parse().unwrap();
        let other = "pid2.de.test".parse().unwrap();
        let id_a = pid_subject(&provider, de, &a).unwrap();
        prop_assert_eq!(&id_a, &pid_subject(&provider, de, &a).unwrap());
        prop_assert_eq!(a == b, id_a == pid_subject(&provider, de, &b).unwrap());
        prop_assert_ne!(&id_a, &pid_subject(&other, de, &a).unwrap());
        prop_assert_ne!(&id_a, &pid_subject(&provider, fr, &a).unwrap());
    }

    /// Whole presentations: two people's PIDs never open the same inbox.
    #[test]
    fn two_pids_never_share_an_inbox(a in "[A-Z0-9]{4,20}", b in "[A-Z0-9]{4,20}") {
        let one = verify(TestPid::german(&a, "a", T0).present(NONCE, T0), None).unwrap();
        let two = verify(TestPid::german(&b, "b", T0).present(NONCE, T0), None).unwrap();
        prop_assert_eq!(a == b, one.claims.subject == two.claims.subject);
    }
}
