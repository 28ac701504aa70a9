//! The web inbox over real HTTPS: the session cookie's attributes, the
//! security headers, and a form without its CSRF token refused with 403 and
//! nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use estafette_gateway::registry;
use estafette_relay::home::client::CitizenClient;
use estafette_spec::*;
use hyper::{Method, StatusCode};

const ANNA: &str = "bsn:999999990";
const FORM: &str = "application/x-www-form-urlencoded";

/// A minimal browser: keeps the cookies it is given.
struct Browser {
    client: CitizenClient,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn go(
        &mut self,
        method: Method,
        path: &str,
        form: Option<String>,
    ) -> (StatusCode, hyper::HeaderMap, String) {
        let extra = [("cookie", self.cookie_header())];
        let body = form.map(|f| (FORM, f.into_bytes()));
        let (status, headers, body) = self
            .client
            .send_with(method, path, &extra, body)
            .await
            .unwrap();
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            self.cookies.push((k.to_owned(), v.to_owned()));
        }
        (status, headers, String::from_utf8(body).unwrap())
    }
}

/// The value of the hidden `csrf` field in a page.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 32].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_csrf_and_security_headers() {
    let w = World::start().await;
    let mut b = Browser {
        client: w.citizen(),
        cookies: vec![],
    };
    // Not logged in: to the login page.
    let (status, headers, _) = b.go(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/login");
    let (status, headers, login) = b.go(Method::GET, "/login", None).await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(login.contains("<html lang=\"nl\""));
    // A login without the form's token is refused.
    let (status, _, _) = b
        .go(
            Method::POST,
            "/login",
            Some(format!("csrf=00&subject={ANNA}")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let token = csrf(&login);
    let (status, headers, _) = b
        .go(
            Method::POST,
            "/login",
            Some(format!("csrf={token}&subject=bsn%3A999999990")),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "logged in");
    let session = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("estafette_session="))
        .unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(session.contains(attribute), "{session}");
    }
    // The inbox; registration with the form's token.
    let (status, _, inbox) = b.go(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    let token = csrf(&inbox);
    let (status, _, _) = b
        .go(Method::POST, "/register", Some(format!("csrf={token}")))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // A consent form posted without its token: 403, and nothing changed.
    let form = "sender=00000001003214345000&digital=true".to_owned();
    let (status, _, page) = b
        .go(Method::POST, "/settings/consent", Some(form.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("Er is niets veranderd"));
    let (status, _, _) = b
        .go(
            Method::POST,
            "/settings/consent",
            Some(format!("csrf={}&{form}", "0".repeat(32))),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let person = registry::lookup(w.gateway.gateway.records(), &ANNA.parse().unwrap())
        .unwrap()
        .unwrap();
    assert!(person.digital_senders.is_empty(), "nothing changed");
    // With the token it works: an e-mail address (verified by its link),
    // activation, and the choice.
    let (_, _, settings) = b.go(Method::GET, "/settings", None).await;
    let token = csrf(&settings);
    let (status, _, _) = b
        .go(
            Method::POST,
            "/settings/email",
            Some(format!("csrf={token}&address=anna%40example.nl")),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let mails = w
        .sink
        .wait_for(WAIT, |m| m.iter().any(|m| m.to == ["anna@example.nl"]))
        .await
        .unwrap();
    let link = mails[0]
        .body
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once("/verify-email")
                .map(|(_, t)| t.to_owned())
        })
        .unwrap();
    let (status, _, _) = b
        .go(Method::GET, &format!("/verify-email{link}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = b
        .go(
            Method::POST,
            "/settings/activate",
            Some(format!("csrf={token}")),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = b
        .go(
            Method::POST,
            "/settings/consent",
            Some(format!("csrf={token}&{form}")),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let person = registry::lookup(w.gateway.gateway.records(), &ANNA.parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(person.digital_senders.len(), 1);
    // An attachment: only of an opened letter, and always as a download.
    let mut letter = Letter {
        message_id: MessageId::random(&mut rand_core::OsRng),
        sender: "00000001003214345000".parse().unwrap(),
        recipient: ANNA.parse().unwrap(),
        created_at: estafette_pki::now(),
        subject: "Met bijlage".into(),
        body: "Zie de bijlage.".into(),
        attachments: vec![],
        nature: Nature::Information,
        legal_effect: false,
        expected_action: "Geen".into(),
        response_deadline: None,
        language: "nl".into(),
        sender_reference: "B-1".into(),
    };
    letter.attachments.push(Attachment {
        name: "<i>bijlage.html".into(),
        media_type: "text/html".into(),
        content: b"<script>alert(1)</script>".to_vec(),
    });
    // Names that lie about what they are, or try to leave the download
    // folder: shown and offered without the trick.
    letter.attachments.push(Attachment {
        name: "invoice\u{202E}fdp.exe".into(),
        media_type: "application/pdf".into(),
        content: b"MZ".to_vec(),
    });
    letter.attachments.push(Attachment {
        name: "..".into(),
        media_type: "application/pdf".into(),
        content: b"x".to_vec(),
    });
    let (m, _) = w.send_letter(letter.clone()).await;
    w.wait_for_event(&m, EvidenceEvent::ContentConsignment)
        .await;
    let envelope = w
        .records(&m)
        .iter()
        .find_map(|r| r.envelope_id)
        .unwrap()
        .to_string();
    let (status, _, _) = b
        .go(
            Method::GET,
            &format!("/letters/{envelope}/attachments/0"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "not before the letter is opened"
    );
    let (status, _, page) = b
        .go(Method::GET, &format!("/letters/{envelope}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !page.contains("<i>bijlage") && page.contains("&lt;i&gt;bijlage"),
        "names are escaped"
    );
    let (status, headers, body) = b
        .go(
            Method::GET,
            &format!("/letters/{envelope}/attachments/0"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "<script>alert(1)</script>");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert!(!page.contains('\u{202E}'), "no bidi override in the page");
    assert!(page.contains("invoicefdp.exe"), "the name as it really is");
    for (index, expected) in [(1, "invoicefdp.exe"), (2, "attachment")] {
        let (status, headers, _) = b
            .go(
                Method::GET,
                &format!("/letters/{envelope}/attachments/{index}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let disposition = headers["content-disposition"].to_str().unwrap();
        println!("attachment {index}: {disposition}");
        assert!(
            disposition.contains(&format!("filename=\"{expected}\"")),
            "{disposition}"
        );
        assert!(!disposition.contains(".."), "{disposition}");
    }

    pages_of_older_letters(&w, &mut b, &letter).await;

    // The JSON API does not take the cookie: no ambient authority there.
    let (status, _, _) = b.go(Method::POST, "/v1/all-paper", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // No personal data in URLs: the pages link by opaque ids only.
    assert!(!settings.contains("999999990"));
    w.stop().await;
}

/// With one letter more than a page holds, the inbox shows the newest
/// page and links to the older letters, which link back to the newest.
async fn pages_of_older_letters(w: &World, b: &mut Browser, like: &Letter) {
    let page = estafette_relay::home::web::WEB_LETTERS_PAGE;
    let mut sent = Vec::new();
    // One letter is there already.
    for i in 0..page {
        let mut letter = like.clone();
        letter.message_id = MessageId::random(&mut rand_core::OsRng);
        letter.attachments.clear();
        letter.subject = format!("Brief {i}");
        letter.sender_reference = format!("P-{i}");
        sent.push(w.send_letter(letter).await.0);
    }
    for m in &sent {
        w.wait_for_event(m, EvidenceEvent::ContentConsignment).await;
    }
    let letters_on = |page: &str| page.matches("<li class=\"letter").count();
    let (status, _, newest) = b.go(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(letters_on(&newest), page);
    assert!(!newest.contains("Nieuwste brieven"));
    let at = newest
        .find("href=\"/?before=")
        .expect("a link to older letters")
        + 6;
    let link = &newest[at..at + newest[at..].find('"').unwrap()];
    let (status, _, older) = b.go(Method::GET, link, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(letters_on(&older), 1);
    assert!(older.contains("Nieuwste brieven") && !older.contains("Oudere brieven"));
    // Each letter on one of the two pages (those of one second in any
    // order: the envelope id breaks the tie).
    let subjects =
        std::iter::once("Met bijlage".to_owned()).chain((0..page).map(|i| format!("Brief {i}<")));
    for subject in subjects {
        let on = |p: &str| p.matches(&subject).count();
        assert_eq!(on(&newest) + on(&older), 1, "{subject}");
    }
    // A damaged cursor is refused in plain words.
    let (status, _, refused) = b.go(Method::GET, "/?before=yesterday", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused.contains("Er klopt iets niet"), "{refused}");
}

/// The audit found one login counter for everyone: 60 bad logins by one
/// client made another client's valid login answer 429. Limits are per
/// source address and per person now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_bad_logins_do_not_lock_out_another() {
    let w = World::start().await;
    let browser_from = |source: &str| {
        let mut client = w.citizen();
        client.connect_from(source.parse().unwrap());
        Browser {
            client,
            cookies: vec![],
        }
    };
    let mut noisy = browser_from("127.0.0.2");
    let (_, _, page) = noisy.go(Method::GET, "/login", None).await;
    let token = csrf(&page);
    let mut refused = 0;
    for _ in 0..60 {
        let (status, _, _) = noisy
            .go(
                Method::POST,
                "/login",
                Some(format!("csrf={token}&subject=not-an-identifier")),
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    println!("60 bad logins from 127.0.0.2: {refused} answered 429");
    assert!(
        refused >= 25,
        "the noisy client is limited ({refused} refused)"
    );

    let mut other = browser_from("127.0.0.3");
    let (_, _, page) = other.go(Method::GET, "/login", None).await;
    let token = csrf(&page);
    let (status, headers, _) = other
        .go(
            Method::POST,
            "/login",
            Some(format!("csrf={token}&subject={ANNA}")),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "another client logs in");
    assert_eq!(headers["location"], "/");
    w.stop().await;
}
