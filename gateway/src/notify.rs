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
    /// `starttls` (the default: mail goes only over TLS, the relay host's
    /// certificate checked) or `none` (plain SMTP: only for a relay host on
    /// this machine).
    #[serde(default)]
    pub tls: SmtpTls,
    /// Root certificates (PEM) for the relay host's certificate, when it is
    /// not from a public CA; default: the system's roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Log in to the relay host as this user (SMTP AUTH, over TLS only).
    #[serde(default)]
    pub username: Option<String>,
    /// The file holding the password (mode 0600; kept out of this file and
    /// out of every log).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
}

/// How the notifier protects its SMTP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// STARTTLS, required: a relay host that does not offer it gets no mail.
    #[default]
    Starttls,
    /// Plain SMTP.
    None,
}

impl SmtpSettings {
    /// Plain SMTP to `host:port` (a relay host on this machine, the test sink).
    pub fn plain(host: &str, port: u16, from: &str) -> SmtpSettings {
        SmtpSettings {
            host: host.into(),
            port,
            from: from.into(),
            tls: SmtpTls::None,
            ca_file: None,
            username: None,
            password_file: None,
        }
    }
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
    /// STARTTLS with these parameters, when required.
    tls: Option<lettre::transport::smtp::client::TlsParameters>,
    credentials: Option<lettre::transport::smtp::authentication::Credentials>,
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
        let setup = |m: String| NotifyError::Permanent(m);
        let tls = match settings.tls {
            SmtpTls::None => None,
            SmtpTls::Starttls => {
                use lettre::transport::smtp::client::{
                    Certificate, CertificateStore, TlsParameters,
                };
                let mut builder = TlsParameters::builder(settings.host.clone());
                if let Some(path) = &settings.ca_file {
                    let pem = std::fs::read(path)
                        .map_err(|e| setup(format!("ca_file {}: {e}", path.display())))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| setup(format!("ca_file {}: {e}", path.display())))?;
                    builder = builder
                        .certificate_store(CertificateStore::None)
                        .add_root_certificate(cert);
                }
                Some(
                    builder
                        .build_rustls()
                        .map_err(|e| setup(format!("TLS towards the relay host: {e}")))?,
                )
            }
        };
        let credentials = match (&settings.username, &settings.password_file) {
            (None, None) => None,
            (Some(user), Some(file)) => {
                if tls.is_none() {
                    return Err(setup(
                        "username and password_file need tls = \"starttls\": a password never goes over plain SMTP".into(),
                    ));
                }
                let password = read_secret_file(file).map_err(setup)?;
                Some(lettre::transport::smtp::authentication::Credentials::new(
                    user.clone(),
                    password,
                ))
            }
            _ => {
                return Err(setup("username and password_file go together".into()));
            }
        };
        Ok(SmtpNotifier {
            host: settings.host.clone(),
            port: settings.port,
            hello: ClientId::default(),
            from,
            tls,
            credentials,
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
        let mut connection =
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                .await
                .map_err(smtp_error)?;
        // The session's own failures are the relay host's (or ours), never
        // the recipient's: temporary, so no address is marked failed.
        let session =
            |what: &str, e: &dyn std::fmt::Display| NotifyError::Temporary(format!("{what}: {e}"));
        if let Some(tls) = &self.tls {
            if !connection.can_starttls() {
                connection.abort().await;
                return Err(NotifyError::Temporary(
                    "the relay host does not offer STARTTLS, which the configuration requires (tls = \"starttls\")".into(),
                ));
            }
            connection
                .starttls(tls.clone(), &self.hello)
                .await
                .map_err(|e| session("STARTTLS with the relay host", &e))?;
        }
        if let Some(credentials) = &self.credentials {
            use lettre::transport::smtp::authentication::Mechanism;
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| session("the relay host refused our login", &e))?;
        }
        Ok(connection)
    }
}

/// A secret from a file that only its owner may read (as OpenSSH wants of
/// key files); its text without the final line break.
fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("password_file {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "password_file {shown} is readable by others (mode {mode:04o}): run `chmod 600 {shown}`"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("password_file {shown}: {e}"))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
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
        SmtpNotifier::new(&SmtpSettings::plain(
            "127.0.0.1",
            sink.addr.port(),
            "Berichtenbox <noreply@gateway.test>",
        ))
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

    /// A relay host as operators run them: STARTTLS required, then AUTH.
    async fn tls_sink(dir: &std::path::Path, password: &str) -> (SmtpSink, SmtpSettings) {
        let fed = estafette_pki::Federation::init(&dir.join("fed"), "smtp test", true).unwrap();
        let (ca, cert, key) = fed
            .issue_web_certificate("smtp-relay", &["localhost".into()])
            .unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(estafette_pki::tls::crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    estafette_pki::tls::load_certs(&cert).unwrap(),
                    estafette_pki::tls::load_private_key(&key).unwrap(),
                )
                .unwrap();
        let sink = SmtpSink::start_with(
            "127.0.0.1:0".parse().unwrap(),
            crate::smtp_sink::SinkOptions {
                tls: Some(std::sync::Arc::new(config)),
                login: Some(("estafette".into(), "s3cret relay".into())),
            },
        )
        .await
        .unwrap();
        let password_file = dir.join("smtp-password");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&password_file)
                .unwrap();
            std::io::Write::write_all(&mut f, format!("{password}\n").as_bytes()).unwrap();
        }
        let settings = SmtpSettings {
            host: "localhost".into(),
            port: sink.addr.port(),
            from: "Berichtenbox <noreply@gateway.test>".into(),
            tls: SmtpTls::Starttls,
            ca_file: Some(ca),
            username: Some("estafette".into()),
            password_file: Some(password_file),
        };
        (sink, settings)
    }

    #[tokio::test]
    async fn mail_goes_over_starttls_with_a_login_and_a_wrong_one_marks_no_address() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, settings) = tls_sink(dir.path(), "s3cret relay").await;
        let notifier = SmtpNotifier::new(&settings).unwrap();
        notifier
            .send("anna@example.nl", &notification(1))
            .await
            .unwrap();
        let mails = sink.mails();
        assert_eq!(mails.len(), 1);
        assert!(mails[0].encrypted, "over TLS");
        assert_eq!(mails[0].authenticated_as.as_deref(), Some("estafette"));

        // A wrong password: the relay host refuses our login. That is no
        // fault of the recipient's address: temporary, and it never names
        // the password.
        let dir2 = tempfile::tempdir().unwrap();
        let (sink, settings) = tls_sink(dir2.path(), "wrong").await;
        let failed = SmtpNotifier::new(&settings)
            .unwrap()
            .send("anna@example.nl", &notification(2))
            .await;
        assert!(
            matches!(&failed, Err(NotifyError::Temporary(t)) if t.contains("refused our login") && !t.contains("wrong")),
            "{failed:?}"
        );
        assert!(sink.mails().is_empty());
    }

    #[tokio::test]
    async fn starttls_required_means_no_mail_in_the_clear() {
        let plain = SmtpSink::start().await.unwrap();
        let settings = SmtpSettings {
            tls: SmtpTls::Starttls,
            ..SmtpSettings::plain(
                "127.0.0.1",
                plain.addr.port(),
                "Berichtenbox <noreply@gateway.test>",
            )
        };
        let failed = SmtpNotifier::new(&settings)
            .unwrap()
            .send("anna@example.nl", &notification(1))
            .await;
        assert!(
            matches!(&failed, Err(NotifyError::Temporary(t)) if t.contains("does not offer STARTTLS")),
            "{failed:?}"
        );
        assert!(plain.mails().is_empty());
        // And a password is never configured for plain SMTP.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p"), "x").unwrap();
        let refused = SmtpNotifier::new(&SmtpSettings {
            username: Some("u".into()),
            password_file: Some(dir.path().join("p")),
            ..SmtpSettings::plain("127.0.0.1", 25, "a <a@example.nl>")
        });
        assert!(refused.is_err());
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
