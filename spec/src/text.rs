//! Field checks shared by the formats: timestamps and bounded text.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch (UTC). CBOR: an unsigned integer.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn plus_s(self, seconds: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(seconds))
    }

    pub fn minus_s(self, seconds: u64) -> Timestamp {
        Timestamp(self.0.saturating_sub(seconds))
    }

    /// The calendar date (UTC) as year, month, day.
    pub fn ymd(self) -> (i64, i64, i64) {
        // Civil date from days since the epoch (Howard Hinnant's algorithm),
        // so that the protocol core needs no time library.
        let days = (self.0 / 86_400) as i64;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(month <= 2), month, day)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (year, month, day) = self.ymd();
        let secs = self.0 % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// Why a field of a format is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} has {actual} characters, at most {limit} are allowed")]
    TooLong {
        field: &'static str,
        actual: usize,
        limit: usize,
    },
    #[error("{field} contains a control character")]
    ControlCharacter { field: &'static str },
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
    #[error("{field} has {actual} entries, at most {limit} are allowed")]
    TooMany {
        field: &'static str,
        actual: usize,
        limit: usize,
    },
}

/// A one-line text: non-empty, at most `limit` characters, no control characters.
pub fn check_line(field: &'static str, value: &str, limit: usize) -> Result<(), FieldError> {
    check_chars(field, value, limit)?;
    if value.chars().any(char::is_control) {
        return Err(FieldError::ControlCharacter { field });
    }
    Ok(())
}

/// A multi-line text: like [`check_line`] but tabs and line breaks are allowed.
pub fn check_multiline(field: &'static str, value: &str, limit: usize) -> Result<(), FieldError> {
    check_chars(field, value, limit)?;
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(FieldError::ControlCharacter { field });
    }
    Ok(())
}

fn check_chars(field: &'static str, value: &str, limit: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::Empty { field });
    }
    // Cheap bound first: a string of more bytes than 4x the limit is too long.
    let actual = value.chars().count();
    if actual > limit {
        return Err(FieldError::TooLong {
            field,
            actual,
            limit,
        });
    }
    Ok(())
}

/// Characters that change how text around them is shown without being
/// seen: bidirectional controls (U+202E makes `invoice\u{202E}fdp.exe` look
/// like `invoiceexe.pdf`), zero-width characters and byte order marks.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// What to call an attachment when showing it or offering it for saving:
/// the last part of the name only (never a path, `.` or `..`), without
/// control or invisible formatting characters, at most
/// [`crate::limits::MAX_ATTACHMENT_NAME_CHARS`] characters; `attachment`
/// when nothing is left. Letters keep their attachment names as sealed
/// (the signature covers them); every place that shows one shows this.
pub fn display_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .take(crate::limits::MAX_ATTACHMENT_NAME_CHARS)
        .collect();
    // Windows drops trailing dots and spaces; leading dots hide files.
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() {
        "attachment".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// At most `limit` entries in a list.
pub fn check_count(field: &'static str, actual: usize, limit: usize) -> Result<(), FieldError> {
    if actual > limit {
        return Err(FieldError::TooMany {
            field,
            actual,
            limit,
        });
    }
    Ok(())
}

/// A BCP 47 language tag of the simple forms we use: `nl`, `en`, `de-DE`.
pub fn check_language(value: &str) -> Result<(), FieldError> {
    let field = "language";
    check_line(field, value, crate::limits::MAX_LANGUAGE_TAG_CHARS)?;
    let mut parts = value.split('-');
    let primary = parts.next().unwrap_or("");
    let region = parts.next();
    let ok_primary =
        (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase());
    let ok_region =
        region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()));
    if !ok_primary || !ok_region || parts.next().is_some() {
        return Err(FieldError::Invalid {
            field,
            problem: "expected a language tag like 'nl', 'en' or 'de-DE'",
        });
    }
    Ok(())
}

/// A calendar date `YYYY-MM-DD` with a plausible year and a day that exists.
pub fn check_date(field: &'static str, value: &str) -> Result<(), FieldError> {
    let bad = FieldError::Invalid {
        field,
        problem: "expected a date YYYY-MM-DD",
    };
    let b = value.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad);
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> { value.get(r)?.parse().ok() };
    let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else {
        return Err(bad);
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad),
    };
    if !(1800..=9999).contains(&year) || day == 0 || day > days_in_month {
        return Err(bad);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_display() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(1_798_761_600).to_string(), "2027-01-01T00:00:00Z");
        assert_eq!(Timestamp(951_782_400).to_string(), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn file_names_are_shown_without_paths_or_invisible_controls() {
        assert_eq!(
            display_file_name("invoice\u{202E}fdp.exe"),
            "invoicefdp.exe"
        );
        assert_eq!(display_file_name(".."), "attachment");
        assert_eq!(display_file_name("."), "attachment");
        assert_eq!(display_file_name(""), "attachment");
        assert_eq!(display_file_name("../../etc/passwd"), "passwd");
        assert_eq!(display_file_name("C:\\Windows\\evil.bat"), "evil.bat");
        assert_eq!(display_file_name("a\u{200B}b\u{2066}c\n.pdf"), "abc.pdf");
        assert_eq!(display_file_name("aanslag 2026.pdf"), "aanslag 2026.pdf");
        assert_eq!(display_file_name("brief.pdf. . "), "brief.pdf");
        assert_eq!(
            display_file_name("Übersicht für Müller.pdf"),
            "Übersicht für Müller.pdf"
        );
        let long = "x".repeat(1000);
        assert_eq!(
            display_file_name(&long).chars().count(),
            crate::limits::MAX_ATTACHMENT_NAME_CHARS
        );
    }

    #[test]
    fn text_checks() {
        assert_eq!(
            check_line("subject", "", 5),
            Err(FieldError::Empty { field: "subject" })
        );
        assert_eq!(check_line("subject", "abcde", 5), Ok(()));
        assert_eq!(
            check_line("subject", "abcdef", 5),
            Err(FieldError::TooLong {
                field: "subject",
                actual: 6,
                limit: 5
            })
        );
        assert_eq!(
            check_line("subject", "a\nb", 5),
            Err(FieldError::ControlCharacter { field: "subject" })
        );
        assert_eq!(check_multiline("body", "a\nb", 5), Ok(()));
        assert!(check_language("nl").is_ok());
        assert!(check_language("de-DE").is_ok());
        assert!(check_language("NL").is_err());
        assert!(check_date("d", "2000-02-29").is_ok());
        assert!(check_date("d", "2001-02-29").is_err());
        assert!(check_date("d", "2001-13-01").is_err());
    }
}
