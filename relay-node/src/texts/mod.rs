//! The one text catalogue: everything a person reads (web pages, problem
//! texts, notification e-mails, paper letters), keyed by a message id and
//! kept per language in one file next to this one (`nl.txt`, `en.txt`, …).
//! Adding a language is adding one file and one line to [`FILES`].
//!
//! A file has one text per line, `key = text`; `\n` in a text is a line
//! break and `{name}` a placeholder that [`Catalogue::fill`] fills in;
//! lines starting with `#` are comments. A key a language does not have is
//! shown in English. The tests below hold every file to that: each parses
//! cleanly, every language has every key English has and no other,
//! placeholders agree across languages, and every key the code names
//! exists.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The catalogue files, by language (BCP 47 primary subtag).
const FILES: &[(&str, &str)] = &[
    ("nl", include_str!("nl.txt")),
    ("en", include_str!("en.txt")),
    ("de", include_str!("de.txt")),
    ("fr", include_str!("fr.txt")),
    ("pl", include_str!("pl.txt")),
];

/// The language whose texts stand in for missing ones.
pub const FALLBACK: &str = "en";

/// The texts of one language.
#[derive(Debug)]
pub struct Catalogue {
    language: &'static str,
    texts: HashMap<&'static str, String>,
}

/// A line of a catalogue file that is not a text, a comment or blank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("{language}.txt line {line}: expected `key = text`")]
    NotAText { language: &'static str, line: usize },
    #[error("{language}.txt line {line}: the key {key} appears twice")]
    Duplicate {
        language: &'static str,
        line: usize,
        key: &'static str,
    },
}

impl Catalogue {
    /// Parses one catalogue file.
    pub fn parse(language: &'static str, file: &'static str) -> Result<Catalogue, CatalogueError> {
        let mut texts = HashMap::new();
        for (index, raw) in file.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = index + 1;
            let Some((key, text)) = line.split_once(" = ") else {
                return Err(CatalogueError::NotAText {
                    language,
                    line: number,
                });
            };
            let key = key.trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(CatalogueError::NotAText {
                    language,
                    line: number,
                });
            }
            if texts.insert(key, unescape(text)).is_some() {
                return Err(CatalogueError::Duplicate {
                    language,
                    line: number,
                    key,
                });
            }
        }
        Ok(Catalogue { language, texts })
    }

    /// The language of these texts.
    pub fn language(&self) -> &'static str {
        self.language
    }

    /// This language's text for `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.texts.get(key).map(String::as_str)
    }

    /// This language's text for `key`, else the English one.
    pub fn find(&'static self, key: &str) -> Option<&'static str> {
        self.get(key)
            .or_else(|| fallback().and_then(|en| en.get(key)))
    }

    /// The text for `key`: this language's, else English; the key itself
    /// when no language has it (a bug the tests catch).
    pub fn text(&'static self, key: &'static str) -> &'static str {
        self.find(key).unwrap_or(key)
    }

    /// The text for `key` with each `{name}` of `values` filled in.
    pub fn fill(&'static self, key: &'static str, values: &[(&str, &str)]) -> String {
        let mut text = self.text(key).to_owned();
        for (name, value) in values {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    /// The keys of this language.
    pub fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.texts.keys().copied()
    }
}

/// `\n` is a line break, `\\` a backslash.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every catalogue that parses (the tests make sure all do).
static CATALOGUES: LazyLock<Vec<Catalogue>> = LazyLock::new(|| {
    FILES
        .iter()
        .filter_map(|(language, file)| match Catalogue::parse(language, file) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "a text catalogue does not parse; its language falls back to English");
                None
            }
        })
        .collect()
});

fn fallback() -> Option<&'static Catalogue> {
    CATALOGUES.iter().find(|c| c.language == FALLBACK)
}

/// The catalogue for a BCP 47 tag (`de-DE` → German), if there is one.
pub fn catalogue(tag: &str) -> Option<&'static Catalogue> {
    let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
    CATALOGUES.iter().find(|c| c.language == primary)
}

/// The catalogue for `tag`, or the one for `otherwise` when there is none.
pub fn catalogue_or(tag: &str, otherwise: &str) -> &'static Catalogue {
    catalogue(tag)
        .or_else(|| catalogue(otherwise))
        .or_else(fallback)
        .unwrap_or(&EMPTY)
}

static EMPTY: LazyLock<Catalogue> = LazyLock::new(|| Catalogue {
    language: FALLBACK,
    texts: HashMap::new(),
});

/// The languages there are catalogues for.
pub fn languages() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(language, _)| *language)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn parsed() -> Vec<Catalogue> {
        FILES
            .iter()
            .map(|(l, f)| Catalogue::parse(l, f).unwrap())
            .collect()
    }

    fn keys(c: &Catalogue) -> BTreeSet<&'static str> {
        c.keys().collect()
    }

    fn placeholders(text: &str) -> BTreeSet<String> {
        text.split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
            .collect()
    }

    #[test]
    fn every_file_parses_and_every_language_is_complete() {
        let all = parsed();
        assert_eq!(all.len(), 5, "Dutch, English, German, French, Polish");
        let en = all.iter().find(|c| c.language == "en").unwrap();
        for c in &all {
            assert_eq!(
                keys(c),
                keys(en),
                "{} has the same texts as English",
                c.language
            );
            let stray: Vec<_> = keys(c).difference(&keys(en)).copied().collect();
            assert!(
                stray.is_empty(),
                "{}: keys English lacks: {stray:?}",
                c.language
            );
            for key in keys(c) {
                assert_eq!(
                    placeholders(c.get(key).unwrap()),
                    placeholders(en.get(key).unwrap()),
                    "{}: {key} has other placeholders than in English",
                    c.language
                );
            }
        }
    }

    #[test]
    fn bad_lines_are_typed_errors_naming_the_line() {
        assert_eq!(
            Catalogue::parse("xx", "# c\n\na.b = one\nno equals sign\n").unwrap_err(),
            CatalogueError::NotAText {
                language: "xx",
                line: 4
            }
        );
        assert_eq!(
            Catalogue::parse("xx", "a = one\na = two\n").unwrap_err(),
            CatalogueError::Duplicate {
                language: "xx",
                line: 2,
                key: "a"
            }
        );
        let c = Catalogue::parse("xx", "a = one\\ntwo {n} \\\\ end\n").unwrap();
        assert_eq!(c.get("a"), Some("one\ntwo {n} \\ end"));
    }

    #[test]
    fn a_missing_text_is_shown_in_english_and_tags_pick_their_language() {
        let de = catalogue("de-DE").unwrap();
        assert_eq!(de.language(), "de");
        assert_eq!(catalogue("pl-PL").unwrap().language(), "pl");
        let partial: &'static Catalogue = Box::leak(Box::new(
            Catalogue::parse("xx", "web.save = Sauver\n").unwrap(),
        ));
        assert_eq!(partial.text("web.save"), "Sauver");
        assert_eq!(
            partial.text("web.log-out"),
            catalogue("en").unwrap().text("web.log-out")
        );
        assert_eq!(catalogue_or("xx", "nl").language(), "nl");
        assert!(
            catalogue("nl")
                .unwrap()
                .fill("web.unread.many", &[("n", "3")])
                .contains('3')
        );
    }

    /// Every key the code names (a string literal that looks like a key of
    /// the catalogue's namespaces) is in the English catalogue.
    #[test]
    fn every_key_the_code_names_exists() {
        let en = parsed().into_iter().find(|c| c.language == "en").unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut missing = Vec::new();
        let mut seen = 0;
        for dir in ["relay-node/src", "gateway/src"] {
            for file in rust_files(&root.join(dir)) {
                let source = std::fs::read_to_string(&file).unwrap();
                for key in literal_keys(&source) {
                    seen += 1;
                    if en.get(&key).is_none() {
                        missing.push(format!("{}: {key}", file.display()));
                    }
                }
            }
        }
        assert!(seen > 100, "the scan found the keys in use ({seen})");
        assert!(missing.is_empty(), "keys not in en.txt: {missing:#?}");
    }

    fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(rust_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
        out
    }

    /// `"web.…"`, `"problem.…"`, `"mail.…"`, `"paper.…"`, `"nature.…"` literals.
    fn literal_keys(source: &str) -> Vec<String> {
        let mut out = Vec::new();
        for prefix in ["web.", "problem.", "mail.", "paper.", "nature."] {
            let opening = format!("\"{prefix}");
            for (at, _) in source.match_indices(&opening) {
                let rest = &source[at + 1..];
                let Some(end) = rest.find('"') else { continue };
                let piece = &rest[..end];
                let key_like = piece
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
                if key_like && !piece.ends_with('.') {
                    out.push(piece.to_owned());
                }
            }
        }
        out
    }
}
