//! Representatives act strictly within their mandate, and the holder sees
//! every access: voluntary mandates (granted, accepted, revoked, expired),
//! a court-appointed financial administrator, the suspension of voluntary
//! mandates inside a legal representation's scope, and correspondence
//! (notifications, paper) going to the administrator's office.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use estafette_gateway::gateway::Clock;
use estafette_pki::keys;
use estafette_relay::home::client::{CitizenClient, CitizenClientError};
use estafette_relay::testkit::NATIONAL_IDP;
use estafette_spec::citizen::{MandateGrant, PostalAddress};
use estafette_spec::mandate::{
    Attestation, AttestationContent, LegalKind, Representative, Rights, SenderScope,
};
use estafette_spec::*;

const ANNA: &str = "bsn:999999990";
const PIET: &str = "bsn:123456782";
const BOB: &str = "bsn:111222333";
/// A pension fund (financial) and a care office (care); the test agency has no sector.
const PENSION: &str = "00000001823288444000";
const CARE: &str = "00000003273318220000";
const OTHER: &str = "00000001003214345000";
const COURT: &str = "court.test";

fn code(e: CitizenClientError) -> String {
    e.code().unwrap_or("none").to_owned()
}

async fn start() -> World {
    World::start_with(|fed| {
        fed.issue_agency(
            &PENSION.parse().unwrap(),
            "Pensioenfonds",
            vec![Sector::Financial],
        )
        .unwrap();
        fed.issue_agency(&CARE.parse().unwrap(), "Zorgkantoor", vec![Sector::Care])
            .unwrap();
        fed.issue_court_registry(&COURT.parse().unwrap()).unwrap();
    })
    .await
}

async fn login(w: &World, who: &str) -> CitizenClient {
    let mut c = w.citizen();
    c.login(&w.assertion_by(
        NATIONAL_IDP,
        who,
        "home.test",
        LevelOfAssurance::Substantial,
    ))
    .await
    .unwrap();
    c
}

/// Registers with a verified e-mail address; `senders` get digital mail.
async fn digital(w: &World, c: &CitizenClient, email: &str, senders: &[&str]) {
    w.go_digital(c, "nl", None, email, senders).await;
}

fn piet() -> Representative {
    Representative {
        person: PIET.parse().unwrap(),
        name: "Piet de Vries".into(),
        organisation: None,
    }
}

fn grant(scope: SenderScope, valid_until: Option<Timestamp>) -> MandateGrant {
    MandateGrant {
        representative: piet(),
        scope,
        rights: Rights {
            read: true,
            manage: false,
        },
        valid_from: None,
        valid_until,
        correspondence: false,
        office_address: None,
    }
}

/// Sends a letter and waits until it is in the inbox; gives its envelope id.
async fn deliver(w: &World, from: &str, to: &str) -> (MessageId, String) {
    let (m, channel) = w.send_from(from, to, None).await;
    assert_eq!(channel, "digital");
    w.wait_for_event(&m, EvidenceEvent::ContentConsignment)
        .await;
    let envelope = w
        .records(&m)
        .iter()
        .find_map(|r| r.envelope_id)
        .unwrap()
        .to_string();
    (m, envelope)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voluntary_mandates_scope_revocation_expiry_and_the_access_log() {
    let w = start().await;
    let anna = login(&w, ANNA).await;
    digital(&w, &anna, "anna@example.nl", &[PENSION, OTHER, CARE]).await;
    let rep = login(&w, PIET).await;

    // Granted for the pension fund only; nothing until Piet accepts.
    let id = anna
        .grant_mandate(&grant(
            SenderScope::Senders(vec![PENSION.parse().unwrap()]),
            None,
        ))
        .await
        .unwrap();
    assert!(rep.clients().await.unwrap().is_empty(), "not accepted yet");
    assert_eq!(
        code(anna.accept_mandate(&id).await.unwrap_err()),
        "wrong_role"
    );
    rep.accept_mandate(&id).await.unwrap();
    let clients = rep.clients().await.unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].client.to_string(), ANNA);

    let (pension, pension_env) = deliver(&w, PENSION, ANNA).await;
    let (_, other_env) = deliver(&w, OTHER, ANNA).await;
    // Outside the scope the letter is invisible to the representative.
    let visible = rep.client_letters(&id).await.unwrap();
    assert_eq!(visible.len(), 1, "{visible:?}");
    assert_eq!(visible[0].message_id, pension);
    assert_eq!(
        code(rep.open_client_letter(&id, &other_env).await.unwrap_err()),
        "no-such-letter"
    );
    // Inside it: opened twice, each time evidence naming Piet.
    for _ in 0..2 {
        let opened = rep.open_client_letter(&id, &pension_env).await.unwrap();
        assert!(opened.body.contains("Inhoud"));
    }
    wait_until_handovers(&w, &pension, 2).await;
    let handover = w
        .records(&pension)
        .into_iter()
        .find(|r| r.event == EvidenceEvent::ContentHandover)
        .unwrap();
    let actor = handover.actor.unwrap();
    assert_eq!(actor.role, ActorRole::Representative);
    assert_eq!(actor.representative.as_deref(), Some("Piet de Vries"));
    assert_eq!(actor.mandate.as_deref(), Some(id.to_string().as_str()));
    // Anna sees every access, with who and under which mandate.
    let log = anna.access_log().await.unwrap();
    let by_rep: Vec<_> = log
        .iter()
        .filter(|e| e.actor.role == ActorRole::Representative)
        .collect();
    println!(
        "representative accesses: 2 made, {} in the holder's access log",
        by_rep.len()
    );
    assert_eq!(by_rep.len(), 2);
    assert!(
        by_rep.iter().all(|e| e.message_id == pension
            && e.actor.mandate.as_deref() == Some(id.to_string().as_str()))
    );

    // Read only: Piet cannot change Anna's choices.
    assert_eq!(
        code(
            rep.set_client_consent(&id, PENSION, false)
                .await
                .unwrap_err()
        ),
        "no_mandate"
    );
    // Revoked: access stops at once.
    anna.revoke_mandate(&id).await.unwrap();
    assert_eq!(
        code(rep.open_client_letter(&id, &pension_env).await.unwrap_err()),
        "no_mandate"
    );
    assert!(rep.clients().await.unwrap().is_empty());

    // A mandate that ends by itself: access stops at its end date.
    let until = w.clock.now().plus_s(3 * DAY);
    let id2 = anna
        .grant_mandate(&grant(SenderScope::All, Some(until)))
        .await
        .unwrap();
    rep.accept_mandate(&id2).await.unwrap();
    rep.open_client_letter(&id2, &other_env).await.unwrap();
    w.clock.advance_s(4 * DAY);
    assert_eq!(
        code(rep.open_client_letter(&id2, &other_env).await.unwrap_err()),
        "no_mandate"
    );
    let log = anna.access_log().await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.actor.role == ActorRole::Representative)
            .count(),
        3,
        "every access by the representative, and only those"
    );
    // The history records grants, acceptances and the revocation.
    let history = anna.history().await.unwrap();
    let kinds: Vec<String> = history
        .iter()
        .map(|h| {
            format!("{:?}", h.change)
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    for k in ["MandateGranted", "MandateAccepted", "MandateRevoked"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing: {kinds:?}");
    }
    w.stop().await;
}

async fn wait_until_handovers(w: &World, m: &MessageId, n: usize) {
    estafette_relay::testkit::wait_until("handover evidence at the gateway", WAIT, || {
        w.records(m)
            .iter()
            .filter(|r| r.event == EvidenceEvent::ContentHandover)
            .count()
            >= n
    })
    .await;
}

fn attestation(w: &World, signer_key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    let content = AttestationContent {
        registry: COURT.parse().unwrap(),
        kind: LegalKind::FinancialAdministration,
        case_reference: "C/13/123456 / BW RK 27-101".into(),
        represented: ANNA.parse().unwrap(),
        representative: Representative {
            person: BOB.parse().unwrap(),
            name: "B. Bakker".into(),
            organisation: Some("KvK 12345678 Bewindvoering De Brug".into()),
        },
        valid_from: w.clock.now().minus_s(DAY),
        valid_until: None,
        issued_at: w.clock.now().minus_s(DAY),
    };
    Attestation::sign(&content, signer_key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_court_appointed_administrator_suspends_mandates_and_gets_the_mail() {
    let w = start().await;
    let anna = login(&w, ANNA).await;
    digital(&w, &anna, "anna@example.nl", &[PENSION, OTHER, CARE]).await;
    let piet = login(&w, PIET).await;
    let bob = login(&w, BOB).await;
    digital(&w, &bob, "bob@bewindvoering.example", &[]).await;

    // Piet may read everything of Anna's (voluntary, accepted).
    let voluntary = anna
        .grant_mandate(&grant(SenderScope::All, None))
        .await
        .unwrap();
    piet.accept_mandate(&voluntary).await.unwrap();

    // An attestation signed by an agency's key is refused.
    let agency_key = keys::read_ed25519(
        &w.fed
            .fed
            .agency_dir(&PENSION.parse().unwrap())
            .join("seal.key.pem"),
    )
    .unwrap();
    let forged = attestation(&w, &agency_key);
    assert_eq!(
        code(
            bob.register_legal_representation(&forged, true, None)
                .await
                .unwrap_err()
        ),
        "wrong_role"
    );
    // Piet cannot register Bob's attestation.
    let court_key = keys::read_ed25519(
        &w.fed
            .fed
            .court_registry_dir(&COURT.parse().unwrap())
            .join("signing.key.pem"),
    )
    .unwrap();
    let real = attestation(&w, &court_key);
    assert_eq!(
        code(
            piet.register_legal_representation(&real, true, None)
                .await
                .unwrap_err()
        ),
        "wrong_role"
    );
    let office = PostalAddress {
        street_lines: vec!["Postbus 100".into()],
        postal_code: "3500 AA".into(),
        city: "Utrecht".into(),
        country: CountryCode::NL,
    };
    let legal = bob
        .register_legal_representation(&real, true, Some(&office))
        .await
        .unwrap();

    // Letters: the pension fund's (financial), the care office's, another's.
    let (pension, pension_env) = deliver(&w, PENSION, ANNA).await;
    let (_, care_env) = deliver(&w, CARE, ANNA).await;
    let (_, other_env) = deliver(&w, OTHER, ANNA).await;

    // Bob: financial mail only.
    let bobs: Vec<MessageId> = bob
        .client_letters(&legal)
        .await
        .unwrap()
        .iter()
        .map(|l| l.message_id)
        .collect();
    assert_eq!(bobs, vec![pension]);
    bob.open_client_letter(&legal, &pension_env).await.unwrap();
    assert_eq!(
        code(bob.open_client_letter(&legal, &care_env).await.unwrap_err()),
        "no-such-letter"
    );
    // Piet's voluntary mandate is suspended for financial mail while the
    // legal representation stands, and works for the rest.
    assert_eq!(
        code(
            piet.open_client_letter(&voluntary, &pension_env)
                .await
                .unwrap_err()
        ),
        "no-such-letter"
    );
    piet.open_client_letter(&voluntary, &care_env)
        .await
        .unwrap();
    piet.open_client_letter(&voluntary, &other_env)
        .await
        .unwrap();
    assert_eq!(piet.client_letters(&voluntary).await.unwrap().len(), 2);

    // Bob may manage within his scope (financial), not outside it.
    bob.set_client_consent(&legal, PENSION, false)
        .await
        .unwrap();
    assert_eq!(
        code(
            bob.set_client_consent(&legal, CARE, false)
                .await
                .unwrap_err()
        ),
        "no_mandate"
    );
    let (_, channel) = w.send_from(PENSION, ANNA, None).await;
    assert_eq!(channel, "paper", "Bob chose paper for the pension fund");
    bob.set_client_consent(&legal, PENSION, true).await.unwrap();

    // Correspondence: a new financial letter is announced to Bob, naming
    // Anna, and goes on paper to Bob's office when unread.
    let before = w.sink.mails().len();
    let (late, _) = deliver(&w, PENSION, ANNA).await;
    w.wait_for_event(&late, EvidenceEvent::ConsignmentNotification)
        .await;
    let notice = w.sink.mails()[before..]
        .iter()
        .find(|m| m.subject.contains("Pensioenfonds"))
        .cloned()
        .expect("a notification about the pension letter");
    assert_eq!(notice.to, ["bob@bewindvoering.example"]);
    assert!(notice.subject.contains("Anna Jansen"), "{}", notice.subject);
    // Anna's own (non-financial) mail still notifies Anna.
    let (own, _) = deliver(&w, OTHER, ANNA).await;
    w.wait_for_event(&own, EvidenceEvent::ConsignmentNotification)
        .await;
    assert!(
        w.sink
            .mails()
            .iter()
            .any(|m| m.to == ["anna@example.nl"] && m.subject.contains("Belastingdienst"))
    );
    w.clock.advance_s(15 * DAY);
    w.gateway.gateway.monitor_cycle().await.unwrap();
    let text = w.pdf_text(&late);
    for needed in [
        "B. Bakker",
        "Bewindvoering De Brug",
        "Postbus 100",
        "3500 AA",
        "UTRECHT",
        "Voor",
    ] {
        assert!(text.contains(needed), "{needed} not in the PDF:\n{text}");
    }
    assert!(!text.contains("Stationsweg"), "not to Anna's home");

    // Anna's access log: one access by Bob, two by Piet, each with its mandate.
    let log = anna.access_log().await.unwrap();
    let count = |name: &str| {
        log.iter()
            .filter(|e| {
                e.actor
                    .representative
                    .as_deref()
                    .is_some_and(|r| r.starts_with(name))
            })
            .count()
    };
    println!(
        "access log: {} by the administrator, {} by the voluntary representative",
        count("B. Bakker"),
        count("Piet de Vries")
    );
    assert_eq!(count("B. Bakker"), 1);
    assert_eq!(count("Piet de Vries"), 2);
    w.stop().await;
}
