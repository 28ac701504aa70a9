//! Headless Chromium over WebDriver for the web inbox tests (Debian's
//! `chromium` and `chromium-driver`, installed by `scripts/test`), with
//! axe-core to check every page.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use estafette_gateway::registry;
use estafette_relay::testkit::free_tcp;
use fantoccini::{Client, ClientBuilder, Locator};

use super::{WAIT, World};
use estafette_relay::testkit::AGENCY;
use estafette_spec::{ActorRole, EvidenceEvent};

const AXE: &str = include_str!("../assets/axe-4.10.3.min.js");

/// chromedriver on a free loopback port; stopped on drop. Chromium's profile
/// and scratch files live in `scratch` (its TMPDIR), removed with the driver,
/// so no run leaves anything in /tmp.
pub struct Driver {
    child: Child,
    port: u16,
    scratch: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn chromedriver() -> Driver {
    let port = free_tcp().port();
    let binary = [
        "chromedriver",
        "/usr/bin/chromedriver",
        "/usr/lib/chromium/chromedriver",
    ]
    .into_iter()
    .find(|b| Command::new(b).arg("--version").output().is_ok())
    .expect("chromedriver (Debian package chromium-driver, installed by scripts/test)");
    let scratch = tempfile::tempdir().unwrap();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .env("TMPDIR", scratch.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        port,
        scratch,
    }
}

pub async fn browser(driver: &Driver) -> Client {
    session(
        driver,
        "profile",
        serde_json::json!({ "args": ["--window-size=1280,1400"] }),
    )
    .await
}

/// Width of the phone the layout is checked on, in CSS pixels.
pub const PHONE_WIDTH: u32 = 360;
/// The smallest touch target on a phone, in CSS pixels.
pub const MIN_TOUCH_TARGET: f64 = 44.0;

/// A second browser, in Chromium's mobile emulation: a 360 px wide touch
/// screen at three device pixels per CSS pixel (its own profile, so its
/// own cookies).
pub async fn phone(driver: &Driver) -> Client {
    session(
        driver,
        "phone-profile",
        serde_json::json!({
            "mobileEmulation": {
                "deviceMetrics": { "width": PHONE_WIDTH, "height": 740, "pixelRatio": 3.0, "touch": true },
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
            }
        }),
    )
    .await
}

/// A Chromium session with `options` added to the common ones.
async fn session(driver: &Driver, profile: &str, options: serde_json::Value) -> Client {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--lang=nl".into(),
        format!(
            "--user-data-dir={}",
            driver.scratch.path().join(profile).display()
        ),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
    ];
    let mut chrome = options;
    if let Some(extra) = chrome["args"].as_array() {
        args.extend(extra.iter().filter_map(|a| a.as_str().map(str::to_owned)));
    }
    chrome["args"] = serde_json::json!(args);
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), chrome);
    // The test federation's certificate names the node, not 127.0.0.1.
    caps.insert("acceptInsecureCerts".into(), serde_json::json!(true));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

pub fn screenshots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// axe-core on the current page: the WCAG 2.1 A/AA violations, as text.
pub async fn axe(c: &Client) -> Vec<String> {
    c.execute(AXE, vec![]).await.unwrap();
    let result = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
                .then(r => done(r.violations.map(v => v.id + ' (' + v.nodes.length + '): ' + v.help)));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(result).unwrap()
}

/// Checks the page with axe and saves a screenshot named `name`.
pub async fn check(c: &Client, name: &str) {
    let violations = axe(c).await;
    assert!(violations.is_empty(), "{name}: {violations:?}");
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// What is wrong with the page's layout on a phone: sideways scrolling,
/// and every control smaller than [`MIN_TOUCH_TARGET`] either way (a radio
/// button or check box counts with its label, which takes the touch too).
pub async fn phone_layout_problems(c: &Client) -> Vec<String> {
    let found = c
        .execute(
            "const min = arguments[0];
             const problems = [];
             const viewport = document.documentElement.clientWidth;
             const page = document.documentElement.scrollWidth;
             if (page > viewport) {
               problems.push('the page is ' + page + ' px wide in a ' + viewport + ' px viewport');
             }
             for (const el of document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary')) {
               if (el.closest('.skip, .visually-hidden')) continue;
               let r = el.getBoundingClientRect();
               if (r.width === 0 && r.height === 0) continue;
               if (r.right > viewport + 0.5) {
                 problems.push(el.outerHTML.slice(0, 80) + ' ends at ' + Math.round(r.right) + ' px');
               }
               let box = { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
               for (const label of (el.labels || [])) {
                 const l = label.getBoundingClientRect();
                 box = { left: Math.min(box.left, l.left), right: Math.max(box.right, l.right),
                         top: Math.min(box.top, l.top), bottom: Math.max(box.bottom, l.bottom) };
               }
               const w = box.right - box.left, h = box.bottom - box.top;
               if (w < min - 0.5 || h < min - 0.5) {
                 problems.push(el.outerHTML.slice(0, 80) + ': ' + Math.round(w) + ' x ' + Math.round(h) + ' px');
               }
             }
             return problems;",
            vec![serde_json::json!(MIN_TOUCH_TARGET)],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// [`check`] on a phone: axe, no sideways scrolling, touch targets.
pub async fn check_phone(c: &Client, name: &str) {
    // The layout viewport (a page that overflows it makes the browser zoom
    // out, so `innerWidth` grows with the overflow).
    let width = c
        .execute("return document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    assert_eq!(
        width,
        serde_json::json!(PHONE_WIDTH),
        "{name}: the phone's viewport"
    );
    let problems = phone_layout_problems(c).await;
    assert!(
        problems.is_empty(),
        "{name} at {PHONE_WIDTH} px: {problems:#?}"
    );
    check(c, &format!("{name}-phone")).await;
}

/// Waits (bounded) until the registry entry of `who` satisfies `done`.
pub async fn until_person(
    w: &World,
    who: &str,
    what: &str,
    done: impl Fn(&registry::PersonRecord) -> bool,
) {
    estafette_relay::testkit::wait_until(what, WAIT, || {
        registry::lookup(w.gateway.gateway.records(), &who.parse().unwrap())
            .unwrap()
            .is_some_and(|p| done(&p))
    })
    .await;
}

/// Waits (bounded) until the page shows an element matching `css`.
pub async fn wait_css(c: &Client, css: &str) {
    if c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .is_err()
    {
        let (url, text) = where_and_what(c).await;
        panic!("no {css} within {WAIT:?} at {url}:\n{text}");
    }
}

/// Where the browser is and what it shows: the clue when a wait runs out.
async fn where_and_what(c: &Client) -> (String, String) {
    let url = c
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    (url, c.source().await.unwrap_or_default())
}

/// Clicks the element matching `css`, once the page shows it (bounded;
/// past the bound the panic says where the browser is and what it shows).
pub async fn click(c: &Client, css: &str) {
    wait_css(c, css).await;
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Logs `who` in with the test login service's form, and waits (bounded)
/// for the inbox the login lands on, so the next page asked for does not
/// race the login's answer.
pub async fn log_in(c: &Client, base: &str, who: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    let field = c.find(Locator::Id("subject")).await.unwrap();
    field.send_keys(who).await.unwrap();
    click(c, "main form button[type=submit]").await;
    wait_path(c, "/").await;
}

/// Logs out with the page's button and waits (bounded) until the browser is
/// at the login page the logout leads to: a page asked for before then
/// could still be the logged-in session's, or cancel the logout.
pub async fn log_out(c: &Client) {
    click(c, "form[action='/logout'] button").await;
    wait_path(c, "/login").await;
}

/// Waits (bounded) until the browser is at `path` of the site it is on:
/// after a form is sent, the page it leads to has arrived, so the next
/// page asked for does not race it.
pub async fn wait_path(c: &Client, path: &str) {
    let mut url = c.current_url().await.unwrap();
    url.set_path(path);
    url.set_query(None);
    url.set_fragment(None);
    if c.wait().at_most(WAIT).for_url(&url).await.is_err() {
        let (at, text) = where_and_what(c).await;
        panic!("not at {url} within {WAIT:?}, but at {at}:\n{text}");
    }
}

/// Registers, verifies an e-mail address, activates and chooses digital
/// mail from the agency, all on the web pages.
pub async fn go_digital_on_the_web(c: &Client, w: &World, base: &str, who: &str, email: &str) {
    wait_css(c, "form[action='/register']").await;
    click(c, "form[action='/register'] button[type=submit]").await;
    until_person(w, who, "an inbox", |p| p.inbox.is_some()).await;
    c.goto(&format!("{base}/settings")).await.unwrap();
    c.find(Locator::Id("address"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    click(c, "form[action='/settings/email'] button").await;
    let token = w.verification_token(email).await;
    c.goto(&format!("{base}/verify-email?token={token}"))
        .await
        .unwrap();
    c.goto(&format!("{base}/settings")).await.unwrap();
    click(c, "form[action='/settings/activate'] button").await;
    until_person(w, who, "activated", |p| p.active).await;
    wait_css(c, "#active-state").await;
    click(c, &format!("input[id='d-{AGENCY}']")).await;
    click(c, &format!("input[value='{AGENCY}'] ~ fieldset button")).await;
    until_person(w, who, "digital mail from the agency", |p| {
        !p.digital_senders.is_empty()
    })
    .await;
}

/// A letter to `who` arrives, is opened on the web, and its
/// ContentHandover names the holder.
pub async fn letter_arrives_and_is_opened(c: &Client, w: &World, base: &str, who: &str) {
    let (m, channel) = w.send(who, None).await;
    assert_eq!(channel, "digital", "{who}");
    w.wait_for_event(&m, EvidenceEvent::ContentConsignment)
        .await;
    c.goto(&format!("{}/", base)).await.unwrap();
    click(c, ".letter.unread a").await;
    wait_css(c, "div.body").await;
    w.wait_for_event(&m, EvidenceEvent::ContentHandover).await;
    let handover = w
        .records(&m)
        .into_iter()
        .find(|r| r.event == EvidenceEvent::ContentHandover)
        .unwrap();
    let actor = handover.actor.expect("ContentHandover names who opened it");
    assert_eq!(actor.role, ActorRole::Holder, "{who}");
}

/// The text of the page's main part.
pub async fn page_text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The `href` of the first element matching `css`.
pub async fn href(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{css} has no href"))
}
