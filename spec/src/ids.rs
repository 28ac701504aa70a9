//! Identifiers: who sends (OIN), who receives (BSN or eIDAS person id), and
//! the opaque ids that name inboxes, nodes, envelopes, messages and evidence.
//!
//! Every identifier parses from its text form with a typed error that names
//! the fault and never repeats the input (a BSN must not reach a log through
//! an error message). Personal identifiers redact themselves in `Debug`.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::{MAX_EIDAS_IDENTIFIER_CHARS, MAX_NODE_ID_CHARS};

/// Implements `Serialize`/`Deserialize` through the `Display`/`FromStr` text form.
macro_rules! serde_via_str {
    ($ty:ty, $what:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse()
                    .map_err(|e| D::Error::custom(format_args!("invalid {}: {e}", $what)))
            }
        }
    };
}

// ---------------------------------------------------------------- OIN

/// The kind of organisation an OIN names, from its 8-digit prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OinKind {
    /// `00000001`: derived from an RSIN.
    Rsin,
    /// `00000002`: derived from a fiscal number.
    FiscalNumber,
    /// `00000003`: derived from a KvK (chamber of commerce) number.
    Kvk,
    /// `00000004`: a sub-OIN of another organisation.
    SubOin,
    /// `00000006`: issued by the register keeper.
    RegisterKeeper,
    /// `00000008`: a foreign organisation.
    Foreign,
    /// `00000099`: test OIN, valid only in a test federation.
    Test,
}

impl OinKind {
    const ALL: [(&'static str, OinKind); 7] = [
        ("00000001", OinKind::Rsin),
        ("00000002", OinKind::FiscalNumber),
        ("00000003", OinKind::Kvk),
        ("00000004", OinKind::SubOin),
        ("00000006", OinKind::RegisterKeeper),
        ("00000008", OinKind::Foreign),
        ("00000099", OinKind::Test),
    ];
}

/// Why a text is not an OIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OinError {
    #[error("an OIN has exactly 20 digits, this has {0} characters")]
    WrongLength(usize),
    #[error("an OIN has only digits 0-9; character {position} is not a digit")]
    NotADigit { position: usize },
    #[error(
        "unknown OIN prefix {0}: known prefixes are 00000001 (RSIN), 00000002 (fiscal number), 00000003 (KvK), 00000004 (sub-OIN), 00000006 (register keeper), 00000008 (foreign), 00000099 (test)"
    )]
    UnknownPrefix(String),
    #[error("test OIN (prefix 00000099) refused: this federation is not a test federation")]
    TestOinOutsideTestFederation,
}

/// Organisatie-identificatienummer: 20 digits, an 8-digit prefix naming its kind.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oin(String);

impl Oin {
    pub fn kind(&self) -> OinKind {
        let prefix = &self.0[..8];
        OinKind::ALL
            .iter()
            .find(|(p, _)| *p == prefix)
            .map(|(_, k)| *k)
            .unwrap_or(OinKind::Test) // unreachable: parsing admits known prefixes only
    }

    pub fn is_test(&self) -> bool {
        self.kind() == OinKind::Test
    }

    /// Test OINs are refused unless the federation is a test federation.
    pub fn check_allowed(&self, test_federation: bool) -> Result<(), OinError> {
        if self.is_test() && !test_federation {
            return Err(OinError::TestOinOutsideTestFederation);
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Oin {
    type Err = OinError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(position) = s.bytes().position(|b| !b.is_ascii_digit()) {
            if s.chars().count() != 20 {
                return Err(OinError::WrongLength(s.chars().count()));
            }
            return Err(OinError::NotADigit {
                position: position + 1,
            });
        }
        if s.len() != 20 {
            return Err(OinError::WrongLength(s.len()));
        }
        let prefix = &s[..8];
        if !OinKind::ALL.iter().any(|(p, _)| *p == prefix) {
            return Err(OinError::UnknownPrefix(prefix.to_owned()));
        }
        Ok(Oin(s.to_owned()))
    }
}

impl fmt::Display for Oin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Oin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An OIN names an organisation, not a person: safe to show.
        write!(f, "Oin({})", self.0)
    }
}

serde_via_str!(Oin, "OIN");

// ---------------------------------------------------------------- BSN

/// Why a text is not a BSN. Never contains the digits themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BsnError {
    #[error("a BSN has exactly 9 digits, this has {0} characters")]
    WrongLength(usize),
    #[error("a BSN has only digits 0-9; character {position} is not a digit")]
    NotADigit { position: usize },
    #[error("a BSN cannot be all zeros")]
    AllZeros,
    #[error("not a valid BSN: the digits fail the eleven-test (weighted sum not divisible by 11)")]
    ElevenTest,
}

/// Burgerservicenummer: 9 digits passing the eleven-test.
///
/// `Debug` redacts the number; `Display` gives it (for the wire and the
/// registry only, never for logs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bsn([u8; 9]);

impl Bsn {
    /// The eleven-test: weights 9,8,...,2 and -1; the sum is divisible by 11.
    fn eleven_test(digits: &[u8; 9]) -> bool {
        let mut sum: i32 = 0;
        for (i, d) in digits.iter().enumerate() {
            let weight = if i == 8 { -1 } else { 9 - i as i32 };
            sum += weight * i32::from(*d);
        }
        sum % 11 == 0
    }

    /// The BSN whose first eight digits are `prefix` (below 100,000,000),
    /// with the check digit that passes the eleven-test; `None` when no
    /// digit does (about one prefix in eleven) or it would be all zeros.
    /// For generated registries (benches, tests), never for real people.
    pub fn with_check_digit(prefix: u32) -> Option<Bsn> {
        if prefix >= 100_000_000 {
            return None;
        }
        let mut digits = [0u8; 9];
        let mut rest = prefix;
        for d in digits[..8].iter_mut().rev() {
            *d = (rest % 10) as u8;
            rest /= 10;
        }
        let sum: u32 = digits[..8]
            .iter()
            .zip((2..=9).rev())
            .map(|(d, w)| u32::from(*d) * w)
            .sum();
        digits[8] = u8::try_from(sum % 11).ok().filter(|c| *c <= 9)?;
        (prefix != 0).then_some(Bsn(digits))
    }
}

impl FromStr for Bsn {
    type Err = BsnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let count = s.chars().count();
        if count != 9 {
            return Err(BsnError::WrongLength(count));
        }
        let mut digits = [0u8; 9];
        for (i, b) in s.bytes().enumerate() {
            if !b.is_ascii_digit() {
                return Err(BsnError::NotADigit { position: i + 1 });
            }
            digits[i] = b - b'0';
        }
        if digits.iter().all(|d| *d == 0) {
            return Err(BsnError::AllZeros);
        }
        if !Self::eleven_test(&digits) {
            return Err(BsnError::ElevenTest);
        }
        Ok(Bsn(digits))
    }
}

impl fmt::Display for Bsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.0 {
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Bsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bsn(<redacted>)")
    }
}

serde_via_str!(Bsn, "BSN");

// ---------------------------------------------------------------- country codes

/// ISO 3166-1 alpha-2 codes currently assigned, plus `EL`, the code the EU
/// uses for Greece in eIDAS identifiers.
const COUNTRY_CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH EL ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Why a text is not a country code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountryCodeError {
    #[error("a country code is two upper-case letters (ISO 3166-1 alpha-2)")]
    Shape,
    #[error("{0} is not an assigned ISO 3166-1 alpha-2 country code")]
    Unassigned(String),
}

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The Netherlands: the destination country of this federation.
    pub const NL: CountryCode = CountryCode(*b"NL");

    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for CountryCode {
    type Err = CountryCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(CountryCodeError::Shape);
        }
        if !COUNTRY_CODES.split(' ').any(|c| c == s) {
            return Err(CountryCodeError::Unassigned(s.to_owned()));
        }
        Ok(CountryCode([b[0], b[1]]))
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

serde_via_str!(CountryCode, "country code");

// ---------------------------------------------------------------- eIDAS person id

/// Why a text is not an eIDAS person identifier. Never repeats the identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EidasIdError {
    #[error("an eIDAS person id has the form CC/CC/identifier, with two '/' separators")]
    Shape,
    #[error("issuing country: {0}")]
    IssuingCountry(CountryCodeError),
    #[error("destination country: {0}")]
    DestinationCountry(CountryCodeError),
    #[error("the identifier part is empty")]
    EmptyIdentifier,
    #[error("the identifier part has {0} characters, at most {max} are allowed", max = MAX_EIDAS_IDENTIFIER_CHARS)]
    IdentifierTooLong(usize),
    #[error(
        "character {position} of the identifier part is not printable ASCII (0x21-0x7E, no spaces)"
    )]
    NotPrintable { position: usize },
}

/// eIDAS-style person identifier `CC/CC/identifier`: issuing country,
/// destination country, and an opaque identifier that is never parsed for
/// meaning. `Debug` shows the countries only.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EidasPersonId {
    issuing: CountryCode,
    destination: CountryCode,
    identifier: String,
}

impl EidasPersonId {
    pub fn issuing_country(&self) -> CountryCode {
        self.issuing
    }
    pub fn destination_country(&self) -> CountryCode {
        self.destination
    }
    /// The opaque identifier part. Personal data: do not log it.
    pub fn identifier(&self) -> &str {
        &self.identifier
    }
}

impl FromStr for EidasPersonId {
    type Err = EidasIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, '/');
        let (Some(issuing), Some(destination), Some(identifier)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(EidasIdError::Shape);
        };
        let issuing = issuing.parse().map_err(EidasIdError::IssuingCountry)?;
        let destination = destination
            .parse()
            .map_err(EidasIdError::DestinationCountry)?;
        if identifier.is_empty() {
            return Err(EidasIdError::EmptyIdentifier);
        }
        let count = identifier.chars().count();
        if count > MAX_EIDAS_IDENTIFIER_CHARS {
            return Err(EidasIdError::IdentifierTooLong(count));
        }
        if let Some(position) = identifier.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(EidasIdError::NotPrintable {
                position: position + 1,
            });
        }
        Ok(EidasPersonId {
            issuing,
            destination,
            identifier: identifier.to_owned(),
        })
    }
}

impl fmt::Display for EidasPersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.issuing, self.destination, self.identifier
        )
    }
}

impl fmt::Debug for EidasPersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EidasPersonId({}/{}/<redacted>)",
            self.issuing, self.destination
        )
    }
}

serde_via_str!(EidasPersonId, "eIDAS person id");

// ---------------------------------------------------------------- recipient

/// Why a text is not a recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    #[error("a recipient starts with 'bsn:' or 'eidas:'")]
    UnknownScheme,
    #[error("bsn recipient: {0}")]
    Bsn(#[from] BsnError),
    #[error("eidas recipient: {0}")]
    Eidas(#[from] EidasIdError),
}

/// The person a letter is for: `bsn:123456782` or `eidas:DE/NL/…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Recipient {
    Bsn(Bsn),
    Eidas(EidasPersonId),
}

impl FromStr for Recipient {
    type Err = RecipientError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("bsn:") {
            Ok(Recipient::Bsn(rest.parse()?))
        } else if let Some(rest) = s.strip_prefix("eidas:") {
            Ok(Recipient::Eidas(rest.parse()?))
        } else {
            Err(RecipientError::UnknownScheme)
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::Bsn(b) => write!(f, "bsn:{b}"),
            Recipient::Eidas(e) => write!(f, "eidas:{e}"),
        }
    }
}

serde_via_str!(Recipient, "recipient");

// ---------------------------------------------------------------- node id

/// Why a text is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    #[error("a node id has 1 to {max} characters, this has {0}", max = MAX_NODE_ID_CHARS)]
    Length(usize),
    #[error("label {label} of the node id is empty or longer than 63 characters")]
    LabelLength { label: usize },
    #[error(
        "character {position} of the node id is not allowed: use lower-case letters, digits, '-' and '.'"
    )]
    BadCharacter { position: usize },
    #[error("label {label} of the node id starts or ends with '-'")]
    HyphenAtEdge { label: usize },
}

/// A node's name in the federation, DNS style: lower-case labels of
/// `a-z0-9-` joined by dots, e.g. `relay1.operator.example`. The same name
/// is the DNS subject alternative name of the node's TLS certificate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_NODE_ID_CHARS {
            return Err(NodeIdError::Length(s.chars().count()));
        }
        if let Some(position) = s
            .bytes()
            .position(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'))
        {
            return Err(NodeIdError::BadCharacter {
                position: position + 1,
            });
        }
        for (i, label) in s.split('.').enumerate() {
            if label.is_empty() || label.len() > 63 {
                return Err(NodeIdError::LabelLength { label: i + 1 });
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(NodeIdError::HyphenAtEdge { label: i + 1 });
            }
        }
        Ok(NodeId(s.to_owned()))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

serde_via_str!(NodeId, "node id");

// ---------------------------------------------------------------- 128-bit ids

/// Why a text is not a 128-bit id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Id128Error {
    #[error("expected the prefix '{0}'")]
    Prefix(&'static str),
    #[error("expected 32 hexadecimal digits after the prefix, found {0} characters")]
    Length(usize),
    #[error("character {position} after the prefix is not a hexadecimal digit")]
    NotHex { position: usize },
    #[error("expected 16 bytes, found {0}")]
    ByteLength(usize),
}

fn parse_hex128(s: &str) -> Result<[u8; 16], Id128Error> {
    if s.len() != 32 {
        return Err(Id128Error::Length(s.chars().count()));
    }
    let mut out = [0u8; 16];
    let bytes = s.as_bytes();
    for (i, byte) in out.iter_mut().enumerate() {
        let hi = hex_value(bytes[2 * i]).ok_or(Id128Error::NotHex {
            position: 2 * i + 1,
        })?;
        let lo = hex_value(bytes[2 * i + 1]).ok_or(Id128Error::NotHex {
            position: 2 * i + 2,
        })?;
        *byte = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of any byte string.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

macro_rules! id128 {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        ///
        /// Text form: the prefix then 32 lower-case hex digits. CBOR form: a
        /// 16-byte byte string.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            pub const TEXT_PREFIX: &'static str = $prefix;

            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
            /// A fresh random id from the caller's random source.
            pub fn random(rng: &mut impl rand_core::CryptoRngCore) -> Self {
                let mut bytes = [0u8; 16];
                rng.fill_bytes(&mut bytes);
                Self(bytes)
            }
        }

        impl FromStr for $name {
            type Err = Id128Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let rest = s.strip_prefix($prefix).ok_or(Id128Error::Prefix($prefix))?;
                parse_hex128(rest).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, to_hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.collect_str(self)
                } else {
                    serializer.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                    text.parse().map_err(|e| {
                        D::Error::custom(format_args!("invalid {}: {e}", stringify!($name)))
                    })
                } else {
                    let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
                    let array: [u8; 16] = bytes.as_slice().try_into().map_err(|_| {
                        D::Error::custom(format_args!(
                            "invalid {}: {}",
                            stringify!($name),
                            Id128Error::ByteLength(bytes.len())
                        ))
                    })?;
                    Ok(Self(array))
                }
            }
        }
    };
}

id128!(
    /// An inbox on a home node: random, opaque, reveals nothing about its holder.
    InboxId,
    "ib-"
);
id128!(
    /// One envelope's journey between nodes; chosen by the gateway.
    EnvelopeId,
    "env-"
);
id128!(
    /// One letter, chosen by the sending agency; idempotency key of submission.
    MessageId,
    "msg-"
);
id128!(
    /// One piece of evidence, chosen by the node that signs it.
    EvidenceId,
    "evd-"
);

id128!(
    /// One mandate or legal representation, chosen by the gateway.
    MandateId,
    "mdt-"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsn_check_digits_make_valid_numbers() {
        assert_eq!(Bsn::with_check_digit(11_122_233), "111222333".parse().ok());
        assert_eq!(Bsn::with_check_digit(12_345_678), "123456782".parse().ok());
        assert_eq!(Bsn::with_check_digit(1), "000000012".parse().ok());
        assert_eq!(Bsn::with_check_digit(0), None);
        assert_eq!(Bsn::with_check_digit(100_000_000), None);
        // Every prefix gives a valid number or none; about one in eleven none.
        let made: Vec<Bsn> = (10_000_000..10_011_000)
            .filter_map(Bsn::with_check_digit)
            .collect();
        assert!(made.iter().all(|b| b.to_string().parse::<Bsn>() == Ok(*b)));
        assert_eq!(made.len(), 10_000);
    }

    #[test]
    fn bsn_known_valid_numbers() {
        for s in ["111222333", "123456782", "999999990", "000000012"] {
            assert!(s.parse::<Bsn>().is_ok(), "{s} should be valid");
        }
    }

    #[test]
    fn bsn_errors_name_the_fault() {
        assert_eq!("12345678".parse::<Bsn>(), Err(BsnError::WrongLength(8)));
        assert_eq!("1234567890".parse::<Bsn>(), Err(BsnError::WrongLength(10)));
        assert_eq!(
            "12345678a".parse::<Bsn>(),
            Err(BsnError::NotADigit { position: 9 })
        );
        assert_eq!("000000000".parse::<Bsn>(), Err(BsnError::AllZeros));
        assert_eq!("123456789".parse::<Bsn>(), Err(BsnError::ElevenTest));
        assert_eq!(
            "12345678٣".parse::<Bsn>(),
            Err(BsnError::NotADigit { position: 9 })
        );
    }

    #[test]
    fn bsn_debug_is_redacted_and_errors_do_not_repeat_input() {
        let bsn: Bsn = "123456782".parse().unwrap();
        assert!(!format!("{bsn:?}").contains("123456782"));
        let err = "123456789".parse::<Bsn>().unwrap_err().to_string();
        assert!(!err.contains("123456789"));
        let r: Recipient = "bsn:123456782".parse().unwrap();
        assert!(!format!("{r:?}").contains("123456782"));
    }

    #[test]
    fn oin_kinds_and_errors() {
        let oin: Oin = "00000001003214345000".parse().unwrap();
        assert_eq!(oin.kind(), OinKind::Rsin);
        assert_eq!(oin.check_allowed(false), Ok(()));
        let test: Oin = "00000099000000000001".parse().unwrap();
        assert!(test.is_test());
        assert_eq!(
            test.check_allowed(false),
            Err(OinError::TestOinOutsideTestFederation)
        );
        assert_eq!(test.check_allowed(true), Ok(()));
        assert_eq!(
            "0000000100321434500".parse::<Oin>(),
            Err(OinError::WrongLength(19))
        );
        assert_eq!(
            "0000000100321434500x".parse::<Oin>(),
            Err(OinError::NotADigit { position: 20 })
        );
        assert_eq!(
            "00000005003214345000".parse::<Oin>(),
            Err(OinError::UnknownPrefix("00000005".into()))
        );
    }

    #[test]
    fn eidas_ids_and_errors() {
        let id: EidasPersonId = "DE/NL/0123456789ABCDEF".parse().unwrap();
        assert_eq!(id.issuing_country().as_str(), "DE");
        assert_eq!(id.destination_country(), CountryCode::NL);
        assert!(!format!("{id:?}").contains("0123456789"));
        // An identifier may itself contain '/': it is opaque.
        assert!("FR/NL/a/b/c".parse::<EidasPersonId>().is_ok());
        assert_eq!("DE-NL-x".parse::<EidasPersonId>(), Err(EidasIdError::Shape));
        assert_eq!(
            "de/NL/x".parse::<EidasPersonId>(),
            Err(EidasIdError::IssuingCountry(CountryCodeError::Shape))
        );
        assert_eq!(
            "DE/XX/x".parse::<EidasPersonId>(),
            Err(EidasIdError::DestinationCountry(
                CountryCodeError::Unassigned("XX".into())
            ))
        );
        assert_eq!(
            "DE/NL/".parse::<EidasPersonId>(),
            Err(EidasIdError::EmptyIdentifier)
        );
        let long = format!("DE/NL/{}", "a".repeat(257));
        assert_eq!(
            long.parse::<EidasPersonId>(),
            Err(EidasIdError::IdentifierTooLong(257))
        );
        let max = format!("DE/NL/{}", "a".repeat(256));
        assert!(max.parse::<EidasPersonId>().is_ok());
        assert_eq!(
            "DE/NL/ab c".parse::<EidasPersonId>(),
            Err(EidasIdError::NotPrintable { position: 3 })
        );
    }

    #[test]
    fn recipients() {
        assert!(matches!("bsn:123456782".parse(), Ok(Recipient::Bsn(_))));
        assert!(matches!("eidas:DE/NL/x".parse(), Ok(Recipient::Eidas(_))));
        assert_eq!(
            "mail:someone".parse::<Recipient>(),
            Err(RecipientError::UnknownScheme)
        );
        assert_eq!(
            "bsn:123456789".parse::<Recipient>(),
            Err(RecipientError::Bsn(BsnError::ElevenTest))
        );
    }

    #[test]
    fn node_ids() {
        assert!("relay1.operator.example".parse::<NodeId>().is_ok());
        assert!("gw".parse::<NodeId>().is_ok());
        assert_eq!(
            "Relay".parse::<NodeId>(),
            Err(NodeIdError::BadCharacter { position: 1 })
        );
        assert_eq!(
            "a..b".parse::<NodeId>(),
            Err(NodeIdError::LabelLength { label: 2 })
        );
        assert_eq!(
            "a.-b".parse::<NodeId>(),
            Err(NodeIdError::HyphenAtEdge { label: 2 })
        );
        assert_eq!("".parse::<NodeId>(), Err(NodeIdError::Length(0)));
        let too_long = "a".repeat(254);
        assert_eq!(too_long.parse::<NodeId>(), Err(NodeIdError::Length(254)));
    }

    #[test]
    fn id128_text_forms() {
        let id = EnvelopeId::from_bytes([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text, format!("env-{}", "ab".repeat(16)));
        assert_eq!(text.parse::<EnvelopeId>(), Ok(id));
        assert_eq!(
            "msg-00".parse::<EnvelopeId>(),
            Err(Id128Error::Prefix("env-"))
        );
        assert_eq!("env-00".parse::<EnvelopeId>(), Err(Id128Error::Length(2)));
        let bad = format!("env-{}g", "0".repeat(31));
        assert_eq!(
            bad.parse::<EnvelopeId>(),
            Err(Id128Error::NotHex { position: 32 })
        );
    }
}
