//! People abroad: a cross-border worker without a BSN registers through a
//! German eID node, gets German notifications and German paper letters at
//! the German address, and later links a BSN to the same inbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use estafette_gateway::gateway::Clock;
use estafette_relay::home::client::{CitizenClient, CitizenClientError};
use estafette_relay::testkit::{AGENCY, GERMAN_EID, NATIONAL_IDP, wait_until};
use estafette_spec::citizen::PostalAddress;
use estafette_spec::*;

const JONAS: &str = "eidas:DE/NL/DE-4711-0815";
const JONAS_EMAIL: &str = "j.mueller@example.de";

fn german_address() -> PostalAddress {
    PostalAddress {
        street_lines: vec!["Hauptstraße 5".into()],
        postal_code: "10115".into(),
        city: "Berlin".into(),
        country: "DE".parse().unwrap(),
    }
}

fn code(e: CitizenClientError) -> String {
    e.code().unwrap_or("none").to_owned()
}

/// Registers with the German address, verifies the e-mail address from its
/// link, activates and chooses digital mail from the agency.
async fn go_digital(w: &World, c: &CitizenClient, email: &str, language: &str) {
    w.go_digital(c, language, Some(&german_address()), email, &[AGENCY])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_border_worker_registers_with_a_german_eid() {
    let w = World::start().await;
    let mut c = w.citizen();
    c.set_language("de");
    let level = LevelOfAssurance::Substantial;

    // Level low: refused, and the answer is in German.
    let low = w.assertion_by(GERMAN_EID, JONAS, "home.test", LevelOfAssurance::Low);
    match c.login(&low).await.unwrap_err() {
        CitizenClientError::Problem {
            problem_type,
            detail,
            ..
        } => {
            assert!(problem_type.ends_with("assurance_too_low"));
            assert!(detail.contains("Vertrauensniveau"), "{detail}");
        }
        other => panic!("{other}"),
    }
    // An identifier issued by France, from the German node.
    let french = w.assertion_by(GERMAN_EID, "eidas:FR/NL/FR-1234", "home.test", level);
    assert_eq!(
        code(c.login(&french).await.unwrap_err()),
        "country_mismatch"
    );
    // A BSN from the German node; a German identifier from the Dutch provider.
    let bsn = w.assertion_by(GERMAN_EID, JONAS_BSN, "home.test", level);
    assert_eq!(code(c.login(&bsn).await.unwrap_err()), "country_mismatch");
    let dutch = w.assertion_by(NATIONAL_IDP, JONAS, "home.test", level);
    assert_eq!(code(c.login(&dutch).await.unwrap_err()), "country_mismatch");
    // For another audience.
    let other = w.assertion_by(GERMAN_EID, JONAS, "gateway.test", level);
    assert_eq!(code(c.login(&other).await.unwrap_err()), "wrong_audience");

    // A valid login, once.
    let valid = w.assertion_by(GERMAN_EID, JONAS, "home.test", level);
    let view = c.login(&valid).await.unwrap();
    assert_eq!(view.recipient.to_string(), JONAS);
    assert_eq!(
        code(w.citizen().login(&valid).await.unwrap_err()),
        "replayed"
    );
    go_digital(&w, &c, JONAS_EMAIL, "de").await;

    // A letter to the eIDAS identifier: in the inbox, with the whole chain.
    let deadline = w.clock.now().plus_s(40 * DAY);
    let (m, channel) = w.send(JONAS, Some(deadline)).await;
    assert_eq!(channel, "digital");
    w.wait_for_event(&m, EvidenceEvent::ConsignmentNotification)
        .await;
    let chain = w
        .gateway
        .gateway
        .evidence(&AGENCY.parse().unwrap(), &m)
        .unwrap()
        .unwrap();
    let verified = Evidence::verify_chain(&chain, &w.gateway.gateway.node.trust()).unwrap();
    let events: Vec<EvidenceEvent> = verified.iter().map(|v| v.record.event).collect();
    assert_eq!(
        events,
        [
            EvidenceEvent::SubmissionAcceptance,
            EvidenceEvent::ContentConsignment,
            EvidenceEvent::ConsignmentNotification
        ]
    );
    assert_eq!(c.letters().await.unwrap().len(), 1);

    // The notification is in German.
    let notice = w
        .sink
        .mails()
        .into_iter()
        .find(|m| m.to == [JONAS_EMAIL] && !m.body.contains("verify-email"))
        .unwrap();
    assert_eq!(
        notice.subject,
        "Sie haben einen neuen Brief von Belastingdienst"
    );
    for words in ["Art des Briefes: Bescheid", "Was Sie tun müssen", "Bis:"] {
        assert!(notice.body.contains(words), "{words}: {}", notice.body);
    }

    // Unread: on paper, in German, to the German address.
    w.clock.advance_s(15 * DAY);
    let report = w.gateway.gateway.monitor_cycle().await.unwrap();
    assert_eq!(
        report.papered.get("unread_too_long"),
        Some(&1),
        "{report:?}"
    );
    let text = w.pdf_text(&m);
    for needed in [
        "Jonas Müller",
        "Hauptstraße 5",
        "10115 Berlin",
        "DUITSLAND",
        "Warum bekommen Sie diesen Brief auf Papier?",
        "noch nicht geöffnet",
    ] {
        assert!(text.contains(needed), "{needed} not in the PDF:\n{text}");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_a_bsn_makes_one_inbox_with_every_letter_once() {
    let w = World::start().await;
    let level = LevelOfAssurance::Substantial;
    // Jonas has an inbox under his eIDAS identifier ...
    let mut eidas = w.citizen();
    eidas
        .login(&w.assertion_by(GERMAN_EID, JONAS, "home.test", level))
        .await
        .unwrap();
    go_digital(&w, &eidas, JONAS_EMAIL, "de").await;
    // ... and, once he got a BSN, another one under it.
    let mut national = w.citizen();
    national
        .login(&w.assertion_by(NATIONAL_IDP, JONAS_BSN, "home.test", level))
        .await
        .unwrap();
    go_digital(&w, &national, "jonas@example.nl", "nl").await;

    let mut sent: Vec<MessageId> = Vec::new();
    for to in [JONAS, JONAS_BSN, JONAS, JONAS_BSN, JONAS, JONAS_BSN] {
        let (m, channel) = w.send(to, None).await;
        assert_eq!(channel, "digital");
        sent.push(m);
    }
    for m in &sent {
        w.wait_for_event(m, EvidenceEvent::ContentConsignment).await;
    }
    let inboxes_before: BTreeSet<InboxId> = w
        .home
        .store()
        .inbox_all()
        .unwrap()
        .iter()
        .map(|(i, _, _)| *i)
        .collect();
    assert_eq!(inboxes_before.len(), 2, "two identities, two inboxes");

    // Someone else's login cannot be linked in: nothing changes.
    let refused = eidas
        .link(&w.assertion_by(NATIONAL_IDP, RESIDENT, "home.test", level))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("identity_mismatch"), "{refused}");
    assert!(eidas.me().await.unwrap().linked.is_empty());

    // Both assertions in one session: the eIDAS session presents the BSN login.
    let linked = eidas
        .link(&w.assertion_by(NATIONAL_IDP, JONAS_BSN, "home.test", level))
        .await
        .unwrap();
    assert_eq!(linked.recipient.to_string(), JONAS);
    assert_eq!(linked.linked[0].to_string(), JONAS_BSN);
    assert_eq!(linked.digital_senders, vec![AGENCY.parse::<Oin>().unwrap()]);
    let inbox = linked.inbox.unwrap();

    for to in [JONAS, JONAS_BSN, JONAS, JONAS_BSN, JONAS, JONAS_BSN] {
        let (m, channel) = w.send(to, None).await;
        assert_eq!(channel, "digital", "consent kept for both identifiers");
        sent.push(m);
    }
    for m in &sent[6..] {
        w.wait_for_event(m, EvidenceEvent::ContentConsignment).await;
    }

    // Every letter, before and after, exactly once in the one inbox.
    let all = w.home.store().inbox_all().unwrap();
    let mut per_inbox: HashMap<InboxId, usize> = HashMap::new();
    for (i, _, _) in &all {
        *per_inbox.entry(*i).or_default() += 1;
    }
    let in_inbox: Vec<MessageId> = all
        .iter()
        .filter(|(i, _, _)| *i == inbox)
        .map(|(_, _, m)| *m)
        .collect();
    let unique: BTreeSet<MessageId> = in_inbox.iter().copied().collect();
    println!(
        "letters sent: {} (6 before linking, 6 after, half to each identifier); in the one inbox: {}, distinct: {}; inboxes holding letters: {}",
        sent.len(),
        in_inbox.len(),
        unique.len(),
        per_inbox.len()
    );
    assert_eq!(per_inbox.len(), 1, "{per_inbox:?}");
    assert_eq!(in_inbox.len(), sent.len());
    assert_eq!(unique, sent.iter().copied().collect::<BTreeSet<_>>());
    // Both logins see the same letters.
    assert_eq!(eidas.letters().await.unwrap().len(), 12);
    let mut again = w.citizen();
    let view = again
        .login(&w.assertion_by(NATIONAL_IDP, JONAS_BSN, "home.test", level))
        .await
        .unwrap();
    assert_eq!(view.inbox, Some(inbox));
    assert_eq!(again.letters().await.unwrap().len(), 12);
    // And the evidence of each still verifies.
    let trust = w.gateway.gateway.node.trust();
    for m in &sent {
        let chain = w
            .gateway
            .gateway
            .evidence(&AGENCY.parse().unwrap(), m)
            .unwrap()
            .unwrap();
        Evidence::verify_chain(&chain, &trust).expect("the chain verifies");
    }
    // The link is in both histories.
    let history = eidas.history().await.unwrap();
    assert!(history.iter().any(|h| matches!(
        &h.change,
        estafette_spec::citizen::Change::Linked { with, matched }
            if with.to_string() == JONAS_BSN
                && *matched == estafette_spec::identity::IdentityMatch::GivenNamesShortened
    )));
    wait_until("nothing left in flight", WAIT, || {
        w.gateway.gateway.node.queue_len() == 0
    })
    .await;
    w.stop().await;
}
