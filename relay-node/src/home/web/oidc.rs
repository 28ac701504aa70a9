//! Logging in through an OpenID provider: the login page's button sends the
//! browser to the provider (`/login/oidc/start`), the provider sends it back
//! (`/login/oidc/callback`), and the ID token it gives is verified here and
//! by the gateway. A fresh login for a change asks the provider to log the
//! person in again (`prompt=login`, `max_age=0`) and renews the session; a
//! login to link (`link=true`, from the settings) asks the same way and
//! links the identity it proves to the session's person.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::*;
use crate::home::api::Problem;
use crate::home::oidc::{Callback, OidcError, Purpose};

/// The cookie that binds a login in progress to the browser that started
/// it. SameSite=Lax: it must come back on the provider's redirect, a
/// top-level navigation from another site.
const OIDC_BROWSER_COOKIE: &str = "estafette_oidc";

#[derive(Deserialize)]
pub(super) struct StartQuery {
    provider: String,
    /// A fresh login for the current session (before a change).
    #[serde(default)]
    renew: bool,
    /// Another login of the current session's person, to link.
    #[serde(default)]
    link: bool,
}

pub(super) async fn start(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let lang = lang_of(&headers);
    let Some(oidc) = &web.oidc else {
        return to_login();
    };
    if !web.login_allowed(peer.ip(), None) {
        return too_many_logins(lang);
    }
    let Some(purpose) = purpose_of(&web, &headers, q.renew, q.link) else {
        return to_login();
    };
    match oidc.start(&q.provider, purpose).await {
        Ok((to, browser)) => binding_redirect(&to, OIDC_BROWSER_COOKIE, "/login/oidc", &browser),
        Err(e) => failed(lang, &e),
    }
}

/// What a login being started is for: a new session, or for the live
/// session a fresh login (`renew`) or a second identity (`link`); `None`
/// when that needs a session and there is none.
pub(super) fn purpose_of(
    web: &Web,
    headers: &HeaderMap,
    renew: bool,
    link: bool,
) -> Option<Purpose> {
    if !(renew || link) {
        return Some(Purpose::Login);
    }
    let (session, _) = web.session_of(headers)?;
    Some(if link {
        Purpose::Link(session.token())
    } else {
        Purpose::Renew(session.token())
    })
}

/// A redirect to `to` that binds the login it starts to this browser:
/// cookie `name` (under `path`, ten minutes) holds `browser`. SameSite=Lax:
/// it must come back on a top-level navigation from another site.
pub(super) fn binding_redirect(to: &str, name: &str, path: &str, browser: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{name}={browser}; Path={path}; HttpOnly; Secure; SameSite=Lax; Max-Age=600"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub(super) async fn callback(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let lang = lang_of(&headers);
    let Some(oidc) = &web.oidc else {
        return to_login();
    };
    let browser = cookie(&headers, OIDC_BROWSER_COOKIE);
    let finished = match oidc.finish(&answer, browser.as_deref()).await {
        Ok(f) => f,
        Err(e) => return failed(lang, &e),
    };
    let nonce = finished.nonce.as_bytes();
    match finish_login(&web, finished.purpose, finished.proof, nonce).await {
        Some(Ok(new_session)) => {
            tracing::info!(provider = %finished.provider, "a person logged in through an OpenID provider");
            landing(lang, new_session.as_ref())
        }
        Some(Err(p)) => problem_page(lang, None, &p),
        None => to_login(),
    }
}

/// What a verified login is for, done: a new session (given back), a
/// renewed one, or a second identity linked to it. `None` when the
/// session that started a renewal or a link has ended since. The strict
/// session cookie does not come along on a redirect from a provider or a
/// wallet; the session is the one that started the login, which the
/// browser-binding cookie ties to this browser.
pub(super) async fn finish_login(
    web: &Web,
    purpose: Purpose,
    proof: estafette_spec::IdentityProof,
    nonce: &[u8],
) -> Option<Result<Option<crate::home::session::Session>, Problem>> {
    Some(match purpose {
        Purpose::Login => web
            .api
            .log_in(proof, Some(nonce))
            .await
            .map(|(session, _)| Some(session)),
        Purpose::Renew(token) => {
            let session = web.api.session(token)?;
            web.api
                .renew(&session, proof, Some(nonce))
                .await
                .map(|_| None)
        }
        Purpose::Link(token) => {
            let session = web.api.session(token)?;
            match web.api.accept_login(&proof, Some(nonce)).await {
                Ok(_) => {
                    let action = estafette_spec::citizen::CitizenAction::Link { other: proof };
                    web.api.change(&session, action).await.map(|_| None)
                }
                Err(p) => Err(p),
            }
        }
    })
}

/// Logged in: a page of our own that goes on to the inbox. Not a redirect:
/// the browser arrived from the provider's site, and a strict session
/// cookie set now is sent only on a navigation that starts here.
pub(super) fn landing(lang: Lang, session: Option<&crate::home::session::Session>) -> Response {
    let mut r = page(
        lang,
        lang.t("web.you-are-logged-in"),
        None,
        html! {
            meta http-equiv="refresh" content="0;url=/";
            p { a href="/" { (lang.t("web.go-to-your-letters")) } }
        },
    );
    let headers = r.headers_mut();
    if let Some(c) = session.and_then(login::session_cookie) {
        headers.append(header::SET_COOKIE, c);
    }
    headers.append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "estafette_oidc=; Path=/login/oidc; HttpOnly; Secure; SameSite=Lax; Max-Age=0",
        ),
    );
    r
}

/// A login that did not work, said in the person's language; nothing changed.
fn failed(lang: Lang, e: &OidcError) -> Response {
    let (status, code) = match e {
        OidcError::UnknownState | OidcError::OtherBrowser => {
            (StatusCode::BAD_REQUEST, "login-not-started-here")
        }
        OidcError::Refused(_)
        | OidcError::MixUp { .. }
        | OidcError::NoIdToken
        | OidcError::Http(crate::home::oidc::ProviderHttpError::Status { .. }) => {
            (StatusCode::BAD_GATEWAY, "login-service-refused")
        }
        OidcError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "too-many-sessions"),
        _ => (StatusCode::BAD_GATEWAY, "login-service-unreachable"),
    };
    tracing::warn!(error = %e, "an OpenID login failed");
    problem_page(
        lang,
        None,
        &Problem {
            status,
            code: code.into(),
            detail: e.to_string(),
        },
    )
}
