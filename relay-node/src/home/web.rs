//! The web inbox: server-rendered HTML (maud, checked at compile time) on
//! top of the citizen API, in Dutch and English, without JavaScript.
//!
//! Security: the session is an HttpOnly, Secure, SameSite=Strict cookie
//! (the JSON API takes bearer tokens only, so cookies never authorise it);
//! every form carries a CSRF token derived from the session (or, for the
//! login form, a double-submit cookie), and a POST without the right token
//! gets 403 and changes nothing; the Content-Security-Policy allows no
//! script at all; URLs carry only opaque ids; logins are rate-limited.
//!
//! Logging in: a production identity provider's login page hands the
//! browser an assertion for this node, which it posts to `/login/assertion`.
//! In a test federation a test identity provider can be configured
//! (`[citizen.test_idp]`): the login page then asks for the identifier and
//! this node mints the assertion with the test provider's key, after which
//! it is checked like any other.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{ConnectInfo, Path, State};

use crate::throttle::KeyedRateLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ed25519_dalek::SigningKey;
use estafette_spec::citizen::{CitizenAction, CitizenReply, PersonView};
use estafette_spec::{
    Actor, ActorRole, EnvelopeId, IdentityAssertion, IdentityClaims, LevelOfAssurance, NodeId, Oin,
    Recipient, Timestamp,
};
use maud::{DOCTYPE, Markup, html};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::home::api::{CitizenApi, Problem};

const SESSION_COOKIE: &str = "estafette_session";
const LANG_COOKIE: &str = "estafette_lang";
const LOGIN_COOKIE: &str = "estafette_login";
/// Most login attempts per minute from one source address.
pub const MAX_LOGINS_PER_SOURCE_PER_MINUTE: u32 = 30;
/// Most login attempts per minute for one person (identifier).
pub const MAX_LOGINS_PER_PERSON_PER_MINUTE: u32 = 10;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A test identity provider whose key this node holds (test federations only).
pub struct TestIdp {
    pub id: NodeId,
    pub key: SigningKey,
}

/// The web inbox's state.
pub struct Web {
    api: Arc<CitizenApi>,
    test_idp: Option<TestIdp>,
    /// Login attempts per source address and per person: one client's
    /// flood of bad logins does not lock anyone else out.
    logins_by_source: KeyedRateLimit,
    logins_by_person: KeyedRateLimit,
}

impl Web {
    pub fn new(api: Arc<CitizenApi>, test_idp: Option<TestIdp>) -> Arc<Web> {
        Arc::new(Web {
            api,
            test_idp,
            logins_by_source: KeyedRateLimit::new(
                MAX_LOGINS_PER_SOURCE_PER_MINUTE,
                Duration::from_secs(60),
            ),
            logins_by_person: KeyedRateLimit::new(
                MAX_LOGINS_PER_PERSON_PER_MINUTE,
                Duration::from_secs(60),
            ),
        })
    }

    /// One more login attempt from `source` for `person`; false past
    /// either limit of this minute.
    fn login_allowed(&self, source: std::net::IpAddr, person: &str) -> bool {
        let by_source = self.logins_by_source.allow(&source.to_string());
        let by_person = self.logins_by_person.allow(person);
        if !(by_source && by_person) {
            let key = if by_source { "person" } else { "source" };
            if let Some(held_back) = self
                .api
                .node
                .core()
                .log_throttle
                .allow(&format!("login {key}"))
            {
                // The address is not personal data of a citizen here; the
                // identifier is, and stays out.
                tracing::warn!(%source, limit = key, refused_since_last_line = held_back, "login attempts over the limit");
            }
        }
        by_source && by_person
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Nl,
    En,
}

impl Lang {
    fn code(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }
    /// Dutch or English text.
    fn t(self, nl: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Nl => nl,
            Lang::En => en,
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

fn lang_of(headers: &HeaderMap) -> Lang {
    match cookie(headers, LANG_COOKIE).as_deref() {
        Some("en") => Lang::En,
        Some("nl") => Lang::Nl,
        _ => match crate::home::api::preferred_language(headers) {
            Some("en") => Lang::En,
            _ => Lang::Nl,
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session token of the cookie, as the citizen API's bearer header.
fn bearer(headers: &HeaderMap) -> Option<(HeaderMap, String)> {
    let token = cookie(headers, SESSION_COOKIE)?;
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).ok()?,
    );
    Some((h, token))
}

/// The CSRF token of a session: bound to it, unguessable without it.
fn csrf_for(session: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"estafette/1 csrf");
    h.update(session.as_bytes());
    hex(&h.finalize()[..16])
}

fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A whole page: skip link, header with the language switch, main content.
fn page(lang: Lang, title: &str, session: Option<&str>, main: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (lang.t("Mijn Berichtenbox", "My Message Box")) }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                a class="skip" href="#main" { (lang.t("Naar de inhoud", "Skip to content")) }
                header {
                    p class="brand" { (lang.t("Mijn Berichtenbox", "My Message Box")) }
                    nav aria-label=(lang.t("Hoofdmenu", "Main menu")) {
                        ul {
                            @if session.is_some() {
                                li { a href="/" { (lang.t("Brieven", "Letters")) } }
                                li { a href="/settings" { (lang.t("Instellingen", "Settings")) } }
                                li { a href="/representatives" { (lang.t("Wie helpt mij", "Who helps me")) } }
                                li { a href="/access-log" { (lang.t("Wie las mijn post", "Who read my mail")) } }
                                li { a href="/clients" { (lang.t("Mijn cliënten", "My clients")) } }
                            }
                            li {
                                @if lang == Lang::Nl {
                                    a href="/language/en" lang="en" { "English" }
                                } @else {
                                    a href="/language/nl" lang="nl" { "Nederlands" }
                                }
                            }
                        }
                    }
                    @if let Some(s) = session {
                        form method="post" action="/logout" class="inline" {
                            input type="hidden" name="csrf" value=(csrf_for(s));
                            button type="submit" { (lang.t("Uitloggen", "Log out")) }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (main)
                }
            }
        }
    };
    secure_headers((StatusCode::OK, markup).into_response())
}

fn problem_page(lang: Lang, session: Option<&str>, p: &Problem) -> Response {
    let text = crate::home::api::localized(&p.code, lang.code())
        .map(str::to_owned)
        .unwrap_or_else(|| p.detail.clone());
    let mut r = page(
        lang,
        lang.t("Dat lukte niet", "That did not work"),
        session,
        html! {
            p role="alert" { (text) }
            p { a href="/" { (lang.t("Terug naar uw brieven", "Back to your letters")) } }
        },
    );
    *r.status_mut() = p.status;
    r
}

fn forbidden(lang: Lang) -> Response {
    let mut r = page(
        lang,
        lang.t("Niet toegestaan", "Not allowed"),
        None,
        html! {
            p role="alert" { (lang.t(
                "Dit formulier is verlopen of kwam niet van deze site. Er is niets veranderd.",
                "This form has expired or did not come from this site. Nothing was changed."
            )) }
            p { a href="/" { (lang.t("Opnieuw beginnen", "Start again")) } }
        },
    );
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

fn date(lang: Lang, t: Timestamp) -> String {
    let (y, m, d) = t.ymd();
    match lang {
        Lang::Nl => format!("{d}-{m}-{y}"),
        Lang::En => format!("{d}/{m}/{y}"),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    /// Missing counts as wrong: 403, not a form error.
    #[serde(default)]
    csrf: String,
}

/// The session of a form post, if its CSRF token is right.
fn checked(headers: &HeaderMap, csrf: &str) -> Option<(HeaderMap, String)> {
    let (h, s) = bearer(headers)?;
    (csrf_for(&s) == csrf).then_some((h, s))
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("web_assets/style.css"),
    )
        .into_response()
}

async fn language(Path(code): Path<String>) -> Response {
    let value = if code == "en" { "en" } else { "nl" };
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={value}; Path=/; Secure; SameSite=Strict; Max-Age=31536000"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn login_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    let token = hex(&nonce);
    let mut r = page(
        lang,
        lang.t("Inloggen", "Log in"),
        None,
        html! {
            p { (lang.t(
                "Log in om uw brieven te lezen en te kiezen hoe u post krijgt.",
                "Log in to read your letters and choose how you get your mail."
            )) }
            @if web.test_idp.is_some() {
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(token);
                    label for="subject" { (lang.t(
                        "Uw burgerservicenummer of Europese identiteit (test)",
                        "Your citizen service number or European identity (test)"
                    )) }
                    p class="hint" id="subject-hint" { (lang.t(
                        "Bijvoorbeeld bsn:999999990. Dit is een testomgeving.",
                        "For example bsn:999999990. This is a test environment."
                    )) }
                    input type="text" id="subject" name="subject" autocomplete="off"
                        aria-describedby="subject-hint" required;
                    button type="submit" { (lang.t("Inloggen met de test-inlogdienst", "Log in with the test login service")) }
                }
            } @else {
                p { (lang.t(
                    "Log in via uw inlogdienst. Die stuurt u daarna terug naar deze pagina.",
                    "Log in with your login service. It then sends you back to this page."
                )) }
            }
        },
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; Secure; SameSite=Strict; Max-Age=600"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    subject: String,
}

fn session_cookie(token: &[u8; 32]) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict",
        hex(token)
    ))
    .ok()
}

async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = lang_of(&headers);
    if cookie(&headers, LOGIN_COOKIE).as_deref() != Some(f.csrf.as_str()) {
        return forbidden(lang);
    }
    if !web.login_allowed(peer.ip(), f.subject.trim()) {
        let mut r = problem_page(
            lang,
            None,
            &Problem {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too-many-sessions".into(),
                detail: "too many logins; try again in a minute".into(),
            },
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    let Some(idp) = &web.test_idp else {
        return forbidden(lang);
    };
    let Ok(subject) = f.subject.trim().parse::<Recipient>() else {
        return problem_page(
            lang,
            None,
            &Problem {
                status: StatusCode::BAD_REQUEST,
                code: "malformed".into(),
                detail: "not a valid identifier".into(),
            },
        );
    };
    let now = estafette_pki::now();
    let mut nonce = vec![0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    let claims = IdentityClaims {
        issuer: idp.id.clone(),
        subject,
        family_name: "Tester".into(),
        given_names: "Test".into(),
        birth_date: "1970-01-01".into(),
        level_of_assurance: LevelOfAssurance::Substantial,
        audience: web.api.node.id.clone(),
        nonce,
        issued_at: now,
        expires_at: now.plus_s(300),
    };
    let Ok(assertion) = IdentityAssertion::sign(&claims, &idp.key) else {
        return forbidden(lang);
    };
    match web.api.log_in(&assertion).await {
        Ok((token, _)) => {
            let mut r = Redirect::to("/").into_response();
            if let Some(c) = session_cookie(&token) {
                r.headers_mut().insert(header::SET_COOKIE, c);
            }
            r
        }
        Err(p) => problem_page(lang, None, &p),
    }
}

async fn logout(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, _)) = checked(&headers, &f.csrf) else {
        return forbidden(lang);
    };
    if let Ok(token) = web.api.session(&h) {
        web.api.log_out(&token);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "estafette_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

/// Whether `who` is the session's person.
fn person_is(web: &Web, h: &HeaderMap, who: &Recipient) -> bool {
    web.api
        .session(h)
        .ok()
        .and_then(|t| web.api.person_of(&t))
        .is_some_and(|p| &p.recipient == who)
}

/// The session's person, fresh from the gateway (falling back to the
/// session's copy when the gateway cannot be asked).
async fn person(web: &Web, h: &HeaderMap) -> Option<PersonView> {
    let token = web.api.session(h).ok()?;
    match web.api.refresh(h).await {
        Ok(view) => Some(view),
        Err(_) => web.api.person_of(&token),
    }
}

async fn inbox(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    let Some(me) = person(&web, &h).await else {
        return to_login();
    };
    let letters = if me.inbox.is_some() {
        match web.api.letters_of(&h) {
            Ok(l) => l,
            Err(p) => return problem_page(lang, Some(&s), &p),
        }
    } else {
        vec![]
    };
    let unread = letters.iter().filter(|l| !l.opened).count();
    page(
        lang,
        lang.t("Uw brieven", "Your letters"),
        Some(&s),
        html! {
            @if me.inbox.is_none() {
                p { (lang.t(
                    "U hebt nog geen digitale brievenbus. U krijgt al uw post op papier.",
                    "You do not have a digital message box yet. You get all your mail on paper."
                )) }
                form method="post" action="/register" {
                    input type="hidden" name="csrf" value=(csrf_for(&s));
                    button type="submit" { (lang.t("Maak mijn brievenbus aan", "Create my message box")) }
                }
                p { (lang.t(
                    "Aanmaken zet nog niets aan: u krijgt post op papier tot u zelf kiest voor digitaal.",
                    "Creating it switches nothing on: you get paper until you choose digital yourself."
                )) }
            } @else {
                @if !me.active {
                    p class="notice" { (lang.t(
                        "Uw digitale brievenbus staat uit. U krijgt al uw post op papier.",
                        "Your digital message box is off. You get all your mail on paper."
                    )) " " a href="/settings" { (lang.t("Naar instellingen", "Go to settings")) } }
                }
                p { (match (lang, unread) {
                    (Lang::Nl, 0) => "U hebt geen ongelezen brieven.".to_owned(),
                    (Lang::Nl, 1) => "U hebt 1 ongelezen brief.".to_owned(),
                    (Lang::Nl, n) => format!("U hebt {n} ongelezen brieven."),
                    (Lang::En, 0) => "You have no unread letters.".to_owned(),
                    (Lang::En, 1) => "You have 1 unread letter.".to_owned(),
                    (Lang::En, n) => format!("You have {n} unread letters."),
                }) }
                @if !letters.is_empty() {
                    ul class="letters" {
                        @for l in &letters {
                            li class=(if l.opened { "letter" } else { "letter unread" }) {
                                @if !l.opened {
                                    strong class="badge" { (lang.t("Nieuw", "New")) }
                                    " "
                                }
                                a href=(format!("/letters/{}", l.envelope_id)) { (l.subject) }
                                p { (lang.t("Van", "From")) ": " (l.sender_name) ", " (date(lang, l.received_at)) }
                                p class="action" {
                                    strong { (lang.t("Wat moet u doen", "What you need to do")) ": " }
                                    (l.expected_action)
                                    @if let Some(d) = l.response_deadline {
                                        " " strong { (lang.t("Uiterlijk", "By")) " " (date(lang, d)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn register(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = checked(&headers, &f.csrf) else {
        return forbidden(lang);
    };
    let action = CitizenAction::Register {
        language: lang.code().into(),
        postal_address: None,
    };
    match web.api.change(&h, action).await {
        Ok(_) => Redirect::to("/settings").into_response(),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

async fn letter(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(envelope): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    let Ok(envelope) = envelope.parse::<EnvelopeId>() else {
        return problem_page(
            lang,
            Some(&s),
            &Problem::from(crate::home::HomeError::NoSuchLetter),
        );
    };
    let actor = Actor {
        role: ActorRole::Holder,
        representative: None,
        mandate: None,
    };
    let opened = match web.api.inbox_of(&h) {
        Ok(inbox) => web.api.open_in(&inbox, &envelope, actor).await,
        Err(p) => Err(p),
    };
    match opened {
        Ok(l) => letter_page(lang, &s, &l, None),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

fn letter_page(
    lang: Lang,
    session: &str,
    l: &crate::home::api::OpenedLetter,
    client: Option<&str>,
) -> Response {
    page(
        lang,
        &l.summary.subject,
        Some(session),
        html! {
            @if let Some(c) = client {
                p class="notice" { (lang.t("U leest dit als vertegenwoordiger van", "You are reading this as the representative of")) " " (c) "." }
            }
            dl {
                dt { (lang.t("Van", "From")) } dd { (l.summary.sender_name) }
                dt { (lang.t("Ontvangen", "Received")) } dd { (date(lang, l.summary.received_at)) }
                dt { (lang.t("Wat moet u doen", "What you need to do")) } dd { (l.summary.expected_action) }
                @if let Some(d) = l.summary.response_deadline {
                    dt { (lang.t("Uiterlijk", "By")) } dd { (date(lang, d)) }
                }
            }
            div class="body" { (l.body) }
            @if !l.attachments.is_empty() {
                h2 { (lang.t("Bijlagen", "Attachments")) }
                ul {
                    @for (i, a) in l.attachments.iter().enumerate() {
                        li {
                            @if client.is_none() {
                                a href=(format!("/letters/{}/attachments/{i}", l.summary.envelope_id)) download=(a.name) { (a.name) }
                            } @else {
                                (a.name)
                            }
                            " (" (a.size_bytes) " bytes)"
                        }
                    }
                }
            }
            p { (lang.t(
                "Dat u deze brief hebt geopend, is vastgelegd. De afzender kan dat zien.",
                "That you opened this letter has been recorded. The sender can see it."
            )) }
            @if client.is_none() {
                p { a href=(format!("/letters/{}/evidence", l.summary.envelope_id)) {
                    (lang.t("Bekijk het bewijs van verzending en bezorging", "See the proof of sending and delivery"))
                } }
            }
            p { a href="/" { (lang.t("Terug naar uw brieven", "Back to your letters")) } }
        },
    )
}

async fn evidence(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(envelope): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    let (message, list) = match web.api.letter_evidence(&h, &envelope).await {
        Ok(x) => x,
        Err(p) => return problem_page(lang, Some(&s), &p),
    };
    let trust = web.api.node.trust();
    let rows: Vec<(String, String, String, bool)> = list
        .iter()
        .map(|b| match estafette_spec::Evidence::verify(b, &trust) {
            Ok(v) => (
                date(lang, v.record.issued_at),
                event_text(lang, v.record.event).to_owned(),
                v.record.issuer.to_string(),
                true,
            ),
            Err(_) => (String::new(), "?".into(), String::new(), false),
        })
        .collect();
    let chain_ok = estafette_spec::Evidence::verify_chain(&list, &trust).is_ok();
    page(
        lang,
        lang.t(
            "Bewijs van verzending en bezorging",
            "Proof of sending and delivery",
        ),
        Some(&s),
        html! {
            p { (lang.t(
                "Elke stap is ondertekend door wie hem zette. U mag dit bewijs bewaren.",
                "Every step is signed by whoever took it. You may keep this proof."
            )) }
            table {
                caption { (lang.t("Wat er met uw brief gebeurde", "What happened to your letter")) }
                thead { tr {
                    th scope="col" { (lang.t("Wanneer", "When")) }
                    th scope="col" { (lang.t("Wat", "What")) }
                    th scope="col" { (lang.t("Door", "By")) }
                    th scope="col" { (lang.t("Handtekening", "Signature")) }
                } }
                tbody {
                    @for (when, what, by, ok) in &rows {
                        tr {
                            td { (when) } td { (what) } td { (by) }
                            td { (if *ok { lang.t("klopt", "valid") } else { lang.t("klopt niet", "not valid") }) }
                        }
                    }
                }
            }
            p { (if chain_ok {
                lang.t("De stappen sluiten op elkaar aan.", "The steps link up.")
            } else {
                lang.t("De stappen sluiten niet op elkaar aan.", "The steps do not link up.")
            }) }
            p { a href=(format!("/letters/{envelope}/evidence.cbor")) download=(format!("bewijs-{message}.cbor")) {
                (lang.t("Download het ondertekende bewijs", "Download the signed proof"))
            } }
        },
    )
}

fn event_text(lang: Lang, event: estafette_spec::EvidenceEvent) -> &'static str {
    use estafette_spec::EvidenceEvent as E;
    match event {
        E::SubmissionAcceptance => lang.t("Verstuurd door de afzender", "Sent by the sender"),
        E::SubmissionRejection => lang.t("Niet aangenomen", "Not accepted"),
        E::RelayAcceptance => lang.t("Doorgegeven", "Passed on"),
        E::RelayRejection => lang.t("Niet doorgegeven", "Not passed on"),
        E::RelayFailure => lang.t("Niet bezorgd", "Not delivered"),
        E::ContentConsignment => lang.t("In uw brievenbus gezet", "Put in your message box"),
        E::ConsignmentNotification => {
            lang.t("U hebt een e-mail gekregen", "You were sent an e-mail")
        }
        E::ConsignmentNotificationFailure => {
            lang.t("E-mail kwam niet aan", "E-mail did not arrive")
        }
        E::ContentHandover => lang.t("Geopend", "Opened"),
        E::PaperFallback => lang.t("Op papier verstuurd", "Sent on paper"),
        E::PaperFailure => lang.t(
            "Kon niet op papier: geen postadres bekend",
            "Could not go on paper: no postal address known",
        ),
    }
}

/// `attachment` with the name as shown (no path, no invisible controls):
/// an ASCII `filename` for old browsers and the UTF-8 `filename*` of RFC
/// 6266 / 8187 for the rest.
pub fn content_disposition(name: &str) -> String {
    let shown = estafette_spec::text::display_file_name(name);
    let ascii: String = shown
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .-_()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = shown
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// An attachment of one of the session's letters, always as a download (an
/// agency's file never runs on this site).
async fn attachment(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path((envelope, index)): Path<(String, usize)>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    let found = web.api.attachment(&h, &envelope, index);
    match found {
        Ok((name, content)) => {
            let mut r = (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                content,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&content_disposition(&name)) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            let mut r = secure_headers(r);
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox; default-src 'none'"),
            );
            r
        }
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

async fn evidence_download(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(envelope): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    match web.api.letter_evidence(&h, &envelope).await {
        Ok((message, list)) => {
            let body = estafette_spec::cbor::to_vec(
                &list
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect::<Vec<_>>(),
            );
            let disposition = format!("attachment; filename=\"bewijs-{message}.cbor\"");
            let mut r = ([(header::CONTENT_TYPE, "application/cbor")], body).into_response();
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            secure_headers(r)
        }
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

#[allow(clippy::too_many_lines)] // split with the web pages next
async fn settings(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    let Some(me) = person(&web, &h).await else {
        return to_login();
    };
    let csrf = csrf_for(&s);
    let trust = web.api.node.trust();
    let agencies: Vec<(Oin, String)> = trust
        .content()
        .agencies
        .iter()
        .map(|a| (a.oin.clone(), a.name.clone()))
        .collect();
    let email = me.channels.first();
    let verified = me
        .channels
        .iter()
        .any(|c| c.state == estafette_spec::citizen::ChannelState::Verified);
    page(
        lang,
        lang.t("Instellingen", "Settings"),
        Some(&s),
        html! {
            @if me.inbox.is_none() {
                p { a href="/" { (lang.t("Maak eerst uw brievenbus aan.", "Create your message box first.")) } }
            } @else {
                section aria-labelledby="email-h" {
                    h2 id="email-h" { (lang.t("1. Uw e-mailadres", "1. Your e-mail address")) }
                    p { (lang.t(
                        "Via dit adres hoort u dat er een nieuwe brief is. In de e-mail staat nooit de brief zelf.",
                        "This address tells you when a new letter has come. The e-mail never holds the letter itself."
                    )) }
                    @if let Some(c) = email {
                        p { (lang.t("Uw adres", "Your address")) ": " strong { (c.address) } " – " (match (c.state, lang) {
                            (estafette_spec::citizen::ChannelState::Verified, Lang::Nl) => "bevestigd",
                            (estafette_spec::citizen::ChannelState::Verified, Lang::En) => "confirmed",
                            (estafette_spec::citizen::ChannelState::Pending, Lang::Nl) => "nog niet bevestigd: open de link in de e-mail",
                            (estafette_spec::citizen::ChannelState::Pending, Lang::En) => "not confirmed yet: open the link in the e-mail",
                            (_, Lang::Nl) => "werkt niet: geef een ander adres",
                            (_, Lang::En) => "does not work: please give another address",
                        }) }
                    }
                    form method="post" action="/settings/email" {
                        input type="hidden" name="csrf" value=(csrf);
                        label for="address" { (lang.t("E-mailadres", "E-mail address")) }
                        input type="email" id="address" name="address" autocomplete="email" required;
                        button type="submit" { (lang.t("Stuur mij een bevestigingslink", "Send me a confirmation link")) }
                    }
                }
                section aria-labelledby="activate-h" {
                    h2 id="activate-h" { (lang.t("2. Digitale post aanzetten", "2. Switch on digital mail")) }
                    @if me.active {
                        p id="active-state" { strong { (lang.t("Uw digitale brievenbus staat aan.", "Your digital message box is on.")) } }
                    } @else {
                        p { (lang.t(
                            "Als u dit aanzet, kunnen afzenders die u hieronder kiest u digitaal schrijven in plaats van op papier. Brieven kunnen gevolgen hebben, bijvoorbeeld een termijn om te betalen. Leest u een brief niet op tijd, dan krijgt u hem ook op papier.",
                            "If you switch this on, senders you choose below can write to you digitally instead of on paper. Letters can have consequences, such as a deadline to pay. If you do not read a letter in time, you also get it on paper."
                        )) }
                        @if verified {
                            form method="post" action="/settings/activate" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { (lang.t("Ja, zet mijn digitale brievenbus aan", "Yes, switch on my digital message box")) }
                            }
                        } @else {
                            p class="notice" { (lang.t("Bevestig eerst uw e-mailadres.", "Confirm your e-mail address first.")) }
                        }
                    }
                }
                section aria-labelledby="senders-h" {
                    h2 id="senders-h" { (lang.t("3. Per afzender kiezen", "3. Choose per sender")) }
                    p { (lang.t("Wat u niet kiest, krijgt u op papier.", "Anything you do not choose comes on paper.")) }
                    ul class="senders" {
                        @for (oin, name) in &agencies {
                            @let digital = me.digital_senders.contains(oin);
                            li {
                                form method="post" action="/settings/consent" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="sender" value=(oin.as_str());
                                    fieldset {
                                        legend { (name) }
                                        input type="radio" id=(format!("d-{oin}")) name="digital" value="true" checked[digital];
                                        label for=(format!("d-{oin}")) { (lang.t("Digitaal", "Digital")) }
                                        input type="radio" id=(format!("p-{oin}")) name="digital" value="false" checked[!digital];
                                        label for=(format!("p-{oin}")) { (lang.t("Op papier", "On paper")) }
                                        button type="submit" { (lang.t("Bewaar", "Save")) " " span class="visually-hidden" { (name) } }
                                    }
                                }
                            }
                        }
                    }
                }
                section aria-labelledby="paper-h" {
                    h2 id="paper-h" { (lang.t("Alles op papier", "Everything on paper")) }
                    form method="post" action="/settings/all-paper" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { (lang.t("Stuur mij alles op papier", "Send me everything on paper")) }
                    }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    csrf: String,
    address: String,
}

#[derive(Deserialize)]
struct ConsentForm {
    #[serde(default)]
    csrf: String,
    sender: String,
    digital: String,
}

async fn do_change(web: &Web, headers: &HeaderMap, csrf: &str, action: CitizenAction) -> Response {
    let lang = lang_of(headers);
    let Some((h, s)) = checked(headers, csrf) else {
        return forbidden(lang);
    };
    match web.api.change(&h, action).await {
        Ok(_) => Redirect::to("/settings").into_response(),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

async fn set_email(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<EmailForm>,
) -> Response {
    let action = CitizenAction::AddEmail {
        address: f.address.trim().to_owned(),
    };
    do_change(&web, &headers, &f.csrf, action).await
}

async fn activate(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    do_change(&web, &headers, &f.csrf, CitizenAction::Activate).await
}

async fn all_paper(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    do_change(&web, &headers, &f.csrf, CitizenAction::AllPaper).await
}

async fn consent(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<ConsentForm>,
) -> Response {
    let lang = lang_of(&headers);
    let Ok(sender) = f.sender.parse::<Oin>() else {
        return forbidden(lang);
    };
    let action = CitizenAction::SetConsent {
        sender,
        digital: f.digital == "true",
    };
    do_change(&web, &headers, &f.csrf, action).await
}

async fn access_log(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    let entries = match web.api.access_entries(&h) {
        Ok(e) => e,
        Err(p) => return problem_page(lang, Some(&s), &p),
    };
    page(
        lang,
        lang.t("Wie las mijn post", "Who read my mail"),
        Some(&s),
        html! {
            @if entries.is_empty() {
                p { (lang.t("Nog niemand heeft een brief geopend.", "Nobody has opened a letter yet.")) }
            } @else {
                table {
                    caption { (lang.t("Elke keer dat een brief is geopend", "Every time a letter was opened")) }
                    thead { tr {
                        th scope="col" { (lang.t("Wanneer", "When")) }
                        th scope="col" { (lang.t("Door", "By")) }
                        th scope="col" { (lang.t("Machtiging", "Mandate")) }
                    } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td { (date(lang, e.at)) }
                                td { (e.actor.representative.as_deref().unwrap_or(lang.t("uzelf", "yourself"))) }
                                td { (e.actor.mandate.as_deref().unwrap_or("–")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn representatives(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    let mandates = match web.api.ask(&h, CitizenAction::Mandates).await {
        Ok(CitizenReply::Mandates(m)) => m,
        Ok(_) => vec![],
        Err(p) => return problem_page(lang, Some(&s), &p),
    };
    let Some(me) = person(&web, &h).await else {
        return to_login();
    };
    let given: Vec<_> = mandates
        .iter()
        .filter(|m| m.holder == me.recipient)
        .collect();
    let csrf = csrf_for(&s);
    let now = estafette_pki::now();
    page(
        lang,
        lang.t("Wie helpt mij", "Who helps me"),
        Some(&s),
        html! {
            p { (lang.t(
                "Iemand die u helpt, kan uw brieven lezen. U kiest zelf wie, en u kunt dat altijd weer stoppen. U ziet bij 'Wie las mijn post' elke keer dat iemand een brief opende.",
                "Someone who helps you can read your letters. You choose who, and you can always stop it. 'Who read my mail' shows every time someone opened a letter."
            )) }
            @if given.is_empty() {
                p { (lang.t("Niemand helpt u nu.", "Nobody helps you now.")) }
            } @else {
                ul class="letters" {
                    @for m in &given {
                        li class="letter" {
                            strong { (m.representative.label()) }
                            p { (match (m.is_legal(), m.stands(now), m.accepted, lang) {
                                (true, _, _, Lang::Nl) => "Aangesteld door de rechter",
                                (true, _, _, Lang::En) => "Appointed by the court",
                                (false, true, _, Lang::Nl) => "Helpt u nu",
                                (false, true, _, Lang::En) => "Helps you now",
                                (false, false, false, Lang::Nl) => "Moet nog accepteren",
                                (false, false, false, Lang::En) => "Has yet to accept",
                                (false, false, true, Lang::Nl) => "Gestopt",
                                (false, false, true, Lang::En) => "Stopped",
                            }) }
                            @if !m.is_legal() && m.revoked_at.is_none() {
                                form method="post" action="/representatives/revoke" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="id" value=(m.id.to_string());
                                    button type="submit" { (lang.t("Stop deze hulp", "Stop this help")) " " span class="visually-hidden" { (m.representative.label()) } }
                                }
                            }
                        }
                    }
                }
            }
            h2 { (lang.t("Iemand vragen u te helpen", "Ask someone to help you")) }
            form method="post" action="/representatives" {
                input type="hidden" name="csrf" value=(csrf);
                label for="rep-name" { (lang.t("Naam van wie u helpt", "Name of your helper")) }
                input type="text" id="rep-name" name="name" autocomplete="off" required;
                label for="rep-id" { (lang.t("Burgerservicenummer van die persoon", "That person's citizen service number")) }
                p class="hint" id="rep-id-hint" { (lang.t("Bijvoorbeeld bsn:123456782", "For example bsn:123456782")) }
                input type="text" id="rep-id" name="person" autocomplete="off" aria-describedby="rep-id-hint" required;
                button type="submit" { (lang.t("Vraag deze persoon mijn brieven te lezen", "Ask this person to read my letters")) }
            }
        },
    )
}

#[derive(Deserialize)]
struct GrantForm {
    #[serde(default)]
    csrf: String,
    name: String,
    person: String,
}

async fn grant(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<GrantForm>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = checked(&headers, &f.csrf) else {
        return forbidden(lang);
    };
    let Ok(person) = f.person.trim().parse::<Recipient>() else {
        return problem_page(
            lang,
            Some(&s),
            &Problem {
                status: StatusCode::BAD_REQUEST,
                code: "malformed".into(),
                detail: "not a valid identifier".into(),
            },
        );
    };
    let grant = estafette_spec::citizen::MandateGrant {
        representative: estafette_spec::mandate::Representative {
            person,
            name: f.name.trim().to_owned(),
            organisation: None,
        },
        scope: estafette_spec::mandate::SenderScope::All,
        rights: estafette_spec::mandate::Rights {
            read: true,
            manage: false,
        },
        valid_from: None,
        valid_until: None,
        correspondence: false,
        office_address: None,
    };
    match web
        .api
        .mandate_change(&h, CitizenAction::GrantMandate { grant })
        .await
    {
        Ok(_) => Redirect::to("/representatives").into_response(),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

/// A form that names a mandate.
#[derive(Deserialize)]
struct MandateForm {
    #[serde(default)]
    csrf: String,
    id: String,
}

/// A mandate change from a form, then back to `after`.
async fn mandate_form(
    web: &Web,
    headers: &HeaderMap,
    f: &MandateForm,
    action: fn(estafette_spec::mandate::MandateId) -> CitizenAction,
    after: &str,
) -> Response {
    let lang = lang_of(headers);
    let Some((h, s)) = checked(headers, &f.csrf) else {
        return forbidden(lang);
    };
    let Ok(id) = f.id.parse() else {
        return forbidden(lang);
    };
    match web.api.mandate_change(&h, action(id)).await {
        Ok(_) => Redirect::to(after).into_response(),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

async fn revoke(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<MandateForm>,
) -> Response {
    let revoke = |id| CitizenAction::RevokeMandate { id };
    mandate_form(&web, &headers, &f, revoke, "/representatives").await
}

async fn accept(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<MandateForm>,
) -> Response {
    let accept = |id| CitizenAction::AcceptMandate { id };
    mandate_form(&web, &headers, &f, accept, "/clients").await
}

async fn clients(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    let list = match web.api.ask(&h, CitizenAction::Clients).await {
        Ok(CitizenReply::Clients(c)) => c,
        Ok(_) => vec![],
        Err(p) => return problem_page(lang, Some(&s), &p),
    };
    // Mandates granted to me that I have not accepted yet.
    let pending: Vec<estafette_spec::mandate::Mandate> =
        match web.api.ask(&h, CitizenAction::Mandates).await {
            Ok(CitizenReply::Mandates(m)) => m
                .into_iter()
                .filter(|m| !m.accepted && m.revoked_at.is_none() && !m.is_legal())
                .filter(|m| person_is(&web, &h, &m.representative.person))
                .collect(),
            _ => vec![],
        };
    let csrf = csrf_for(&s);
    page(
        lang,
        lang.t("Mijn cliënten", "My clients"),
        Some(&s),
        html! {
            @for m in &pending {
                form method="post" action="/clients/accept" class="notice" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="id" value=(m.id.to_string());
                    p { (lang.t("Iemand vraagt u om te helpen met zijn of haar brieven.", "Someone asks you to help with their letters.")) }
                    button type="submit" { (lang.t("Ja, ik help", "Yes, I will help")) }
                }
            }
            @if list.is_empty() {
                p { (lang.t("U vertegenwoordigt niemand.", "You do not represent anyone.")) }
            } @else {
                ul {
                    @for c in &list {
                        li { a href=(format!("/clients/{}", c.mandate)) {
                            (c.client_name.clone().unwrap_or_else(|| lang.t("Cliënt", "Client").to_owned()))
                        } }
                    }
                }
            }
        },
    )
}

async fn client(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(mandate): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    let letters = match web.api.client_letters_of(&h, &mandate).await {
        Ok(l) => l,
        Err(p) => return problem_page(lang, Some(&s), &p),
    };
    page(
        lang,
        lang.t("Brieven van uw cliënt", "Your client's letters"),
        Some(&s),
        html! {
            @if letters.is_empty() {
                p { (lang.t("Geen brieven die u mag zien.", "No letters you may see.")) }
            }
            ul class="letters" {
                @for l in &letters {
                    li class=(if l.opened { "letter" } else { "letter unread" }) {
                        a href=(format!("/clients/{mandate}/letters/{}", l.envelope_id)) { (l.subject) }
                        p { (lang.t("Van", "From")) ": " (l.sender_name) }
                    }
                }
            }
        },
    )
}

async fn client_letter(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path((mandate, envelope)): Path<(String, String)>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = bearer(&headers) else {
        return to_login();
    };
    match web.api.open_client(&h, &mandate, &envelope).await {
        Ok((l, client)) => letter_page(lang, &s, &l, Some(&client)),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

/// The web inbox's routes (merged into the citizen API's router).
pub fn router(web: Arc<Web>) -> axum::Router {
    axum::Router::new()
        .route("/", get(inbox))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/register", post(register))
        .route("/letters/{envelope}", get(letter))
        .route("/letters/{envelope}/evidence", get(evidence))
        .route("/letters/{envelope}/attachments/{index}", get(attachment))
        .route("/letters/{envelope}/evidence.cbor", get(evidence_download))
        .route("/settings", get(settings))
        .route("/settings/email", post(set_email))
        .route("/settings/activate", post(activate))
        .route("/settings/consent", post(consent))
        .route("/settings/all-paper", post(all_paper))
        .route("/access-log", get(access_log))
        .route("/clients", get(clients))
        .route("/clients/accept", post(accept))
        .route("/representatives", get(representatives).post(grant))
        .route("/representatives/revoke", post(revoke))
        .route("/clients/{mandate}", get(client))
        .route("/clients/{mandate}/letters/{envelope}", get(client_letter))
        .route("/language/{code}", get(language))
        .route("/static/style.css", get(style))
        .with_state(web)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let a = csrf_for(&"a".repeat(64));
        assert_eq!(a.len(), 32);
        assert_ne!(a, csrf_for(&"b".repeat(64)));
        assert_eq!(a, csrf_for(&"a".repeat(64)));
    }
}
