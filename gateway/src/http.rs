//! HTTPS for agencies: TLS 1.3 (and 1.2 is not offered) with a required
//! client certificate checked against the federation root and CRL, HTTP/1.1
//! and HTTP/2, the versioned API of `gateway/openapi.yaml`, and errors as
//! RFC 9457 problem details.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use estafette_pki::tls;
use estafette_spec::{Evidence, MessageId, Oin, Recipient};

use serde::Serialize;

use crate::gateway::{Gateway, SubmitError, Submitted};

/// Largest request body: a SignedMessage at its limit.
pub const MAX_BODY_BYTES: usize = estafette_spec::limits::MAX_MESSAGE_BYTES;

pub const COSE: &str = "application/cose";
pub const CBOR: &str = "application/cbor";
pub const JSON: &str = "application/json";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The agency on the other end of a connection, from its certificate.
#[derive(Debug, Clone)]
pub struct Agency(pub Oin);

/// An RFC 9457 problem: a stable `type` per kind of error.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            kind: format!("urn:estafette:problem:{kind}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response()
    }
}

impl From<SubmitError> for Problem {
    fn from(e: SubmitError) -> Problem {
        let detail = e.to_string();
        match e {
            SubmitError::TooLarge { .. } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Message too large",
                detail,
            ),
            SubmitError::Invalid(m) => {
                let kind = match m.reason() {
                    estafette_spec::ReasonCode::BadSignature => "bad-signature",
                    estafette_spec::ReasonCode::TooLarge => "over-limit",
                    _ => "malformed-message",
                };
                Problem::new(StatusCode::BAD_REQUEST, kind, "Invalid message", detail)
            }
            SubmitError::UntrustedSigner(_) => Problem::new(
                StatusCode::FORBIDDEN,
                "untrusted-signer",
                "Not sealed by a trusted agency",
                detail,
            ),
            SubmitError::SenderMismatch { .. } => Problem::new(
                StatusCode::FORBIDDEN,
                "sender-mismatch",
                "Sender is not the calling agency",
                detail,
            ),
            SubmitError::Conflict(_) => Problem::new(
                StatusCode::CONFLICT,
                "message-id-conflict",
                "Message id already used",
                detail,
            ),
            SubmitError::NoRoute(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no-route",
                "Recipient's home node unreachable",
                detail,
            ),
            SubmitError::Unavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Try again later",
                detail,
            ),
        }
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(JSON) && !v.contains(COSE) && !v.contains(CBOR))
}

/// The JSON summary of a submission.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct SubmissionSummary {
    pub message_id: String,
    pub envelope_id: Option<String>,
    pub channel: String,
    /// Why paper, as a reason code (absent for digital).
    pub reason: Option<String>,
    /// Whether this repeats an earlier identical submission.
    pub repeated: bool,
    /// Why the letter cannot reach the recipient on paper either, as a
    /// reason code (`no_postal_address`); absent when nothing failed.
    #[serde(default)]
    pub failure: Option<String>,
    /// The signed SubmissionAcceptance, hex.
    pub evidence: String,
}

fn summary(s: &Submitted) -> SubmissionSummary {
    SubmissionSummary {
        message_id: s.message_id.to_string(),
        envelope_id: s.envelope_id.map(|e| e.to_string()),
        channel: s.channel.into(),
        reason: s.reason.map(|r| r.code().to_owned()),
        repeated: s.repeated,
        failure: s.failure.map(|r| r.code().to_owned()),
        evidence: estafette_spec::bytes::Hex(&s.acceptance).to_string(),
    }
}

async fn post_message(
    State(gw): State<Arc<Gateway>>,
    axum::Extension(Agency(caller)): axum::Extension<Agency>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media != COSE && media != CBOR {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Send application/cose",
            format!(
                "content type {media:?}: send the SignedMessage as application/cose or application/cbor"
            ),
        ));
    }
    // The submission runs to its end even if the agency's connection
    // drops meanwhile: what the gateway took, it finishes, and the agency's
    // retry is then answered as a repeat.
    let submitted = {
        let (gw, caller) = (gw.clone(), caller.clone());
        tokio::spawn(async move { gw.submit(&caller, &body).await })
            .await
            .map_err(|e| {
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    format!("the submission did not finish: {e}"),
                )
            })??
    };
    tracing::info!(agency = %caller, message = %submitted.message_id, channel = submitted.channel, repeated = submitted.repeated, "submission accepted");
    let location = format!("/v1/messages/{}/evidence", submitted.message_id);
    let mut response = if wants_json(&headers) {
        (StatusCode::ACCEPTED, axum::Json(summary(&submitted))).into_response()
    } else {
        (
            StatusCode::ACCEPTED,
            [(header::CONTENT_TYPE, COSE)],
            submitted.acceptance,
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// One evidence object in the JSON view.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct EvidenceView {
    pub event: String,
    pub issuer: String,
    pub issued_at: u64,
    pub issued_at_text: String,
    pub reason: Option<String>,
    pub signed: String,
}

async fn get_evidence(
    State(gw): State<Arc<Gateway>>,
    axum::Extension(Agency(caller)): axum::Extension<Agency>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let not_found = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such message",
            "no message with this id was sent by you",
        )
    };
    let message: MessageId = id.parse().map_err(|_| not_found())?;
    let chain = gw
        .evidence(&caller, &message)
        .map_err(|e| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Try again later",
                e.to_string(),
            )
        })?
        .ok_or_else(not_found)?;
    if wants_json(&headers) {
        let trust = gw.node.trust();
        let views: Vec<EvidenceView> = chain
            .iter()
            .filter_map(|b| {
                let v = Evidence::verify(b, &trust).ok()?;
                Some(EvidenceView {
                    event: format!("{:?}", v.record.event),
                    issuer: v.record.issuer.to_string(),
                    issued_at: v.record.issued_at.0,
                    issued_at_text: v.record.issued_at.to_string(),
                    reason: v.record.reason.map(|r| r.code().to_owned()),
                    signed: estafette_spec::bytes::Hex(b).to_string(),
                })
            })
            .collect();
        return Ok(axum::Json(views).into_response());
    }
    let array: Vec<serde_bytes::ByteBuf> =
        chain.into_iter().map(serde_bytes::ByteBuf::from).collect();
    Ok((
        [(header::CONTENT_TYPE, CBOR)],
        estafette_spec::cbor::to_vec(&array),
    )
        .into_response())
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Reachability {
    pub reachable: bool,
}

async fn get_reachability(
    State(gw): State<Arc<Gateway>>,
    axum::Extension(Agency(caller)): axum::Extension<Agency>,
    Path(recipient): Path<String>,
) -> Result<Response, Problem> {
    let recipient: Recipient =
        recipient
            .parse()
            .map_err(|e: estafette_spec::ids::RecipientError| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-recipient",
                    "Invalid recipient",
                    e.to_string(),
                )
            })?;
    let reachable = gw.reachable(&caller, &recipient).map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Try again later",
            e.to_string(),
        )
    })?;
    Ok(axum::Json(Reachability { reachable }).into_response())
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such resource in this API",
    )
}

/// The API routes (the caller's identity is added per connection).
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/messages/{id}/evidence", get(get_evidence))
        .route(
            "/v1/recipients/{recipient}/reachability",
            get(get_reachability),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(gateway)
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    admission: Arc<estafette_relay::https::Admission>,
    gateway: Arc<Gateway>,
) {
    let app = router(gateway.clone());
    // The agency's OIN, read once per connection from its certificate.
    let app_for = move |conn: &rustls::ServerConnection| {
        let oin = conn
            .peer_certificates()?
            .first()
            .map(tls::agency_oin)?
            .ok()?;
        Some(app.clone().layer(axum::Extension(Agency(oin))))
    };
    let node = gateway.node.clone();
    estafette_relay::https::serve_tls(
        listener,
        tls,
        admission,
        "agency",
        node.core.metrics.clone(),
        Some((node.core.trust.verifiers(), node.core.trust.revocations())),
        app_for,
    )
    .await;
}

/// Binds the agency API.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
