//! A small SMTP server that keeps what it receives: the receiving end of
//! notifications in tests, the demo and `estafette-gateway smtp-sink`. It
//! speaks enough of RFC 5321 for a real client (EHLO/HELO, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT), and, when given a certificate and a login,
//! STARTTLS (RFC 3207) and AUTH PLAIN (RFC 4954) as a real relay host
//! requires them. It can answer chosen recipients with a permanent (550)
//! or temporary (450) failure, and decodes what lettre sends
//! (encoded-word subjects, quoted-printable or base64 bodies) so that tests
//! can read the text.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Longest command line the sink reads.
pub const MAX_LINE_BYTES: usize = 4096;
/// Largest message the sink takes.
pub const MAX_MAIL_BYTES: usize = 1024 * 1024;
/// Idle time after which the sink drops a connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One e-mail the sink accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub to: Vec<String>,
    pub subject: String,
    /// The decoded text body.
    pub body: String,
    /// Everything as received.
    pub raw: String,
    /// Whether it came over TLS (after STARTTLS).
    pub encrypted: bool,
    /// Who logged in to send it (SMTP AUTH), if anyone.
    pub authenticated_as: Option<String>,
}

/// What a sink requires of its clients, like a relay host would.
#[derive(Clone, Default)]
pub struct SinkOptions {
    /// Offer STARTTLS with this configuration, and take mail only over TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Take mail only after AUTH PLAIN with this user and password.
    pub login: Option<(String, String)>,
}

#[derive(Default)]
struct Inner {
    mails: Vec<ReceivedMail>,
    bounce: HashSet<String>,
    defer: HashSet<String>,
    refused: usize,
    connections: usize,
    /// Bumped by [`SmtpSink::hang_up`]: older connections close at their
    /// next command, unanswered.
    generation: u64,
}

/// A running sink. Dropping it stops it.
pub struct SmtpSink {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<SmtpSink> {
        Self::start_with(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SinkOptions::default(),
        )
        .await
    }

    /// Listens on `addr` with `options`.
    pub async fn start_with(addr: SocketAddr, options: SinkOptions) -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (i, c) = (inner.clone(), changed.clone());
        let options = Arc::new(options);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (i, c, o) = (i.clone(), c.clone(), options.clone());
                i.lock().unwrap_or_else(|p| p.into_inner()).connections += 1;
                tokio::spawn(async move {
                    let _ = serve(stream, i, c, o).await;
                });
            }
        });
        Ok(SmtpSink {
            addr,
            inner,
            changed,
            task,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer RCPT TO for `address` with 550 from now on.
    pub fn bounce(&self, address: &str) {
        self.lock().bounce.insert(address.to_ascii_lowercase());
    }

    /// Answer RCPT TO for `address` with 450 (try later) from now on, or not.
    pub fn defer(&self, address: &str, on: bool) {
        let mut inner = self.lock();
        if on {
            inner.defer.insert(address.to_ascii_lowercase());
        } else {
            inner.defer.remove(&address.to_ascii_lowercase());
        }
    }

    /// Everything received so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.lock().mails.clone()
    }

    /// Closes every open connection at its next command without answering,
    /// as a relay host does with connections it has let idle too long.
    pub fn hang_up(&self) {
        self.lock().generation += 1;
    }

    /// How many connections clients opened so far.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// How many recipients were refused (550 or 450).
    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    /// Waits until `done` holds for the received mails, at most `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedMail]) -> bool,
    ) -> Result<Vec<ReceivedMail>, Vec<ReceivedMail>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            // Checked under the lock: copying every mail at every wake-up
            // would cost more than the mails themselves.
            if done(&self.lock().mails) {
                return Ok(self.mails());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(self.mails());
            }
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the conversation asks for next.
enum Next {
    Done,
    StartTls,
}

async fn serve(
    stream: TcpStream,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<tokio::sync::Notify>,
    options: Arc<SinkOptions>,
) -> std::io::Result<()> {
    let mut plain = BufReader::new(stream);
    plain
        .write_all(b"220 estafette-smtp-sink ESMTP\r\n")
        .await?;
    let next = conversation(&mut plain, &inner, &changed, &options, false).await?;
    let (Next::StartTls, Some(tls)) = (next, options.tls.clone()) else {
        return Ok(());
    };
    // Nothing may follow STARTTLS in the clear (RFC 3207 §4.2): what the
    // buffer holds is dropped with it.
    let tcp = plain.into_inner();
    let stream = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await?;
    let mut encrypted = BufReader::new(stream);
    conversation(&mut encrypted, &inner, &changed, &options, true).await?;
    Ok(())
}

/// The credentials of an AUTH PLAIN response: (user, password).
fn plain_credentials(response: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(response.trim())
        .ok()?;
    let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
    match parts.as_slice() {
        [_, user, password] => Some((
            String::from_utf8_lossy(user).into_owned(),
            String::from_utf8_lossy(password).into_owned(),
        )),
        _ => None,
    }
}

/// One SMTP conversation's state (before or after STARTTLS).
struct Conversation<'a, S> {
    stream: &'a mut BufReader<S>,
    inner: &'a Arc<Mutex<Inner>>,
    changed: &'a tokio::sync::Notify,
    options: &'a SinkOptions,
    encrypted: bool,
    needs_tls: bool,
    to: Vec<String>,
    authenticated_as: Option<String>,
}

/// What a command asks for: a reply, or the end of this conversation.
enum Step {
    Reply(&'static [u8]),
    ReplyOwned(Vec<u8>),
    End(Next),
}

async fn conversation<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    inner: &Arc<Mutex<Inner>>,
    changed: &tokio::sync::Notify,
    options: &SinkOptions,
    encrypted: bool,
) -> std::io::Result<Next> {
    let generation = lock(inner).generation;
    let mut c = Conversation {
        stream,
        inner,
        changed,
        options,
        encrypted,
        needs_tls: options.tls.is_some() && !encrypted,
        to: Vec::new(),
        authenticated_as: None,
    };
    loop {
        let Some(line) = read_line(c.stream).await? else {
            return Ok(Next::Done);
        };
        if lock(inner).generation != generation {
            return Ok(Next::Done);
        }
        let reply = match c.command(&line).await? {
            Step::Reply(bytes) => bytes.to_vec(),
            Step::ReplyOwned(bytes) => bytes,
            Step::End(next) => return Ok(next),
        };
        c.stream.write_all(&reply).await?;
        c.stream.flush().await?;
        if reply.starts_with(b"550") || reply.starts_with(b"450") {
            changed.notify_waiters();
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conversation<'_, S> {
    async fn say(&mut self, reply: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(reply).await?;
        self.stream.flush().await
    }

    async fn command(&mut self, line: &str) -> std::io::Result<Step> {
        let upper = line.to_ascii_uppercase();
        Ok(if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            Step::ReplyOwned(self.ehlo().into_bytes())
        } else if upper == "STARTTLS" && self.needs_tls {
            self.say(b"220 2.0.0 ready to start TLS\r\n").await?;
            Step::End(Next::StartTls)
        } else if upper.starts_with("AUTH PLAIN") && !self.needs_tls {
            Step::Reply(self.auth_plain(line).await?)
        } else if upper.starts_with("MAIL FROM:") {
            Step::Reply(self.mail_from())
        } else if upper.starts_with("RCPT TO:") {
            Step::Reply(self.rcpt_to(line))
        } else if upper == "DATA" {
            return self.data().await;
        } else if upper == "RSET" {
            self.to.clear();
            Step::Reply(b"250 2.0.0 OK\r\n")
        } else if upper == "NOOP" {
            Step::Reply(b"250 2.0.0 OK\r\n")
        } else if upper == "QUIT" {
            self.say(b"221 2.0.0 bye\r\n").await?;
            Step::End(Next::Done)
        } else {
            Step::Reply(b"502 5.5.2 command not implemented\r\n")
        })
    }

    fn ehlo(&self) -> String {
        let mut r = String::from("250-estafette-smtp-sink\r\n");
        if self.needs_tls {
            r.push_str("250-STARTTLS\r\n");
        }
        if self.options.login.is_some() && !self.needs_tls {
            r.push_str("250-AUTH PLAIN\r\n");
        }
        r.push_str("250 8BITMIME\r\n");
        r
    }

    async fn auth_plain(&mut self, line: &str) -> std::io::Result<&'static [u8]> {
        let initial = line.get(10..).map(str::trim).unwrap_or("");
        let response = if initial.is_empty() {
            self.say(b"334 \r\n").await?;
            read_line(self.stream).await?.unwrap_or_default()
        } else {
            initial.to_owned()
        };
        Ok(match (&self.options.login, plain_credentials(&response)) {
            (Some(expected), Some(given)) if *expected == given => {
                self.authenticated_as = Some(given.0);
                b"235 2.7.0 authentication succeeded\r\n"
            }
            _ => b"535 5.7.8 authentication credentials invalid\r\n",
        })
    }

    fn mail_from(&mut self) -> &'static [u8] {
        if self.needs_tls {
            b"530 5.7.0 must issue a STARTTLS command first\r\n"
        } else if self.options.login.is_some() && self.authenticated_as.is_none() {
            b"530 5.7.0 authentication required\r\n"
        } else {
            self.to.clear();
            b"250 2.1.0 OK\r\n"
        }
    }

    fn rcpt_to(&mut self, line: &str) -> &'static [u8] {
        let address = line[8..]
            .trim()
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut state = lock(self.inner);
        if state.bounce.contains(&address) {
            state.refused += 1;
            b"550 5.1.1 mailbox unavailable\r\n"
        } else if state.defer.contains(&address) {
            state.refused += 1;
            b"450 4.2.1 mailbox busy, try later\r\n"
        } else {
            self.to.push(address);
            b"250 2.1.5 OK\r\n"
        }
    }

    async fn data(&mut self) -> std::io::Result<Step> {
        if self.to.is_empty() {
            return Ok(Step::Reply(b"554 5.5.1 no valid recipients\r\n"));
        }
        self.say(b"354 end with <CRLF>.<CRLF>\r\n").await?;
        let Some(raw) = read_data(self.stream).await? else {
            self.say(b"552 5.3.4 message too big\r\n").await?;
            return Ok(Step::End(Next::Done));
        };
        let mut mail = parse(std::mem::take(&mut self.to), raw);
        mail.encrypted = self.encrypted;
        mail.authenticated_as = self.authenticated_as.clone();
        lock(self.inner).mails.push(mail);
        self.changed.notify_waiters();
        Ok(Step::Reply(b"250 2.0.0 queued\r\n"))
    }
}

async fn read_line<S: AsyncRead + Unpin>(
    read: &mut BufReader<S>,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let mut limited = (&mut *read).take(MAX_LINE_BYTES as u64);
    match tokio::time::timeout(IDLE_TIMEOUT, limited.read_until(b'\n', &mut buf)).await {
        Ok(Ok(0)) | Err(_) => Ok(None),
        Ok(Ok(_)) => Ok(Some(
            String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        )),
        Ok(Err(e)) => Err(e),
    }
}

async fn read_data<S: AsyncRead + Unpin>(
    read: &mut BufReader<S>,
) -> std::io::Result<Option<String>> {
    let mut raw = String::new();
    loop {
        let Some(line) = read_line(read).await? else {
            return Ok(None);
        };
        if line == "." {
            return Ok(Some(raw));
        }
        // Dot-stuffing (RFC 5321 4.5.2).
        raw.push_str(line.strip_prefix('.').unwrap_or(&line));
        raw.push('\n');
        if raw.len() > MAX_MAIL_BYTES {
            return Ok(None);
        }
    }
}

fn parse(to: Vec<String>, raw: String) -> ReceivedMail {
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    // Unfold continued header lines.
    let head = head.replace("\n ", " ").replace("\n\t", " ");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let subject = decode_words(&header("Subject"));
    let encoding = header("Content-Transfer-Encoding").to_ascii_lowercase();
    let body = match encoding.as_str() {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(body.split_whitespace().collect::<String>())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
        "quoted-printable" => quoted_printable(body),
        _ => body.to_owned(),
    };
    ReceivedMail {
        to,
        subject,
        body,
        raw,
        encrypted: false,
        authenticated_as: None,
    }
}

/// RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`), joined.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    for word in value.split_whitespace() {
        let parts: Vec<&str> = word.split('?').collect();
        if parts.len() == 5 && parts[0] == "=" && parts[4] == "=" {
            let bytes = match parts[2].to_ascii_lowercase().as_str() {
                "b" => base64::engine::general_purpose::STANDARD
                    .decode(parts[3])
                    .unwrap_or_default(),
                _ => quoted_printable(&parts[3].replace('_', " ")).into_bytes(),
            };
            out.push_str(&String::from_utf8_lossy(&bytes));
        } else {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

fn quoted_printable(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let raw = line.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'='
                && i + 2 < raw.len() + 1
                && let Some(hex) = line.get(i + 1..i + 3)
                && let Ok(b) = u8::from_str_radix(hex, 16)
            {
                bytes.push(b);
                i += 3;
                continue;
            }
            bytes.push(raw[i]);
            i += 1;
        }
        if !soft && lines.peek().is_some() {
            bytes.push(b'\n');
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_mailers_send() {
        assert_eq!(
            decode_words("=?utf-8?b?U2llIGhhYmVuIGVpbmVuIEJyaWVm?="),
            "Sie haben einen Brief"
        );
        assert_eq!(quoted_printable("Stra=C3=9Fe=\n 5\nok"), "Straße 5\nok");
    }
}
