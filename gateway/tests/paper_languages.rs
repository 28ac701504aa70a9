//! Paper letters in German, French and Polish: read back with poppler's
//! `pdftotext`, the person's name and address keep every diacritic and the
//! explanation is in the person's language; `pdffonts` shows the fonts
//! embedded (as subsets, with a Unicode map), and the address stays in the
//! envelope window (`pdftotext -bbox`). Needs poppler-utils, which
//! `scripts/test` installs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use estafette_gateway::paper::{PaperLetter, address_lines, render};
use estafette_gateway::texts;
use estafette_spec::citizen::PostalAddress;
use estafette_spec::{ReasonCode, Timestamp};

struct Person {
    language: &'static str,
    name: &'static str,
    street: &'static str,
    postal_code: &'static str,
    city: &'static str,
    country: &'static str,
}

const PEOPLE: &[Person] = &[
    Person {
        language: "de",
        name: "Jürgen Weiß-Größer",
        street: "Äußere Straße 12",
        postal_code: "80331",
        city: "München",
        country: "DE",
    },
    Person {
        language: "fr",
        name: "Françoise Lefèvre-Câtel",
        street: "12, rue de l'Église",
        postal_code: "25000",
        city: "Besançon",
        country: "FR",
    },
    Person {
        language: "pl",
        name: "Małgorzata Żółkiewska-Ślęczka",
        street: "ul. Świętokrzyska 15 m. 4",
        postal_code: "90-001",
        city: "Łódź",
        country: "PL",
    },
];

/// Text as one line with single spaces (the PDF breaks lines where the
/// page ends).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn tool(name: &str, pdf: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(name)
        .args(args)
        .arg(pdf)
        .args(if name == "pdftotext" {
            &["-"][..]
        } else {
            &[][..]
        })
        .output()
        .unwrap_or_else(|e| panic!("{name} (poppler-utils, installed by scripts/test): {e}"));
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Points per millimetre.
const MM: f64 = 72.0 / 25.4;

/// The words of `pdftotext -bbox` output, each with its box in points from
/// the top left: (word, x min, y min, x max, y max).
fn words_with_boxes(xhtml: &str) -> Vec<(String, f64, f64, f64, f64)> {
    let attr = |tag: &str, name: &str| -> f64 {
        let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        tag[start..].split('"').next().unwrap().parse().unwrap()
    };
    xhtml
        .split("<word ")
        .skip(1)
        .map(|rest| {
            let (tag, after) = rest.split_once('>').unwrap();
            let word = after.split("</word>").next().unwrap();
            let word = word
                .replace("&amp;", "&")
                .replace("&apos;", "'")
                .replace("&quot;", "\"");
            (
                word,
                attr(tag, "xMin"),
                attr(tag, "yMin"),
                attr(tag, "xMax"),
                attr(tag, "yMax"),
            )
        })
        .collect()
}

#[test]
fn german_french_and_polish_letters_keep_every_diacritic_and_explain_in_their_language() {
    let dir = tempfile::tempdir().unwrap();
    for person in PEOPLE {
        let texts = texts::for_language(person.language);
        assert_eq!(texts.language, person.language, "the catalogue has it");
        let address = PostalAddress {
            street_lines: vec![person.street.into()],
            postal_code: person.postal_code.into(),
            city: person.city.into(),
            country: person.country.parse().unwrap(),
        };
        let explanation =
            texts.paper_explanation(ReasonCode::NoConsent, "Gemeente Voorbeeld", None);
        let letter = PaperLetter {
            addressee: person.name.into(),
            address: address.clone(),
            sender_name: "Gemeente Voorbeeld".into(),
            date: Timestamp(1_800_000_000),
            reference: Some("2027-0042".into()),
            subject: "Aanslag gemeentelijke belastingen".into(),
            body: "Geachte heer/mevrouw,\n\nHierbij ontvangt u uw aanslag.".into(),
            attachments: vec![],
            explanation: Some(explanation.clone()),
            on_behalf_of: None,
        };
        let (pdf, pages) = render(&letter, texts).unwrap();
        assert_eq!(pages, 1);
        let path = dir.path().join(format!("{}.pdf", person.language));
        std::fs::write(&path, &pdf).unwrap();

        let text = one_line(&tool("pdftotext", &path, &[]));
        for line in address_lines(person.name, &address) {
            assert!(
                text.contains(&one_line(&line)),
                "{}: the address line {line:?} reads back as written in {text:?}",
                person.language
            );
        }
        assert!(text.contains(person.name), "{}", person.language);
        assert!(
            text.contains(&one_line(texts.paper_heading)),
            "{}: the heading in the person's language",
            person.language
        );
        assert!(
            text.contains(&one_line(&explanation)),
            "{}: the explanation {explanation:?} in {text:?}",
            person.language
        );

        // The address stays where a window envelope shows it (DL/C5 with
        // the window 20 mm from the left and 45 mm from the top, 90 x 45 mm).
        let words = words_with_boxes(&tool("pdftotext", &path, &["-bbox"]));
        for line in address_lines(person.name, &address) {
            for word in line.split_whitespace() {
                let (x_min, y_min, x_max, y_max) = words
                    .iter()
                    .find(|(w, x, _, _, _)| w == word && *x < 100.0 * MM)
                    .map(|(_, a, b, c, d)| (*a, *b, *c, *d))
                    .unwrap_or_else(|| panic!("{}: {word:?} is not on the page", person.language));
                assert!(
                    x_min >= 20.0 * MM
                        && x_max <= 110.0 * MM
                        && y_min >= 45.0 * MM
                        && y_max <= 90.0 * MM,
                    "{}: {word:?} at ({x_min:.0}, {y_min:.0})-({x_max:.0}, {y_max:.0}) pt is outside the window",
                    person.language
                );
            }
        }

        let fonts = tool("pdffonts", &path, &[]);
        let rows: Vec<&str> = fonts.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "regular and bold: {fonts}");
        for row in rows {
            let columns: Vec<&str> = row.split_whitespace().collect();
            // name, type (two words), encoding, emb, sub, uni, object, generation
            assert!(
                columns[0].ends_with("+DejaVuSans") || columns[0].ends_with("+DejaVuSans-Bold"),
                "a DejaVu subset: {row}"
            );
            assert_eq!(columns[1..3], ["CID", "TrueType"], "{row}");
            assert_eq!(columns[3], "Identity-H", "{row}");
            assert_eq!(
                columns[4..7],
                ["yes", "yes", "yes"],
                "embedded, subset, Unicode map: {row}"
            );
        }
    }
}
