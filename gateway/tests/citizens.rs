//! Nobody pushed, nobody missed: a person logs in at their home node with an
//! identity assertion, registers, verifies an e-mail address over a real
//! SMTP conversation, activates, chooses digital mail per sender; the
//! gateway notifies, reminds, and puts unread, bounced or unwanted letters
//! on paper (real PDFs, read back with pdftotext), with evidence for every
//! step. The gateway's clock is injected so that weeks pass in a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use estafette_gateway::client::AgencyClient;
use estafette_gateway::gateway::Clock;
use estafette_gateway::registry;
use estafette_pki::AssertedPerson;
use estafette_relay::home::client::CitizenClientError;
use estafette_relay::testkit::{AGENCY, NATIONAL_IDP};
use estafette_spec::citizen::{Change, ChannelState, CitizenAction, CitizenReply, PostalAddress};
use estafette_spec::*;
use rand_core::OsRng;

fn code(e: CitizenClientError) -> String {
    e.code().unwrap_or("none").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_are_checked_and_agencies_cannot_register_anyone() {
    let w = World::start().await;
    let mut c = w.citizen();

    // Expired: issued six minutes ago, valid five.
    let person = AssertedPerson::test(RESIDENT.parse().unwrap());
    let expired = w
        .fed
        .fed
        .mint_assertion(
            &NATIONAL_IDP.parse().unwrap(),
            &person,
            &"home.test".parse().unwrap(),
            estafette_pki::now().minus_s(360),
            300,
        )
        .unwrap();
    assert_eq!(code(c.login(&expired).await.unwrap_err()), "expired");
    // For another audience.
    let other = w.assertion(RESIDENT, "gateway.test", LevelOfAssurance::Substantial);
    assert_eq!(code(c.login(&other).await.unwrap_err()), "wrong_audience");
    // Below substantial.
    let low = w.assertion(RESIDENT, "home.test", LevelOfAssurance::Low);
    assert_eq!(code(c.login(&low).await.unwrap_err()), "assurance_too_low");
    // From an issuer that is not in the trust list.
    let claims = IdentityClaims {
        issuer: NATIONAL_IDP.parse().unwrap(),
        subject: RESIDENT.parse().unwrap(),
        family_name: "Jansen".into(),
        given_names: "Anna".into(),
        birth_date: "1970-01-01".into(),
        level_of_assurance: LevelOfAssurance::High,
        audience: "home.test".parse().unwrap(),
        nonce: vec![7; 16],
        issued_at: estafette_pki::now(),
        expires_at: estafette_pki::now().plus_s(300),
    };
    let forged =
        IdentityAssertion::sign(&claims, &ed25519_dalek::SigningKey::generate(&mut OsRng)).unwrap();
    assert_eq!(code(c.login(&forged).await.unwrap_err()), "unknown_signer");
    // A valid one works, once.
    let valid = w.login_assertion(RESIDENT);
    let view = c.login(&valid).await.unwrap();
    assert_eq!(view.inbox, None, "not registered yet");
    let mut again = w.citizen();
    assert_eq!(code(again.login(&valid).await.unwrap_err()), "replayed");
    // Without a session nothing changes.
    assert_eq!(code(again.activate().await.unwrap_err()), "no-session");

    // The agency API has no path to registration, activation or consent.
    let agency = AgencyClient::for_agency_dir(
        w.gateway.https_addr,
        "gateway.test",
        &w.fed.fed.root_cert_path(),
        &w.fed.fed.agency_dir(&AGENCY.parse().unwrap()),
    )
    .unwrap();
    let mut conn = agency.connect().await.unwrap();
    for path in [
        "/v1/session",
        "/v1/register",
        "/v1/activate",
        "/v1/consent/00000001003214345000",
        "/v1/registry",
        "/v1/recipients/bsn:999999990/consent",
    ] {
        let answer = conn
            .request(
                hyper::Method::POST,
                path,
                Some("application/json"),
                "application/json",
                b"{}".to_vec(),
            )
            .await
            .unwrap();
        assert!(
            answer.status == hyper::StatusCode::NOT_FOUND
                || answer.status == hyper::StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {}",
            answer.status
        );
    }
    // And the registry is untouched by all of it.
    let person = registry::lookup(w.gateway.gateway.records(), &RESIDENT.parse().unwrap()).unwrap();
    assert!(person.is_none(), "a session alone registers nobody");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_notifications_and_escalation_to_paper() {
    let w = World::start().await;

    // Not registered: paper, no_inbox.
    let (m0, channel) = w.send(RESIDENT, None).await;
    assert_eq!(channel, "paper");
    assert!(
        w.events(&m0)
            .contains(&(EvidenceEvent::PaperFallback, Some(ReasonCode::NoInbox)))
    );

    // Log in, register (inactive), add an e-mail address.
    let mut c = w.citizen();
    c.login(&w.login_assertion(RESIDENT)).await.unwrap();
    let address = PostalAddress {
        street_lines: vec!["Stationsweg 3".into()],
        postal_code: "1234 AB".into(),
        city: "Voorbeeld".into(),
        country: CountryCode::NL,
    };
    let view = c.register("nl", Some(&address)).await.unwrap();
    assert!(view.inbox.is_some() && !view.active);
    let (m1, channel) = w.send(RESIDENT, None).await;
    assert_eq!(channel, "paper");
    assert!(w.events(&m1).contains(&(
        EvidenceEvent::PaperFallback,
        Some(ReasonCode::InboxInactive)
    )));
    // Activation needs a verified channel first.
    assert_eq!(
        code(c.activate().await.unwrap_err()),
        "no_notification_channel"
    );
    let view = c.add_email(EMAIL).await.unwrap();
    assert_eq!(view.channels[0].state, ChannelState::Pending);
    let mails = w
        .sink
        .wait_for(WAIT, |m| m.iter().any(|m| m.to == [EMAIL]))
        .await
        .expect("verification e-mail");
    let link = mails[0]
        .body
        .lines()
        .find(|l| l.contains("/verify-email?token="))
        .expect("a verification link")
        .trim()
        .to_owned();
    let token = link.rsplit('=').next().unwrap();
    assert!(
        link.starts_with(&format!(
            "https://{}/verify-email",
            w.home.citizen_addr().unwrap()
        )),
        "{link}"
    );
    // A wrong token changes nothing; the right one verifies.
    assert_eq!(
        code(c.verify_email(&"0".repeat(32)).await.unwrap_err()),
        "invalid_token"
    );
    let view = c.verify_email(token).await.unwrap();
    assert_eq!(view.channels[0].state, ChannelState::Verified);
    assert_eq!(
        code(c.verify_email(token).await.unwrap_err()),
        "invalid_token",
        "a link works once"
    );
    let view = c.activate().await.unwrap();
    assert!(view.active);
    // Active, but no consent for this sender: paper.
    let (m2, channel) = w.send(RESIDENT, None).await;
    assert_eq!(channel, "paper");
    assert!(
        w.events(&m2)
            .contains(&(EvidenceEvent::PaperFallback, Some(ReasonCode::NoConsent)))
    );

    // Consent: digital. The notification names sender, kind, action and
    // deadline, and holds nothing of the letter itself.
    let view = c.set_consent(AGENCY, true).await.unwrap();
    assert_eq!(view.digital_senders, vec![AGENCY.parse::<Oin>().unwrap()]);
    let deadline = w.clock.now().plus_s(60 * DAY);
    let (m3, channel) = w.send(RESIDENT, Some(deadline)).await;
    assert_eq!(channel, "digital");
    w.wait_for_event(&m3, EvidenceEvent::ConsignmentNotification)
        .await;
    let notice = w
        .sink
        .mails()
        .into_iter()
        .find(|m| m.subject.contains("nieuwe brief"))
        .expect("a notification e-mail");
    assert!(
        notice.subject.contains("Belastingdienst"),
        "{}",
        notice.subject
    );
    for needed in ["Besluit", "Betaal het bedrag", "Uiterlijk", "gevolgen"] {
        assert!(
            notice.body.contains(needed),
            "{needed} missing: {}",
            notice.body
        );
    }
    for secret in ["Geheime", "onderwerp", "Inhoud", "nooit in een notificatie"] {
        assert!(
            !notice.raw.contains(secret),
            "letter content in the e-mail: {secret}"
        );
    }

    // Notified, and nothing due until the reminder: a cycle looks at no
    // letter (it finds what is due through an index, not by reading
    // every letter it follows).
    let report = w.gateway.gateway.monitor_cycle().await.unwrap();
    assert_eq!(report.letters_checked, 0, "{report:?}");

    // Unread for 7 days: a reminder; for 14: paper, with the reason.
    w.clock.advance_s(7 * DAY);
    let report = w.gateway.gateway.monitor_cycle().await.unwrap();
    assert_eq!(report.reminded, 1, "{report:?}");
    assert_eq!(report.letters_checked, 1, "{report:?}");
    assert!(
        w.sink
            .mails()
            .iter()
            .any(|m| m.subject.starts_with("Herinnering"))
    );
    w.clock.advance_s(7 * DAY);
    let report = w.gateway.gateway.monitor_cycle().await.unwrap();
    assert_eq!(
        report.papered.get("unread_too_long"),
        Some(&1),
        "{report:?}"
    );
    let events = w.events(&m3);
    assert!(events.contains(&(
        EvidenceEvent::PaperFallback,
        Some(ReasonCode::UnreadTooLong)
    )));
    assert_eq!(
        events
            .iter()
            .filter(|(e, _)| *e == EvidenceEvent::ConsignmentNotification)
            .count(),
        2,
        "notification and reminder: {events:?}"
    );
    let chain = w
        .gateway
        .gateway
        .evidence(&AGENCY.parse().unwrap(), &m3)
        .unwrap()
        .unwrap();
    Evidence::verify_chain(&chain, &w.gateway.gateway.node.trust()).expect("the chain verifies");
    let text = w.pdf_text(&m3);
    for needed in [
        "Anna Jansen",
        "Stationsweg 3",
        "1234 AB",
        "VOORBEELD",
        "Belastingdienst",
        "Geheime aanslag onderwerp",
        "Waarom krijgt u deze brief op papier?",
        "nog niet geopend",
        "Alles op papier",
    ] {
        assert!(text.contains(needed), "{needed} not in the PDF:\n{text}");
    }

    // A letter that is read goes no further.
    let (m4, _) = w.send(RESIDENT, None).await;
    w.wait_for_event(&m4, EvidenceEvent::ConsignmentNotification)
        .await;
    let letters = c.letters().await.unwrap();
    let unread = letters
        .iter()
        .find(|l| l.message_id == m4)
        .expect("the letter is in the inbox");
    assert!(!unread.opened);
    let opened = c.open(&unread.envelope_id.to_string()).await.unwrap();
    assert!(opened.body.contains("Inhoud"));
    w.wait_for_event(&m4, EvidenceEvent::ContentHandover).await;
    w.clock.advance_s(30 * DAY);
    w.gateway.gateway.monitor_cycle().await.unwrap();
    assert!(
        !w.events(&m4)
            .iter()
            .any(|(e, _)| *e == EvidenceEvent::PaperFallback),
        "an opened letter does not go on paper"
    );

    // The address starts bouncing: 550, and the letter is on paper within
    // one monitor cycle; the address is marked failed, the holder gets a
    // letter about it.
    w.sink.bounce(EMAIL);
    let (m5, _) = w.send(RESIDENT, None).await;
    w.wait_for_event(&m5, EvidenceEvent::ContentConsignment)
        .await;
    let report = w.gateway.gateway.monitor_cycle().await.unwrap();
    let events = w.events(&m5);
    assert!(
        events.contains(&(
            EvidenceEvent::ConsignmentNotificationFailure,
            Some(ReasonCode::NotificationBounced)
        )),
        "{events:?} {report:?}"
    );
    assert!(
        events.contains(&(
            EvidenceEvent::PaperFallback,
            Some(ReasonCode::NotificationBounced)
        )),
        "{events:?}"
    );
    assert!(w.pdf_text(&m5).contains("geen e-mail"));
    let manifest = estafette_gateway::paper::Spool::new(&w.spool)
        .manifest()
        .unwrap();
    assert_eq!(
        manifest
            .iter()
            .filter(|e| e.kind == "channel_notice")
            .count(),
        1
    );

    // Everything back to paper in one step, effective for the next letter.
    let view = c.all_paper().await.unwrap();
    assert!(view.digital_senders.is_empty());
    let (m6, channel) = w.send(RESIDENT, None).await;
    assert_eq!(channel, "paper");
    assert!(
        w.events(&m6)
            .contains(&(EvidenceEvent::PaperFallback, Some(ReasonCode::NoConsent)))
    );

    // The history: every change, when, and the assertion behind it.
    let history = c.history().await.unwrap();
    let changes: Vec<&Change> = history.iter().map(|h| &h.change).collect();
    assert!(
        matches!(changes[0], Change::Registered { .. }),
        "{changes:?}"
    );
    assert!(changes.contains(&&Change::Activated));
    assert!(changes.contains(&&Change::AllPaper));
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::EmailFailed { .. }))
    );
    assert!(
        history
            .iter()
            .filter(|h| !matches!(
                h.change,
                Change::EmailVerified { .. } | Change::EmailFailed { .. }
            ))
            .all(|h| h.assertion_digest.is_some())
    );

    // The operator report, from the running gateway's admin endpoint.
    w.gateway.gateway.monitor_cycle().await.unwrap();
    let admin = w.fed.gateway.config.admin_listen.unwrap();
    let body = estafette_relay::admin::local_get(admin, "/report?months=12").unwrap();
    let report: estafette_gateway::report::OperatorReport = serde_json::from_str(&body).unwrap();
    assert_eq!(report.active_inboxes, 1);
    assert_eq!(
        report.inboxes_without_working_channel, 1,
        "the bounced address"
    );
    for (reason, n) in [
        ("no_inbox", 1),
        ("inbox_inactive", 1),
        ("no_consent", 2),
        ("unread_too_long", 1),
        ("notification_bounced", 1),
    ] {
        assert_eq!(
            report.paper_by_reason.get(reason),
            Some(&n),
            "{reason}: {report:?}"
        );
    }
    assert_eq!(report.paper_notices.get("channel_notice"), Some(&1));
    let metrics = estafette_relay::admin::local_get(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("estafette_gateway_paper_letters{reason=\"unread_too_long\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("estafette_gateway_inboxes_without_working_channel 1"));
    assert!(metrics.trim_end().ends_with("# EOF"));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_letters_abroad_are_addressed_for_their_country() {
    let w = World::start().await;
    let people = serde_json::json!([{
        "recipient": ABROAD, "language": "de", "name": "Jonas Müller",
        "postal_address": { "street_lines": ["Hauptstraße 5"], "postal_code": "10115", "city": "Berlin", "country": "DE" }
    }]);
    registry::import(
        w.gateway.gateway.records(),
        &w.gateway.gateway.node.trust(),
        &people.to_string(),
    )
    .await
    .unwrap();
    let (m, channel) = w.send(ABROAD, None).await;
    assert_eq!(channel, "paper");
    let report = w.gateway.gateway.monitor_cycle().await.unwrap();
    assert!(report.spooled >= 1, "{report:?}");
    let text = w.pdf_text(&m);
    for needed in [
        "Jonas Müller",
        "Hauptstraße 5",
        "10115 Berlin",
        "DUITSLAND",
        "Warum bekommen Sie diesen Brief auf Papier?",
    ] {
        assert!(text.contains(needed), "{needed} not in the PDF:\n{text}");
    }
    w.stop().await;
}

/// The language is the person's choice, kept for their e-mails and paper
/// letters; and a preference, taken during a session whose login is too
/// old for a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chosen_language_follows_the_person_to_their_mail() {
    let w = World::start().await;
    let mut c = w.citizen();
    c.login(&w.login_assertion(RESIDENT)).await.unwrap();
    w.go_digital(&c, "nl", None, "anna@example.nl", &[AGENCY])
        .await;
    // A session whose login is past its five minutes, as the home node
    // carries it: a change is refused ...
    let old_login = IdentityProof::Assertion(serde_bytes::ByteBuf::from(
        w.fed
            .fed
            .mint_assertion(
                &NATIONAL_IDP.parse().unwrap(),
                &AssertedPerson::test(RESIDENT.parse().unwrap()),
                &"home.test".parse().unwrap(),
                estafette_pki::now().minus_s(400),
                300,
            )
            .unwrap(),
    ));
    let carry = |action| {
        estafette_relay::home::carry(
            &w.home,
            estafette_spec::citizen::CitizenRequest {
                identity: Some(old_login.clone()),
                action,
                inbox_url: None,
            },
        )
    };
    match carry(CitizenAction::AllPaper).await.unwrap() {
        CitizenReply::Refused { reason, .. } => assert_eq!(reason, ReasonCode::Expired),
        other => panic!("a change with an old login was taken: {other:?}"),
    }
    // ... and the language, a preference, is taken.
    match carry(CitizenAction::SetLanguage {
        language: "pl".into(),
    })
    .await
    .unwrap()
    {
        CitizenReply::Person(view) => assert_eq!(view.language, "pl"),
        other => panic!("the language was refused: {other:?}"),
    }
    // Through the citizen API, and its refusal of what is not a language.
    assert_eq!(c.choose_language("pl").await.unwrap().language, "pl");
    assert_eq!(
        code(c.choose_language("Polish, please").await.unwrap_err()),
        "malformed"
    );
    let entry = estafette_gateway::registry::lookup(
        w.gateway.gateway.records(),
        &RESIDENT.parse().unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(entry.language, "pl");
    assert!(
        !entry.digital_senders.is_empty(),
        "the refused change changed nothing"
    );

    let (m, channel) = w.send(RESIDENT, None).await;
    assert_eq!(channel, "digital");
    w.wait_for_event(&m, EvidenceEvent::ConsignmentNotification)
        .await;
    let mails = w.sink.mails();
    let notice = mails
        .iter()
        .find(|m| m.subject.contains("nowy list"))
        .unwrap_or_else(|| panic!("a Polish notification among {mails:#?}"));
    assert!(notice.body.contains("Rodzaj listu"), "{}", notice.body);

    let mut again = w.citizen();
    again.login(&w.login_assertion(RESIDENT)).await.unwrap();
    let history = again.history().await.unwrap();
    assert!(
        history.iter().any(|e| e.change
            == Change::Language {
                language: "pl".into()
            }),
        "{history:?}"
    );
}
