//! The letters: the inbox, registering, a letter's page (opening it signs
//! its ContentHandover), its evidence page and download, attachments.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use estafette_spec::citizen::CitizenAction;
use estafette_spec::{Actor, ActorRole, EnvelopeId};
use maud::html;

use super::*;
use crate::home::api::Problem;

/// Letters on one page of the web inbox.
pub const WEB_LETTERS_PAGE: usize = 50;

/// `/?before=<cursor>`: the page of older letters.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct InboxQuery {
    before: Option<String>,
}

pub(super) async fn inbox(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(query): Query<InboxQuery>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
        return to_login();
    };
    let Some(me) = person(&web, &h).await else {
        return to_login();
    };
    let older = query.before.is_some();
    let (letters, next, unread) = if me.inbox.is_some() {
        let page =
            crate::home::api::PageQuery::read(query.before.as_deref(), None, WEB_LETTERS_PAGE)
                .and_then(|(before, limit)| web.api.letters_page(&h, before, limit))
                .and_then(|(letters, next)| Ok((letters, next, web.api.unread_of(&h)?)));
        match page {
            Ok(page) => page,
            Err(p) => return problem_page(lang, Some(&s), &p),
        }
    } else {
        (vec![], None, 0)
    };
    page(
        lang,
        lang.t("web.your-letters"),
        Some(&s),
        html! {
            @if me.inbox.is_none() {
                p { (lang.t("web.you-do-not-have-a-digital")) }
                form method="post" action="/register" {
                    input type="hidden" name="csrf" value=(s.csrf());
                    button type="submit" { (lang.t("web.create-my-message-box")) }
                }
                p { (lang.t("web.creating-it-switches-nothing-on-you")) }
            } @else {
                @if !me.active {
                    p class="notice" { (lang.t("web.your-digital-message-box-is-off")) " " a href="/settings" { (lang.t("web.go-to-settings")) } }
                }
                p { (match unread {
                    0 => lang.t("web.unread.none").to_owned(),
                    1 => lang.t("web.unread.one").to_owned(),
                    n => lang.fill("web.unread.many", &[("n", &n.to_string())]),
                }) }
                @if !letters.is_empty() {
                    ul class="letters" {
                        @for l in &letters {
                            li class=(if l.opened { "letter" } else { "letter unread" }) {
                                @if !l.opened {
                                    strong class="badge" { (lang.t("web.new")) }
                                    " "
                                }
                                a href=(format!("/letters/{}", l.envelope_id)) { (l.subject) }
                                p { (lang.t("web.from")) ": " (l.sender_name) ", " (date(lang, l.received_at)) }
                                p class="action" {
                                    strong { (lang.t("web.what-you-need-to-do")) ": " }
                                    (l.expected_action)
                                    @if let Some(d) = l.response_deadline {
                                        " " strong { (lang.t("web.by")) " " (date(lang, d)) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if next.is_some() || older {
                    nav class="pages" aria-label=(lang.t("web.your-letters")) {
                        @if older {
                            a href="/" { (lang.t("web.newest-letters")) }
                            " "
                        }
                        @if let Some(next) = next {
                            a href=(format!("/?before={next}")) { (lang.t("web.older-letters")) }
                        }
                    }
                }
            }
        },
    )
}

pub(super) async fn register(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.checked(&headers, &f.csrf) else {
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

pub(super) async fn letter(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(envelope): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
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

pub(super) fn letter_page(
    lang: Lang,
    session: &PageSession,
    l: &crate::home::api::OpenedLetter,
    client: Option<&str>,
) -> Response {
    page(
        lang,
        &l.summary.subject,
        Some(session),
        html! {
            @if let Some(c) = client {
                p class="notice" { (lang.t("web.you-are-reading-this-as-the")) " " (c) "." }
            }
            dl {
                dt { (lang.t("web.from")) } dd { (l.summary.sender_name) }
                dt { (lang.t("web.received")) } dd { (date(lang, l.summary.received_at)) }
                dt { (lang.t("web.what-you-need-to-do")) } dd { (l.summary.expected_action) }
                @if let Some(d) = l.summary.response_deadline {
                    dt { (lang.t("web.by")) } dd { (date(lang, d)) }
                }
            }
            div class="body" { (l.body) }
            @if !l.attachments.is_empty() {
                h2 { (lang.t("web.attachments")) }
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
            p { (lang.t("web.that-you-opened-this-letter-has")) }
            @if client.is_none() {
                p { a href=(format!("/letters/{}/evidence", l.summary.envelope_id)) {
                    (lang.t("web.see-the-proof-of-sending-and"))
                } }
            }
            p { a href="/" { (lang.t("web.back-to-your-letters")) } }
        },
    )
}

pub(super) async fn evidence(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(envelope): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
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
        lang.t("web.proof-of-sending-and-delivery"),
        Some(&s),
        html! {
            p { (lang.t("web.every-step-is-signed-by-whoever")) }
            // The steps in order, each a short list: it reads the same on
            // a phone as on a desk (a table of four columns does not fit).
            h2 { (lang.t("web.what-happened-to-your-letter")) }
            ol class="steps" {
                @for (when, what, by, ok) in &rows {
                    li {
                        strong { (what) }
                        dl {
                            dt { (lang.t("web.when")) } dd { (when) }
                            dt { (lang.t("web.by-2")) } dd { (by) }
                            dt { (lang.t("web.signature")) }
                            dd { (if *ok { lang.t("web.valid") } else { lang.t("web.not-valid") }) }
                        }
                    }
                }
            }
            p { (if chain_ok {
                lang.t("web.the-steps-link-up")
            } else {
                lang.t("web.the-steps-do-not-link-up")
            }) }
            p { a href=(format!("/letters/{envelope}/evidence.cbor")) download=(format!("bewijs-{message}.cbor")) {
                (lang.t("web.download-the-signed-proof"))
            } }
        },
    )
}

fn event_text(lang: Lang, event: estafette_spec::EvidenceEvent) -> &'static str {
    use estafette_spec::EvidenceEvent as E;
    match event {
        E::SubmissionAcceptance => lang.t("web.sent-by-the-sender"),
        E::SubmissionRejection => lang.t("web.not-accepted"),
        E::RelayAcceptance => lang.t("web.passed-on"),
        E::RelayRejection => lang.t("web.not-passed-on"),
        E::RelayFailure => lang.t("web.not-delivered"),
        E::ContentConsignment => lang.t("web.put-in-your-message-box"),
        E::ConsignmentNotification => lang.t("web.you-were-sent-an-e-mail"),
        E::ConsignmentNotificationFailure => lang.t("web.e-mail-did-not-arrive"),
        E::ContentHandover => lang.t("web.opened"),
        E::PaperFallback => lang.t("web.sent-on-paper"),
        E::PaperFailure => lang.t("web.could-not-go-on-paper-no"),
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
pub(super) async fn attachment(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path((envelope, index)): Path<(String, usize)>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
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

pub(super) async fn evidence_download(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(envelope): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
        return to_login();
    };
    match web.api.letter_evidence(&h, &envelope).await {
        Ok((message, list)) => {
            // The proof bundle (SPEC.md §16): the evidence and the trust
            // list it verifies against, for `estafette-pki verify` or any
            // COSE library, offline.
            let body = estafette_spec::bundle::ProofBundle {
                message_id: message,
                trust_list: web.api.node.core().trust.trust_list_bytes(),
                evidence: list,
            }
            .encode();
            let disposition = format!("attachment; filename=\"bewijs-{message}.cbor\"");
            let mut r = (
                [(
                    header::CONTENT_TYPE,
                    estafette_spec::bundle::BUNDLE_MEDIA_TYPE,
                )],
                body,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            secure_headers(r)
        }
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}
