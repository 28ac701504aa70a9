//! `SignedMessage`: the letter as the agency wrote and sealed it. Its bytes
//! travel unchanged (inside the HPKE-sealed envelope payload) to the inbox,
//! where the agency's signature is checked again.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::cbor::{self, CborError};
use crate::cose::{self, Digest, ObjectKind};
use crate::ids::{MessageId, Oin, OinError, Recipient};
use crate::limits::*;
use crate::text::{
    FieldError, Timestamp, check_count, check_language, check_line, check_multiline,
};
use crate::trust::{Signer, TrustList, VerifyError};

/// What kind of letter this is; shown in notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nature {
    Decision,
    Reminder,
    Request,
    Information,
}

/// A file attached to a letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub name: String,
    pub media_type: String,
    #[serde(with = "crate::bytes::vec_hex")]
    pub content: Vec<u8>,
}

/// The content of a letter: the COSE payload of a `SignedMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Letter {
    pub message_id: MessageId,
    pub sender: Oin,
    pub recipient: Recipient,
    pub created_at: Timestamp,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<Attachment>,
    pub nature: Nature,
    /// Whether the letter has legal effect (a decision one can object to, a fine).
    pub legal_effect: bool,
    /// What the recipient is expected to do, in plain words ("Pay €120 by ...", "No action needed").
    pub expected_action: String,
    pub response_deadline: Option<Timestamp>,
    /// BCP 47 language tag of subject and body.
    pub language: String,
    /// The agency's own reference for this letter.
    pub sender_reference: String,
}

/// Why a letter's content is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LetterError {
    #[error("{0}")]
    Field(#[from] FieldError),
    #[error("response deadline lies before the letter was created")]
    DeadlineBeforeCreation,
    #[error("attachment media type must look like 'type/subtype'")]
    MediaType,
}

impl Letter {
    /// Checks every field against its limit.
    pub fn validate(&self) -> Result<(), LetterError> {
        check_line("subject", &self.subject, MAX_SUBJECT_CHARS)?;
        if self.body.len() > MAX_BODY_BYTES {
            return Err(FieldError::TooLong {
                field: "body (bytes)",
                actual: self.body.len(),
                limit: MAX_BODY_BYTES,
            }
            .into());
        }
        check_multiline("body", &self.body, MAX_BODY_BYTES)?;
        check_count("attachments", self.attachments.len(), MAX_ATTACHMENTS)?;
        for a in &self.attachments {
            check_line("attachment name", &a.name, MAX_ATTACHMENT_NAME_CHARS)?;
            check_line("attachment media type", &a.media_type, MAX_SHORT_TEXT_CHARS)?;
            if a.name.contains(['/', '\\']) {
                return Err(FieldError::Invalid {
                    field: "attachment name",
                    problem: "must not contain '/' or '\\'",
                }
                .into());
            }
            let mut parts = a.media_type.splitn(2, '/');
            if parts.next().is_none_or(str::is_empty) || parts.next().is_none_or(str::is_empty) {
                return Err(LetterError::MediaType);
            }
        }
        check_multiline(
            "expected action",
            &self.expected_action,
            MAX_SHORT_TEXT_CHARS,
        )?;
        check_language(&self.language)?;
        check_line(
            "sender reference",
            &self.sender_reference,
            MAX_SHORT_TEXT_CHARS,
        )?;
        if let Some(deadline) = self.response_deadline
            && deadline < self.created_at
        {
            return Err(LetterError::DeadlineBeforeCreation);
        }
        Ok(())
    }
}

/// Why a `SignedMessage` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("signed message: {0}")]
    Verify(#[from] VerifyError),
    #[error("signed message content: {0}")]
    Content(#[from] CborError),
    #[error("signed message: {0}")]
    Letter(#[from] LetterError),
    #[error("signed message: sender {claimed} differs from the agency {signer} that signed it")]
    SenderMismatch { claimed: Oin, signer: Oin },
    #[error("signed message: sender {0}")]
    Sender(OinError),
}

impl MessageError {
    /// The reason code a rejection for this error carries.
    pub fn reason(&self) -> crate::evidence::ReasonCode {
        use crate::evidence::ReasonCode;
        match self {
            MessageError::Verify(e) => e.reason(),
            MessageError::Content(e) => e.reason(),
            MessageError::Letter(LetterError::Field(
                FieldError::TooLong { .. } | FieldError::TooMany { .. },
            )) => ReasonCode::TooLarge,
            MessageError::Letter(_) => ReasonCode::Malformed,
            MessageError::SenderMismatch { .. } => ReasonCode::SenderMismatch,
            MessageError::Sender(_) => ReasonCode::WrongRole,
        }
    }
}

/// A verified letter with the facts evidence refers to.
#[derive(Debug, Clone)]
pub struct VerifiedMessage {
    pub letter: Letter,
    /// SHA-256 of the `SignedMessage` bytes as signed.
    pub digest: Digest,
}

/// Signs and checks `SignedMessage` bytes.
pub struct SignedMessage;

impl SignedMessage {
    /// Seals a letter with the agency's key. Refuses a letter over limits.
    pub fn sign(letter: &Letter, seal_key: &SigningKey) -> Result<Vec<u8>, LetterError> {
        letter.validate()?;
        Ok(cose::sign(
            ObjectKind::Message,
            cbor::to_vec(letter),
            seal_key,
        ))
    }

    /// Reads a SignedMessage this node verified before it stored it, without
    /// checking the signature again (a letter printed weeks later must still
    /// print if the agency's key has since been rotated).
    pub fn read_stored(bytes: &[u8]) -> Result<VerifiedMessage, MessageError> {
        let payload = crate::cose::UnverifiedSign1::parse(bytes, ObjectKind::Message)
            .and_then(crate::cose::UnverifiedSign1::payload_of_verified)
            .map_err(VerifyError::Cose)?;
        let letter: Letter = cbor::from_slice(&payload, MAX_MESSAGE_BYTES)?;
        Ok(VerifiedMessage {
            letter,
            digest: Digest::of(bytes),
        })
    }

    /// Checks that an agency in the trust list sealed these bytes, that the
    /// sealing agency is the sender, and every limit.
    pub fn verify(bytes: &[u8], trust: &TrustList) -> Result<VerifiedMessage, MessageError> {
        let (signer, payload) = trust.verify_signed(bytes, ObjectKind::Message)?;
        let letter: Letter = cbor::from_slice(&payload, MAX_MESSAGE_BYTES)?;
        letter.validate()?;
        let Signer::Agency(agency) = signer else {
            // verify_signed admits only agencies for messages.
            return Err(MessageError::Verify(VerifyError::Cose(
                crate::cose::CoseError::BadSignature,
            )));
        };
        if agency.oin != letter.sender {
            return Err(MessageError::SenderMismatch {
                claimed: letter.sender,
                signer: agency.oin.clone(),
            });
        }
        letter
            .sender
            .check_allowed(trust.content().test_federation)
            .map_err(MessageError::Sender)?;
        Ok(VerifiedMessage {
            letter,
            digest: Digest::of(bytes),
        })
    }
}
