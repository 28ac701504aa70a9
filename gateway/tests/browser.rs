//! The web inbox in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`, installed by `scripts/test`) driven over WebDriver.
//! A person logs in, verifies an e-mail address, activates, chooses digital
//! mail, reads a letter (ContentHandover appears), sees the history of her
//! settings, switches everything to paper; a representative logs in, finds
//! and opens a client's letter. axe-core checks every page in Dutch,
//! English, German, French and Polish (zero violations of WCAG 2.1 A and
//! AA), at desktop width and again in Chromium's mobile emulation at 360 px
//! (no sideways scrolling, touch targets of 44 px), where in each other
//! language a new person goes through the main journey (activation, a
//! letter, its proof, all on paper, asking a helper) and the helper
//! through theirs (saying yes, reading the client's letter). Every page is
//! saved as a screenshot under `target/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::chromium::*;
use common::*;
use estafette_gateway::registry;
use estafette_relay::testkit::{AGENCY, NATIONAL_IDP};
use estafette_spec::*;
use fantoccini::{Client, Locator};

const ANNA: &str = "bsn:999999990";
const PIET: &str = "bsn:123456782";

/// Waits (bounded) until Anna's registry entry satisfies `done`.
async fn until(w: &World, what: &str, done: impl Fn(&registry::PersonRecord) -> bool) {
    until_person(w, ANNA, what, done).await;
}

/// The inbox's languages besides Dutch, in which every page is checked too.
const OTHER_LANGUAGES: [&str; 4] = ["en", "de", "fr", "pl"];
/// All of them.
const ALL_LANGUAGES: [&str; 5] = ["nl", "en", "de", "fr", "pl"];

/// The `lang` of the page's `html` element.
async fn html_lang(c: &Client) -> Option<String> {
    c.find(Locator::Css("html"))
        .await
        .unwrap()
        .attr("lang")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_inbox_in_chromium() {
    let w = World::start().await;
    let driver = chromedriver();
    let c = browser(&driver).await;
    let base = format!("https://{}", w.home.citizen_addr().unwrap());

    // Dutch first (the browser itself asks for English).
    c.goto(&format!("{base}/language/nl")).await.unwrap();
    // Log in (the test identity provider's page) and create the box.
    c.goto(&format!("{base}/login")).await.unwrap();
    let lang = c
        .find(Locator::Css("html"))
        .await
        .unwrap()
        .attr("lang")
        .await
        .unwrap();
    assert_eq!(lang.as_deref(), Some("nl"));
    check(&c, "login-nl").await;
    // The keyboard alone: the first Tab lands on the skip link, Enter goes to
    // the content.
    let body = c.find(Locator::Css("body")).await.unwrap();
    body.send_keys(&fantoccini::key::Key::Tab.to_string())
        .await
        .unwrap();
    let focused = c
        .execute("return document.activeElement.className", vec![])
        .await
        .unwrap();
    assert_eq!(
        focused,
        serde_json::json!("skip"),
        "the skip link comes first"
    );
    c.execute("document.activeElement.click()", vec![])
        .await
        .unwrap();
    let target = c.execute("return location.hash", vec![]).await.unwrap();
    assert_eq!(target, serde_json::json!("#main"));
    // At 200% text size nothing needs sideways scrolling.
    c.execute("document.documentElement.style.fontSize = '225%'", vec![])
        .await
        .unwrap();
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth > document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        serde_json::json!(false),
        "no horizontal scrolling at 200%"
    );
    c.execute("document.documentElement.style.fontSize = ''", vec![])
        .await
        .unwrap();
    log_in(&c, &base, ANNA).await;
    wait_css(&c, "form[action='/register']").await;
    check(&c, "inbox-new-nl").await;
    click(&c, "main form button[type=submit]").await;
    until(&w, "an inbox", |p| p.inbox.is_some()).await;

    // Settings: an e-mail address, verified from the link in the e-mail.
    c.goto(&format!("{base}/settings")).await.unwrap();
    check(&c, "settings-nl").await;
    c.find(Locator::Id("address"))
        .await
        .unwrap()
        .send_keys("anna@example.nl")
        .await
        .unwrap();
    click(&c, "form[action='/settings/email'] button").await;
    let mails = w
        .sink
        .wait_for(WAIT, |m| m.iter().any(|m| m.to == ["anna@example.nl"]))
        .await
        .unwrap();
    let link = mails[0]
        .body
        .lines()
        .find(|l| l.contains("/verify-email?token="))
        .unwrap()
        .trim()
        .to_owned();
    c.goto(&link).await.unwrap();
    c.goto(&format!("{base}/settings")).await.unwrap();
    // Activation: one explicit button, after the consequences in plain words.
    click(&c, "form[action='/settings/activate'] button").await;
    until(&w, "activated by the button", |p| p.active).await;
    // Digital mail from the agency.
    wait_css(&c, "#active-state").await;
    click(&c, &format!("input[id='d-{AGENCY}']")).await;
    click(&c, &format!("input[value='{AGENCY}'] ~ fieldset button")).await;
    until(&w, "digital mail from the agency", |p| {
        !p.digital_senders.is_empty()
    })
    .await;
    c.goto(&format!("{base}/settings")).await.unwrap();
    check(&c, "settings-active-nl").await;

    // A letter arrives; it stands out in the inbox; reading it is evidence.
    let (m, channel) = w.send(ANNA, Some(w.clock_now().plus_s(30 * DAY))).await;
    assert_eq!(channel, "digital");
    w.wait_for_event(&m, EvidenceEvent::ContentConsignment)
        .await;
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.find(Locator::Css(".letter.unread")).await.is_ok());
    check(&c, "inbox-nl").await;
    assert!(
        c.find(Locator::Css("header a[href='/clients']"))
            .await
            .is_err(),
        "the menu offers no clients to someone who represents nobody"
    );
    click(&c, ".letter.unread a").await;
    wait_css(&c, "div.body").await;
    check(&c, "letter-nl").await;
    w.wait_for_event(&m, EvidenceEvent::ContentHandover).await;
    // The proof: a timeline with every signature checked, and the signed record.
    click(&c, "a[href$='/evidence']").await;
    wait_css(&c, "a[download]").await;
    let page = c.source().await.unwrap();
    for step in [
        "Verstuurd door de afzender",
        "In uw brievenbus gezet",
        "Geopend",
        "klopt",
    ] {
        assert!(page.contains(step), "{step} missing from the evidence page");
    }
    check(&c, "evidence-nl").await;
    // The download is the letter's proof bundle, which verifies offline
    // with the federation's root key alone.
    let download = c
        .find(Locator::Css("a[download]"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    // With the browser's session cookie (the page's CSP lets no script
    // fetch it).
    let cookies: Vec<String> = c
        .get_all_cookies()
        .await
        .unwrap()
        .iter()
        .map(|k| format!("{}={}", k.name(), k.value()))
        .collect();
    let (status, _, bytes) = w
        .citizen()
        .send_with(
            axum::http::Method::GET,
            &download,
            &[("cookie", cookies.join("; "))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let bundle = estafette_spec::bundle::ProofBundle::decode(&bytes).unwrap();
    assert_eq!(bundle.message_id, m);
    let (_, steps) = bundle
        .verify(&w.fed.fed.root_public_key().unwrap(), estafette_pki::now())
        .unwrap();
    let events: Vec<_> = steps.iter().map(|s| s.record.event).collect();
    assert!(
        events.contains(&EvidenceEvent::ContentHandover),
        "{events:?}"
    );
    let letter_url = c.current_url().await.unwrap().to_string();
    let holder_letter = letter_url.trim_end_matches("/evidence").to_owned();
    // A page for something that does not exist.
    c.goto(&format!(
        "{base}/letters/env-00000000000000000000000000000000"
    ))
    .await
    .unwrap();
    check(&c, "not-found-nl").await;
    c.goto(&format!("{base}/access-log")).await.unwrap();
    check(&c, "access-log-nl").await;

    // The same pages in the inbox's other languages; the choice is also
    // the language of Anna's e-mails and paper letters.
    for lang in OTHER_LANGUAGES {
        c.goto(&format!("{base}/language/{lang}")).await.unwrap();
        until(&w, "the language of her mail", |p| p.language == lang).await;
        let holders = holders_pages(&base, &letter_url, &holder_letter);
        for (path, name) in holders.iter().chain(&[("/clients", "clients-empty")]) {
            c.goto(&format!("{base}{path}")).await.unwrap();
            assert_eq!(html_lang(&c).await.as_deref(), Some(lang), "{name}");
            check(&c, &format!("{name}-{lang}")).await;
        }
    }
    c.goto(&format!("{base}/language/nl")).await.unwrap();

    // Everything on paper, in one step.
    c.goto(&format!("{base}/settings")).await.unwrap();
    click(&c, "form[action='/settings/all-paper'] button").await;
    until(&w, "everything on paper", |p| p.digital_senders.is_empty()).await;
    // What changed, newest first, each with how it was made.
    c.goto(&format!("{base}/settings/history")).await.unwrap();
    let history = page_text(&c).await;
    for change in [
        "Alles op papier",
        "Digitale post aangezet",
        "Berichtenbox gemaakt",
    ] {
        assert!(history.contains(change), "{change} in {history}");
    }
    assert!(
        history.find("Alles op papier") < history.find("Berichtenbox gemaakt"),
        "newest first: {history}"
    );
    assert!(history.contains("Met uw login (kenmerk "), "{history}");
    check(&c, "history-nl").await;

    // A representative: Anna asks Piet to help (the web form), Piet logs in,
    // accepts, and opens her letter.
    c.goto(&format!("{base}/representatives")).await.unwrap();
    c.find(Locator::Id("rep-name"))
        .await
        .unwrap()
        .send_keys("Piet de Vries")
        .await
        .unwrap();
    c.find(Locator::Id("rep-id"))
        .await
        .unwrap()
        .send_keys(PIET)
        .await
        .unwrap();
    click(&c, "form[action='/representatives'] button").await;
    wait_css(&c, "form[action='/representatives/revoke']").await;
    check(&c, "representatives-nl").await;
    log_out(&c).await;
    wait_css(&c, "#subject").await;
    log_in(&c, &base, PIET).await;
    wait_css(&c, "main h1").await;
    c.goto(&format!("{base}/clients")).await.unwrap();
    check(&c, "clients-accept-nl").await;
    click(&c, "form[action='/clients/accept'] button").await;
    wait_css(&c, "main ul a").await;
    let mut anna = w.citizen();
    anna.login(&w.assertion_by(
        NATIONAL_IDP,
        ANNA,
        "home.test",
        LevelOfAssurance::Substantial,
    ))
    .await
    .unwrap();
    c.goto(&format!("{base}/clients")).await.unwrap();
    check(&c, "clients-nl").await;
    assert!(
        c.find(Locator::Css("header a[href='/clients']"))
            .await
            .is_ok(),
        "a representative's menu offers the clients"
    );
    // Found by part of the name (the test login names everyone "Test
    // Tester"), whatever the case; a name nobody has.
    c.goto(&format!("{base}/clients?name=TESTER"))
        .await
        .unwrap();
    assert!(page_text(&c).await.contains("Test Tester"));
    c.goto(&format!("{base}/clients?name=Pietersen"))
        .await
        .unwrap();
    assert!(page_text(&c).await.contains("Geen cliënt met die naam."));
    check(&c, "clients-none-found-nl").await;
    c.goto(&format!("{base}/clients")).await.unwrap();
    click(&c, "main ul a").await;
    wait_css(&c, ".letter a").await;
    check(&c, "client-letters-nl").await;
    let client_url = c.current_url().await.unwrap().to_string();
    click(&c, ".letter a").await;
    wait_css(&c, "div.body").await;
    check(&c, "client-letter-nl").await;
    let client_letter_url = c.current_url().await.unwrap().to_string();
    // The representative's pages in the other languages.
    for lang in OTHER_LANGUAGES {
        c.goto(&format!("{base}/language/{lang}")).await.unwrap();
        for (url, name) in [
            (format!("{base}/clients"), "clients"),
            (client_url.clone(), "client-letters"),
            (client_letter_url.clone(), "client-letter"),
        ] {
            c.goto(&url).await.unwrap();
            assert_eq!(html_lang(&c).await.as_deref(), Some(lang), "{name}");
            check(&c, &format!("{name}-{lang}")).await;
        }
    }
    // The login page, in each.
    log_out(&c).await;
    wait_css(&c, "#subject").await;
    for lang in OTHER_LANGUAGES {
        c.goto(&format!("{base}/language/{lang}")).await.unwrap();
        c.goto(&format!("{base}/login")).await.unwrap();
        wait_css(&c, "#subject").await;
        assert_eq!(html_lang(&c).await.as_deref(), Some(lang), "login");
        check(&c, &format!("login-{lang}")).await;
    }
    let log = anna.access_log().await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.actor.representative.as_deref() == Some("Piet de Vries"))
            .count(),
        1 + OTHER_LANGUAGES.len(),
        "the representative's openings: the Dutch page and one per other language"
    );

    // Every page again on a phone (Chromium's mobile emulation, 360 px), in
    // every language: axe, no sideways scrolling, 44 px touch targets.
    let p = phone(&driver).await;
    log_in(&p, &base, ANNA).await;
    for lang in ALL_LANGUAGES {
        p.goto(&format!("{base}/language/{lang}")).await.unwrap();
        for (path, name) in holders_pages(&base, &letter_url, &holder_letter) {
            p.goto(&format!("{base}{path}")).await.unwrap();
            assert_eq!(html_lang(&p).await.as_deref(), Some(lang), "{name}");
            check_phone(&p, &format!("{name}-{lang}")).await;
        }
    }
    log_out(&p).await;
    wait_css(&p, "#subject").await;
    log_in(&p, &base, PIET).await;
    for lang in ALL_LANGUAGES {
        p.goto(&format!("{base}/language/{lang}")).await.unwrap();
        for (path, name) in [
            ("/clients".to_owned(), "clients"),
            (
                client_url.trim_start_matches(&base).to_owned(),
                "client-letters",
            ),
        ] {
            p.goto(&format!("{base}{path}")).await.unwrap();
            check_phone(&p, &format!("{name}-{lang}")).await;
        }
    }
    log_out(&p).await;
    for lang in ALL_LANGUAGES {
        p.goto(&format!("{base}/language/{lang}")).await.unwrap();
        p.goto(&format!("{base}/login")).await.unwrap();
        wait_css(&p, "#subject").await;
        check_phone(&p, &format!("login-{lang}")).await;
    }
    // The main journeys done, not only seen, in each other language, on
    // the phone: a new person each time.
    for (lang, who) in OTHER_LANGUAGES.into_iter().zip(JOURNEY_PEOPLE) {
        journey_on_a_phone(&p, &w, &base, who, lang).await;
    }
    p.close().await.unwrap();
    c.close().await.unwrap();
    w.stop().await;
}

/// The pages of a letter's holder checked in every language: path at
/// `base` and name.
fn holders_pages<'a>(
    base: &str,
    letter_url: &'a str,
    holder_letter: &'a str,
) -> [(&'a str, &'static str); 8] {
    [
        (letter_url.trim_start_matches(base), "evidence"),
        (holder_letter.trim_start_matches(base), "letter"),
        ("/letters/env-00000000000000000000000000000000", "not-found"),
        ("/", "inbox"),
        ("/settings", "settings"),
        ("/settings/history", "history"),
        ("/access-log", "access-log"),
        ("/representatives", "representatives"),
    ]
}

/// Valid citizen service numbers of the people of the journeys.
const JOURNEY_PEOPLE: [&str; 4] = [
    "bsn:100000009",
    "bsn:100000022",
    "bsn:100000034",
    "bsn:100000046",
];

/// One person's journey on a phone in `lang`, each page checked (axe, no
/// sideways scrolling, touch targets): log in, create the box, confirm an
/// e-mail address, switch digital mail on and choose a sender (the box is
/// in `lang`, and so are the person's letters), read a letter and its
/// proof, everything back on paper, and ask Piet to help; then Piet says
/// yes and reads that letter as the person's helper.
async fn journey_on_a_phone(p: &Client, w: &World, base: &str, who: &str, lang: &str) {
    p.goto(&format!("{base}/language/{lang}")).await.unwrap();
    log_in(p, base, who).await;
    check_phone(p, &format!("journey-start-{lang}")).await;
    go_digital_on_the_web(p, w, base, who, &format!("{lang}@example.eu")).await;
    until_person(w, who, "the language of the letters", |x| {
        x.language == lang
    })
    .await;
    check_phone(p, &format!("journey-settings-{lang}")).await;
    letter_arrives_and_is_opened(p, w, base, who).await;
    check_phone(p, &format!("journey-letter-{lang}")).await;
    click(p, "main a[href$='/evidence']").await;
    wait_css(p, "ol.steps").await;
    check_phone(p, &format!("journey-evidence-{lang}")).await;
    p.goto(&format!("{base}/settings")).await.unwrap();
    click(p, "form[action='/settings/all-paper'] button").await;
    until_person(w, who, "everything on paper", |x| {
        x.digital_senders.is_empty()
    })
    .await;
    assert_eq!(html_lang(p).await.as_deref(), Some(lang));
    check_phone(p, &format!("journey-all-paper-{lang}")).await;

    // A helper: the person asks Piet to read their letters ...
    p.goto(&format!("{base}/representatives")).await.unwrap();
    for (field, value) in [("rep-name", "Piet de Vries"), ("rep-id", PIET)] {
        p.find(Locator::Id(field))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    click(p, "form[action='/representatives'] button").await;
    wait_css(p, "form[action='/representatives/revoke']").await;
    check_phone(p, &format!("journey-helper-{lang}")).await;
    log_out(p).await;

    // ... and Piet, in the same language, says yes and reads the letter.
    log_in(p, base, PIET).await;
    p.goto(&format!("{base}/clients")).await.unwrap();
    let id = p
        .find(Locator::Css(
            "form[action='/clients/accept'] input[name=id]",
        ))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    check_phone(p, &format!("journey-asked-{lang}")).await;
    click(p, "form[action='/clients/accept'] button").await;
    let client = format!("main a[href='/clients/{id}']");
    click(p, &client).await;
    wait_css(p, ".letter a").await;
    check_phone(p, &format!("journey-client-letters-{lang}")).await;
    click(p, ".letter a").await;
    wait_css(p, "div.body").await;
    assert_eq!(html_lang(p).await.as_deref(), Some(lang));
    check_phone(p, &format!("journey-client-letter-{lang}")).await;
    log_out(p).await;
}
