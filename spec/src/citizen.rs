//! Citizen requests: what a home node carries to the gateway for a person
//! who is logged in there. Registration, activation and every consent or
//! contact change travel as a [`CitizenRequest`] over the node-to-node
//! protocol and carry the person's own [`IdentityAssertion`]; the gateway
//! verifies that assertion itself, so neither an agency nor a node operator
//! can act for the person.
//!
//! [`IdentityAssertion`]: crate::assertion::IdentityAssertion

use serde::{Deserialize, Serialize};

use crate::cose::Digest;
use crate::evidence::ReasonCode;
use crate::ids::{CountryCode, InboxId, MandateId, NodeId, Oin, Recipient};
use crate::limits::*;
use crate::mandate::{LegalKind, Mandate, Representative, Rights, SenderScope};
use crate::text::{FieldError, Timestamp, check_count, check_language, check_line};

/// Longest e-mail address (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Bytes of an e-mail verification token.
pub const VERIFICATION_TOKEN_BYTES: usize = 16;
/// Most lines of a street part of a postal address.
pub const MAX_ADDRESS_LINES: usize = 4;
/// Most change-history entries in one answer (the newest are kept).
pub const MAX_HISTORY_ENTRIES: usize = 1_000;
/// Most senders with a consent in one person's record.
pub const MAX_CONSENTS: usize = 1_000;
/// Longest inbox address.
pub const MAX_URL_CHARS: usize = 255;

/// A postal address: the lines above the postal code and city (name of the
/// addressee excluded), postal code, city and country. The paper channel
/// formats it for the country it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostalAddress {
    pub street_lines: Vec<String>,
    pub postal_code: String,
    pub city: String,
    pub country: CountryCode,
}

impl PostalAddress {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.street_lines.is_empty() {
            return Err(FieldError::Empty {
                field: "street lines",
            });
        }
        check_count("street lines", self.street_lines.len(), MAX_ADDRESS_LINES)?;
        for line in &self.street_lines {
            check_line("street line", line, MAX_POSTAL_LINE_CHARS)?;
        }
        check_line("postal code", &self.postal_code, MAX_POSTAL_LINE_CHARS)?;
        check_line("city", &self.city, MAX_POSTAL_LINE_CHARS)
    }
}

/// Checks an e-mail address for the shape `local@domain` (not deliverability:
/// that is what the verification link proves).
pub fn check_email(value: &str) -> Result<(), FieldError> {
    let field = "e-mail address";
    check_line(field, value, MAX_EMAIL_CHARS)?;
    let invalid = FieldError::Invalid {
        field,
        problem: "expected an address like name@example.nl",
    };
    let Some((local, domain)) = value.split_once('@') else {
        return Err(invalid);
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| {
                !c.is_whitespace()
                    && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '@' | '"' | '\\')
            })
    };
    if !plain(local)
        || !plain(domain)
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(invalid);
    }
    Ok(())
}

/// What the person asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CitizenAction {
    /// A session started at the home node: record the visit, answer the person's state.
    SessionStarted,
    /// Create the person's inbox at the forwarding home node (inactive).
    Register {
        language: String,
        /// An address to send paper to; absent: keep the one on record.
        postal_address: Option<PostalAddress>,
    },
    /// Add an e-mail address for notifications; a verification link is sent to it.
    AddEmail { address: String },
    /// The token from a verification link (the only action without an assertion).
    VerifyEmail {
        #[serde(with = "crate::bytes::vec_hex")]
        token: Vec<u8>,
    },
    /// Activate the inbox: needs a verified notification channel.
    Activate,
    /// Digital mail from `sender`, or paper.
    SetConsent { sender: Oin, digital: bool },
    /// Every sender back to paper, in one step.
    AllPaper,
    /// The language of the person's e-mails and paper letters (a
    /// preference: it needs a session, not a fresh login).
    SetLanguage { language: String },
    /// The history of changes, for export.
    History,
    /// Link a second identity of the same person (both logins in one
    /// session): the two registry entries become one inbox.
    Link {
        /// The second identity's proof (same audience, fresh).
        other: crate::assertion::IdentityProof,
    },
    /// The holder grants a representative a voluntary mandate.
    GrantMandate { grant: MandateGrant },
    /// The representative accepts a mandate granted to them.
    AcceptMandate { id: MandateId },
    /// The holder revokes a mandate (or the representative steps down).
    RevokeMandate { id: MandateId },
    /// The representative named in a court registry's attestation registers it.
    RegisterLegalRepresentation {
        attestation: serde_bytes::ByteBuf,
        /// Notifications and paper go to the representative.
        correspondence: bool,
        office_address: Option<PostalAddress>,
    },
    /// The mandates the person gave and received.
    Mandates,
    /// The people the person represents, now.
    Clients,
    /// May the person, as representative under `mandate`, read a letter
    /// from `sender` now? Asked at every access.
    CheckAccess { mandate: MandateId, sender: Oin },
    /// The evidence of one of the person's letters (the signed record the
    /// recipient may have), in chain order.
    LetterEvidence { message: crate::ids::MessageId },
    /// A representative with the right to manage sets the client's consent
    /// for a sender within the mandate's scope.
    SetClientConsent {
        mandate: MandateId,
        sender: Oin,
        digital: bool,
    },
}

/// What the holder grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MandateGrant {
    pub representative: Representative,
    pub scope: SenderScope,
    pub rights: Rights,
    pub valid_from: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub correspondence: bool,
    pub office_address: Option<PostalAddress>,
}

/// One person a representative acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientView {
    pub mandate: MandateId,
    pub client: Recipient,
    pub client_name: Option<String>,
    /// The client's inbox, when it is at the asking home node.
    pub inbox: Option<InboxId>,
    pub legal: bool,
    pub rights: Rights,
}

/// The answer to `check_access`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessDecision {
    /// The mandate that allows it (a legal one may govern instead).
    pub mandate: MandateId,
    /// How evidence and the holder's access log name the representative.
    pub representative: String,
    /// The client's inbox at the asking home node.
    pub inbox: Option<InboxId>,
}

impl CitizenAction {
    /// Whether carrying this action twice has the effect of carrying it
    /// once: reads, and changes that set a state rather than add one. A
    /// transport may repeat such a request when it cannot tell whether the
    /// first attempt arrived. The other changes each add something (a
    /// mail, a mandate, a link) or spend a single-use token.
    pub fn is_repeatable(&self) -> bool {
        !self.is_change()
            || matches!(
                self,
                CitizenAction::Activate
                    | CitizenAction::SetConsent { .. }
                    | CitizenAction::AllPaper
                    | CitizenAction::SetLanguage { .. }
                    | CitizenAction::SetClientConsent { .. }
            )
    }

    /// Whether the action needs a login of minutes ago (every change but a
    /// preference); the rest are taken during a session (SPEC §10.2).
    pub fn needs_fresh_login(&self) -> bool {
        self.is_change() && !matches!(self, CitizenAction::SetLanguage { .. })
    }

    /// Whether the action changes the person's record (and is recorded in the history).
    pub fn is_change(&self) -> bool {
        !matches!(
            self,
            CitizenAction::SessionStarted
                | CitizenAction::History
                | CitizenAction::Mandates
                | CitizenAction::Clients
                | CitizenAction::CheckAccess { .. }
                | CitizenAction::LetterEvidence { .. }
        )
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            CitizenAction::Register {
                language,
                postal_address,
            } => {
                check_language(language)?;
                postal_address.as_ref().map_or(Ok(()), |a| a.validate())
            }
            CitizenAction::AddEmail { address } => check_email(address),
            CitizenAction::SetLanguage { language } => check_language(language),
            CitizenAction::GrantMandate { grant } => {
                grant.representative.validate()?;
                grant.scope.validate()?;
                if let Some(a) = &grant.office_address {
                    a.validate()?;
                }
                if let (Some(from), Some(until)) = (grant.valid_from, grant.valid_until)
                    && until <= from
                {
                    return Err(FieldError::Invalid {
                        field: "valid until",
                        problem: "must be after valid from",
                    });
                }
                Ok(())
            }
            CitizenAction::RegisterLegalRepresentation {
                office_address: Some(a),
                ..
            } => a.validate(),
            CitizenAction::VerifyEmail { token } if token.len() != VERIFICATION_TOKEN_BYTES => {
                Err(FieldError::Invalid {
                    field: "verification token",
                    problem: "expected 16 bytes",
                })
            }
            _ => Ok(()),
        }
    }
}

/// A request from a home node to the gateway on behalf of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CitizenRequest {
    /// The person's proof of their login (a COSE assertion or an OpenID
    /// Connect ID token), with the forwarding home node as audience.
    /// Required for every action but `verify_email`.
    pub identity: Option<crate::assertion::IdentityProof>,
    pub action: CitizenAction,
    /// The web address of the person's inbox at the home node (`https://…`),
    /// for links in notifications and verification e-mails.
    pub inbox_url: Option<String>,
}

impl CitizenRequest {
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(url) = &self.inbox_url {
            check_line("inbox url", url, MAX_URL_CHARS)?;
            if !url.starts_with("https://") || url.contains(char::is_whitespace) {
                return Err(FieldError::Invalid {
                    field: "inbox url",
                    problem: "expected an https:// address",
                });
            }
        }
        self.action.validate()
    }
}

/// State of a notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    /// Waiting for its verification link to be followed.
    Pending,
    /// Verified and working.
    Verified,
    /// Bounced permanently; does not count until replaced.
    Failed,
}

/// Kinds of notification channel (SMS and app push can be added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Email,
}

/// A notification channel as shown to its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelView {
    pub kind: ChannelKind,
    pub address: String,
    pub state: ChannelState,
}

/// The person's registry entry as shown to the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonView {
    pub recipient: Recipient,
    /// The inbox, when it is at the asking home node.
    pub inbox: Option<InboxId>,
    /// The home node of the inbox, wherever it is.
    pub home_node: Option<NodeId>,
    pub active: bool,
    /// Senders the person chose digital mail from; everyone else: paper.
    pub digital_senders: Vec<Oin>,
    pub channels: Vec<ChannelView>,
    pub language: String,
    /// Inboxes at the asking home node whose letters now belong in `inbox`
    /// (after a link): the home node moves them and redirects deliveries.
    #[serde(default)]
    pub merged_inboxes: Vec<InboxId>,
    /// Other identities of the person linked to this one.
    #[serde(default)]
    pub linked: Vec<Recipient>,
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Registered {
        home_node: NodeId,
    },
    EmailAdded {
        address: String,
    },
    EmailVerified {
        address: String,
    },
    EmailFailed {
        address: String,
    },
    Activated,
    Consent {
        sender: Oin,
        digital: bool,
    },
    AllPaper,
    /// The language of e-mails and paper letters.
    Language {
        language: String,
    },
    /// Another identity of the person was linked into this entry (or this
    /// entry into another).
    Linked {
        with: Recipient,
        /// How the two logins matched (the exception is recorded).
        #[serde(default)]
        matched: crate::identity::IdentityMatch,
    },
    MandateGranted {
        id: MandateId,
        representative: String,
    },
    MandateAccepted {
        id: MandateId,
    },
    MandateRevoked {
        id: MandateId,
    },
    LegalRepresentation {
        id: MandateId,
        kind: LegalKind,
        representative: String,
    },
}

/// A change, when it was made, and the digest of the assertion that authorised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEntry {
    pub at: Timestamp,
    pub change: Change,
    /// Absent for changes made by the system (a bounce) or by a verification link.
    pub assertion_digest: Option<Digest>,
}

/// The gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CitizenReply {
    Person(PersonView),
    History(Vec<ChangeEntry>),
    Mandates(Vec<Mandate>),
    /// A mandate was granted or registered: its id.
    Mandate(MandateId),
    Clients(Vec<ClientView>),
    Access(AccessDecision),
    /// Signed evidence objects (COSE_Sign1), in chain order.
    Evidence(Vec<serde_bytes::ByteBuf>),
    Refused {
        reason: ReasonCode,
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_a_preference_changed_without_a_fresh_login() {
        let language = |l: &str| CitizenAction::SetLanguage { language: l.into() };
        assert!(language("pl").is_change(), "it is in the history");
        assert!(!language("pl").needs_fresh_login());
        assert!(language("pl").is_repeatable());
        assert!(CitizenAction::AllPaper.needs_fresh_login());
        assert!(!CitizenAction::History.needs_fresh_login());
        assert!(language("de-DE").validate().is_ok());
        assert!(language("Polish").validate().is_err());
        assert!(language("").validate().is_err());
    }

    #[test]
    fn email_addresses() {
        assert!(check_email("a.jansen@example.nl").is_ok());
        for bad in [
            "",
            "no-at",
            "@example.nl",
            "a@",
            "a@nodot",
            "a b@example.nl",
            "a@@example.nl",
            "a@example.nl.",
            "<a@example.nl>",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.nl", "a".repeat(MAX_EMAIL_CHARS));
        assert!(matches!(
            check_email(&long),
            Err(FieldError::TooLong { .. })
        ));
    }

    #[test]
    fn actions_are_checked() {
        let token = CitizenAction::VerifyEmail { token: vec![0; 15] };
        assert!(token.validate().is_err());
        let address = PostalAddress {
            street_lines: vec![],
            postal_code: "10115".into(),
            city: "Berlin".into(),
            country: "DE".parse().unwrap(),
        };
        let register = CitizenAction::Register {
            language: "de".into(),
            postal_address: Some(address),
        };
        assert!(register.validate().is_err());
        assert!(!CitizenAction::History.is_change());
        assert!(CitizenAction::AllPaper.is_change());
    }
}
