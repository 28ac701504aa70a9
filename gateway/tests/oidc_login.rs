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
use estafette_spec::oidc::IdentifierKind;
use estafette_spec::*;
use fantoccini::{Client, Locator};
use serde_json::json;

const ANNA: &str = "bsn:999999990";
const JONAS: &str = "eidas:DE/NL/DE-4711-0815";
const JONAS_BSN: &str = "bsn:123456782";

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
            // Jonas, once he got a BSN: all his given names, his family
            // name as the Dutch register writes it.
            (
                "jonas",
                ACR_SUBSTANTIAL,
                json!({"bsn": "123456782", "family_name": "Mueller", "given_name": "Jonas Maria", "birthdate": "1985-07-14"}),
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
    fill_provider_login(c, login).await;
}

/// The provider's login page: user name, password, submit.
async fn fill_provider_login(c: &Client, login: &str) {
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

async fn session_cookie(c: &Client) -> String {
    c.get_named_cookie("estafette_session")
        .await
        .unwrap()
        .value()
        .to_owned()
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
    go_digital_on_the_web(&c, &o.w, &o.base, ANNA, "anna@example.nl").await;
    letter_arrives_and_is_opened(&c, &o.w, &o.base, ANNA).await;
    let anna =
        estafette_gateway::registry::lookup(o.w.gateway.gateway.records(), &ANNA.parse().unwrap())
            .unwrap()
            .unwrap();
    assert_eq!(
        anna.name.as_deref(),
        Some("Anna Jansen"),
        "the name on paper comes from the ID token"
    );

    // A fresh login renews the session (a change needs one of minutes
    // ago): the provider asks again (prompt=login) though Anna is still
    // logged in there, and she comes back in the same session.
    let before = session_cookie(&c).await;
    c.goto(&format!("{}/login", o.base)).await.unwrap();
    click(
        &c,
        "a[href='/login/oidc/start?provider=login.nl.test&renew=true']",
    )
    .await;
    fill_provider_login(&c, "anna").await;
    wait_css(&c, "a[href='/settings']").await;
    assert_eq!(
        session_cookie(&c).await,
        before,
        "the same session, renewed"
    );

    // Jonas, abroad, logs in with the German provider: no BSN anywhere.
    log_out(&c).await;
    log_in_at(&c, &o.base, "login.de.test", "jonas").await;
    go_digital_on_the_web(&c, &o.w, &o.base, JONAS, "jonas@example.de").await;
    letter_arrives_and_is_opened(&c, &o.w, &o.base, JONAS).await;
    drop(o.providers);
    o.w.stop().await;
}

/// ID tokens signed with the German provider's own key, so that each claim
/// can be made wrong in one way.
struct Minter {
    key: ring::signature::EcdsaKeyPair,
    kid: String,
    issuer: String,
}

impl Minter {
    fn of(provider: &TestProvider) -> Minter {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwk = provider.private_jwk();
        let part = |name: &str| b64.decode(jwk[name].as_str().unwrap()).unwrap();
        let mut public = vec![0x04];
        public.extend(part("x"));
        public.extend(part("y"));
        let key = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &part("d"),
            &public,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        Minter {
            key,
            kid: format!("{}-1", provider.id),
            issuer: provider.issuer.clone(),
        }
    }

    /// Good claims for Jonas and the home node, a fresh nonce, a login now.
    fn claims(&self) -> serde_json::Value {
        let now = estafette_pki::now().0;
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        json!({
            "iss": self.issuer, "sub": "jonas", "aud": CLIENT_ID,
            "iat": now, "exp": now + 600, "auth_time": now,
            "nonce": bytes::Hex(&nonce).to_string(), "acr": ACR_SUBSTANTIAL,
            "person_identifier": "DE/NL/DE-4711-0815",
            "family_name": "Müller", "given_name": "Jonas", "birthdate": "1985-07-14",
        })
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64.encode(signature.as_ref()))
    }

    /// The good claims with `change` applied, signed.
    fn token(
        &self,
        change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> String {
        let mut claims = self.claims();
        change(claims.as_object_mut().unwrap());
        self.sign(&claims)
    }
}

/// Logs in at the citizen API with an ID token; the problem's code and its
/// (German) text, or None when the login worked.
async fn api_login(o: &OidcWorld, token: &str) -> Option<(String, String)> {
    let mut client = o.w.citizen();
    client.set_language("de");
    let (status, body) = client
        .send(
            axum::http::Method::POST,
            "/v1/session",
            Some(("application/jwt", token.as_bytes().to_vec())),
        )
        .await
        .unwrap();
    if status.is_success() {
        return None;
    }
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let code = problem["type"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    Some((
        code.to_owned(),
        problem["detail"].as_str().unwrap().to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_say_why_and_change_nothing() {
    let o = start().await;
    let minter = Minter::of(&o.providers[1]);
    assert_eq!(
        api_login(&o, &minter.token(|_| {})).await,
        None,
        "a good token"
    );

    let replayed = minter.token(|_| {});
    assert_eq!(api_login(&o, &replayed).await, None);
    // One character in the middle of the signature (the last one may only
    // carry padding bits, which a strict decoder refuses as malformed).
    let mut forged = minter.token(|_| {}).into_bytes();
    let at = forged.len() - 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let now = estafette_pki::now().0;
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "another audience",
            minter.token(|c| {
                c.insert("aud".into(), "another-client".into());
            }),
            "wrong_audience",
            "anderen Dienst",
        ),
        (
            "expired",
            minter.token(|c| {
                c.insert("iat".into(), (now - 700).into());
                c.insert("auth_time".into(), (now - 700).into());
                c.insert("exp".into(), (now - 100).into());
            }),
            "expired",
            "abgelaufen",
        ),
        ("a bad signature", forged, "bad_signature", "anerkannten"),
        (
            "an issuer not in the trust list",
            minter.token(|c| {
                c.insert("iss".into(), "https://login.elsewhere.test".into());
            }),
            "unknown_signer",
            "anerkannten",
        ),
        ("a replayed nonce", replayed, "replayed", "schon benutzt"),
        (
            "acr below substantial",
            minter.token(|c| {
                c.insert("acr".into(), ACR_LOW.into());
            }),
            "assurance_too_low",
            "substanziell",
        ),
        (
            "a German provider asserting a French identifier",
            minter.token(|c| {
                c.insert("person_identifier".into(), "FR/NL/FR-1234".into());
            }),
            "country_mismatch",
            "Land",
        ),
        (
            "a German provider asserting a BSN",
            minter.token(|c| {
                c.insert("person_identifier".into(), "999999990".into());
            }),
            "malformed",
            "stimmt nicht",
        ),
    ];
    for (what, token, code, text) in cases {
        let (got, detail) = api_login(&o, &token)
            .await
            .unwrap_or_else(|| panic!("{what} was accepted"));
        assert_eq!(got, code, "{what}: {detail}");
        assert!(
            detail.contains(text),
            "{what}: the German text, got {detail:?}"
        );
    }
    // Nobody was registered by any of it.
    for who in [JONAS, "eidas:FR/NL/FR-1234", ANNA] {
        assert!(
            estafette_gateway::registry::lookup(
                o.w.gateway.gateway.records(),
                &who.parse().unwrap()
            )
            .unwrap()
            .is_none(),
            "{who}"
        );
    }
    drop(o.providers);
    o.w.stop().await;
}

/// The gateway checks the login's age itself: a change carried with an ID
/// token whose `auth_time` is ten minutes old is refused even though the
/// token is unexpired and the home node carried it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_a_change_with_an_old_login() {
    let o = start().await;
    let minter = Minter::of(&o.providers[1]);
    let now = estafette_pki::now().0;
    let register = |token: String| estafette_spec::citizen::CitizenRequest {
        identity: Some(IdentityProof::IdToken(token)),
        action: estafette_spec::citizen::CitizenAction::Register {
            language: "de".into(),
            postal_address: None,
        },
        inbox_url: Some(format!("{}/", o.base)),
    };
    let old = minter.token(|c| {
        c.insert("auth_time".into(), (now - 600).into());
    });
    let reply = estafette_relay::home::carry(&o.w.home, register(old))
        .await
        .unwrap();
    match reply {
        estafette_spec::citizen::CitizenReply::Refused { reason, detail } => {
            assert_eq!(reason, ReasonCode::Expired, "{detail}");
            assert!(detail.contains("log in again"), "{detail}");
        }
        other => panic!("an old login was accepted: {other:?}"),
    }
    assert!(
        estafette_gateway::registry::lookup(o.w.gateway.gateway.records(), &JONAS.parse().unwrap())
            .unwrap()
            .is_none()
    );
    // The same change with a login of now is taken.
    let fresh = minter.token(|_| {});
    let reply = estafette_relay::home::carry(&o.w.home, register(fresh))
        .await
        .unwrap();
    assert!(
        matches!(reply, estafette_spec::citizen::CitizenReply::Person(ref p) if p.inbox.is_some()),
        "{reply:?}"
    );
    drop(o.providers);
    o.w.stop().await;
}

/// The page's visible text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_key_rollover_and_foreign_keys() {
    let mut o = start().await;
    let driver = chromedriver();
    let c = browser(&driver).await;
    c.goto(&format!("{}/language/nl", o.base)).await.unwrap();
    log_in_at(&c, &o.base, "login.nl.test", "anna").await;
    wait_css(&c, "form[action='/register']").await;
    log_out(&c).await;

    // The provider starts signing with a new key the trust list does not
    // list yet: its logins are refused, in Dutch, and nobody is logged in.
    o.providers[0].roll_key_over("login.nl.test-2");
    log_in_at(&c, &o.base, "login.nl.test", "anna").await;
    wait_css(&c, "p[role=alert]").await;
    let text = page_text(&c).await;
    assert!(text.contains("niet van een erkende inlogdienst"), "{text}");
    c.goto(&format!("{}/", o.base)).await.unwrap();
    wait_css(&c, "a[href='/login/oidc/start?provider=login.nl.test']").await;

    // The operator takes a snapshot of the new JWKS into the trust list;
    // once the home node has read it, the same login works again.
    let jwks = estafette_pki::oidc::read_jwks(&o.providers[0].jwks()).unwrap();
    let provider = o.providers[0].id.clone();
    o.w.fed.fed.set_oidc_keys(&provider, jwks).unwrap();
    estafette_relay::testkit::wait_until("the home node reads the new trust list", WAIT, || {
        o.w.home
            .trust()
            .content()
            .identity_providers
            .iter()
            .any(|p| {
                p.oidc.as_ref().is_some_and(|x| {
                    x.keys
                        .iter()
                        .any(|k| k.kid.as_deref() == Some("login.nl.test-2"))
                })
            })
    })
    .await;
    estafette_relay::testkit::wait_until("the gateway reads the new trust list", WAIT, || {
        o.w.gateway.gateway.node.trust().content().version == o.w.home.trust().content().version
    })
    .await;
    // The person is still logged in at the provider (single sign-on): the
    // button alone brings her back, logged in.
    c.goto(&format!("{}/login", o.base)).await.unwrap();
    click(&c, "a[href='/login/oidc/start?provider=login.nl.test']").await;
    wait_css(&c, "form[action='/register']").await;

    // A token signed with a key that was never listed, under any kid.
    let stranger = Minter {
        key: {
            let rng = ring::rand::SystemRandom::new();
            let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap()
        },
        kid: "login.de.test-1".into(),
        issuer: o.providers[1].issuer.clone(),
    };
    let (code, _) = api_login(&o, &stranger.token(|_| {})).await.unwrap();
    assert_eq!(code, "bad_signature", "a listed kid, another key");
    let unlisted = Minter {
        kid: "never-listed".into(),
        ..stranger
    };
    let (code, detail) = api_login(&o, &unlisted.token(|_| {})).await.unwrap();
    assert_eq!(code, "unknown_signer", "{detail}");

    // A callback this node did not start is refused and changes nothing.
    c.goto(&format!(
        "{}/login/oidc/callback?code=stolen&state=not-from-here",
        o.base
    ))
    .await
    .unwrap();
    let text = page_text(&c).await;
    assert!(text.contains("hier niet begonnen"), "{text}");
    drop(o.providers);
    o.w.stop().await;
}

/// eIDAS through SATOSA: a pysaml2 identity provider sends the eIDAS
/// natural-person attributes (PersonIdentifier DE/NL/…, names, date of
/// birth, LoA substantial) to SATOSA, whose OpenID Connect frontend gives
/// the home node an ID token; Jonas registers and receives a letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eidas_login_through_satosa() {
    let mut bridge = None;
    let mut base = String::new();
    let w = World::start_custom(|fed| {
        base = fix_home_address(fed);
        let b = EidasBridge::start(
            &fed.fed,
            fed.tmp.path(),
            &base,
            &[
                (
                    "jonas",
                    EIDAS_SUBSTANTIAL,
                    "DE/NL/DE-4711-0815",
                    "Müller",
                    "Jonas",
                    "1985-07-14",
                ),
                (
                    "lena",
                    EIDAS_LOW,
                    "DE/NL/DE-0000-0001",
                    "Schmidt",
                    "Lena",
                    "1999-09-09",
                ),
            ],
        );
        b.enter_in_trust_list(&mut fed.fed);
        set_home_clients(fed, vec![b.client_config(&fed.fed, fed.tmp.path())]);
        bridge = Some(b);
    })
    .await;
    let o = OidcWorld {
        w,
        base,
        providers: vec![],
    };
    let driver = chromedriver();
    let c = browser(&driver).await;
    c.goto(&format!("{}/language/nl", o.base)).await.unwrap();

    // A login at eIDAS level low is refused by the home node.
    log_in_at(&c, &o.base, "eidas-bridge.de.test", "lena").await;
    wait_css(&c, "p[role=alert]").await;
    let text = page_text(&c).await;
    assert!(
        text.contains("substantieel") || text.contains("substantial"),
        "{text}"
    );

    // Jonas at level substantial: registers, goes digital, reads a letter.
    log_in_at(&c, &o.base, "eidas-bridge.de.test", "jonas").await;
    go_digital_on_the_web(&c, &o.w, &o.base, JONAS, "jonas@example.de").await;
    letter_arrives_and_is_opened(&c, &o.w, &o.base, JONAS).await;
    drop(bridge);
    o.w.stop().await;
}

/// What the page says went wrong: the problem's code, or `None` when the
/// browser landed on the inbox.
async fn outcome(c: &Client) -> Option<String> {
    wait_css(
        c,
        "main code, main a[href='/settings'], header a[href='/settings']",
    )
    .await;
    match c.find(Locator::Css("main code")).await {
        Ok(code) => Some(code.text().await.unwrap()),
        Err(_) => None,
    }
}

/// Linking a second login on the web inbox, at the providers' own pages:
/// another person's login is refused with the API's code (compared with the
/// API's answer to the same claims) and changes nothing; the provider is
/// asked for a new login even though the browser is logged in there; and
/// Jonas's BSN login, once linked, opens the box of his eIDAS login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_is_linked_on_the_web_with_the_apis_refusals() {
    let o = start().await;
    let driver = chromedriver();
    let c = browser(&driver).await;
    c.goto(&format!("{}/language/en", o.base)).await.unwrap();
    log_in_at(&c, &o.base, "login.de.test", "jonas").await;
    click(&c, "form[action='/register'] button[type=submit]").await;
    until_person(&o.w, JONAS, "an inbox", |p| p.inbox.is_some()).await;
    c.goto(&format!("{}/settings", o.base)).await.unwrap();
    check(&c, "settings-link-en").await;

    // Pierre's login at the same provider Jonas is logged in at: the
    // provider asks who logs in (prompt=login), and the link is refused.
    click(
        &c,
        "a[href='/login/oidc/start?provider=login.de.test&link=true']",
    )
    .await;
    fill_provider_login(&c, "pierre").await;
    let web = outcome(&c).await;
    check(&c, "link-refused-en").await;
    let minter = Minter::of(&o.providers[1]);
    let mut jonas = o.w.citizen();
    jonas
        .login_with_id_token(&minter.token(|_| {}))
        .await
        .unwrap();
    let pierre = minter.token(|c| {
        c.insert("person_identifier".into(), "FR/NL/FR-1234".into());
        c.insert("family_name".into(), "Durand".into());
        c.insert("given_name".into(), "Pierre".into());
        c.insert("birthdate".into(), "1979-02-03".into());
    });
    let api = jonas.link_id_token(&pierre).await.unwrap_err();
    assert_eq!(
        web.as_deref(),
        api.code(),
        "the web refuses as the API: {api}"
    );
    assert_eq!(web.as_deref(), Some("country_mismatch"));

    // Anna's national login is another person's: refused, nothing changed.
    c.goto(&format!("{}/settings", o.base)).await.unwrap();
    click(
        &c,
        "a[href='/login/oidc/start?provider=login.nl.test&link=true']",
    )
    .await;
    fill_provider_login(&c, "anna").await;
    assert_eq!(outcome(&c).await.as_deref(), Some("identity_mismatch"));
    // What the gateway has of Jonas now (a new API session's view).
    let view_of_jonas = || async {
        o.w.citizen()
            .login_with_id_token(&minter.token(|_| {}))
            .await
            .unwrap()
    };
    assert!(view_of_jonas().await.linked.is_empty(), "nothing linked");

    // His own BSN login: linked, and it opens the same box.
    c.goto(&format!("{}/settings", o.base)).await.unwrap();
    click(
        &c,
        "a[href='/login/oidc/start?provider=login.nl.test&link=true']",
    )
    .await;
    fill_provider_login(&c, "jonas").await;
    assert_eq!(outcome(&c).await, None, "linked");
    let me = view_of_jonas().await;
    assert_eq!(me.linked.len(), 1, "{me:?}");
    assert_eq!(
        jonas.me().await.unwrap().linked,
        me.linked,
        "an API session opened before the link sees it at once"
    );
    assert_eq!(me.linked[0].to_string(), JONAS_BSN);
    let entry = estafette_gateway::registry::lookup(
        o.w.gateway.gateway.records(),
        &JONAS_BSN.parse().unwrap(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        entry.inbox.map(|i| i.inbox_id),
        me.inbox,
        "the BSN login opens the same box"
    );
    c.goto(&format!("{}/settings/history", o.base))
        .await
        .unwrap();
    assert!(
        page_text(&c).await.contains(JONAS_BSN),
        "the link in the history"
    );
    drop(o.providers);
    o.w.stop().await;
}
