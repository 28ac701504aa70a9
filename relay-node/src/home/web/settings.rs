//! The settings: e-mail address, activation, consent per sender, all on
//! paper; what changed in them (the history); and the access log (who read
//! my mail).

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use estafette_spec::Oin;
use estafette_spec::citizen::CitizenAction;
use estafette_spec::citizen::PersonView;
use maud::{Markup, html};
use serde::Deserialize;

use super::*;

pub(super) async fn settings(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
        return to_login();
    };
    let Some(me) = person(&web, &h).await else {
        return to_login();
    };
    let csrf = s.csrf();
    let agencies = agencies(&web);
    let main = if me.inbox.is_none() {
        html! { p { a href="/" { (lang.t("web.create-your-message-box-first")) } } }
    } else {
        html! {
            (email_section(lang, &me, &csrf))
            (activate_section(lang, &me, &csrf))
            (senders_section(lang, &me, &agencies, &csrf))
            @if let Some(oidc) = &web.oidc {
                section aria-labelledby="link-h" {
                    h2 id="link-h" { (lang.t("web.link.heading")) }
                    p { (lang.t("web.link.intro")) }
                    ul class="login-services" {
                        @for (id, label) in oidc.providers() {
                            li {
                                a class="button" href={ "/login/oidc/start?provider=" (id) "&link=true" } {
                                    (lang.fill("web.link.with", &[("service", label)]))
                                }
                            }
                        }
                    }
                }
            }
            @if web.wallet.as_ref().is_some_and(|w| w.available()) {
                section aria-labelledby="wallet-h" {
                    h2 id="wallet-h" { (lang.t("web.your-eu-digital-identity-wallet")) }
                    p { (lang.t("web.link-your-wallet-to-log-in-with-it")) }
                    p { a class="button" href="/login/wallet/start?link=true" { (lang.t("web.link-my-wallet")) } }
                }
            }
            section aria-labelledby="paper-h" {
                h2 id="paper-h" { (lang.t("web.everything-on-paper")) }
                form method="post" action="/settings/all-paper" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { (lang.t("web.send-me-everything-on-paper")) }
                }
            }
            p { a href="/settings/history" { (lang.t("web.history.link")) } }
        }
    };
    page(lang, lang.t("web.settings"), Some(&s), main)
}

/// Step 1: the e-mail address that tells of new letters.
fn email_section(lang: Lang, me: &PersonView, csrf: &str) -> Markup {
    let email = me.channels.first();
    html! {
        section aria-labelledby="email-h" {
            h2 id="email-h" { (lang.t("web.1-your-e-mail-address")) }
            p { (lang.t("web.this-address-tells-you-when-a")) }
            @if let Some(c) = email {
                p { (lang.t("web.your-address")) ": " strong { (c.address) } " – " (lang.t(match c.state {
                    estafette_spec::citizen::ChannelState::Verified => "web.email.confirmed",
                    estafette_spec::citizen::ChannelState::Pending => "web.email.pending",
                    _ => "web.email.failed",
                })) }
            }
            form method="post" action="/settings/email" {
                input type="hidden" name="csrf" value=(csrf);
                label for="address" { (lang.t("web.e-mail-address")) }
                input type="email" id="address" name="address" autocomplete="email" required;
                button type="submit" { (lang.t("web.send-me-a-confirmation-link")) }
            }
        }
    }
}

/// Step 2: switching digital mail on (once an address is confirmed).
fn activate_section(lang: Lang, me: &PersonView, csrf: &str) -> Markup {
    let verified = me
        .channels
        .iter()
        .any(|c| c.state == estafette_spec::citizen::ChannelState::Verified);
    html! {
        section aria-labelledby="activate-h" {
            h2 id="activate-h" { (lang.t("web.2-switch-on-digital-mail")) }
            @if me.active {
                p id="active-state" { strong { (lang.t("web.your-digital-message-box-is-on")) } }
            } @else {
                p { (lang.t("web.if-you-switch-this-on-senders")) }
                @if verified {
                    form method="post" action="/settings/activate" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { (lang.t("web.yes-switch-on-my-digital-message")) }
                    }
                } @else {
                    p class="notice" { (lang.t("web.confirm-your-e-mail-address-first")) }
                }
            }
        }
    }
}

/// Step 3: digital or paper, per sender.
fn senders_section(lang: Lang, me: &PersonView, agencies: &[(Oin, String)], csrf: &str) -> Markup {
    html! {
        section aria-labelledby="senders-h" {
            h2 id="senders-h" { (lang.t("web.3-choose-per-sender")) }
            p { (lang.t("web.anything-you-do-not-choose-comes")) }
            ul class="senders" {
                @for (oin, name) in agencies {
                    @let digital = me.digital_senders.contains(oin);
                    li {
                        form method="post" action="/settings/consent" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="sender" value=(oin.as_str());
                            fieldset {
                                legend { (name) }
                                input type="radio" id=(format!("d-{oin}")) name="digital" value="true" checked[digital];
                                label for=(format!("d-{oin}")) { (lang.t("web.digital")) }
                                input type="radio" id=(format!("p-{oin}")) name="digital" value="false" checked[!digital];
                                label for=(format!("p-{oin}")) { (lang.t("web.on-paper")) }
                                button type="submit" { (lang.t("web.save")) " " span class="visually-hidden" { (name) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct EmailForm {
    #[serde(default)]
    csrf: String,
    address: String,
}

#[derive(Deserialize)]
pub(super) struct ConsentForm {
    #[serde(default)]
    csrf: String,
    sender: String,
    digital: String,
}

pub(super) async fn do_change(
    web: &Web,
    headers: &HeaderMap,
    csrf: &str,
    action: CitizenAction,
) -> Response {
    let lang = lang_of(headers);
    let Some((h, s)) = web.checked(headers, csrf) else {
        return forbidden(lang);
    };
    match web.api.change(&h, action).await {
        Ok(_) => Redirect::to("/settings").into_response(),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

pub(super) async fn set_email(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<EmailForm>,
) -> Response {
    let action = CitizenAction::AddEmail {
        address: f.address.trim().to_owned(),
    };
    do_change(&web, &headers, &f.csrf, action).await
}

pub(super) async fn activate(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    do_change(&web, &headers, &f.csrf, CitizenAction::Activate).await
}

pub(super) async fn all_paper(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    do_change(&web, &headers, &f.csrf, CitizenAction::AllPaper).await
}

pub(super) async fn consent(
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

pub(super) async fn access_log(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
        return to_login();
    };
    let entries = match web.api.access_entries(&h) {
        Ok(e) => e,
        Err(p) => return problem_page(lang, Some(&s), &p),
    };
    page(
        lang,
        lang.t("web.who-read-my-mail"),
        Some(&s),
        html! {
            @if entries.is_empty() {
                p { (lang.t("web.nobody-has-opened-a-letter-yet")) }
            } @else {
                h2 { (lang.t("web.every-time-a-letter-was-opened")) }
                ol class="steps" {
                    @for e in &entries {
                        li {
                            dl {
                                dt { (lang.t("web.when")) } dd { (date(lang, e.at)) }
                                dt { (lang.t("web.by-2")) }
                                dd { (e.actor.representative.as_deref().unwrap_or(lang.t("web.yourself"))) }
                                @if let Some(mandate) = &e.actor.mandate {
                                    dt { (lang.t("web.mandate")) } dd class="id" { (mandate) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Everything that changed in the person's settings, newest first: when,
/// what, and through which login (or by the system). The gateway shows it
/// only to a login of minutes ago, as it does for changes.
pub(super) async fn history(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
        return to_login();
    };
    let entries = match web.api.ask(&h, CitizenAction::History).await {
        Ok(estafette_spec::citizen::CitizenReply::History(entries)) => entries,
        Ok(_) => vec![],
        Err(p) if p.code == "expired" => {
            return page(
                lang,
                lang.t("web.history"),
                Some(&s),
                html! {
                    p { (lang.t("web.history.needs-fresh-login")) }
                    p { a href="/login" { (lang.t("web.log-in-again")) } }
                },
            );
        }
        Err(p) => return problem_page(lang, Some(&s), &p),
    };
    let agencies = agencies(&web);
    let sender_name = |oin: &Oin| {
        agencies
            .iter()
            .find(|(a, _)| a == oin)
            .map_or_else(|| oin.to_string(), |(_, name)| name.clone())
    };
    page(
        lang,
        lang.t("web.history"),
        Some(&s),
        html! {
            p { (lang.t("web.history.intro")) }
            @if entries.is_empty() {
                p { (lang.t("web.history.empty")) }
            } @else {
                ol class="steps" {
                    @for e in entries.iter().rev() {
                        li {
                            strong { (change_text(lang, &e.change, &sender_name)) }
                            dl {
                                dt { (lang.t("web.when")) } dd { (date_time(lang, e.at)) }
                                dt { (lang.t("web.how")) }
                                dd { (match &e.assertion_digest {
                                    Some(d) => lang.fill("web.how.login", &[("ref", &d.to_string()[..8])]),
                                    None => lang.t("web.how.system").to_owned(),
                                }) }
                            }
                        }
                    }
                }
            }
            p { a href="/settings" { (lang.t("web.go-to-settings")) } }
        },
    )
}

/// A change in plain words.
fn change_text(
    lang: Lang,
    change: &estafette_spec::citizen::Change,
    sender_name: &dyn Fn(&Oin) -> String,
) -> String {
    use estafette_spec::citizen::Change;
    match change {
        Change::Registered { .. } => lang.t("web.change.registered").to_owned(),
        Change::EmailAdded { address } => {
            lang.fill("web.change.email-added", &[("address", address)])
        }
        Change::EmailVerified { address } => {
            lang.fill("web.change.email-verified", &[("address", address)])
        }
        Change::EmailFailed { address } => {
            lang.fill("web.change.email-failed", &[("address", address)])
        }
        Change::Activated => lang.t("web.change.activated").to_owned(),
        Change::Consent { sender, digital } => lang.fill(
            if *digital {
                "web.change.consent-digital"
            } else {
                "web.change.consent-paper"
            },
            &[("sender", &sender_name(sender))],
        ),
        Change::AllPaper => lang.t("web.change.all-paper").to_owned(),
        Change::Language { language } => {
            let name = crate::texts::catalogue(language)
                .map_or(language.as_str(), |c| c.text("language.name"));
            lang.fill("web.change.language", &[("language", name)])
        }
        Change::Linked { with, .. } => {
            lang.fill("web.change.linked", &[("with", &with.to_string())])
        }
        Change::MandateGranted { representative, .. } => lang.fill(
            "web.change.mandate-granted",
            &[("representative", representative)],
        ),
        Change::MandateAccepted { .. } => lang.t("web.change.mandate-accepted").to_owned(),
        Change::MandateRevoked { .. } => lang.t("web.change.mandate-revoked").to_owned(),
        Change::LegalRepresentation { representative, .. } => {
            lang.fill("web.change.legal", &[("representative", representative)])
        }
    }
}
