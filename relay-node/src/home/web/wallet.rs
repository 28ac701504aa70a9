//! Logging in with the EU Digital Identity Wallet, without JavaScript: the
//! login page's button starts a wallet login (`/login/wallet/start`), whose
//! page shows a QR code for a phone's wallet and a link for a wallet on
//! this device. A wallet on this device sends the browser back to the
//! page itself; after sharing on a phone, the person presses "continue"
//! (no timed refresh: WCAG 2.2.1 wants the pace to be the person's). The
//! wallet fetches the signed request
//! (`/wallet/request/{id}`) and posts its presentation
//! (`/wallet/response`); see `home::wallet`.

use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::*;
use crate::home::api::Problem;
use crate::home::wallet::{Progress, WalletError};

/// The cookie that binds a wallet login to the browser that started it.
/// SameSite=Lax: a wallet on this device sends the browser back with a
/// top-level navigation from outside.
const WALLET_BROWSER_COOKIE: &str = "estafette_wallet";

#[derive(Deserialize)]
pub(super) struct StartQuery {
    /// A fresh login for the current session (before a change).
    #[serde(default)]
    renew: bool,
    /// The wallet as a second identity of the current session's person.
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
    let Some(wallet) = &web.wallet else {
        return to_login();
    };
    if !web.login_allowed(peer.ip(), None) {
        return too_many_logins(lang);
    }
    let Some(purpose) = oidc::purpose_of(&web, &headers, q.renew, q.link) else {
        return to_login();
    };
    match wallet.start(purpose) {
        Ok((id, browser)) => oidc::binding_redirect(
            &format!("/login/wallet/{id}"),
            WALLET_BROWSER_COOKIE,
            "/login/wallet",
            &browser,
        ),
        Err(e) => failed(lang, &e),
    }
}

#[derive(Deserialize)]
pub(super) struct ProgressQuery {
    response_code: Option<String>,
    /// The person pressed "continue".
    continued: Option<String>,
}

/// The page of a wallet login: the QR code while waiting, then the login.
pub(super) async fn progress(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ProgressQuery>,
) -> Response {
    let lang = lang_of(&headers);
    let Some(wallet) = &web.wallet else {
        return to_login();
    };
    let browser = cookie(&headers, WALLET_BROWSER_COOKIE);
    let progress = wallet.progress(&id, browser.as_deref(), q.response_code.as_deref());
    let (proof, nonce, purpose) = match progress {
        Ok(Progress::Waiting { request }) => {
            return waiting(lang, &id, &request, q.continued.is_some());
        }
        Ok(Progress::Presented {
            proof,
            nonce,
            purpose,
        }) => (proof, nonce, purpose),
        Err(e) => return failed(lang, &e),
    };
    match oidc::finish_login(&web, purpose, proof, nonce.as_bytes()).await {
        None => to_login(),
        Some(Ok(session)) => {
            tracing::info!("a person logged in with a wallet");
            let mut r = oidc::landing(lang, session.as_ref());
            r.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "estafette_wallet=; Path=/login/wallet; HttpOnly; Secure; SameSite=Lax; Max-Age=0",
                ),
            );
            r
        }
        Some(Err(p)) => problem_page(lang, None, &p),
    }
}

/// Waiting for the wallet: the request as QR code (for a phone) and as a
/// link (a wallet on this device), and "continue" for after sharing.
fn waiting(lang: Lang, id: &str, request: &str, continued: bool) -> Response {
    let mut r = page(
        lang,
        lang.t("web.log-in-with-your-wallet"),
        None,
        html! {
            @if continued {
                p role="status" { (lang.t("web.your-wallet-has-not-answered-yet")) }
            }
            p { (lang.t("web.scan-this-code-with-your-wallet")) }
            figure class="qr" {
                (qr_svg(request, lang.t("web.qr-code-for-your-wallet")))
            }
            p { a class="button" href=(request) { (lang.t("web.open-your-wallet-on-this-device")) } }
            form method="get" action={ "/login/wallet/" (id) } {
                input type="hidden" name="continued" value="1";
                button type="submit" id="continue" { (lang.t("web.i-have-shared-my-data-continue")) }
            }
            p { a href="/login" { (lang.t("web.cancel")) } }
        },
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `text` as a QR code: an SVG of one square per dark module, with a quiet
/// zone of four modules (ISO/IEC 18004), scaled by the page.
pub(crate) fn qr_svg(text: &str, label: &str) -> Markup {
    let Ok(code) = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M) else {
        return html! {};
    };
    let width = code.width();
    let size = width + 8;
    let mut squares = String::new();
    for (i, color) in code.to_colors().iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (x, y) = (i % width + 4, i / width + 4);
            squares.push_str(&format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"1\" height=\"1\"/>"
            ));
        }
    }
    html! {
        svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
            viewBox={ "0 0 " (size) " " (size) } width="264" height="264"
            shape-rendering="crispEdges" {
            rect width=(size) height=(size) fill="#fff" {}
            g fill="#000" { (PreEscaped(squares)) }
        }
    }
}

/// The signed request object, fetched by the wallet.
pub(super) async fn request_object(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
) -> Response {
    let Some(wallet) = &web.wallet else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match wallet.request_object(&id) {
        Ok(jwt) => (
            [
                (header::CONTENT_TYPE, "application/oauth-authz-req+jwt"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jwt,
        )
            .into_response(),
        Err(e) => wallet_error(StatusCode::NOT_FOUND, "invalid_request_uri", &e),
    }
}

#[derive(Deserialize)]
pub(super) struct WalletResponse {
    vp_token: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The wallet's `direct_post`.
pub(super) async fn response(
    State(web): State<Arc<Web>>,
    Form(answer): Form<WalletResponse>,
) -> Response {
    let Some(wallet) = &web.wallet else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (vp_token, state) = match (answer.vp_token, answer.state, answer.error) {
        (Some(vp_token), Some(state), None) => (vp_token, state),
        // The wallet's error answer (OpenID4VP §8.5): the person declined,
        // or the wallet has no PID.
        (_, Some(state), Some(error)) => {
            return match wallet.decline(&state, &error) {
                Ok(()) => StatusCode::OK.into_response(),
                Err(e) => wallet_error(StatusCode::BAD_REQUEST, "invalid_request", &e),
            };
        }
        _ => {
            let e = WalletError::Response("no vp_token and state");
            return wallet_error(StatusCode::BAD_REQUEST, "invalid_request", &e);
        }
    };
    match wallet.respond(&vp_token, &state).await {
        Ok(redirect_uri) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({ "redirect_uri": redirect_uri })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "a wallet's presentation was refused");
            let code = match e {
                WalletError::UnknownTransaction => "invalid_request",
                WalletError::StatusList(_) => "server_error",
                _ => "access_denied",
            };
            wallet_error(StatusCode::BAD_REQUEST, code, &e)
        }
    }
}

fn wallet_error(status: StatusCode, error: &str, e: &WalletError) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": error, "error_description": e.to_string()})),
    )
        .into_response()
}

/// A wallet login that did not work, said in the person's language.
fn failed(lang: Lang, e: &WalletError) -> Response {
    let (status, code) = match e {
        WalletError::UnknownTransaction | WalletError::OtherBrowser => {
            (StatusCode::BAD_REQUEST, "login-not-started-here")
        }
        WalletError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "too-many-sessions"),
        WalletError::Refused(_) | WalletError::Response(_) => {
            (StatusCode::FORBIDDEN, "wallet-presentation-refused")
        }
        _ => (StatusCode::BAD_GATEWAY, "login-service-unreachable"),
    };
    tracing::warn!(error = %e, "a wallet login failed");
    if let WalletError::Refused(why) = e {
        // The reason is the verifier's own words (which claim, which
        // check), worth showing next to the general text.
        let mut r = page(
            lang,
            lang.t("web.that-did-not-work"),
            None,
            html! {
                p role="alert" { (lang.t("problem.wallet-presentation-refused")) }
                p { (why) }
                p { a href="/login" { (lang.t("web.start-again")) } }
            },
        );
        *r.status_mut() = status;
        return r;
    }
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
