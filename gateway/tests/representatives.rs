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

/// The web page's refusal `web` is the API's refusal `api` of the same.
fn same_refusal<T: std::fmt::Debug>(
    web: Option<String>,
    api: Result<T, CitizenClientError>,
) -> String {
    let api = code(api.unwrap_err());
    assert_eq!(
        web.as_deref(),
        Some(api.as_str()),
        "the web refuses as the API"
    );
    api
}

/// What the web page said of an upload: the refusal's code, or `None`
/// when it was registered (the clients page again, with a client).
async fn upload_attestation(
    c: &fantoccini::Client,
    base: &str,
    file: &std::path::Path,
    office: Option<[&str; 4]>,
) -> Option<String> {
    use common::chromium::*;
    use fantoccini::Locator;
    c.goto(&format!("{base}/clients")).await.unwrap();
    wait_css(c, "#court-file").await;
    if let Some(fields) = office {
        for (id, value) in [
            "office-street",
            "office-code",
            "office-city",
            "office-country",
        ]
        .into_iter()
        .zip(fields)
        {
            let input = c.find(Locator::Id(id)).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys(value).await.unwrap();
        }
    }
    c.find(Locator::Id("court-file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    // The answer is a new page (the same address when it worked): mark this
    // one, and wait for one without the mark.
    c.execute("document.documentElement.dataset.sent = 'yes'", vec![])
        .await
        .unwrap();
    click(c, "form[action='/clients/court'] button").await;
    wait_css(
        c,
        "html:not([data-sent]) main p[role=alert], html:not([data-sent]) main a[href^='/clients/']",
    )
    .await;
    match c.find(Locator::Css("main code")).await {
        Ok(code) => Some(code.text().await.unwrap()),
        Err(_) => None,
    }
}

/// The same registration on the web inbox, in a browser: the attestation
/// uploaded as a file (as the registry gave it, or in hex), refused for the
/// same reasons as through the API (each compared with the API's answer),
/// nothing changed by a refusal, and the page checked by axe. Then the
/// administrator's clients page (unread, deadline) and his choice of paper
/// for the client, within his appointment and not outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_court_appointment_is_registered_on_the_web_with_the_apis_refusals() {
    use common::chromium::*;
    let w = start().await;
    let anna = login(&w, ANNA).await;
    digital(&w, &anna, "anna@example.nl", &[PENSION]).await;
    let bob = login(&w, BOB).await;
    digital(&w, &bob, "bob@bewindvoering.example", &[]).await;
    let piet = login(&w, PIET).await;
    let key = |dir: std::path::PathBuf, file: &str| keys::read_ed25519(&dir.join(file)).unwrap();
    let forged = attestation(
        &w,
        &key(
            w.fed.fed.agency_dir(&PENSION.parse().unwrap()),
            "seal.key.pem",
        ),
    );
    let real = attestation(
        &w,
        &key(
            w.fed.fed.court_registry_dir(&COURT.parse().unwrap()),
            "signing.key.pem",
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let forged_file = file("forged.cose", &forged);
    let real_file = file("appointment.cose", &real);
    let real_hex = file(
        "appointment.txt",
        format!("{}\n", estafette_spec::bytes::Hex(&real)).as_bytes(),
    );
    let garbage = file("letter.pdf", b"%PDF-1.7 not an attestation");

    let driver = chromedriver();
    let c = browser(&driver).await;
    let base = format!("https://{}", w.home.citizen_addr().unwrap());
    c.goto(&format!("{base}/language/en")).await.unwrap();

    // Bob: an attestation signed by an agency's key, and a file that is none.
    log_in(&c, &base, BOB).await;
    c.goto(&format!("{base}/clients")).await.unwrap();
    check(&c, "clients-court-form-en").await;
    let web = upload_attestation(&c, &base, &forged_file, None).await;
    let api = bob.register_legal_representation(&forged, true, None).await;
    assert_eq!(same_refusal(web, api), "wrong_role");
    check(&c, "clients-court-refused-en").await;
    let web = upload_attestation(&c, &base, &garbage, None).await;
    let api = bob
        .register_legal_representation(b"%PDF-1.7 not an attestation", true, None)
        .await;
    same_refusal(web, api);
    log_out(&c).await;

    // Piet cannot register Bob's appointment, on the web or through the API.
    log_in(&c, &base, PIET).await;
    let web = upload_attestation(&c, &base, &real_file, None).await;
    let api = piet.register_legal_representation(&real, true, None).await;
    assert_eq!(same_refusal(web, api), "wrong_role");
    log_out(&c).await;
    assert!(
        anna.mandates().await.unwrap().iter().all(|m| !m.is_legal()),
        "no refusal changed anything"
    );

    // Bob registers it (in hex, as the API takes it), with his office.
    log_in(&c, &base, BOB).await;
    let office = ["Postbus 100", "3500 AA", "Utrecht", "nl"];
    let web = upload_attestation(&c, &base, &real_hex, Some(office)).await;
    assert_eq!(web, None, "registered");
    check(&c, "clients-court-registered-en").await;
    let legal: Vec<_> = anna
        .mandates()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.is_legal())
        .collect();
    assert_eq!(legal.len(), 1, "{legal:?}");
    assert_eq!(legal[0].representative.person.to_string(), BOB);
    let clients = bob.clients().await.unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].mandate, legal[0].id);
    assert!(clients[0].legal);
    // The clients page counts what the appointment lets Bob see: the
    // pension fund's letter, unread, with its deadline.
    let deadline = w.clock.now().plus_s(20 * DAY);
    let (m, channel) = w.send_from(PENSION, ANNA, Some(deadline)).await;
    assert_eq!(channel, "digital");
    w.wait_for_event(&m, EvidenceEvent::ContentConsignment)
        .await;
    c.goto(&format!("{base}/clients")).await.unwrap();
    let text = page_text(&c).await;
    assert!(text.contains("1 unread"), "{text}");
    let (y, mo, d) = deadline.ymd();
    assert!(
        text.contains(&format!("first deadline {d}/{mo}/{y}")),
        "{text}"
    );
    check(&c, "clients-unread-en").await;
    // Bob may manage: the pension fund's letters to paper, for Anna ...
    let id = legal[0].id.to_string();
    c.goto(&format!("{base}/clients/{id}")).await.unwrap();
    check(&c, "client-consent-en").await;
    let button = |sender: &str, digital: bool| {
        format!(
            "form[action='/clients/{id}/consent'] input[value='{sender}'] ~ fieldset button[value='{digital}']"
        )
    };
    click(&c, &button(PENSION, false)).await;
    wait_css(&c, "main p[role=status]").await;
    until_person(&w, ANNA, "the pension fund on paper", |p| {
        !p.digital_senders.contains(&PENSION.parse().unwrap())
    })
    .await;
    // ... not the care office's, outside his appointment: as the API says.
    c.goto(&format!("{base}/clients/{id}")).await.unwrap();
    click(&c, &button(CARE, true)).await;
    wait_css(&c, "main code").await;
    let web = c
        .find(fantoccini::Locator::Css("main code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let api = bob.set_client_consent(&legal[0].id, CARE, true).await;
    same_refusal(Some(web), api);
    // The raw file as the registry gave it says the same: a second
    // registration of the one appointment is refused as through the API.
    let web = upload_attestation(&c, &base, &real_file, None).await;
    let api = bob
        .register_legal_representation(&real, true, None)
        .await
        .err()
        .map(code);
    assert_eq!(web, api, "the web answers a second registration as the API");
    c.close().await.unwrap();
    w.stop().await;
}
