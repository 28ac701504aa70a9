//! The paper channel: real PDF letters (A4, the address where a window
//! envelope shows it, formatted for the country it goes to) written to a
//! print spool directory with a manifest line per letter, for the print
//! house to pick up.
//!
//! PDFs embed a subset of DejaVu Sans ([`fonts`]): every Latin letter of
//! Europe prints as written, and reads back as written (`pdftotext`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use estafette_spec::citizen::PostalAddress;
use estafette_spec::{CountryCode, Timestamp};
use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};
use serde::{Deserialize, Serialize};

use crate::texts::Texts;

mod fonts;

pub use fonts::FontError;
use fonts::UsedGlyphs;

/// Most pages of one paper letter (longer letters are cut, with a note).
pub const MAX_PAGES: usize = 50;

const MM: f32 = 72.0 / 25.4;
const PAGE_W: f32 = 210.0 * MM;
const PAGE_H: f32 = 297.0 * MM;
const LEFT: f32 = 25.0 * MM;
const BODY_SIZE: f32 = 10.0;
const LEADING: f32 = 13.0;
const BOTTOM: f32 = 25.0 * MM;
/// Width of a body line: 160 mm.
const LINE_WIDTH: f32 = 160.0 * MM;

/// The country letters are posted from.
pub const HOME_COUNTRY: CountryCode = CountryCode::NL;

/// Everything printed on one paper letter.
#[derive(Debug, Clone)]
pub struct PaperLetter {
    pub addressee: String,
    pub address: PostalAddress,
    pub sender_name: String,
    pub date: Timestamp,
    pub reference: Option<String>,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<String>,
    /// Why this came on paper and how to choose (plain language).
    pub explanation: Option<String>,
    /// The client, when the letter goes to a representative.
    pub on_behalf_of: Option<String>,
}

/// The address lines for a window envelope, formatted for the destination
/// country; an address abroad ends with the country in capitals (in Dutch,
/// the language of the country of posting, as the UPU asks).
pub fn address_lines(addressee: &str, address: &PostalAddress) -> Vec<String> {
    let mut lines = vec![addressee.to_owned()];
    lines.extend(address.street_lines.iter().cloned());
    let code = address.postal_code.trim();
    let city = address.city.trim();
    match address.country.as_str() {
        // 1234 AB  PLAATS: two spaces, the town in capitals (PostNL).
        "NL" => lines.push(format!("{code}  {}", city.to_uppercase())),
        // Town, then postcode on its own line, both in capitals (Royal Mail).
        "GB" | "IE" => {
            lines.push(city.to_uppercase());
            lines.push(code.to_uppercase());
        }
        // Town in capitals after the code.
        "FR" | "BE" | "LU" => lines.push(format!("{code} {}", city.to_uppercase())),
        // The code, then the town as written (Deutsche Post, Poczta Polska, …).
        _ => lines.push(format!("{code} {city}")),
    }
    if address.country != HOME_COUNTRY {
        lines.push(country_name_nl(address.country));
    }
    lines
}

fn country_name_nl(country: CountryCode) -> String {
    match country.as_str() {
        "DE" => "DUITSLAND",
        "BE" => "BELGIË",
        "FR" => "FRANKRIJK",
        "PL" => "POLEN",
        "GB" => "VERENIGD KONINKRIJK",
        "ES" => "SPANJE",
        "IT" => "ITALIË",
        "PT" => "PORTUGAL",
        "AT" => "OOSTENRIJK",
        "LU" => "LUXEMBURG",
        "DK" => "DENEMARKEN",
        "SE" => "ZWEDEN",
        "IE" => "IERLAND",
        "RO" => "ROEMENIË",
        "BG" => "BULGARIJE",
        "TR" => "TURKIJE",
        "MA" => "MAROKKO",
        "CH" => "ZWITSERLAND",
        "US" => "VERENIGDE STATEN",
        other => other,
    }
    .to_owned()
}

/// Wraps a paragraph at word boundaries into lines that `fit`.
fn wrap(text: &str, fits: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let mut word = word.to_owned();
            // A word longer than a line is cut.
            while !fits(&word) {
                if !line.is_empty() {
                    out.push(std::mem::take(&mut line));
                }
                let chars: Vec<char> = word.chars().collect();
                let mut cut = 1;
                while cut < chars.len() && fits(&chars[..=cut].iter().collect::<String>()) {
                    cut += 1;
                }
                out.push(chars[..cut].iter().collect());
                word = chars[cut..].iter().collect();
            }
            if !line.is_empty() && !fits(&format!("{line} {word}")) {
                out.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        out.push(line);
    }
    out
}

/// The two fonts of one PDF, with the glyphs it uses.
struct Fonts {
    regular: UsedGlyphs,
    bold: UsedGlyphs,
}

impl Fonts {
    fn new() -> Result<Fonts, FontError> {
        let (regular, bold) = fonts::faces()?;
        Ok(Fonts {
            regular: UsedGlyphs::new(regular),
            bold: UsedGlyphs::new(bold),
        })
    }

    fn of(&mut self, bold: bool) -> &mut UsedGlyphs {
        if bold {
            &mut self.bold
        } else {
            &mut self.regular
        }
    }

    /// Wraps body text (regular, [`BODY_SIZE`]) to [`LINE_WIDTH`].
    fn wrap(&self, text: &str) -> Vec<String> {
        let face = self.regular.face();
        wrap(text, |line| face.width(line, BODY_SIZE) <= LINE_WIDTH)
    }
}

/// One line to draw: text, font (bold or not), size, and the gap above it.
struct Line {
    text: String,
    bold: bool,
    size: f32,
    gap: f32,
}

fn body_line(text: String) -> Line {
    Line {
        text,
        bold: false,
        size: BODY_SIZE,
        gap: LEADING,
    }
}

/// Renders the letter as a PDF; also gives the number of pages.
pub fn render(letter: &PaperLetter, texts: &Texts) -> Result<(Vec<u8>, usize), FontError> {
    let mut fonts = Fonts::new()?;
    let flow = flow(letter, texts, &fonts);
    let pages = lay_out(letter, flow, texts, &mut fonts);
    let count = pages.len();
    Ok((write_pdf(pages, texts, &mut fonts)?, count))
}

/// The letter's lines after the address block: subject, body,
/// attachments, and why it came on paper.
fn flow(letter: &PaperLetter, texts: &Texts, fonts: &Fonts) -> Vec<Line> {
    let mut flow: Vec<Line> = Vec::new();
    flow.push(Line {
        text: format!("{}: {}", texts.subject_label, letter.subject),
        bold: true,
        size: 11.0,
        gap: 0.0,
    });
    flow.push(body_line(String::new()));
    flow.extend(fonts.wrap(&letter.body).into_iter().map(body_line));
    if !letter.attachments.is_empty() {
        flow.push(body_line(String::new()));
        flow.push(Line {
            text: texts.attachments_label.to_owned(),
            bold: true,
            size: BODY_SIZE,
            gap: LEADING,
        });
        for name in &letter.attachments {
            flow.push(body_line(format!("- {name}")));
        }
    }
    if let Some(explanation) = &letter.explanation {
        flow.push(body_line(String::new()));
        flow.push(Line {
            text: texts.paper_heading.to_owned(),
            bold: true,
            size: 11.0,
            gap: LEADING * 1.5,
        });
        flow.extend(fonts.wrap(explanation).into_iter().map(body_line));
    }
    flow
}

/// Lays the lines out over at most [`MAX_PAGES`] pages; the first page
/// starts below the address.
fn lay_out(
    letter: &PaperLetter,
    flow: Vec<Line>,
    texts: &Texts,
    fonts: &mut Fonts,
) -> Vec<Content> {
    let first_top = PAGE_H - 105.0 * MM;
    let other_top = PAGE_H - 25.0 * MM;
    let mut pages: Vec<Content> = Vec::new();
    let mut content = first_page_head(letter, texts, fonts);
    let mut y = first_top;
    let mut truncated = false;
    for line in flow {
        if y - line.gap < BOTTOM {
            if pages.len() + 1 >= MAX_PAGES {
                truncated = true;
                break;
            }
            pages.push(std::mem::replace(&mut content, Content::new()));
            y = other_top + line.gap;
        }
        y -= line.gap;
        text_at(
            &mut content,
            fonts,
            &line.text,
            line.bold,
            line.size,
            LEFT,
            y,
        );
    }
    if truncated {
        text_at(
            &mut content,
            fonts,
            "[...]",
            true,
            BODY_SIZE,
            LEFT,
            BOTTOM - LEADING,
        );
    }
    pages.push(content);
    pages
}

/// The PDF: the page tree, each page with its footer, then the two fonts
/// (five objects each) with the glyphs the pages used.
fn write_pdf(pages: Vec<Content>, texts: &Texts, fonts: &mut Fonts) -> Result<Vec<u8>, FontError> {
    let count = pages.len();
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(8);
    let page_ids: Vec<Ref> = (0..count).map(|i| Ref::new(13 + 2 * i as i32)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(count as i32);
    for (i, mut content) in pages.into_iter().enumerate() {
        let footer = format!("{} {} / {count}", texts.page_label, i + 1);
        text_at(
            &mut content,
            fonts,
            &footer,
            false,
            8.0,
            PAGE_W - 45.0 * MM,
            12.0 * MM,
        );
        let page_id = page_ids[i];
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree);
        page.contents(content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(Name(b"F1"), regular);
        fonts.pair(Name(b"F2"), bold);
        drop(fonts);
        drop(resources);
        drop(page);
        pdf.stream(content_id, &fonts::deflate(&content.finish()))
            .filter(pdf_writer::Filter::FlateDecode);
    }
    fonts.regular.write(&mut pdf, regular)?;
    fonts.bold.write(&mut pdf, bold)?;
    Ok(pdf.finish())
}

fn text_at(
    content: &mut Content,
    fonts: &mut Fonts,
    text: &str,
    bold: bool,
    size: f32,
    x: f32,
    y: f32,
) {
    if text.is_empty() {
        return;
    }
    let glyphs = fonts.of(bold).encode(text);
    content.begin_text();
    content.set_font(Name(if bold { b"F2" } else { b"F1" }), size);
    content.next_line(x, y);
    content.show(Str(&glyphs));
    content.end_text();
}

/// The sender, the address in the window and the date block.
fn first_page_head(letter: &PaperLetter, texts: &Texts, fonts: &mut Fonts) -> Content {
    let mut content = Content::new();
    text_at(
        &mut content,
        fonts,
        &letter.sender_name,
        true,
        14.0,
        LEFT,
        PAGE_H - 20.0 * MM,
    );
    // Window of a C5/6 or DL envelope: 20 mm from the left, 50 mm from the top.
    let mut y = PAGE_H - 55.0 * MM;
    for line in address_lines(&letter.addressee, &letter.address) {
        text_at(&mut content, fonts, &line, false, BODY_SIZE, 22.0 * MM, y);
        y -= LEADING;
    }
    let x = 125.0 * MM;
    let mut y = PAGE_H - 55.0 * MM;
    for (label, value) in [
        (texts.from_label, Some(letter.sender_name.clone())),
        (texts.date_label, Some(texts.date(letter.date))),
        (texts.reference_label, letter.reference.clone()),
        (texts.on_behalf_label, letter.on_behalf_of.clone()),
    ] {
        if let Some(value) = value {
            text_at(&mut content, fonts, label, true, 8.0, x, y);
            text_at(&mut content, fonts, &value, false, 9.0, x + 22.0 * MM, y);
            y -= LEADING;
        }
    }
    content
}

/// What the manifest says of each spooled letter (no BSN, no content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub file: String,
    /// `letter` (an agency's letter), `confirm_choice` or `channel_notice`.
    pub kind: String,
    pub message_id: Option<String>,
    pub reason: Option<String>,
    pub country: String,
    pub pages: usize,
    pub spooled_at: Timestamp,
}

/// Why spooling failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("print spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The print spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(dir: impl Into<PathBuf>) -> Spool {
        Spool { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.jsonl")
    }

    /// Writes `pdf` as `name` (durably: temp file, fsync, rename) and
    /// appends its manifest line. Writing the same name again replaces the
    /// file and adds no second line, so a retry after a crash is harmless.
    pub fn put(&self, name: &str, pdf: &[u8], entry: &ManifestEntry) -> Result<(), SpoolError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.dir.join(name);
        let existed = path.exists();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        {
            let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(pdf).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if !existed {
            let manifest = self.manifest_path();
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&manifest)
                .map_err(io(&manifest))?;
            let mut line = serde_json::to_string(entry).unwrap_or_default();
            line.push('\n');
            file.write_all(line.as_bytes()).map_err(io(&manifest))?;
            file.sync_all().map_err(io(&manifest))?;
        }
        Ok(())
    }

    /// The manifest, one entry per spooled letter.
    pub fn manifest(&self) -> Result<Vec<ManifestEntry>, SpoolError> {
        let path = self.manifest_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(source) => return Err(SpoolError::Io { path, source }),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(country: &str, code: &str, city: &str) -> PostalAddress {
        PostalAddress {
            street_lines: vec!["Hauptstraße 5".into()],
            postal_code: code.into(),
            city: city.into(),
            country: country.parse().unwrap(),
        }
    }

    #[test]
    fn addresses_follow_the_destination_country() {
        assert_eq!(
            address_lines("J. Müller", &address("DE", "10115", "Berlin")),
            ["J. Müller", "Hauptstraße 5", "10115 Berlin", "DUITSLAND"]
        );
        assert_eq!(
            address_lines("P. de Vries", &address("NL", "1234 AB", "Voorbeeld")),
            ["P. de Vries", "Hauptstraße 5", "1234 AB  VOORBEELD"]
        );
        let uk = address_lines("A. Smith", &address("GB", "sw1a 1aa", "London"));
        assert_eq!(uk[2..], ["LONDON", "SW1A 1AA", "VERENIGD KONINKRIJK"]);
    }

    #[test]
    fn text_is_wrapped_to_the_line_width() {
        let fits = |l: &str| l.chars().count() <= 30;
        let lines = wrap(&"woord ".repeat(100), fits);
        assert!(lines.iter().all(|l| fits(l)));
        assert_eq!(lines.join(" ").split_whitespace().count(), 100);
        assert_eq!(wrap(&"x".repeat(65), fits).len(), 3);
        let fonts = Fonts::new().unwrap();
        let face = fonts.regular.face();
        let body = fonts.wrap(&"Zażółć gęślą jaźń. ".repeat(60));
        assert!(body.len() > 5);
        assert!(body.iter().all(|l| face.width(l, BODY_SIZE) <= LINE_WIDTH));
    }

    #[test]
    fn long_letters_take_pages_up_to_the_limit() {
        let letter = |body: String| PaperLetter {
            addressee: "P. de Vries".into(),
            address: address("NL", "1234 AB", "Voorbeeld"),
            sender_name: "Gemeente Voorbeeld".into(),
            date: Timestamp(1_800_000_000),
            reference: Some("R-1".into()),
            subject: "Test".into(),
            body,
            attachments: vec![],
            explanation: Some("Uitleg".into()),
            on_behalf_of: None,
        };
        let texts = crate::texts::for_language("nl");
        let (pdf, pages) = render(&letter("Kort.".into()), texts).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert_eq!(pages, 1);
        let (_, pages) = render(&letter("regel\n".repeat(200)), texts).unwrap();
        assert!(pages > 2);
        let (_, pages) = render(&letter("regel\n".repeat(100_000)), texts).unwrap();
        assert_eq!(pages, MAX_PAGES);
    }
}
