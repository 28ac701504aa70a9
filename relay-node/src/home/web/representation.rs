//! Helpers and clients: who helps me (mandates given, granting,
//! revoking, accepting), and for a representative the clients and their
//! letters (each access checked with the gateway at that moment), and the
//! registration of a court appointment (the court registry's attestation,
//! uploaded as a file).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use estafette_spec::Recipient;
use estafette_spec::citizen::{CitizenAction, CitizenReply};
use maud::html;
use serde::Deserialize;

use super::*;
use crate::home::api::Problem;

pub(super) async fn representatives(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
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
    let csrf = s.csrf();
    let now = estafette_pki::now();
    page(
        lang,
        lang.t("web.who-helps-me"),
        Some(&s),
        html! {
            p { (lang.t("web.someone-who-helps-you-can-read")) }
            @if given.is_empty() {
                p { (lang.t("web.nobody-helps-you-now")) }
            } @else {
                ul class="letters" {
                    @for m in &given {
                        li class="letter" {
                            strong { (m.representative.label()) }
                            p { (lang.t(match (m.is_legal(), m.stands(now), m.accepted) {
                                (true, _, _) => "web.mandate.legal",
                                (false, true, _) => "web.mandate.helps",
                                (false, false, false) => "web.mandate.to-accept",
                                (false, false, true) => "web.mandate.stopped",
                            })) }
                            @if !m.is_legal() && m.revoked_at.is_none() {
                                form method="post" action="/representatives/revoke" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="id" value=(m.id.to_string());
                                    button type="submit" { (lang.t("web.stop-this-help")) " " span class="visually-hidden" { (m.representative.label()) } }
                                }
                            }
                        }
                    }
                }
            }
            p { a href="/clients" { (lang.t("web.helping-others")) } }
            h2 { (lang.t("web.ask-someone-to-help-you")) }
            form method="post" action="/representatives" {
                input type="hidden" name="csrf" value=(csrf);
                label for="rep-name" { (lang.t("web.name-of-your-helper")) }
                input type="text" id="rep-name" name="name" autocomplete="off" required;
                label for="rep-id" { (lang.t("web.that-person-s-citizen-service-number")) }
                p class="hint" id="rep-id-hint" { (lang.t("web.for-example-bsn-123456782")) }
                input type="text" id="rep-id" name="person" autocomplete="off" aria-describedby="rep-id-hint" required;
                button type="submit" { (lang.t("web.ask-this-person-to-read-my")) }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct GrantForm {
    #[serde(default)]
    csrf: String,
    name: String,
    person: String,
}

pub(super) async fn grant(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<GrantForm>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.checked(&headers, &f.csrf) else {
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
pub(super) struct MandateForm {
    #[serde(default)]
    csrf: String,
    id: String,
}

/// A change about mandate `id` from a form with CSRF token `csrf`, then
/// back to `after`; a form we did not make (no action) is forbidden.
pub(super) async fn mandate_form(
    web: &Web,
    headers: &HeaderMap,
    (csrf, id): (&str, &str),
    action: impl FnOnce(estafette_spec::mandate::MandateId) -> Option<CitizenAction>,
    after: &str,
) -> Response {
    let lang = lang_of(headers);
    let Some((h, s)) = web.checked(headers, csrf) else {
        return forbidden(lang);
    };
    let Some(action) = id.parse().ok().and_then(action) else {
        return forbidden(lang);
    };
    match web.api.mandate_change(&h, action).await {
        Ok(_) => Redirect::to(after).into_response(),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

pub(super) async fn revoke(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<MandateForm>,
) -> Response {
    let revoke = |id| Some(CitizenAction::RevokeMandate { id });
    mandate_form(&web, &headers, (&f.csrf, &f.id), revoke, "/representatives").await
}

pub(super) async fn accept(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<MandateForm>,
) -> Response {
    let accept = |id| Some(CitizenAction::AcceptMandate { id });
    mandate_form(&web, &headers, (&f.csrf, &f.id), accept, "/clients").await
}

/// The clients page's search: part of a client's name.
#[derive(Deserialize)]
pub(super) struct ClientSearch {
    #[serde(default)]
    name: String,
}

/// What the clients page shows of one client: unread letters the
/// representative may see, and the first deadline among them.
struct ClientLine {
    mandate: String,
    name: String,
    unread: usize,
    first_due: Option<estafette_spec::Timestamp>,
}

/// Most clients whose letters are counted for one page (the rest are
/// listed by name; the search finds them).
const MAX_CLIENTS_COUNTED: usize = 200;

pub(super) async fn clients(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(search): Query<ClientSearch>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
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
    web.api
        .note_represents(&h, !list.is_empty() || !pending.is_empty())
        .await;
    let mut lines = client_lines(&web, &h, lang, &list, search.name.trim()).await;
    // Who needs attention first: the nearest deadline, then the most unread.
    lines.sort_by_key(|l| {
        (
            l.first_due.is_none(),
            l.first_due,
            std::cmp::Reverse(l.unread),
        )
    });
    page(
        lang,
        lang.t("web.my-clients"),
        Some(&s),
        html! {
            @for m in &pending {
                form method="post" action="/clients/accept" class="notice" {
                    input type="hidden" name="csrf" value=(s.csrf());
                    input type="hidden" name="id" value=(m.id.to_string());
                    p { (lang.t("web.someone-asks-you-to-help-with")) }
                    button type="submit" { (lang.t("web.yes-i-will-help")) }
                }
            }
            @if list.is_empty() {
                p { (lang.t("web.you-do-not-represent-anyone")) }
            } @else {
                form method="get" action="/clients" role="search" {
                    label for="client-name" { (lang.t("web.clients.find")) }
                    input type="search" id="client-name" name="name" value=(search.name) autocomplete="off";
                    button type="submit" { (lang.t("web.clients.find-button")) }
                }
                @if lines.is_empty() {
                    p role="status" { (lang.t("web.clients.none-found")) }
                }
                ul class="letters" {
                    @for l in &lines {
                        li class=(if l.unread > 0 { "letter unread" } else { "letter" }) {
                            a href=(format!("/clients/{}", l.mandate)) { (l.name) }
                            p {
                                @if l.unread > 0 {
                                    (lang.fill("web.clients.unread", &[("n", &l.unread.to_string())]))
                                } @else {
                                    (lang.t("web.clients.all-read"))
                                }
                                @if let Some(due) = l.first_due {
                                    " – " strong { (lang.fill("web.clients.due", &[("date", &date(lang, due))])) }
                                }
                            }
                        }
                    }
                }
            }
            (court_form(lang, &s.csrf()))
        },
    )
}

/// The clients whose name holds `wanted` (all when it is empty), each with
/// its unread letters and first deadline.
async fn client_lines(
    web: &Web,
    session: &Session,
    lang: Lang,
    clients: &[estafette_spec::citizen::ClientView],
    wanted: &str,
) -> Vec<ClientLine> {
    let wanted = fold(wanted);
    let mut lines = Vec::new();
    for c in clients.iter().filter(|c| {
        wanted.is_empty()
            || c.client_name
                .as_deref()
                .is_some_and(|n| fold(n).contains(&wanted))
    }) {
        let letters = match c.inbox {
            // The clients page asked for the clients already: no second
            // question per client, only the access checks.
            Some(inbox) if lines.len() < MAX_CLIENTS_COUNTED => web
                .api
                .client_letters_in(session, c.mandate, inbox)
                .await
                .unwrap_or_default(),
            _ => vec![],
        };
        let unread: Vec<_> = letters.iter().filter(|l| !l.opened).collect();
        lines.push(ClientLine {
            name: c
                .client_name
                .clone()
                .unwrap_or_else(|| lang.t("web.client").to_owned()),
            unread: unread.len(),
            first_due: unread.iter().filter_map(|l| l.response_deadline).min(),
            mandate: c.mandate.to_string(),
        });
    }
    lines
}

/// A name as the search compares it: lower case, the common Latin
/// diacritics taken off (so "Zolkiewska" finds "Żółkiewska").
fn fold(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ą' => 'a',
            'ç' | 'ć' | 'č' => 'c',
            'è' | 'é' | 'ê' | 'ë' | 'ę' | 'ě' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ł' => 'l',
            'ñ' | 'ń' | 'ň' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
            'ś' | 'š' => 's',
            'ù' | 'ú' | 'û' | 'ü' | 'ů' => 'u',
            'ý' | 'ÿ' => 'y',
            'ź' | 'ż' | 'ž' => 'z',
            other => other,
        })
        .collect()
}

/// Registering a court appointment: the attestation file, where the
/// client's mail goes, and an office address for paper.
fn court_form(lang: Lang, csrf: &str) -> maud::Markup {
    html! {
        section aria-labelledby="court-h" {
            h2 id="court-h" { (lang.t("web.court")) }
            p { (lang.t("web.court.intro")) }
            form method="post" action="/clients/court" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(csrf);
                label for="court-file" { (lang.t("web.court.file")) }
                input type="file" id="court-file" name="attestation" required;
                p {
                    input type="checkbox" id="court-mail" name="correspondence" value="yes" checked;
                    label for="court-mail" class="inline" { (lang.t("web.court.correspondence")) }
                }
                fieldset {
                    legend { (lang.t("web.court.office")) }
                    label for="office-street" { (lang.t("web.street")) }
                    input type="text" id="office-street" name="street" autocomplete="street-address";
                    label for="office-code" { (lang.t("web.postal-code")) }
                    input type="text" id="office-code" name="postal_code" autocomplete="postal-code";
                    label for="office-city" { (lang.t("web.city")) }
                    input type="text" id="office-city" name="city" autocomplete="address-level2";
                    label for="office-country" { (lang.t("web.country")) }
                    input type="text" id="office-country" name="country" value="NL" autocomplete="country";
                }
                button type="submit" { (lang.t("web.court.register")) }
            }
        }
    }
}

/// What a court appointment form carried.
#[derive(Default)]
struct CourtForm {
    csrf: String,
    attestation: Vec<u8>,
    correspondence: bool,
    street: String,
    postal_code: String,
    city: String,
    country: String,
}

/// Reads the multipart form; `None` if it is not one we sent.
async fn read_court_form(mut multipart: axum::extract::Multipart) -> Option<CourtForm> {
    let mut form = CourtForm::default();
    while let Some(field) = multipart.next_field().await.ok()? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "attestation" {
            form.attestation = field.bytes().await.ok()?.to_vec();
            continue;
        }
        let text = field.text().await.ok()?;
        match name.as_str() {
            "csrf" => form.csrf = text,
            "correspondence" => form.correspondence = true,
            "street" => form.street = text,
            "postal_code" => form.postal_code = text,
            "city" => form.city = text,
            "country" => form.country = text,
            _ => {}
        }
    }
    Some(form)
}

/// The attestation as the court registry gave it: the COSE bytes, or the
/// same in hex (as the citizen API takes it); within its size limit.
fn attestation_of(file: &[u8]) -> Option<Vec<u8>> {
    const MAX: usize = estafette_spec::mandate::MAX_ATTESTATION_BYTES;
    let text = std::str::from_utf8(file).ok().map(str::trim);
    let bytes = match text.and_then(estafette_spec::bytes::from_hex) {
        Some(decoded) => decoded,
        None => file.to_vec(),
    };
    (!bytes.is_empty() && bytes.len() <= MAX).then_some(bytes)
}

/// Refusals of an attestation itself (its signature, its signer, whom it
/// names, its validity): the court page says so in its own words.
const ATTESTATION_REFUSALS: &[&str] = &[
    "bad_signature",
    "unknown_signer",
    "wrong_role",
    "revoked",
    "expired",
    "not_yet_valid",
    "malformed",
    "too_large",
];

pub(super) async fn register_court(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    multipart: axum::extract::Multipart,
) -> Response {
    let lang = lang_of(&headers);
    let Some(form) = read_court_form(multipart).await else {
        return forbidden(lang);
    };
    let Some((h, s)) = web.checked(&headers, &form.csrf) else {
        return forbidden(lang);
    };
    let malformed = |detail: &str| Problem {
        status: StatusCode::BAD_REQUEST,
        code: "malformed".into(),
        detail: detail.into(),
    };
    let Some(attestation) = attestation_of(&form.attestation) else {
        return court_refused(lang, &s, &malformed("attestation: not an attestation file"));
    };
    let given = [&form.street, &form.postal_code, &form.city]
        .iter()
        .filter(|f| !f.trim().is_empty())
        .count();
    let office_address = match given {
        0 => None,
        3 => {
            let Ok(country) = form.country.trim().to_ascii_uppercase().parse() else {
                return problem_page(lang, Some(&s), &malformed("country: two letters"));
            };
            Some(estafette_spec::citizen::PostalAddress {
                street_lines: vec![form.street.trim().to_owned()],
                postal_code: form.postal_code.trim().to_owned(),
                city: form.city.trim().to_owned(),
                country,
            })
        }
        _ => {
            return problem_page(
                lang,
                Some(&s),
                &malformed("office address: street, postal code and town, or none"),
            );
        }
    };
    let action = CitizenAction::RegisterLegalRepresentation {
        attestation: serde_bytes::ByteBuf::from(attestation),
        correspondence: form.correspondence,
        office_address,
    };
    match web.api.mandate_change(&h, action).await {
        Ok(_) => Redirect::to("/clients").into_response(),
        Err(p) if ATTESTATION_REFUSALS.contains(&p.code.as_str()) => court_refused(lang, &s, &p),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

/// The attestation was refused: why, in words and by its code.
fn court_refused(lang: Lang, session: &PageSession, p: &Problem) -> Response {
    let mut r = page(
        lang,
        lang.t("web.that-did-not-work"),
        Some(session),
        html! {
            p role="alert" { (lang.t("web.court.refused")) }
            p class="hint" { (lang.t("web.court.reason")) ": " code { (p.code) } }
            p { a href="/clients" { (lang.t("web.my-clients")) } }
        },
    );
    *r.status_mut() = p.status;
    r
}

/// The client page's note that a choice was saved.
#[derive(Deserialize)]
pub(super) struct SavedQuery {
    #[serde(default)]
    saved: bool,
}

pub(super) async fn client(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(mandate): Path<String>,
    Query(q): Query<SavedQuery>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
        return to_login();
    };
    let (client, letters) = match web.api.client_with_letters(&h, &mandate).await {
        Ok(found) => found,
        Err(p) => return problem_page(lang, Some(&s), &p),
    };
    // A representative who may manage (a court appointment, or a mandate
    // that says so) chooses digital or paper for the client, per sender.
    let manages = client.rights.manage;
    let agencies = agencies(&web);
    page(
        lang,
        lang.t("web.your-client-s-letters"),
        Some(&s),
        html! {
            @if q.saved {
                p role="status" class="notice" { (lang.t("web.client-consent.saved")) }
            }
            @if letters.is_empty() {
                p { (lang.t("web.no-letters-you-may-see")) }
            }
            ul class="letters" {
                @for l in &letters {
                    li class=(if l.opened { "letter" } else { "letter unread" }) {
                        a href=(format!("/clients/{mandate}/letters/{}", l.envelope_id)) { (l.subject) }
                        p { (lang.t("web.from")) ": " (l.sender_name) }
                    }
                }
            }
            @if manages {
                section aria-labelledby="client-consent-h" {
                    h2 id="client-consent-h" { (lang.t("web.client-consent.heading")) }
                    p { (lang.t("web.client-consent.intro")) }
                    @for (oin, name) in &agencies {
                        form method="post" action=(format!("/clients/{mandate}/consent")) {
                            input type="hidden" name="csrf" value=(s.csrf());
                            input type="hidden" name="sender" value=(oin);
                            fieldset {
                                legend { (name) }
                                button type="submit" name="digital" value="true" { (lang.t("web.digital")) }
                                " "
                                button type="submit" name="digital" value="false" { (lang.t("web.on-paper")) }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct ClientConsentForm {
    #[serde(default)]
    csrf: String,
    sender: String,
    digital: String,
}

/// A representative's choice for the client: digital or paper from one
/// sender; refused as through the API.
pub(super) async fn client_consent(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(mandate): Path<String>,
    Form(f): Form<ClientConsentForm>,
) -> Response {
    let sender = f.sender.parse().ok();
    let digital = f.digital == "true";
    let action = |id| {
        Some(CitizenAction::SetClientConsent {
            mandate: id,
            sender: sender?,
            digital,
        })
    };
    let after = format!("/clients/{mandate}?saved=true");
    mandate_form(&web, &headers, (&f.csrf, &mandate), action, &after).await
}

pub(super) async fn client_letter(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path((mandate, envelope)): Path<(String, String)>,
) -> Response {
    let lang = lang_of(&headers);
    let Some((h, s)) = web.session_of(&headers) else {
        return to_login();
    };
    match web.api.open_client(&h, &mandate, &envelope).await {
        Ok((l, client)) => super::letters::letter_page(lang, &s, &l, Some(&client)),
        Err(p) => problem_page(lang, Some(&s), &p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_search_ignores_case_and_diacritics() {
        assert!(fold("Małgorzata Żółkiewska").contains(&fold("zolkiewska")));
        assert!(fold("Jürgen WEISS").contains(&fold("jurgen weiss")));
        assert!(!fold("Anna Jansen").contains(&fold("piet")));
    }

    #[test]
    fn an_attestation_file_is_its_bytes_or_their_hex_within_the_limit() {
        let cose = vec![0xd2, 0x84, 0x43, 0xa1];
        assert_eq!(attestation_of(&cose), Some(cose.clone()));
        assert_eq!(attestation_of(b"d28443a1\n"), Some(cose));
        assert_eq!(attestation_of(b""), None);
        assert_eq!(attestation_of(b"  \n"), None);
        let max = estafette_spec::mandate::MAX_ATTESTATION_BYTES;
        assert!(attestation_of(&vec![7u8; max]).is_some());
        assert_eq!(attestation_of(&vec![7u8; max + 1]), None);
        assert_eq!(attestation_of("ab".repeat(max + 1).as_bytes()), None);
    }
}
