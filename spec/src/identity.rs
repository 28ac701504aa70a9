//! Whether two logins are the same person: the rule for linking two
//! identities (a BSN that comes later, an eIDAS identity) into one inbox.
//! Both assertions are fresh and verified; this decides whether their
//! persons agree. Pure: names and dates in, a decision out.
//!
//! The rule: the birth dates are equal, the family names are equal, and the
//! given names are equal, each compared after folding case, the common
//! Latin diacritics (`ü` = `u`, or `ue` as passports transliterate it,
//! ICAO 9303), hyphens, apostrophes and spacing. One
//! documented exception: one provider may give fewer given names than the
//! other (many eID nodes give only the first), so the shorter list must be
//! the start of the longer one; the link's history entry says so.

use serde::{Deserialize, Serialize};

use crate::assertion::IdentityClaims;

/// How two persons matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMatch {
    /// Every name and the birth date are equal.
    #[default]
    Exact,
    /// Equal, but one login gives fewer given names (its list is the start
    /// of the other's).
    GivenNamesShortened,
}

/// Why two logins are not the same person. Names no name or date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityMismatch {
    #[error("the two logins give different birth dates")]
    BirthDate,
    #[error("the two logins give different family names")]
    FamilyName,
    #[error("the two logins give different given names")]
    GivenNames,
}

/// How umlauts and their kin are written without diacritics: dropped
/// (`ü` → `u`) or spelled out as in passports (`ü` → `ue`, ICAO 9303).
#[derive(Clone, Copy)]
enum Spelling {
    Plain,
    Transliterated,
}

/// One letter in its plain form: lower case, without the common Latin
/// diacritics (an eID node and a national register may write `Müller`,
/// `Muller` or `Mueller`; `ß` is `ss`).
fn fold_char(c: char, spelling: Spelling, out: &mut String) {
    if let Spelling::Transliterated = spelling {
        let spelled = match c {
            'ä' | 'æ' => Some("ae"),
            'ö' | 'ø' | 'œ' => Some("oe"),
            'ü' => Some("ue"),
            'å' => Some("aa"),
            _ => None,
        };
        if let Some(spelled) = spelled {
            out.push_str(spelled);
            return;
        }
    }
    let base = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'þ' => "th",
        'ð' => "d",
        _ => {
            out.push(c);
            return;
        }
    };
    out.push_str(base);
}

/// A name as a list of folded words: hyphens, apostrophes and any spacing
/// only separate words.
fn name_words(name: &str, spelling: Spelling) -> Vec<String> {
    name.split(|c: char| c.is_whitespace() || matches!(c, '-' | '\'' | '’' | '‐' | '‑'))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut folded = String::with_capacity(w.len());
            for c in w.chars().flat_map(char::to_lowercase) {
                fold_char(c, spelling, &mut folded);
            }
            folded
        })
        .collect()
}

/// Whether two names are the same name, in either spelling.
fn same_words(a: &str, b: &str, check: impl Fn(&[String], &[String]) -> bool) -> bool {
    [Spelling::Plain, Spelling::Transliterated]
        .into_iter()
        .any(|s| check(&name_words(a, s), &name_words(b, s)))
}

/// Whether the persons of two verified logins are the same person.
pub fn same_person(
    a: &IdentityClaims,
    b: &IdentityClaims,
) -> Result<IdentityMatch, IdentityMismatch> {
    if a.birth_date != b.birth_date {
        return Err(IdentityMismatch::BirthDate);
    }
    if !same_words(&a.family_name, &b.family_name, |x, y| x == y) {
        return Err(IdentityMismatch::FamilyName);
    }
    if same_words(&a.given_names, &b.given_names, |x, y| x == y) {
        return Ok(IdentityMatch::Exact);
    }
    let shortened = |x: &[String], y: &[String]| {
        let (short, long) = if x.len() < y.len() { (x, y) } else { (y, x) };
        !short.is_empty() && long.starts_with(short)
    };
    if same_words(&a.given_names, &b.given_names, shortened) {
        return Ok(IdentityMatch::GivenNamesShortened);
    }
    Err(IdentityMismatch::GivenNames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn claims(family: &str, given: &str, born: &str) -> IdentityClaims {
        IdentityClaims {
            issuer: fixtures::gateway_id(),
            subject: "bsn:999999990".parse().unwrap_or_else(|_| unreachable!()),
            family_name: family.into(),
            given_names: given.into(),
            birth_date: born.into(),
            level_of_assurance: crate::trust::LevelOfAssurance::Substantial,
            audience: fixtures::home_id(),
            nonce: vec![1; 16],
            issued_at: fixtures::T0,
            expires_at: fixtures::T0.plus_s(300),
        }
    }

    #[test]
    fn the_same_person_written_two_ways_matches() {
        let brp = claims("Müller-Lüdenscheidt", "Jonas Maria", "1990-04-01");
        for other in [
            claims("MULLER LUDENSCHEIDT", "jonas maria", "1990-04-01"),
            claims("Muller-Ludenscheidt", "Jonas  Maria", "1990-04-01"),
            claims("Mueller-Luedenscheidt", "Jonas Maria", "1990-04-01"),
        ] {
            assert_eq!(same_person(&brp, &other), Ok(IdentityMatch::Exact));
        }
        assert_eq!(
            same_person(&brp, &claims("Müller-Lüdenscheidt", "Jonas", "1990-04-01")),
            Ok(IdentityMatch::GivenNamesShortened),
            "the documented exception"
        );
        assert_eq!(
            same_person(
                &claims("Straße", "Łukasz", "1980-01-01"),
                &claims("Strasse", "Lukasz", "1980-01-01")
            ),
            Ok(IdentityMatch::Exact)
        );
    }

    #[test]
    fn different_people_do_not_match() {
        let anna = claims("Jansen", "Anna", "1970-01-01");
        assert_eq!(
            same_person(&anna, &claims("Jansen", "Anna", "1970-01-02")),
            Err(IdentityMismatch::BirthDate)
        );
        assert_eq!(
            same_person(&anna, &claims("Janssen", "Anna", "1970-01-01")),
            Err(IdentityMismatch::FamilyName)
        );
        assert_eq!(
            same_person(&anna, &claims("Jansen", "Annie", "1970-01-01")),
            Err(IdentityMismatch::GivenNames)
        );
        assert_eq!(
            same_person(&claims("Jansen", "Maria Anna", "1970-01-01"), &anna),
            Err(IdentityMismatch::GivenNames),
            "a later given name is not the first"
        );
        assert_eq!(
            same_person(&anna, &claims("Jansen", "", "1970-01-01")),
            Err(IdentityMismatch::GivenNames)
        );
    }
}
