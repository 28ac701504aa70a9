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

mod letters;
mod login;
mod oidc;
mod representation;
mod settings;
mod wallet;

pub use letters::{WEB_LETTERS_PAGE, content_disposition};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;

use crate::throttle::KeyedRateLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ed25519_dalek::SigningKey;
use estafette_spec::citizen::PersonView;
use estafette_spec::{NodeId, Recipient, Timestamp};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::home::api::{CitizenApi, Problem};
use crate::home::session::{Session, SessionToken};
use estafette_spec::bytes::Hex;

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
    /// The OpenID providers people log in with, if any are configured.
    oidc: Option<Arc<crate::home::oidc::OidcLogins>>,
    /// Logins with an EU Digital Identity Wallet, if configured.
    wallet: Option<Arc<crate::home::wallet::WalletLogins>>,
    /// Login attempts per source address and per person: one client's
    /// flood of bad logins does not lock anyone else out.
    logins_by_source: KeyedRateLimit,
    logins_by_person: KeyedRateLimit,
}

/// What a page needs of its session: the CSRF token of its forms, and
/// what the menu offers.
pub(super) struct PageSession {
    token: String,
    /// The person represents someone, or is asked to: "my clients".
    represents: bool,
}

impl PageSession {
    /// The CSRF token of this session's forms.
    fn csrf(&self) -> String {
        csrf_for(&self.token)
    }
}

impl Web {
    /// The live session of the cookie, and what its pages need.
    fn session_of(&self, headers: &HeaderMap) -> Option<(Session, PageSession)> {
        let token: SessionToken = cookie(headers, SESSION_COOKIE)?.parse().ok()?;
        let session = self.api.session(token)?;
        let represents = self.api.represents(&session);
        Some((
            session,
            PageSession {
                token: token.to_string(),
                represents,
            },
        ))
    }

    /// The session of a form post, if its CSRF token is right.
    fn checked(&self, headers: &HeaderMap, csrf: &str) -> Option<(Session, PageSession)> {
        let (session, page) = self.session_of(headers)?;
        (page.csrf() == csrf).then_some((session, page))
    }

    pub fn new(
        api: Arc<CitizenApi>,
        test_idp: Option<TestIdp>,
        oidc: Option<Arc<crate::home::oidc::OidcLogins>>,
        wallet: Option<Arc<crate::home::wallet::WalletLogins>>,
    ) -> Arc<Web> {
        Arc::new(Web {
            api,
            test_idp,
            oidc,
            wallet,
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
    fn login_allowed(&self, source: std::net::IpAddr, person: Option<&str>) -> bool {
        let by_source = self.logins_by_source.allow(&source.to_string());
        // A login at a provider names the person only when it comes back.
        let by_person = person.is_none_or(|p| self.logins_by_person.allow(p));
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

/// The languages of the web inbox: every page, problem and date in each.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lang {
    Nl,
    En,
    De,
    Fr,
    Pl,
}

impl Lang {
    const ALL: [Lang; 5] = [Lang::Nl, Lang::En, Lang::De, Lang::Fr, Lang::Pl];

    fn code(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
            Lang::De => "de",
            Lang::Fr => "fr",
            Lang::Pl => "pl",
        }
    }

    /// The language of a BCP 47 tag's primary subtag, if the inbox speaks it.
    fn of(tag: &str) -> Option<Lang> {
        let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        Lang::ALL.into_iter().find(|l| l.code() == primary)
    }
    fn texts(self) -> &'static crate::texts::Catalogue {
        crate::texts::catalogue_or(self.code(), crate::texts::FALLBACK)
    }

    /// The text of `key` in this language (the catalogue's).
    fn t(self, key: &'static str) -> &'static str {
        self.texts().text(key)
    }

    /// The text of `key` with its placeholders filled in.
    fn fill(self, key: &'static str, values: &[(&str, &str)]) -> String {
        self.texts().fill(key, values)
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

/// The language chosen on this site (its cookie), else the browser's
/// first language the inbox speaks, else Dutch.
fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .as_deref()
        .and_then(Lang::of)
        .or_else(|| crate::home::api::preferred_language(headers).and_then(Lang::of))
        .unwrap_or(Lang::Nl)
}

/// The CSRF token of a session: bound to it, unguessable without it.
fn csrf_for(session: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"estafette/1 csrf");
    h.update(session.as_bytes());
    Hex(&h.finalize()[..16]).to_string()
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

/// A whole page: skip link, header with the menu, main content, and the
/// other languages in the footer.
fn page(lang: Lang, title: &str, session: Option<&PageSession>, main: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – " (lang.t("web.my-message-box")) }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                a class="skip" href="#main" { (lang.t("web.skip-to-content")) }
                header {
                    p class="brand" { (lang.t("web.my-message-box")) }
                    @if session.is_some() {
                        nav aria-label=(lang.t("web.main-menu")) {
                            ul {
                                li { a href="/" { (lang.t("web.letters")) } }
                                li { a href="/settings" { (lang.t("web.settings")) } }
                                li { a href="/representatives" { (lang.t("web.who-helps-me")) } }
                                li { a href="/access-log" { (lang.t("web.who-read-my-mail")) } }
                                @if session.is_some_and(|s| s.represents) {
                                    li { a href="/clients" { (lang.t("web.my-clients")) } }
                                }
                            }
                        }
                    }
                    @if let Some(s) = session {
                        form method="post" action="/logout" class="inline" {
                            input type="hidden" name="csrf" value=(s.csrf());
                            button type="submit" { (lang.t("web.log-out")) }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (main)
                }
                // Each language named in itself; below the content, so that
                // on a phone the page starts with what it is about.
                footer {
                    nav aria-label=(lang.t("web.languages")) {
                        ul {
                            @for other in Lang::ALL.into_iter().filter(|l| *l != lang) {
                                li {
                                    a href={ "/language/" (other.code()) } lang=(other.code()) hreflang=(other.code()) {
                                        (other.t("language.name"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    secure_headers((StatusCode::OK, markup).into_response())
}

fn problem_page(lang: Lang, session: Option<&PageSession>, p: &Problem) -> Response {
    let text = crate::home::api::localized(&p.code, lang.code())
        .unwrap_or(&p.detail)
        .to_owned();
    let mut r = page(
        lang,
        lang.t("web.that-did-not-work"),
        session,
        html! {
            p role="alert" { (text) }
            // The code the citizen API gives for the same refusal: what a
            // helpdesk asks for.
            p class="hint" { (lang.t("web.problem-code")) ": " code { (p.code) } }
            @if p.code == "reauthentication-required" {
                p { a href="/login" { (lang.t("web.log-in-again")) } }
            }
            p { a href="/" { (lang.t("web.back-to-your-letters")) } }
        },
    );
    *r.status_mut() = p.status;
    r
}

fn forbidden(lang: Lang) -> Response {
    let mut r = page(
        lang,
        lang.t("web.not-allowed"),
        None,
        html! {
            p role="alert" { (lang.t("web.this-form-has-expired-or-did")) }
            p { a href="/" { (lang.t("web.start-again")) } }
        },
    );
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

/// Over a login rate limit: try again in a minute.
fn too_many_logins(lang: Lang) -> Response {
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
    r
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// A date and the time of day (UTC, which the page says).
fn date_time(lang: Lang, t: Timestamp) -> String {
    let seconds = t.0 % 86_400;
    format!(
        "{} {:02}:{:02} UTC",
        date(lang, t),
        seconds / 3600,
        (seconds % 3600) / 60
    )
}

fn date(lang: Lang, t: Timestamp) -> String {
    let (y, m, d) = t.ymd();
    match lang {
        Lang::Nl => format!("{d}-{m}-{y}"),
        Lang::En | Lang::Fr => format!("{d}/{m}/{y}"),
        Lang::De | Lang::Pl => format!("{d}.{m}.{y}"),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    /// Missing counts as wrong: 403, not a form error.
    #[serde(default)]
    csrf: String,
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/style.css"),
    )
        .into_response()
}

/// The language of the pages (a cookie), and for a registered person also
/// of their e-mails and paper letters: the choice follows them everywhere.
async fn language(
    axum::extract::State(web): axum::extract::State<Arc<Web>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    let value = Lang::of(&code).unwrap_or(Lang::Nl).code();
    // Only the site's own pages carry the strict session cookie here, so a
    // link from elsewhere changes the pages' language at most.
    if let Some((session, _)) = web.session_of(&headers)
        && web
            .api
            .person_of(&session)
            .is_some_and(|p| p.inbox.is_some() && p.language != value)
        && let Err(p) = web.api.set_language(&session, value.to_owned()).await
    {
        tracing::warn!(code = %p.code, "the language was not kept for letters and e-mails");
    }
    let mut r = Redirect::to("/").into_response();
    // Lax, not Strict: the language must hold on the page a login
    // provider's redirect lands on (a navigation from another site). It is
    // a preference, not a credential.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={value}; Path=/; Secure; SameSite=Lax; Max-Age=31536000"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The agencies of the trust list, with their names: the senders a person
/// (or a representative for a client) chooses digital or paper for.
fn agencies(web: &Web) -> Vec<(estafette_spec::Oin, String)> {
    web.api
        .node
        .trust()
        .content()
        .agencies
        .iter()
        .map(|a| (a.oin.clone(), a.name.clone()))
        .collect()
}

/// Whether `who` is the session's person.
fn person_is(web: &Web, session: &Session, who: &Recipient) -> bool {
    web.api
        .person_of(session)
        .is_some_and(|p| &p.recipient == who)
}

/// The session's person, fresh from the gateway (falling back to the
/// session's copy when the gateway cannot be asked).
async fn person(web: &Web, session: &Session) -> Option<PersonView> {
    match web.api.refresh(session).await {
        Ok(view) => Some(view),
        Err(_) => web.api.person_of(session),
    }
}

/// The web inbox's routes (merged into the citizen API's router).
pub fn router(web: Arc<Web>) -> axum::Router {
    use letters as l;
    use login as i;
    use representation as r;
    use settings as s;
    axum::Router::new()
        .route("/", get(l::inbox))
        .route("/login", get(i::login_page).post(i::login))
        .route("/login/oidc/start", get(oidc::start))
        .route("/login/oidc/callback", get(oidc::callback))
        .route("/login/wallet/start", get(wallet::start))
        .route("/login/wallet/{id}", get(wallet::progress))
        .route("/wallet/request/{id}", get(wallet::request_object))
        .route(
            "/wallet/response",
            post(wallet::response).layer(axum::extract::DefaultBodyLimit::max(
                crate::home::wallet::MAX_WALLET_RESPONSE_BYTES,
            )),
        )
        .route("/logout", post(i::logout))
        .route("/register", post(l::register))
        .route("/letters/{envelope}", get(l::letter))
        .route("/letters/{envelope}/evidence", get(l::evidence))
        .route(
            "/letters/{envelope}/attachments/{index}",
            get(l::attachment),
        )
        .route(
            "/letters/{envelope}/evidence.cbor",
            get(l::evidence_download),
        )
        .route("/settings", get(s::settings))
        .route("/settings/email", post(s::set_email))
        .route("/settings/activate", post(s::activate))
        .route("/settings/consent", post(s::consent))
        .route("/settings/all-paper", post(s::all_paper))
        .route("/settings/history", get(s::history))
        .route("/access-log", get(s::access_log))
        .route("/clients", get(r::clients))
        .route("/clients/accept", post(r::accept))
        .route("/clients/court", post(r::register_court))
        .route("/representatives", get(r::representatives).post(r::grant))
        .route("/representatives/revoke", post(r::revoke))
        .route("/clients/{mandate}", get(r::client))
        .route("/clients/{mandate}/consent", post(r::client_consent))
        .route(
            "/clients/{mandate}/letters/{envelope}",
            get(r::client_letter),
        )
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
