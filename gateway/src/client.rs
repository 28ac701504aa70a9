//! The agency's client of the gateway API: HTTPS with the agency's client
//! certificate (what `estafette-agency` and the demo use).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::http::{CBOR, COSE, JSON, SubmissionSummary};

/// Largest answer read from the gateway.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// What went wrong talking to the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("connecting to the gateway: {0}")]
    Connect(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("the gateway answered {status}: {detail}")]
    Refused {
        status: StatusCode,
        problem_type: String,
        detail: String,
    },
    #[error("the gateway's answer is not what the API promises: {0}")]
    BadAnswer(String),
}

impl ClientError {
    /// Whether sending the same bytes again may succeed: the connection
    /// failed (before or after the gateway had the request), or the
    /// gateway said it is busy or unavailable. A submission sent again is
    /// safe: the gateway answers a known message id with the answer it
    /// gave the first time (`repeated`), and never makes a second letter.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect(_) | ClientError::Http(_) => true,
            ClientError::Refused { status, .. } => {
                *status == StatusCode::SERVICE_UNAVAILABLE
                    || *status == StatusCode::BAD_GATEWAY
                    || *status == StatusCode::GATEWAY_TIMEOUT
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            ClientError::Tls(_) | ClientError::BadAnswer(_) => false,
        }
    }
}

/// How often and how long a client tries again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub first_delay: std::time::Duration,
    /// Longest wait between two attempts.
    pub max_delay: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_delay: std::time::Duration::from_millis(500),
            max_delay: std::time::Duration::from_secs(8),
        }
    }
}

/// A connection-per-request HTTPS client for one agency.
pub struct AgencyClient {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
}

/// An error with all its sources, for messages that name the real cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// One kept-alive connection to the gateway.
pub struct AgencyConnection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    connection: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    host: String,
}

impl AgencyConnection {
    /// Sends one request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Answer, ClientError> {
        if let Err(e) = self.sender.ready().await {
            return Err(self.cause(e).await);
        }
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.host.as_str())
            .header(header::ACCEPT, accept);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = match self.sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => return Err(self.cause(e).await),
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    /// The real cause of a failed request: the connection's own error (a
    /// TLS alert from the gateway, say) when it has one.
    async fn cause(&mut self, e: hyper::Error) -> ClientError {
        let waited =
            tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.connection).await;
        ClientError::Http(match waited {
            Ok(Ok(Err(conn_error))) => error_chain(&conn_error),
            _ => e.to_string(),
        })
    }

    /// Submits a SignedMessage; gives the signed SubmissionAcceptance.
    pub async fn submit(&mut self, signed: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let answer = self
            .request(Method::POST, "/v1/messages", Some(COSE), COSE, signed)
            .await?;
        answer.expect(StatusCode::ACCEPTED)
    }
}

/// Submissions over one kept-alive connection, opened again after a
/// failure; each letter is sent again, the same bytes, after a failure that
/// [may pass](ClientError::is_retryable), per the session's policy. The
/// gateway answers a letter it already has with the answer it gave the
/// first time, so a letter sent again is never a second letter.
pub struct AgencySession<'a> {
    client: &'a AgencyClient,
    connection: Option<AgencyConnection>,
    policy: RetryPolicy,
}

impl AgencySession<'_> {
    /// Submits a SignedMessage, sending it again after failures that may
    /// pass; gives the JSON summary. `on_retry` hears of each failure
    /// before the next attempt.
    pub async fn submit(
        &mut self,
        signed: Vec<u8>,
        mut on_retry: impl FnMut(u32, &ClientError, std::time::Duration),
    ) -> Result<SubmissionSummary, ClientError> {
        let mut delay = self.policy.first_delay;
        let mut attempt = 1;
        loop {
            match self.submit_once(signed.clone()).await {
                Err(e) if e.is_retryable() && attempt < self.policy.attempts.max(1) => {
                    // The connection may be half dead: the next attempt opens a new one.
                    self.connection = None;
                    on_retry(attempt, &e, delay);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.policy.max_delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn submit_once(&mut self, signed: Vec<u8>) -> Result<SubmissionSummary, ClientError> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            empty => empty.insert(self.client.connect().await?),
        };
        let answer = connection
            .request(Method::POST, "/v1/messages", Some(COSE), JSON, signed)
            .await?;
        answer.summary()
    }
}

impl Answer {
    /// A submission's JSON summary, if the gateway accepted it.
    fn summary(self) -> Result<SubmissionSummary, ClientError> {
        let body = self.expect(StatusCode::ACCEPTED)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    /// The body, if the status is `expected`; else the problem the gateway named.
    pub fn expect(self, expected: StatusCode) -> Result<Vec<u8>, ClientError> {
        if self.status == expected {
            Ok(self.body)
        } else {
            Err(AgencyClient::refused(&self))
        }
    }
}

/// An answer of the API.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl AgencyClient {
    pub fn new(
        addr: SocketAddr,
        server_name: &str,
        root: &CertificateDer<'static>,
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<AgencyClient, ClientError> {
        let config = estafette_pki::tls::client_config(root, cert_chain, key, &[b"http/1.1"])
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(AgencyClient {
            addr,
            server_name,
            tls: config,
        })
    }

    /// A client for the agency whose files (`tls.crt.pem`, `tls.key.pem`) are
    /// in `agency_dir`, as made by `estafette-pki issue agency`.
    pub fn for_agency_dir(
        addr: SocketAddr,
        server_name: &str,
        root_cert: &std::path::Path,
        agency_dir: &std::path::Path,
    ) -> Result<AgencyClient, ClientError> {
        let load = |e: estafette_pki::PkiError| ClientError::Tls(e.to_string());
        let root = estafette_pki::tls::load_certs(root_cert)
            .map_err(load)?
            .remove(0);
        AgencyClient::new(
            addr,
            server_name,
            &root,
            estafette_pki::tls::load_certs(&agency_dir.join("tls.crt.pem")).map_err(load)?,
            estafette_pki::tls::load_private_key(&agency_dir.join("tls.key.pem")).map_err(load)?,
        )
    }

    /// Opens a kept-alive HTTP/1.1 connection for many requests.
    pub async fn connect(&self) -> Result<AgencyConnection, ClientError> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        // The connection's own error (a TLS alert from the gateway, say)
        // explains a failed request better than the request's error does.
        let connection = tokio::spawn(connection);
        Ok(AgencyConnection {
            sender,
            connection,
            host: self.server_name.to_str().into_owned(),
        })
    }

    /// Sends one request on a new connection and reads the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Answer, ClientError> {
        self.connect()
            .await?
            .request(method, path, content_type, accept, body)
            .await
    }

    fn refused(answer: &Answer) -> ClientError {
        let problem: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        ClientError::Refused {
            status: answer.status,
            problem_type: problem["type"].as_str().unwrap_or("").to_owned(),
            detail: problem["detail"].as_str().unwrap_or("").to_owned(),
        }
    }

    /// Submits a SignedMessage; gives the signed SubmissionAcceptance.
    pub async fn submit(&self, signed: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let answer = self
            .request(Method::POST, "/v1/messages", Some(COSE), COSE, signed)
            .await?;
        answer.expect(StatusCode::ACCEPTED)
    }

    /// As [`Self::submit_summary`], sending the same bytes again after a
    /// failure that [may pass](ClientError::is_retryable), per `policy`.
    /// `on_retry` hears of each failure before the next attempt.
    pub async fn submit_summary_retrying(
        &self,
        signed: Vec<u8>,
        policy: RetryPolicy,
        on_retry: impl FnMut(u32, &ClientError, std::time::Duration),
    ) -> Result<SubmissionSummary, ClientError> {
        self.session(policy).submit(signed, on_retry).await
    }

    /// A session for many submissions over one kept-alive connection, as
    /// an agency's batch sends them: the gateway admits only so many new
    /// connections a second from one address (`new_per_source_per_s`), so
    /// a connection per letter would be slowed down to that rate.
    pub fn session(&self, policy: RetryPolicy) -> AgencySession<'_> {
        AgencySession {
            client: self,
            connection: None,
            policy,
        }
    }

    /// Submits a SignedMessage; gives the JSON summary (channel and why).
    pub async fn submit_summary(&self, signed: Vec<u8>) -> Result<SubmissionSummary, ClientError> {
        let answer = self
            .request(Method::POST, "/v1/messages", Some(COSE), JSON, signed)
            .await?;
        answer.summary()
    }

    /// All evidence so far for one of our messages (signed objects, chain order).
    pub async fn evidence(
        &self,
        message: &estafette_spec::MessageId,
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let answer = self
            .request(
                Method::GET,
                &format!("/v1/messages/{message}/evidence"),
                None,
                CBOR,
                vec![],
            )
            .await?;
        let body = answer.expect(StatusCode::OK)?;
        let items: Vec<serde_bytes::ByteBuf> =
            estafette_spec::cbor::from_slice(&body, MAX_ANSWER_BYTES)
                .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        Ok(items.into_iter().map(|b| b.into_vec()).collect())
    }

    /// Whether a recipient receives our letters digitally.
    pub async fn reachable(
        &self,
        recipient: &estafette_spec::Recipient,
    ) -> Result<bool, ClientError> {
        let answer = self
            .request(
                Method::GET,
                &format!("/v1/recipients/{recipient}/reachability"),
                None,
                JSON,
                vec![],
            )
            .await?;
        let body = answer.expect(StatusCode::OK)?;
        let r: crate::http::Reachability =
            serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        Ok(r.reachable)
    }
}

/// A readable timeline of a message's evidence, every receipt checked
/// offline against the trust list (each record in its node's log, under a
/// checkpoint signed by that node). Returns the lines and whether all verify.
pub fn timeline(chain: &[Vec<u8>], trust: &estafette_spec::TrustList) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut all_ok = true;
    let checkpoints = estafette_spec::receipt::CheckpointCache::new();
    for bytes in chain {
        match estafette_spec::Evidence::verify_with(bytes, trust, &checkpoints) {
            Ok(v) => {
                let r = &v.record;
                let mut line = format!(
                    "{}  {:<31} by {:<22} receipt ok (record {} of {} in its log)",
                    r.issued_at,
                    format!("{:?}", r.event),
                    r.issuer.as_str(),
                    v.log.leaf_index + 1,
                    v.log.tree_size
                );
                if let Some(reason) = r.reason {
                    line.push_str(&format!("  reason: {}", reason.code()));
                }
                if let Some(actor) = &r.actor {
                    line.push_str(&format!("  opened by: {:?}", actor.role));
                }
                lines.push(line);
            }
            Err(e) => {
                all_ok = false;
                lines.push(format!("NOT VALID: {e}"));
            }
        }
    }
    match estafette_spec::Evidence::verify_chain(chain, trust) {
        Ok(_) => lines.push(format!("chain of {} linked records verified", chain.len())),
        Err(e) => {
            all_ok = false;
            lines.push(format!("chain NOT VALID: {e}"));
        }
    }
    (lines, all_ok)
}
