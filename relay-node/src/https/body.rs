//! A request's body under the listener's limits: its announced and actual
//! size, its rate, and its share of the listener's memory budget; and the
//! answers that say which limit was hit.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::admission::{Admission, Busy};
use super::problem;

/// What was wrong with a request body, seen by [`GuardedBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFault {
    TooLarge { limit: usize },
    TooSlow { min_rate: u64 },
    TooLate { timeout: Duration },
    Busy,
}

impl BodyFault {
    fn problem(self) -> Response<axum::body::Body> {
        match self {
            BodyFault::TooLarge { limit } => problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                &format!("the request body is over the limit of {limit} bytes"),
            ),
            BodyFault::TooSlow { min_rate } => problem(
                StatusCode::REQUEST_TIMEOUT,
                "body-too-slow",
                &format!(
                    "the request body arrived slower than {min_rate} bytes per second; send it again faster"
                ),
            ),
            BodyFault::TooLate { timeout } => problem(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                &format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs()
                ),
            ),
            BodyFault::Busy => busy(),
        }
    }
}

fn busy() -> Response<axum::body::Body> {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the server is receiving too much at once; try again in a moment",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A request body that enforces the size limit, the deadline and the
/// minimum rate, and takes room in the body budget as bytes arrive (when
/// no length was announced).
struct GuardedBody {
    /// `None` once handed to the lingering drain.
    inner: Option<Incoming>,
    /// The whole body arrived.
    finished: bool,
    received: usize,
    limit: usize,
    started: Instant,
    deadline: Instant,
    min_rate: u64,
    grace: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Bytes already reserved in the budget (announced length, or grown).
    reserved: usize,
    budget: Arc<Semaphore>,
    permits: Arc<Mutex<Vec<OwnedSemaphorePermit>>>,
    fault: Arc<Mutex<Option<BodyFault>>>,
}

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body refused: {0:?}")]
    Refused(BodyFault),
    #[error("request body: {0}")]
    Transport(#[from] hyper::Error),
}

impl GuardedBody {
    /// When the body is too slow if nothing more arrives.
    fn next_check(&self) -> Instant {
        let needed = Duration::from_secs_f64(self.received as f64 / self.min_rate.max(1) as f64);
        (self.started + self.grace.max(needed)).min(self.deadline)
    }

    fn refuse(
        &mut self,
        fault: BodyFault,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        if let Ok(mut f) = self.fault.lock() {
            f.get_or_insert(fault);
        }
        Poll::Ready(Some(Err(BodyError::Refused(fault))))
    }
}

/// Budget is taken in steps of this size for bodies without a length.
const BUDGET_STEP_BYTES: usize = 64 * 1024;

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len();
                    if this.received > this.limit {
                        let limit = this.limit;
                        return this.refuse(BodyFault::TooLarge { limit });
                    }
                    while this.received > this.reserved {
                        match this
                            .budget
                            .clone()
                            .try_acquire_many_owned(BUDGET_STEP_BYTES as u32)
                        {
                            Ok(permit) => {
                                this.reserved += BUDGET_STEP_BYTES;
                                if let Ok(mut p) = this.permits.lock() {
                                    p.push(permit);
                                }
                            }
                            Err(_) => return this.refuse(BodyFault::Busy),
                        }
                    }
                    let next = this.next_check();
                    this.timer.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Transport(e)))),
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    let now = Instant::now();
                    if now >= this.deadline {
                        let timeout = this.deadline - this.started;
                        return this.refuse(BodyFault::TooLate { timeout });
                    }
                    if now >= this.next_check() {
                        let min_rate = this.min_rate;
                        return this.refuse(BodyFault::TooSlow { min_rate });
                    }
                    let next = this.next_check();
                    this.timer.as_mut().reset(next);
                    // Register the new deadline with the waker.
                    let _ = this.timer.as_mut().poll(cx);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|i| i.size_hint())
            .unwrap_or_else(|| http_body::SizeHint::with_exact(0))
    }
}

/// After an answer made without reading the whole body (a 413 at once, a
/// 415, a 404), the rest of the body is read and thrown away for at most
/// this long and this much, as web servers do ("lingering close"): a client
/// still sending then reads the answer instead of a connection reset.
pub const LINGER: Duration = Duration::from_secs(10);
pub const LINGER_MAX_BYTES: usize = 64 * 1024 * 1024;

impl Drop for GuardedBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if self.finished || http_body::Body::is_end_stream(&inner) {
            return;
        }
        linger(inner);
    }
}

/// Reads and throws away the rest of a body, within [`LINGER`] and
/// [`LINGER_MAX_BYTES`].
fn linger(mut body: Incoming) {
    if http_body::Body::is_end_stream(&body) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        use http_body_util::BodyExt;
        let drain = async {
            let mut thrown_away = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                thrown_away += frame.data_ref().map_or(0, |d| d.len());
                if thrown_away > LINGER_MAX_BYTES {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

/// The announced body length, if any.
fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An error answer that is not already a problem (axum's own rejections
/// are plain text) becomes one, with the same status and its text. An
/// answer a handler made in a format of its own stays as it is: a problem,
/// a web page, or JSON (an OAuth error answer to a wallet, RFC 6749 §5.2).
async fn as_problem(response: Response<axum::body::Body>) -> Response<axum::body::Body> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let own_format = ["application/problem+json", "text/html", "application/json"];
    if own_format.iter().any(|f| content_type.starts_with(f)) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let detail = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text.trim().to_owned()
    };
    let code = status
        .canonical_reason()
        .unwrap_or("error")
        .to_lowercase()
        .replace(' ', "-");
    problem(status, &code, &detail)
}

/// One request through the admission rules, then the routes.
pub(super) async fn serve_request(
    request: Request<Incoming>,
    app: axum::Router,
    admission: Arc<Admission>,
    id: u64,
    peer: std::net::SocketAddr,
) -> Result<Response<axum::body::Body>, std::convert::Infallible> {
    use tower::ServiceExt;
    let _busy = Busy::new(admission.clone(), id);
    let limits = &admission.limits;
    let announced = content_length(request.headers());
    if let Some(n) = announced
        && n > limits.max_body_bytes as u64
    {
        linger(request.into_body());
        return Ok(problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            &format!(
                "the request body is {n} bytes, over the limit of {} bytes",
                limits.max_body_bytes
            ),
        ));
    }
    let permits = Arc::new(Mutex::new(Vec::new()));
    let mut reserved = 0;
    if let Some(n) = announced.filter(|n| *n > 0) {
        let n = n as usize;
        match tokio::time::timeout(
            limits.body_budget_wait,
            admission.budget.clone().acquire_many_owned(n as u32),
        )
        .await
        {
            Ok(Ok(permit)) => {
                reserved = n;
                if let Ok(mut p) = permits.lock() {
                    p.push(permit);
                }
            }
            _ => {
                linger(request.into_body());
                return Ok(busy());
            }
        }
    }
    let fault = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let (mut parts, incoming) = request.into_parts();
    // Handlers may ask who is calling (per-client rate limits).
    parts.extensions.insert(axum::extract::ConnectInfo(peer));
    let mut body = GuardedBody {
        inner: Some(incoming),
        finished: false,
        received: 0,
        limit: limits.max_body_bytes,
        started,
        deadline: started + limits.body_timeout,
        min_rate: limits.min_body_rate_bytes_per_s,
        grace: limits.body_grace,
        timer: Box::pin(tokio::time::sleep_until(started + limits.body_grace)),
        reserved,
        budget: admission.budget.clone(),
        permits: permits.clone(),
        fault: fault.clone(),
    };
    let first_check = body.next_check();
    body.timer.as_mut().reset(first_check);
    let request = Request::from_parts(parts, axum::body::Body::new(body));
    let response = match app.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let fault = fault.lock().ok().and_then(|f| *f);
    let response = match fault {
        Some(fault) => fault.problem(),
        None => as_problem(response).await,
    };
    // The room in the budget is held until the answer is made: the body's
    // bytes live that long.
    drop(permits);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response<axum::body::Body>) -> (String, String) {
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap_or_default();
        (content_type, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn answer(status: StatusCode, content_type: &str, body: &str) -> Response<axum::body::Body> {
        let mut r = Response::new(axum::body::Body::from(body.to_owned()));
        *r.status_mut() = status;
        if let Ok(v) = header::HeaderValue::from_str(content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    }

    #[tokio::test]
    async fn plain_text_errors_become_problems_and_json_errors_stay() {
        let plain = answer(StatusCode::BAD_REQUEST, "text/plain", "Failed to parse");
        let (content_type, body) = body_of(as_problem(plain).await).await;
        assert_eq!(content_type, "application/problem+json");
        assert!(body.contains("Failed to parse"), "{body}");
        // An OAuth error answer keeps its own shape for the wallet.
        let oauth = r#"{"error":"access_denied","error_description":"why"}"#;
        let json = answer(StatusCode::BAD_REQUEST, "application/json", oauth);
        assert_eq!(body_of(as_problem(json).await).await.1, oauth);
        let page = answer(
            StatusCode::FORBIDDEN,
            "text/html; charset=utf-8",
            "<p>no</p>",
        );
        assert_eq!(body_of(as_problem(page).await).await.1, "<p>no</p>");
    }
}
