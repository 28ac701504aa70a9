//! The home node's HTTPS client of an OpenID provider (its discovery
//! document and its token endpoint) and of a PID provider (its status
//! lists). Bounded: one request at a time per
//! call, a deadline, and a size limit on every answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use url::Url;

/// Longest wait for a provider's answer, connection included.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from a provider.
pub const MAX_PROVIDER_ANSWER_BYTES: usize = 256 * 1024;

/// Why talking to a provider failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderHttpError {
    #[error("provider TLS roots: {0}")]
    Roots(String),
    #[error("{url}: not an https:// address with a host")]
    Address { url: String },
    #[error("{url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("{url}: no answer within {PROVIDER_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("{url}: answered {status}: {detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: the answer is not the JSON object expected: {detail}")]
    Answer { url: String, detail: String },
}

/// HTTPS to one provider, checked against the system's roots or a given CA.
#[derive(Clone)]
pub struct ProviderHttp {
    tls: Arc<rustls::ClientConfig>,
}

impl ProviderHttp {
    /// Roots from `ca_file` (PEM) if given, else the system's.
    pub fn new(ca_file: Option<&Path>) -> Result<ProviderHttp, ProviderHttpError> {
        let tls = estafette_pki::tls::web_client_config(ca_file, &[b"http/1.1"])
            .map_err(|e| ProviderHttpError::Roots(e.to_string()))?;
        Ok(ProviderHttp { tls })
    }

    /// `GET url`, a JSON object back.
    pub async fn get_json(&self, url: &Url) -> Result<serde_json::Value, ProviderHttpError> {
        self.json(url, Method::GET, None, None).await
    }

    /// `GET url` accepting `accept`, the body of a 2xx answer as text (a
    /// JWT, say).
    pub async fn get_text(&self, url: &Url, accept: &str) -> Result<String, ProviderHttpError> {
        let exchange = self.exchange(url, Method::GET, None, None, accept);
        let (status, body) = tokio::time::timeout(PROVIDER_TIMEOUT, exchange)
            .await
            .map_err(|_| ProviderHttpError::Timeout {
                url: url.to_string(),
            })??;
        if !(200..300).contains(&status) {
            return Err(ProviderHttpError::Status {
                url: url.to_string(),
                status,
                detail: "not a success".into(),
            });
        }
        String::from_utf8(body).map_err(|_| ProviderHttpError::Answer {
            url: url.to_string(),
            detail: "not UTF-8 text".into(),
        })
    }

    /// `POST url` with a form body and HTTP Basic client authentication.
    pub async fn post_form(
        &self,
        url: &Url,
        basic: (&str, &str),
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, ProviderHttpError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", encode(basic.0), encode(basic.1)),
        );
        self.json(
            url,
            Method::POST,
            Some(format!("Basic {credentials}")),
            Some(body.into_bytes()),
        )
        .await
    }

    async fn json(
        &self,
        url: &Url,
        method: Method,
        authorization: Option<String>,
        form: Option<Vec<u8>>,
    ) -> Result<serde_json::Value, ProviderHttpError> {
        let exchange = self.exchange(url, method, authorization, form, "application/json");
        let (status, body) = tokio::time::timeout(PROVIDER_TIMEOUT, exchange)
            .await
            .map_err(|_| ProviderHttpError::Timeout {
                url: url.to_string(),
            })??;
        let answer = |detail: String| ProviderHttpError::Answer {
            url: url.to_string(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| answer(format!("status {status}, {e}")))?;
        if !(200..300).contains(&status) {
            // An OAuth error answer names its error; never echo more.
            let detail = value["error"]
                .as_str()
                .unwrap_or("no error code")
                .to_owned();
            return Err(ProviderHttpError::Status {
                url: url.to_string(),
                status,
                detail: detail.chars().take(100).collect(),
            });
        }
        if !value.is_object() {
            return Err(answer("not an object".into()));
        }
        Ok(value)
    }

    async fn exchange(
        &self,
        url: &Url,
        method: Method,
        authorization: Option<String>,
        form: Option<Vec<u8>>,
        accept: &str,
    ) -> Result<(u16, Vec<u8>), ProviderHttpError> {
        let transport = |e: &dyn std::fmt::Display| ProviderHttpError::Transport {
            url: url.to_string(),
            detail: e.to_string(),
        };
        let (host, port) = match (url.scheme(), url.host_str(), url.port_or_known_default()) {
            ("https", Some(host), Some(port)) => (host.to_owned(), port),
            _ => {
                return Err(ProviderHttpError::Address {
                    url: url.to_string(),
                });
            }
        };
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tcp = tokio::net::TcpStream::connect((bare_host.as_str(), port))
            .await
            .map_err(|e| transport(&e))?;
        let name = ServerName::try_from(bare_host).map_err(|e| transport(&e))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| transport(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport(&e))?;
        tokio::spawn(connection);
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, host_header)
            .header(header::ACCEPT, accept);
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        if form.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = builder
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .map_err(|e| transport(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_PROVIDER_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| transport(&*e))?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    }
}
