//! Logging in and out: the login page (a production provider's assertion,
//! or in a test federation the test provider's form), rate limits per
//! source and per person, the session cookie.

use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use estafette_spec::{
    IdentityAssertion, IdentityClaims, IdentityProof, LevelOfAssurance, Recipient,
};
use maud::html;
use rand_core::{OsRng, RngCore};
use serde::Deserialize;

use super::*;
use crate::home::api::Problem;
use crate::home::session::Session;

pub(super) async fn login_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    // Logged in already: the buttons ask the provider for a fresh login
    // that renews this session (a change needs one of minutes ago).
    let renew = if web.session_of(&headers).is_some() {
        "&renew=true"
    } else {
        ""
    };
    let wallet = web.wallet.as_ref().is_some_and(|w| w.available());
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    let token = Hex(&nonce).to_string();
    let mut r = page(
        lang,
        lang.t("web.log-in"),
        None,
        html! {
            p { (lang.t("web.log-in-to-read-your-letters")) }
            @if web.test_idp.is_some() {
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(token);
                    label for="subject" { (lang.t("web.your-citizen-service-number-or-european")) }
                    p class="hint" id="subject-hint" { (lang.t("web.for-example-bsn-999999990-this-is")) }
                    input type="text" id="subject" name="subject" autocomplete="off"
                        aria-describedby="subject-hint" required;
                    button type="submit" { (lang.t("web.log-in-with-the-test-login")) }
                }
            }
            @if let Some(oidc) = &web.oidc {
                ul class="login-services" {
                    @for (id, label) in oidc.providers() {
                        li {
                            a class="button" href={ "/login/oidc/start?provider=" (id) (renew) } {
                                (lang.fill("web.log-in-with", &[("service", label)]))
                            }
                        }
                    }
                }
            } @else if web.test_idp.is_none() && !wallet {
                p { (lang.t("web.log-in-with-your-login-service")) }
            }
            @if wallet {
                p {
                    a class="button" href={ "/login/wallet/start" (renew.replace('&', "?")) } {
                        (lang.t("web.log-in-with-your-eu-digital-identity-wallet"))
                    }
                }
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
pub(super) struct LoginForm {
    #[serde(default)]
    csrf: String,
    subject: String,
}

pub(super) fn session_cookie(session: &Session) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict",
        session.token()
    ))
    .ok()
}

pub(super) async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = lang_of(&headers);
    if cookie(&headers, LOGIN_COOKIE).as_deref() != Some(f.csrf.as_str()) {
        return forbidden(lang);
    }
    if !web.login_allowed(peer.ip(), Some(f.subject.trim())) {
        return too_many_logins(lang);
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
    let proof = IdentityProof::Assertion(serde_bytes::ByteBuf::from(assertion));
    match web.api.log_in(proof, None).await {
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

pub(super) async fn logout(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, _)) = web.checked(&headers, &f.csrf) else {
        return forbidden(lang);
    };
    if let Err(p) = web.api.log_out(&h).await {
        return problem_page(lang, None, &p);
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
