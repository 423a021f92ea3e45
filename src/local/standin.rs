//! A local stand-in for HighLevel's "Start CSV Finalize" endpoint, for development and tests
//! (in the spirit of stripe-mock and moto).
//!
//! It answers `PATCH /social-media-posting/{locationId}/csv/{csvId}` as HighLevel's reference
//! documents it: 200 `CsvPostStatusResponseDTO`, 400 `BadRequestDTO` (wrong `Version`, or a
//! csvId starting with `unknown`), 401 `UnauthorizedDTO` (no bearer token, or not the one
//! required), 422 `UnprocessableDTO` (a body that is not an object with a string `userId`).
//! [`Faults`] make it misbehave on purpose: 429 with `Retry-After`, 5xx, slowness.
//! Every request is recorded, its bearer token redacted.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::server::{serve_connections, ShutdownHandle};

/// The `Version` header value the stand-in accepts.
pub const ACCEPTED_VERSION: &str = "2021-07-28";

/// Deliberate misbehaviour.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer the first N finalize requests with `fault_status` instead of the real answer.
    pub fail_first: u64,
    /// Status for those failures (default 429).
    pub fault_status: Option<u16>,
    /// `Retry-After` to send with them, verbatim (seconds or an HTTP date).
    pub retry_after: Option<String>,
    /// Wait this long before answering any finalize request.
    pub delay: Duration,
    /// Fail this share (0.0–1.0) of finalize requests at random with `fault_status`.
    pub random_fault_rate: f64,
}

/// How the stand-in behaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// If set, only this bearer token is accepted; otherwise any non-empty token.
    pub required_token: Option<String>,
    /// Deliberate faults.
    pub faults: Faults,
    /// Keep only counts, not every request (for long load runs).
    pub forget_requests: bool,
}

/// One request as the stand-in received it, token redacted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Received {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, lower-case names; `authorization` shows `Bearer [redacted]`.
    pub headers: BTreeMap<String, String>,
    /// The body, as JSON when it parses, else as text.
    pub body: Value,
    /// The status the stand-in answered with.
    pub status: u16,
}

struct State {
    behaviour: Behaviour,
    received: Mutex<Vec<Received>>,
    finalize_count: AtomicU64,
    finalized: AtomicU64,
    log_to_stdout: bool,
}

/// A running stand-in.
pub struct StandIn {
    address: SocketAddr,
    state: Arc<State>,
    shutdown: ShutdownHandle,
}

impl StandIn {
    /// Starts the stand-in on `address` (port 0 picks a free port).
    pub async fn start(address: SocketAddr, behaviour: Behaviour) -> std::io::Result<Self> {
        Self::start_with(address, behaviour, false).await
    }

    /// Starts it and prints one JSON line per request to stdout (the `standin` command).
    pub async fn start_logging(address: SocketAddr, behaviour: Behaviour) -> std::io::Result<Self> {
        Self::start_with(address, behaviour, true).await
    }

    async fn start_with(
        address: SocketAddr,
        behaviour: Behaviour,
        log_to_stdout: bool,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(State {
            behaviour,
            received: Mutex::new(Vec::new()),
            finalize_count: AtomicU64::new(0),
            finalized: AtomicU64::new(0),
            log_to_stdout,
        });
        let shared = Arc::clone(&state);
        let shutdown = serve_connections(listener, move |request| {
            let state = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(answer(&state, request).await) }
        });
        Ok(Self {
            address,
            state,
            shutdown,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`, ready for `GHL_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Requests answered 200 so far (imports finalized).
    pub fn finalized(&self) -> u64 {
        self.state.finalized.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shutdown.connections()
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Stops accepting connections and waits (briefly) for open ones to finish.
    pub async fn stop(self) {
        self.shutdown.shutdown(Duration::from_secs(2)).await;
    }
}

async fn answer(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let shown = if name == http::header::AUTHORIZATION {
                redact_authorization(value.as_bytes())
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect();
    let body_value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));

    let (status, reply, extra) = match finalize_target(&parts.method, parts.uri.path()) {
        Some(csv_id) => {
            let n = state.finalize_count.fetch_add(1, Ordering::SeqCst);
            if !state.behaviour.faults.delay.is_zero() {
                tokio::time::sleep(state.behaviour.faults.delay).await;
            }
            match fault(&state.behaviour.faults, n) {
                Some((status, retry_after)) => (
                    status,
                    json!({"statusCode": status, "message": "simulated fault"}),
                    retry_after,
                ),
                None => {
                    let (status, body) = finalize(&state.behaviour, &parts.headers, &bytes, csv_id);
                    (status, body, None)
                }
            }
        }
        None => (
            404,
            json!({"statusCode": 404, "message": format!("Cannot {} {}", parts.method, parts.uri.path())}),
            None,
        ),
    };
    let received = Received {
        method: parts.method.to_string(),
        path,
        headers,
        body: body_value,
        status,
    };
    if state.log_to_stdout {
        println!("{}", json!({"standin": "request", "received": received}));
    }
    if status == 200 {
        state.finalized.fetch_add(1, Ordering::SeqCst);
    }
    if !state.behaviour.forget_requests {
        if let Ok(mut all) = state.received.lock() {
            all.push(received);
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(value) = extra.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, value);
    }
    response
}

/// The csvId when the request is a finalize call.
fn finalize_target<'a>(method: &Method, path: &'a str) -> Option<&'a str> {
    if method != Method::PATCH {
        return None;
    }
    match path
        .trim_start_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["social-media-posting", location, "csv", csv]
            if !location.is_empty() && !csv.is_empty() =>
        {
            Some(csv)
        }
        _ => None,
    }
}

fn fault(faults: &Faults, n: u64) -> Option<(u16, Option<String>)> {
    let status = faults.fault_status.unwrap_or(429);
    let random_hit = faults.random_fault_rate > 0.0
        && (crate::highlevel::retry::random_u64() % 10_000) as f64 / 10_000.0
            < faults.random_fault_rate;
    (n < faults.fail_first || random_hit).then(|| (status, faults.retry_after.clone()))
}

/// HighLevel's documented answers for the finalize call.
fn finalize(
    behaviour: &Behaviour,
    headers: &http::HeaderMap,
    body: &[u8],
    csv_id: &str,
) -> (u16, Value) {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let authorized = match (&behaviour.required_token, bearer) {
        (_, None) => false,
        (Some(required), Some(token)) => required == token,
        (None, Some(_)) => true,
    };
    if !authorized {
        return (
            401,
            json!({"statusCode": 401, "message": "Invalid JWT", "error": "Unauthorized"}),
        );
    }
    if headers.get("version").and_then(|v| v.to_str().ok()) != Some(ACCEPTED_VERSION) {
        return (
            400,
            json!({"statusCode": 400, "message": "Version header is missing or not supported"}),
        );
    }
    let valid_body = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object.get("userId").is_none_or(Value::is_string),
        _ => false,
    };
    if !valid_body {
        return (
            422,
            json!({"statusCode": 422, "message": ["userId must be a string"], "error": "Unprocessable Entity"}),
        );
    }
    if csv_id.starts_with("unknown") {
        return (400, json!({"statusCode": 400, "message": "CSV not found"}));
    }
    (
        200,
        json!({"success": true, "statusCode": 200, "message": "CSV finalize started"}),
    )
}

fn redact_authorization(value: &[u8]) -> String {
    match value.split_at_checked(7) {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case(b"bearer ") => "Bearer [redacted]".into(),
        _ => "[redacted]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    const GOOD: [(&str, &str); 2] = [("authorization", "Bearer t"), ("version", "2021-07-28")];

    #[test]
    fn answers_as_the_reference_documents() {
        let b = Behaviour::default();
        assert_eq!(finalize(&b, &headers(&GOOD), b"{}", "c1").0, 200);
        assert_eq!(
            finalize(&b, &headers(&GOOD), br#"{"userId":"u"}"#, "c1").0,
            200
        );
        assert_eq!(finalize(&b, &headers(&GOOD[1..]), b"{}", "c1").0, 401);
        assert_eq!(finalize(&b, &headers(&GOOD[..1]), b"{}", "c1").0, 400);
        assert_eq!(
            finalize(&b, &headers(&GOOD), br#"{"userId":5}"#, "c1").0,
            422
        );
        assert_eq!(finalize(&b, &headers(&GOOD), b"[]", "c1").0, 422);
        assert_eq!(finalize(&b, &headers(&GOOD), b"{}", "unknown-1").0, 400);
    }

    #[test]
    fn accepts_only_the_required_token_when_one_is_set() {
        let b = Behaviour {
            required_token: Some("right".into()),
            ..Behaviour::default()
        };
        assert_eq!(finalize(&b, &headers(&GOOD), b"{}", "c").0, 401);
    }

    #[test]
    fn recognises_only_the_finalize_route() {
        assert_eq!(
            finalize_target(&Method::PATCH, "/social-media-posting/L/csv/C"),
            Some("C")
        );
        assert_eq!(
            finalize_target(&Method::GET, "/social-media-posting/L/csv/C"),
            None
        );
        assert_eq!(
            finalize_target(&Method::PATCH, "/social-media-posting/L/csv/C/x"),
            None
        );
    }

    #[test]
    fn fails_the_first_requests_when_asked() {
        let faults = Faults {
            fail_first: 2,
            retry_after: Some("1".into()),
            ..Faults::default()
        };
        assert_eq!(fault(&faults, 0), Some((429, Some("1".into()))));
        assert_eq!(fault(&faults, 1), Some((429, Some("1".into()))));
        assert_eq!(fault(&faults, 2), None);
    }

    #[test]
    fn never_records_the_token() {
        assert_eq!(
            redact_authorization(b"Bearer pit-secret"),
            "Bearer [redacted]"
        );
        assert_eq!(redact_authorization(b"pit-secret"), "[redacted]");
    }
}
