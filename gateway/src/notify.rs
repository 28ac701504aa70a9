//! Notification channels. E-mail over SMTP to the operator's relay host is
//! the one built in; SMS or app push would be further [`Notifier`]s. A
//! channel tells a temporary failure (try again later) from a permanent one
//! (the address is dead: paper).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use serde::{Deserialize, Serialize};

use crate::texts::Notification;

/// Longest wait for one SMTP conversation.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most SMTP connections open to the relay host at once. Sends beyond it
/// wait for a connection rather than open one for a single mail.
pub const SMTP_CONNECTIONS: usize = 16;

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

/// E-mail notifications through an SMTP relay host, over at most
/// [`SMTP_CONNECTIONS`] kept connections.
///
/// The connections are our own (lettre's client on a TCP stream we open)
/// for one reason: TCP_NODELAY. lettre writes a message's body and its
/// closing `.` separately; with Nagle's algorithm on a kept connection the
/// second write waits for the relay host's delayed ACK, about 40 ms a mail.
pub struct SmtpNotifier {
    host: String,
    port: u16,
    hello: ClientId,
    from: Mailbox,
    slots: tokio::sync::Semaphore,
    idle: std::sync::Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

/// A kept connection idle longer than this is checked (NOOP) before use:
/// relay hosts close idle connections.
pub const SMTP_IDLE_CHECK: Duration = Duration::from_secs(10);

impl SmtpNotifier {
    pub fn new(settings: &SmtpSettings) -> Result<SmtpNotifier, NotifyError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| NotifyError::Permanent(format!("sender address: {e}")))?;
        // Plain SMTP to the operator's own relay host, which does the TLS
        // towards the world; a relay across networks belongs behind STARTTLS.
        Ok(SmtpNotifier {
            host: settings.host.clone(),
            port: settings.port,
            hello: ClientId::default(),
            from,
            slots: tokio::sync::Semaphore::new(SMTP_CONNECTIONS),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(AsyncSmtpConnection, Instant)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept connection that still answers (true), or a new one (false).
    async fn connection(&self) -> Result<(AsyncSmtpConnection, bool), NotifyError> {
        loop {
            let kept = self.idle().pop();
            let Some((mut connection, since)) = kept else {
                break;
            };
            if since.elapsed() < SMTP_IDLE_CHECK || connection.test_connected().await {
                return Ok((connection, true));
            }
            connection.abort().await;
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, NotifyError> {
        let stream = async {
            let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(stream)
        }
        .await
        .map_err(|e| NotifyError::Temporary(format!("connecting to the relay host: {e}")))?;
        AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
            .await
            .map_err(smtp_error)
    }
}

fn smtp_error(e: lettre::transport::smtp::Error) -> NotifyError {
    if e.is_permanent() {
        NotifyError::Permanent(e.to_string())
    } else {
        NotifyError::Temporary(e.to_string())
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
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| NotifyError::Temporary("the notifier is shut down".into()))?;
            let conversation = async {
                let formatted = email.formatted();
                let (mut connection, kept) = self.connection().await?;
                let mut sent = connection.send(email.envelope(), &formatted).await;
                if kept && matches!(&sent, Err(e) if !e.is_transient() && !e.is_permanent()) {
                    // The relay host closed the kept connection meanwhile
                    // (no SMTP reply, a broken stream): once more, new.
                    connection = self.connect().await?;
                    sent = connection.send(email.envelope(), &formatted).await;
                }
                // lettre closes a connection on any error; a working one is kept.
                if !connection.has_broken() {
                    self.idle().push((connection, Instant::now()));
                }
                sent.map(|_| ()).map_err(smtp_error)
            };
            tokio::time::timeout(SMTP_TIMEOUT, conversation)
                .await
                .map_err(|_| {
                    NotifyError::Temporary("the relay host did not answer in time".into())
                })?
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
    use crate::smtp_sink::SmtpSink;

    fn notification(n: usize) -> Notification {
        Notification {
            subject: format!("Nieuwe brief {n}"),
            body: "U hebt een nieuwe brief in uw berichtenbox.".into(),
        }
    }

    async fn notifier(sink: &SmtpSink) -> SmtpNotifier {
        SmtpNotifier::new(&SmtpSettings {
            host: "127.0.0.1".into(),
            port: sink.addr.port(),
            from: "Berichtenbox <noreply@gateway.test>".into(),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn many_mails_share_at_most_the_allowed_connections() {
        let sink = SmtpSink::start().await.unwrap();
        let notifier = notifier(&sink).await;
        let count = SMTP_CONNECTIONS * 4;
        let sends = (0..count).map(|n| {
            let notifier = &notifier;
            async move {
                notifier
                    .send(&format!("p{n}@example.nl"), &notification(n))
                    .await
            }
        });
        for result in futures_util::future::join_all(sends).await {
            result.unwrap();
        }
        assert_eq!(sink.mails().len(), count);
        assert!(
            sink.connections() <= SMTP_CONNECTIONS,
            "{} connections for {count} mails",
            sink.connections()
        );
        // Later mails go over the kept connections.
        let before = sink.connections();
        notifier
            .send("later@example.nl", &notification(0))
            .await
            .unwrap();
        assert_eq!(sink.connections(), before);
    }

    #[tokio::test]
    async fn a_connection_the_relay_host_closed_is_replaced_without_losing_the_mail() {
        let sink = SmtpSink::start().await.unwrap();
        let notifier = notifier(&sink).await;
        notifier
            .send("anna@example.nl", &notification(1))
            .await
            .unwrap();
        assert_eq!(sink.connections(), 1);
        sink.hang_up();
        notifier
            .send("jonas@example.de", &notification(2))
            .await
            .unwrap();
        assert_eq!(sink.mails().len(), 2);
        assert_eq!(sink.connections(), 2);
    }

    #[tokio::test]
    async fn a_refused_address_does_not_stop_the_next_mail() {
        let sink = SmtpSink::start().await.unwrap();
        sink.bounce("gone@example.nl");
        let notifier = notifier(&sink).await;
        let bounced = notifier.send("gone@example.nl", &notification(1)).await;
        assert!(
            matches!(&bounced, Err(NotifyError::Permanent(text)) if text.contains("550")),
            "{bounced:?}"
        );
        notifier
            .send("anna@example.nl", &notification(2))
            .await
            .unwrap();
        assert_eq!(sink.mails().len(), 1);
        assert_eq!(sink.mails()[0].to, vec!["anna@example.nl".to_string()]);
    }

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
