//! Wallet logins: a person abroad opens an inbox with the PID in their EU
//! Digital Identity Wallet, over OpenID4VP. The wallet and the PID provider
//! are built on the OpenWallet Foundation's SD-JWT reference implementation
//! (`tests/wallet/wallet.py`), not on our code; the web inbox is driven in
//! headless Chromium. The presentation is verified by the home node and
//! again by the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::chromium::*;
use common::oidc::*;
use common::wallet::*;
use common::*;
use estafette_gateway::registry;
use estafette_relay::config::WalletConfig;
use fantoccini::Client;

/// Jonas's personal administrative number, and the status list entries.
const PAN: &str = "DE-PAN-4711-0815";
const VALID: u32 = 3;
const REVOKED: u32 = 7;
const YEAR: i64 = 365 * 86_400;

struct WalletWorld {
    w: World,
    base: String,
    provider: TestPidProvider,
    /// A second provider, not in the trust list.
    stranger: TestPidProvider,
    root: PathBuf,
    web_ca: PathBuf,
}

impl WalletWorld {
    /// What a wallet trusts: the federation root (request signatures) and
    /// the web inbox's CA.
    fn roots(&self) -> (&std::path::Path, &std::path::Path) {
        (&self.root, &self.web_ca)
    }

    /// A wallet directory holding a PID issued by `provider`.
    fn holder(&self, name: &str) -> PathBuf {
        self.w.fed.tmp.path().join(format!("wallet-{name}"))
    }
}

async fn start() -> WalletWorld {
    let mut parts = None;
    let w = World::start_custom(|fed| {
        let base = fix_home_address(fed);
        let provider = TestPidProvider::start(&fed.fed, fed.tmp.path(), "de");
        provider.enter_in_trust_list(&mut fed.fed, "DE");
        provider.set_status(16, &[REVOKED]);
        let stranger = TestPidProvider::start(&fed.fed, fed.tmp.path(), "unlisted");
        stranger.set_status(16, &[]);
        home_citizen(fed).wallet = Some(WalletConfig {
            status_ca_file: Some(fed.fed.web_ca_path()),
        });
        parts = Some((
            base,
            provider,
            stranger,
            fed.fed.root_cert_path(),
            fed.fed.web_ca_path(),
        ));
    })
    .await;
    let (base, provider, stranger, root, web_ca) = parts.unwrap();
    WalletWorld {
        w,
        base,
        provider,
        stranger,
        root,
        web_ca,
    }
}

/// Jonas's registry identifier, as SPEC §8.3 makes it from his PID.
fn jonas() -> String {
    estafette_spec::pid::pid_subject(&PID_PROVIDER.parse().unwrap(), "DE".parse().unwrap(), PAN)
        .unwrap()
        .to_string()
}

/// Starts a wallet login in the browser: gives the authorization request
/// the page offers (the link, and the same in the QR code).
async fn start_wallet_login(c: &Client, base: &str) -> String {
    c.goto(&format!("{base}/login")).await.unwrap();
    click(c, "a[href='/login/wallet/start']").await;
    wait_css(c, "figure.qr svg").await;
    let link = href(c, "a[href^='openid4vp://']").await;
    let source = c.source().await.unwrap();
    assert_eq!(decode_qr(&source), link, "the QR code is the link");
    link
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jonas_opens_an_inbox_with_his_german_pid() {
    let o = start().await;
    let holder = o.holder("jonas");
    o.provider.issue(&holder, PAN, VALID, "DE", YEAR);
    let driver = chromedriver();
    let c = browser(&driver).await;
    c.goto(&format!("{}/language/en", o.base)).await.unwrap();

    let request = start_wallet_login(&c, &o.base).await;
    check(&c, "wallet-login-qr").await;
    assert!(
        request.contains("client_id=x509_hash%3A"),
        "the node's client id: {request}"
    );
    let answer = present(&holder, &request, o.roots(), &[]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    let redirect = answer["body"]["redirect_uri"].as_str().unwrap();
    assert!(
        redirect.starts_with(&format!("{}/login/wallet/", o.base))
            && redirect.contains("response_code="),
        "{redirect}"
    );

    // A wallet on this device sends the browser back: logged in, no BSN,
    // registers.
    c.goto(redirect).await.unwrap();
    go_digital_on_the_web(&c, &o.w, &o.base, &jonas(), "jonas@example.de").await;
    let person = registry::lookup(o.w.gateway.gateway.records(), &jonas().parse().unwrap())
        .unwrap()
        .unwrap();
    assert!(person.inbox.is_some());
    letter_arrives_and_is_opened(&c, &o.w, &o.base, &jonas()).await;

    // The same PID, reissued to a new phone, opens the same inbox.
    let new_phone = o.holder("jonas-new-phone");
    o.provider.issue(&new_phone, PAN, VALID, "DE", YEAR);
    log_out(&c).await;
    let request = start_wallet_login(&c, &o.base).await;
    // Pressing "continue" before the wallet answered says so.
    click(&c, "#continue").await;
    wait_css(&c, "p[role=status]").await;
    let answer = present(&new_phone, &request, o.roots(), &[]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    // Shared on a phone: the person continues on the page.
    click(&c, "#continue").await;
    wait_css(&c, ".letter a").await;
    o.w.stop().await;
}

/// What a refused presentation must show.
struct Refusal {
    case: &'static str,
    holder: &'static str,
    options: &'static [&'static str],
    /// Words of the reason the wallet and the page are given.
    says: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_presentations_say_why_and_change_nothing() {
    let o = start().await;
    let p = &o.provider;
    p.issue(&o.holder("good"), PAN, VALID, "DE", YEAR);
    p.issue(&o.holder("revoked"), PAN, REVOKED, "DE", YEAR);
    p.issue(&o.holder("french"), "FR-PAN-1", VALID, "FR", YEAR);
    p.issue(&o.holder("expired"), PAN, VALID, "DE", -60);
    p.issue(&o.holder("no-number"), "-", VALID, "DE", YEAR);
    o.stranger
        .issue(&o.holder("unlisted"), PAN, VALID, "DE", YEAR);
    let driver = chromedriver();
    let c = browser(&driver).await;
    c.goto(&format!("{}/language/en", o.base)).await.unwrap();

    let refusals = [
        Refusal {
            case: "wrong nonce",
            holder: "good",
            options: &["--nonce=a-nonce-of-another-request-000"],
            says: "nonce",
        },
        Refusal {
            case: "wrong aud",
            holder: "good",
            options: &["--aud=x509_hash:another-verifier"],
            says: "aud",
        },
        Refusal {
            case: "no key binding",
            holder: "good",
            options: &["--no-kb"],
            says: "no key binding",
        },
        Refusal {
            case: "a key binding by another key",
            holder: "good",
            options: &["--other-key"],
            says: "holder key",
        },
        Refusal {
            case: "a tampered disclosure",
            holder: "good",
            options: &["--tamper"],
            says: "matches no digest",
        },
        Refusal {
            case: "an issuer not in the trust list",
            holder: "unlisted",
            options: &[],
            says: "not a PID provider of the trust list",
        },
        Refusal {
            case: "a German provider issuing for France",
            holder: "french",
            options: &[],
            says: "vouches for DE",
        },
        Refusal {
            case: "expired",
            holder: "expired",
            options: &[],
            says: "expired",
        },
        Refusal {
            case: "revoked",
            holder: "revoked",
            options: &[],
            says: "revoked",
        },
        Refusal {
            case: "no personal administrative number",
            holder: "no-number",
            options: &[],
            says: "personal administrative number",
        },
    ];
    for r in &refusals {
        let request = start_wallet_login(&c, &o.base).await;
        let answer = present(&o.holder(r.holder), &request, o.roots(), r.options).await;
        assert_eq!(answer["status"], 400, "{}: {answer}", r.case);
        let said = answer["body"]["error_description"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {answer}", r.case));
        assert!(
            said.contains(r.says),
            "{}: the wallet is told {said:?}",
            r.case
        );
        // The page shows the refusal in the person's language.
        click(&c, "#continue").await;
        wait_css(&c, "p[role=alert]").await;
        let text = page_text(&c).await;
        assert!(
            text.contains("could not be used to log you in") && text.contains(r.says),
            "{}: {text}",
            r.case
        );
        assert!(
            c.get_named_cookie("estafette_session").await.is_err(),
            "{}: no session",
            r.case
        );
    }
    // The person says no in the wallet: the page says nothing was shared.
    let request = start_wallet_login(&c, &o.base).await;
    let answer = present(&o.holder("good"), &request, o.roots(), &["--decline"]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    click(&c, "#continue").await;
    wait_css(&c, "p[role=alert]").await;
    let text = page_text(&c).await;
    assert!(text.contains("nothing was shared"), "{text}");
    let nobody =
        registry::lookup(o.w.gateway.gateway.records(), &jonas().parse().unwrap()).unwrap();
    assert!(nobody.is_none(), "nothing was registered");

    // A presentation that logged in once, replayed to a second login:
    // its nonce is the first request's.
    let request = start_wallet_login(&c, &o.base).await;
    let saved = o.w.fed.tmp.path().join("presentation.txt");
    let save = format!("--save={}", saved.display());
    let answer = present(&o.holder("good"), &request, o.roots(), &[&save]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    click(&c, "#continue").await;
    wait_css(&c, "form[action='/register']").await;
    log_out(&c).await;
    let request = start_wallet_login(&c, &o.base).await;
    let replay = format!("--replay={}", saved.display());
    let answer = present(&o.holder("good"), &request, o.roots(), &[&replay]).await;
    assert_eq!(answer["status"], 400, "replayed: {answer}");
    assert!(
        answer["body"]["error_description"]
            .as_str()
            .unwrap()
            .contains("answers another request"),
        "{answer}"
    );
    o.w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_login_belongs_to_the_browser_that_started_it() {
    let o = start().await;
    let holder = o.holder("jonas");
    o.provider.issue(&holder, PAN, VALID, "DE", YEAR);
    let driver = chromedriver();
    let c = browser(&driver).await;
    let request = start_wallet_login(&c, &o.base).await;
    let page = c.current_url().await.unwrap().to_string();
    // The request object is fetched once: a second fetch finds nothing.
    let answer = present(&holder, &request, o.roots(), &[]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    let again = present(&holder, &request, o.roots(), &[]).await;
    assert_ne!(again["status"], 200, "{again}");
    // Another browser (without the cookie that binds the login to the
    // browser that started it) opening the page of the login gets no
    // session, and leaves the login to its browser.
    let binding = c.get_named_cookie("estafette_wallet").await.unwrap();
    c.delete_cookie("estafette_wallet").await.unwrap();
    c.goto(&page).await.unwrap();
    wait_css(&c, "p[role=alert]").await;
    assert!(c.get_named_cookie("estafette_session").await.is_err());
    // The browser that started it is logged in.
    c.add_cookie(binding).await.unwrap();
    c.goto(&page).await.unwrap();
    wait_css(&c, "form[action='/register']").await;
    o.w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_registered_through_eidas_links_the_wallet() {
    let o = start().await;
    let holder = o.holder("jonas");
    o.provider.issue(&holder, PAN, VALID, "DE", YEAR);
    // Jonas registered through his country's eID (eIDAS), with a letter.
    let eidas = "eidas:DE/NL/DE-4711-0815";
    let mut person = estafette_pki::AssertedPerson::test(eidas.parse().unwrap());
    (person.family_name, person.given_names, person.birth_date) =
        ("Müller".into(), "Jonas".into(), "1985-07-14".into());
    let assertion =
        o.w.fed
            .fed
            .mint_assertion(
                &estafette_relay::testkit::GERMAN_EID.parse().unwrap(),
                &person,
                &"home.test".parse().unwrap(),
                estafette_pki::now(),
                300,
            )
            .unwrap();
    let mut api = o.w.citizen();
    api.login(&assertion).await.unwrap();
    o.w.go_digital(
        &api,
        "de",
        None,
        "jonas@example.de",
        &[estafette_relay::testkit::AGENCY],
    )
    .await;
    let (letter, channel) = o.w.send(eidas, None).await;
    assert_eq!(channel, "digital");
    o.w.wait_for_event(&letter, estafette_spec::EvidenceEvent::ContentConsignment)
        .await;

    // In his settings he links his wallet.
    let driver = chromedriver();
    let c = browser(&driver).await;
    c.goto(&format!("{}/language/en", o.base)).await.unwrap();
    let session = fantoccini::cookies::Cookie::build((
        "estafette_session",
        api.session_token().unwrap().to_owned(),
    ))
    .domain("127.0.0.1")
    .path("/")
    .secure(true)
    .http_only(true)
    .build();
    c.add_cookie(session).await.unwrap();
    c.goto(&format!("{}/settings", o.base)).await.unwrap();
    click(&c, "a[href='/login/wallet/start?link=true']").await;
    wait_css(&c, "figure.qr svg").await;
    let request = href(&c, "a[href^='openid4vp://']").await;
    let answer = present(&holder, &request, o.roots(), &[]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    click(&c, "#continue").await;
    wait_css(&c, ".letter a").await;
    let records = o.w.gateway.gateway.records();
    let by_wallet = registry::lookup(records, &jonas().parse().unwrap()).unwrap();
    let by_eidas = registry::lookup(records, &eidas.parse().unwrap()).unwrap();
    assert!(by_wallet.is_some(), "the wallet's identity is linked");
    assert_eq!(
        by_wallet.unwrap().inbox,
        by_eidas.unwrap().inbox,
        "one person, one inbox"
    );

    // From now on his wallet alone opens the same inbox with the letter.
    log_out(&c).await;
    let request = start_wallet_login(&c, &o.base).await;
    let answer = present(&holder, &request, o.roots(), &[]).await;
    assert_eq!(answer["status"], 200, "{answer}");
    click(&c, "#continue").await;
    wait_css(&c, ".letter.unread a").await;
    o.w.stop().await;
}

/// The gateway verifies a PID itself, whatever the home node that carries
/// it says: the status list must come with a credential that names one,
/// and a revoked PID is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_checks_a_pid_itself() {
    let o = start().await;
    o.provider.issue(&o.holder("good"), PAN, VALID, "DE", YEAR);
    o.provider
        .issue(&o.holder("revoked"), PAN, REVOKED, "DE", YEAR);
    let driver = chromedriver();
    let c = browser(&driver).await;
    // Presentations made for this node's requests, never posted to it.
    let mut made = Vec::new();
    for holder in ["good", "revoked", "good"] {
        let request = start_wallet_login(&c, &o.base).await;
        let file = o.w.fed.tmp.path().join(format!("made-{}.txt", made.len()));
        let save = format!("--save={}", file.display());
        present(
            &o.holder(holder),
            &request,
            o.roots(),
            &[&save, "--no-post"],
        )
        .await;
        made.push(std::fs::read_to_string(file).unwrap());
    }
    let status_list = std::fs::read_to_string(o.provider.dir.join("status.jwt")).unwrap();
    let register =
        |presentation: &str, status_list: Option<String>| estafette_spec::citizen::CitizenRequest {
            identity: Some(estafette_spec::IdentityProof::Pid(
                estafette_spec::assertion::PidProof {
                    presentation: presentation.to_owned(),
                    status_list,
                },
            )),
            action: estafette_spec::citizen::CitizenAction::Register {
                language: "de".into(),
                postal_address: None,
            },
            inbox_url: Some(format!("{}/", o.base)),
        };
    let refused = |reply: estafette_spec::citizen::CitizenReply| match reply {
        estafette_spec::citizen::CitizenReply::Refused { reason, detail } => (reason, detail),
        other => panic!("accepted: {other:?}"),
    };
    let carry = |request| estafette_relay::home::carry(&o.w.home, request);
    let (_, detail) = refused(carry(register(&made[0], None)).await.unwrap());
    assert!(detail.contains("no status list came with it"), "{detail}");
    let (reason, detail) = refused(
        carry(register(&made[1], Some(status_list.clone())))
            .await
            .unwrap(),
    );
    assert_eq!(reason, estafette_spec::ReasonCode::Revoked, "{detail}");
    let nobody =
        registry::lookup(o.w.gateway.gateway.records(), &jonas().parse().unwrap()).unwrap();
    assert!(nobody.is_none(), "nothing was registered");
    // With its status list, a good PID registers Jonas.
    let reply = carry(register(&made[2], Some(status_list))).await.unwrap();
    assert!(
        matches!(reply, estafette_spec::citizen::CitizenReply::Person(ref p) if p.inbox.is_some()),
        "{reply:?}"
    );
    o.w.stop().await;
}
