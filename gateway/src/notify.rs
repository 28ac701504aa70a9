//! Notification channels. E-mail over SMTP to the operator's relay host is
//! the one built in; SMS or app push would be further [`Notifier`]s. A
//! channel tells a temporary failure (try again later) from a permanent one
//! (the address is dead: paper).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::texts::Notification;

/// Longest wait for one SMTP conversation.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a notification did not go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// Try again later (a 4xx reply, a connection failure, a timeout).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// The address does not work (a 5xx reply).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl NotifyError {
    /// What may be logged of it: the SMTP reply code, if there is one. The
    /// full text of a reply can name the address, which stays out of logs.
    pub fn log_code(&self) -> &str {
        let (NotifyError::Temporary(text) | NotifyError::Permanent(text)) = self;
        text.split(|c: char| !c.is_ascii_digit())
            .find(|t| t.len() == 3 && matches!(t.as_bytes()[0], b'2'..=b'5'))
            .unwrap_or("no reply code")
    }
}

/// A way to reach people.
pub trait Notifier: Send + Sync {
    /// Sends `message` to `address`.
    fn send<'a>(
        &'a self,
        address: &'a str,
        message: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>>;
}

/// Where the SMTP notifier hands over its mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// The relay host (the operator's MTA).
    pub host: String,
    pub port: u16,
    /// The sender address of notifications.
    pub from: String,
}

/// E-mail notifications through an SMTP relay host.
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpNotifier {
    pub fn new(settings: &SmtpSettings) -> Result<SmtpNotifier, NotifyError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| NotifyError::Permanent(format!("sender address: {e}")))?;
        // Plain SMTP to the operator's own relay host, which does the TLS
        // towards the world; a relay across networks belongs behind STARTTLS.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(SmtpNotifier { transport, from })
    }
}

impl Notifier for SmtpNotifier {
    fn send<'a>(
        &'a self,
        address: &'a str,
        message: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>> {
        Box::pin(async move {
            let to: Mailbox = address
                .parse()
                .map_err(|e| NotifyError::Permanent(format!("recipient address: {e}")))?;
            let email = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(message.subject.clone())
                .header(ContentType::TEXT_PLAIN)
                .body(message.body.clone())
                .map_err(|e| NotifyError::Permanent(format!("building the e-mail: {e}")))?;
            match self.transport.send(email).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(NotifyError::Permanent(e.to_string())),
                Err(e) => Err(NotifyError::Temporary(e.to_string())),
            }
        })
    }
}

/// The notifier of a gateway without `[notifications]`: every attempt is a
/// temporary failure, so letters go on paper after the retries.
pub struct Unconfigured;

impl Notifier for Unconfigured {
    fn send<'a>(
        &'a self,
        _address: &'a str,
        _message: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>> {
        Box::pin(async {
            Err(NotifyError::Temporary(
                "no notification channel is configured".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reply_code_is_logged() {
        let e = NotifyError::Permanent(
            "permanent error (550): 5.1.1 <a.jansen@example.nl>: mailbox unavailable".into(),
        );
        assert_eq!(e.log_code(), "550");
        assert_eq!(
            NotifyError::Temporary("connection refused".into()).log_code(),
            "no reply code"
        );
    }
}
