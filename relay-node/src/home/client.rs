//! A client of a home node's citizen API (what tests, the demo and a
//! simple app use): HTTPS checked against the federation root (or any
//! root given), a bearer session after login, problems as typed errors.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode, header};
use estafette_spec::citizen::{ChangeEntry, PersonView, PostalAddress};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;

use crate::home::api::{LetterSummary, MandateCreated, OpenedLetter, SessionStarted};
use crate::store::AccessEntry;
use estafette_spec::citizen::{ClientView, MandateGrant};
use estafette_spec::mandate::{Mandate, MandateId};

/// Largest answer read.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CitizenClientError {
    #[error("connecting: {0}")]
    Transport(String),
    #[error("{status} {problem_type}: {detail}")]
    Problem {
        status: StatusCode,
        problem_type: String,
        detail: String,
    },
    #[error("unexpected answer: {0}")]
    BadAnswer(String),
}

impl CitizenClientError {
    /// The problem type's last part (`urn:estafette:problem:<code>`), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            CitizenClientError::Problem { problem_type, .. } => problem_type.rsplit(':').next(),
            _ => None,
        }
    }
}

/// One person's client of one home node.
pub struct CitizenClient {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    session: Option<String>,
    language: Option<String>,
    /// The local address to connect from (default: the system's choice).
    source: Option<std::net::IpAddr>,
}

impl CitizenClient {
    /// A client of the API at `addr`, whose certificate names `server_name`
    /// and chains to the root in `root_cert` (PEM).
    pub fn new(
        addr: SocketAddr,
        server_name: &str,
        root_cert: &Path,
    ) -> Result<CitizenClient, CitizenClientError> {
        let bad = |e: &dyn std::fmt::Display| CitizenClientError::Transport(e.to_string());
        let tls = estafette_pki::tls::web_client_config(Some(root_cert), &[b"http/1.1"])
            .map_err(|e| bad(&e))?;
        Ok(CitizenClient {
            addr,
            server_name: ServerName::try_from(server_name.to_owned()).map_err(|e| bad(&e))?,
            tls,
            session: None,
            language: None,
            source: None,
        })
    }

    /// Connects from `source` (one of this machine's addresses): as another
    /// client would, for tests of per-client limits.
    pub fn connect_from(&mut self, source: std::net::IpAddr) {
        self.source = Some(source);
    }

    /// Asks for answers (problem texts) in this language (`Accept-Language`).
    pub fn set_language(&mut self, language: &str) {
        self.language = Some(language.to_owned());
    }

    /// Whether a session is held.
    pub fn logged_in(&self) -> bool {
        self.session.is_some()
    }

    /// The session's token (the web inbox's session cookie holds the same).
    pub fn session_token(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// One request; gives status and body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(StatusCode, Vec<u8>), CitizenClientError> {
        let (status, _, body) = self.send_with(method, path, &[], body).await?;
        Ok((status, body))
    }

    /// One request with extra headers (a browser's cookies, say); gives
    /// status, headers and body.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        extra: &[(&str, String)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(StatusCode, axum::http::HeaderMap, Vec<u8>), CitizenClientError> {
        let transport = |e: &dyn std::fmt::Display| CitizenClientError::Transport(e.to_string());
        let tcp = match self.source {
            None => tokio::net::TcpStream::connect(self.addr).await,
            Some(source) => {
                let socket = if source.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(|e| transport(&e))?;
                socket
                    .bind(std::net::SocketAddr::new(source, 0))
                    .map_err(|e| transport(&e))?;
                socket.connect(self.addr).await
            }
        }
        .map_err(|e| transport(&e))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| transport(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport(&e))?;
        tokio::spawn(connection);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.server_name.to_str().as_ref());
        if let Some(token) = &self.session {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(language) = &self.language {
            builder = builder.header(header::ACCEPT_LANGUAGE, language.as_str());
        }
        for (name, value) in extra {
            builder = builder.header(*name, value.as_str());
        }
        let bytes = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => vec![],
        };
        let request = builder
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| transport(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| transport(&e))?
            .to_bytes()
            .to_vec();
        Ok((status, headers, body))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<T, CitizenClientError> {
        let (status, body) = self.send(method, path, body).await?;
        if !status.is_success() {
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(CitizenClientError::Problem {
                status,
                problem_type: problem["type"].as_str().unwrap_or("").to_owned(),
                detail: problem["detail"].as_str().unwrap_or("").to_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| CitizenClientError::BadAnswer(e.to_string()))
    }

    fn json(value: serde_json::Value) -> Option<(&'static str, Vec<u8>)> {
        Some(("application/json", value.to_string().into_bytes()))
    }

    /// Logs in with an identity assertion; keeps the session.
    pub async fn login(&mut self, assertion: &[u8]) -> Result<PersonView, CitizenClientError> {
        self.login_as("application/cose", assertion).await
    }

    /// Logs in with an OpenID Connect ID token; keeps the session.
    pub async fn login_with_id_token(
        &mut self,
        token: &str,
    ) -> Result<PersonView, CitizenClientError> {
        self.login_as("application/jwt", token.as_bytes()).await
    }

    async fn login_as(
        &mut self,
        content_type: &str,
        proof: &[u8],
    ) -> Result<PersonView, CitizenClientError> {
        self.session = None;
        let started: SessionStarted = self
            .call(
                Method::POST,
                "/v1/session",
                Some((content_type, proof.to_vec())),
            )
            .await?;
        self.session = Some(started.session);
        Ok(started.person)
    }

    /// A fresh assertion for the same session (changes need one of at most five minutes).
    pub async fn renew(&self, assertion: &[u8]) -> Result<PersonView, CitizenClientError> {
        self.call(
            Method::POST,
            "/v1/session/renew",
            Some(("application/cose", assertion.to_vec())),
        )
        .await
    }

    /// Ends the session at the node. The client keeps the token, so that
    /// what the node does with an ended session's token can be seen.
    pub async fn log_out(&self) -> Result<(), CitizenClientError> {
        let (status, body) = self.send(Method::DELETE, "/v1/session", None).await?;
        if status != StatusCode::NO_CONTENT {
            return Err(CitizenClientError::BadAnswer(format!(
                "logging out answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(())
    }

    pub async fn me(&self) -> Result<PersonView, CitizenClientError> {
        self.call(Method::GET, "/v1/me", None).await
    }

    pub async fn register(
        &self,
        language: &str,
        postal_address: Option<&PostalAddress>,
    ) -> Result<PersonView, CitizenClientError> {
        let body = serde_json::json!({ "language": language, "postal_address": postal_address });
        self.call(Method::POST, "/v1/register", Self::json(body))
            .await
    }

    pub async fn add_email(&self, address: &str) -> Result<PersonView, CitizenClientError> {
        let body = serde_json::json!({ "address": address });
        self.call(Method::POST, "/v1/email", Self::json(body)).await
    }

    /// Confirms an e-mail address with the token from its link (no session needed).
    pub async fn verify_email(&self, token: &str) -> Result<PersonView, CitizenClientError> {
        let body = serde_json::json!({ "token": token });
        self.call(Method::POST, "/v1/email/verify", Self::json(body))
            .await
    }

    pub async fn activate(&self) -> Result<PersonView, CitizenClientError> {
        self.call(Method::POST, "/v1/activate", None).await
    }

    pub async fn set_consent(
        &self,
        sender: &str,
        digital: bool,
    ) -> Result<PersonView, CitizenClientError> {
        let body = serde_json::json!({ "digital": digital });
        self.call(
            Method::PUT,
            &format!("/v1/consent/{sender}"),
            Self::json(body),
        )
        .await
    }

    /// Links the person's other identity (its assertion, for this node).
    pub async fn link(&self, other_assertion: &[u8]) -> Result<PersonView, CitizenClientError> {
        self.call(
            Method::POST,
            "/v1/link",
            Some(("application/cose", other_assertion.to_vec())),
        )
        .await
    }

    /// Links the identity of another login's ID token.
    pub async fn link_id_token(&self, token: &str) -> Result<PersonView, CitizenClientError> {
        self.call(
            Method::POST,
            "/v1/link",
            Some(("application/jwt", token.as_bytes().to_vec())),
        )
        .await
    }

    /// Grants a voluntary mandate (the holder); gives its id.
    pub async fn grant_mandate(
        &self,
        grant: &MandateGrant,
    ) -> Result<MandateId, CitizenClientError> {
        let body = serde_json::to_value(grant)
            .map_err(|e| CitizenClientError::BadAnswer(e.to_string()))?;
        let created: MandateCreated = self
            .call(Method::POST, "/v1/mandates", Self::json(body))
            .await?;
        Ok(created.id)
    }

    /// Accepts a mandate (the representative).
    pub async fn accept_mandate(&self, id: &MandateId) -> Result<MandateId, CitizenClientError> {
        let created: MandateCreated = self
            .call(Method::POST, &format!("/v1/mandates/{id}/accept"), None)
            .await?;
        Ok(created.id)
    }

    /// Revokes a mandate (the holder, or the representative stepping down).
    pub async fn revoke_mandate(&self, id: &MandateId) -> Result<MandateId, CitizenClientError> {
        let created: MandateCreated = self
            .call(Method::DELETE, &format!("/v1/mandates/{id}"), None)
            .await?;
        Ok(created.id)
    }

    /// Registers a court's attestation of legal representation (the representative).
    pub async fn register_legal_representation(
        &self,
        attestation: &[u8],
        correspondence: bool,
        office_address: Option<&PostalAddress>,
    ) -> Result<MandateId, CitizenClientError> {
        let hex: String = attestation.iter().map(|b| format!("{b:02x}")).collect();
        let body = serde_json::json!({
            "attestation": hex, "correspondence": correspondence, "office_address": office_address
        });
        let created: MandateCreated = self
            .call(Method::POST, "/v1/legal-representations", Self::json(body))
            .await?;
        Ok(created.id)
    }

    pub async fn mandates(&self) -> Result<Vec<Mandate>, CitizenClientError> {
        self.call(Method::GET, "/v1/mandates", None).await
    }

    pub async fn clients(&self) -> Result<Vec<ClientView>, CitizenClientError> {
        self.call(Method::GET, "/v1/clients", None).await
    }

    /// A client's letters within the mandate's scope (the representative).
    pub async fn client_letters(
        &self,
        mandate: &MandateId,
    ) -> Result<Vec<LetterSummary>, CitizenClientError> {
        self.call(Method::GET, &format!("/v1/clients/{mandate}/letters"), None)
            .await
    }

    /// Opens a client's letter (ContentHandover evidence naming the representative).
    pub async fn open_client_letter(
        &self,
        mandate: &MandateId,
        envelope_id: &str,
    ) -> Result<OpenedLetter, CitizenClientError> {
        self.call(
            Method::GET,
            &format!("/v1/clients/{mandate}/letters/{envelope_id}"),
            None,
        )
        .await
    }

    /// Sets a client's consent for a sender (a representative with the manage right).
    pub async fn set_client_consent(
        &self,
        mandate: &MandateId,
        sender: &str,
        digital: bool,
    ) -> Result<MandateId, CitizenClientError> {
        let body = serde_json::json!({ "digital": digital });
        let created: MandateCreated = self
            .call(
                Method::PUT,
                &format!("/v1/clients/{mandate}/consent/{sender}"),
                Self::json(body),
            )
            .await?;
        Ok(created.id)
    }

    /// The holder's access log.
    pub async fn access_log(&self) -> Result<Vec<AccessEntry>, CitizenClientError> {
        self.call(Method::GET, "/v1/access-log", None).await
    }

    /// Chooses the language of the person's e-mails and paper letters
    /// (`POST /v1/language`).
    pub async fn choose_language(&self, language: &str) -> Result<PersonView, CitizenClientError> {
        self.call(
            Method::POST,
            "/v1/language",
            Self::json(serde_json::json!({ "language": language })),
        )
        .await
    }

    pub async fn all_paper(&self) -> Result<PersonView, CitizenClientError> {
        self.call(Method::POST, "/v1/all-paper", None).await
    }

    pub async fn history(&self) -> Result<Vec<ChangeEntry>, CitizenClientError> {
        self.call(Method::GET, "/v1/history", None).await
    }

    /// Every letter of the inbox, newest first, a page at a time.
    pub async fn letters(&self) -> Result<Vec<LetterSummary>, CitizenClientError> {
        use crate::home::api::MAX_LETTERS_PAGE;
        let mut all = Vec::new();
        let mut path = format!("/v1/letters?limit={MAX_LETTERS_PAGE}");
        loop {
            let page: Vec<LetterSummary> = self.call(Method::GET, &path, None).await?;
            let full = page.len() == MAX_LETTERS_PAGE;
            // The next page starts below the last letter of this one.
            let next = page.last().map(|l| {
                format!(
                    "/v1/letters?limit={MAX_LETTERS_PAGE}&before={}",
                    crate::store::InboxCursor {
                        received_at: l.received_at,
                        envelope: l.envelope_id,
                    }
                )
            });
            all.extend(page);
            match next {
                Some(next) if full => path = next,
                _ => return Ok(all),
            }
        }
    }

    pub async fn open(&self, envelope_id: &str) -> Result<OpenedLetter, CitizenClientError> {
        self.call(Method::GET, &format!("/v1/letters/{envelope_id}"), None)
            .await
    }
}
