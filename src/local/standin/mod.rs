//! A local stand-in for HighLevel, for development and tests (in the spirit of stripe-mock and
//! moto): the one fake HighLevel every test and the `demo` use.
//!
//! It answers `PATCH /social-media-posting/{locationId}/csv/{csvId}` as HighLevel's reference
//! documents it: 200 `CsvPostStatusResponseDTO`, 400 `BadRequestDTO` (wrong `Version`, or a
//! csvId starting with `unknown`), 401 `UnauthorizedDTO` (no bearer token, or not the one
//! required), 422 `UnprocessableDTO` (a body that is not an object with a string `userId`).
//! `POST /oauth/token` refreshes OAuth pairs ([`token_endpoint`]). On purpose it can misbehave:
//! [`Faults`] (a share of 429s or 5xx, slowness) for load runs, a [`Scripted`] answer per
//! request (any status and body, `Retry-After`, a connection closed before or during the
//! answer, a trickling body, silence), and idle kept-alive connections closed behind the
//! client's back. Every request is recorded with its credentials redacted. It also receives
//! completion callbacks ([`callbacks`]), as an automation platform would.

mod burst;
mod callbacks;
mod imports;
mod script;
mod token_endpoint;

pub use burst::BurstLimit;
pub use callbacks::{ReceivedCallback, CALLBACK_PATH};
pub use imports::ImportScript;
pub use script::{Reply, Scripted};
pub use token_endpoint::TokenEndpoint;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_lc_rs::signature::KeyPair;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::server::{serve_connections, Connections, ShutdownHandle};
use crate::redact::Redacted;
use script::StandInBody;

/// The `Version` header values the stand-in accepts: HighLevel's `2021-07-28` and `v3`.
pub const ACCEPTED_VERSIONS: [&str; 2] = ["2021-07-28", "v3"];

/// Deliberate misbehaviour for load runs.
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
    /// If set, the OAuth client id and secret the token endpoint accepts; otherwise any.
    pub oauth_client: Option<(String, String)>,
    /// Deliberate faults.
    pub faults: Faults,
    /// Close a kept-alive connection this long after its last answer, without telling.
    pub close_idle_after: Option<Duration>,
    /// Keep only counts, not every request (for long load runs).
    pub forget_requests: bool,
    /// Play HighLevel's rate limit: `X-RateLimit-*` headers on every finalize answer, and 429
    /// (without `Retry-After`) once a location's window is spent.
    pub burst_limit: Option<BurstLimit>,
    /// How long an applied import stays `importing` before it is `completed` (default 2 s).
    pub import_time: Option<Duration>,
    /// The `whsec_…` secret callbacks are signed with, to check their signatures.
    pub callback_secret: Option<String>,
    /// Answer the first N callbacks with 503.
    pub refuse_first_callbacks: u64,
    /// The code the chooselocation page (`GET /v2/oauth/chooselocation`) sends the installer
    /// back with (`company:<companyId>` or `location:<companyId>:<locationId>`).
    pub install_code: Option<String>,
}

impl Behaviour {
    /// For load runs and benchmarks: HighLevel as documented, every finalize answered after
    /// `delay`, and only counts kept (no request is remembered, so memory stays flat).
    pub fn for_load(delay: Duration) -> Self {
        Self {
            faults: Faults {
                delay,
                ..Faults::default()
            },
            forget_requests: true,
            ..Self::default()
        }
    }
}

/// One request as the stand-in received it, credentials redacted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Received {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, lower-case names; `authorization` shows `Bearer [redacted]`.
    pub headers: BTreeMap<String, String>,
    /// The body, as JSON when it parses, else as text (a token refresh as its form, the
    /// client secret and refresh token redacted).
    pub body: Value,
    /// The status the stand-in answered with (0 when it answered nothing).
    pub status: u16,
    /// The bearer token presented, for tests to compare; never printed.
    #[serde(skip)]
    pub bearer: Option<Redacted<String>>,
}

struct State {
    behaviour: Behaviour,
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Scripted>>,
    pairs: Mutex<token_endpoint::Pairs>,
    finalize_count: AtomicU64,
    finalized: AtomicU64,
    windows: burst::Windows,
    imports: imports::Imports,
    callbacks: callbacks::Callbacks,
    /// Statuses to answer the next CSV reads with, in turn, instead of the import.
    refused_reads: Mutex<VecDeque<u16>>,
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
        let connections = Connections {
            close_idle_after: behaviour.close_idle_after,
        };
        let state = Arc::new(State {
            behaviour,
            received: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            pairs: Mutex::new(token_endpoint::Pairs::default()),
            finalize_count: AtomicU64::new(0),
            finalized: AtomicU64::new(0),
            windows: burst::Windows::default(),
            imports: imports::Imports::default(),
            callbacks: callbacks::Callbacks::default(),
            refused_reads: Mutex::new(VecDeque::new()),
            log_to_stdout,
        });
        let shared = Arc::clone(&state);
        let shutdown = serve_connections(listener, connections, move |request| {
            let state = Arc::clone(&shared);
            async move { answer(&state, request).await }
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

    /// A URL the stand-in receives callbacks on (`http://127.0.0.1:PORT/callbacks/{name}`).
    pub fn callback_url(&self, name: &str) -> String {
        format!("{}{CALLBACK_PATH}/{name}", self.base_url())
    }

    /// The callbacks received so far.
    pub fn callbacks(&self) -> Vec<ReceivedCallback> {
        self.state.callbacks.received()
    }

    /// Answers the next finalize requests with `answers`, in order; the last one repeats.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        *lock(&self.state.script) = answers.into_iter().collect();
    }

    /// Makes `access`/`refresh` the live OAuth pair of `location`: the token endpoint rotates
    /// it, and a finalize for `location` needs its access token.
    pub fn oauth_pair(&self, location: &str, access: &str, refresh: &str) {
        lock(&self.state.pairs).set(location, access, refresh);
    }

    /// The live OAuth pair of `location`, if it has one.
    pub fn live_pair(&self, location: &str) -> Option<(String, String)> {
        lock(&self.state.pairs).live(location)
    }

    /// How the token endpoint misbehaves from now on.
    pub fn token_endpoint(&self, endpoint: TokenEndpoint) {
        lock(&self.state.pairs).endpoint = endpoint;
    }

    /// Location tokens minted so far, per location.
    pub fn mints(&self) -> HashMap<String, u64> {
        lock(&self.state.pairs).mints.clone()
    }

    /// From now on, the agency's app counts as not installed at `location`: a mint for it is
    /// refused (400).
    pub fn uninstall(&self, location: &str) {
        lock(&self.state.pairs)
            .not_installed
            .insert(location.to_owned());
    }

    /// The PEM public key the stand-in signs its app webhooks with (`GHL_WEBHOOK_PUBLIC_KEY`
    /// for the function under test): one fixed key pair, a stand-in value like its tokens.
    pub fn app_webhook_public_key_pem() -> String {
        let pair = app_key_pair();
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap_or([0; 32]);
        crate::auth::app_key::public_key_pem(&public)
    }

    /// HighLevel's `X-GHL-Signature` of an app webhook `body`, made with the stand-in's key.
    pub fn sign_app_webhook(body: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(app_key_pair().sign(body).as_ref())
    }

    /// Refreshes granted and refused so far.
    pub fn refreshes(&self) -> (u64, u64) {
        let pairs = lock(&self.state.pairs);
        (pairs.granted, pairs.refused)
    }

    /// PATCHes applied to the import of `csv` at `location` so far (answered or not): more
    /// than one is a finalize applied twice.
    pub fn applied(&self, location: &str, csv: &str) -> u64 {
        self.state.imports.applied(location, csv)
    }

    /// How the import of `csv` at `location` turns out once applied: its posts, the ones that
    /// fail, and the status it ends in.
    pub fn script_import(&self, location: &str, csv: &str, script: ImportScript) {
        self.state.imports.script(location, csv, script);
    }

    /// Shows `status` for the import of `csv` at `location` from now on (`deleted`, …).
    pub fn set_csv_status(&self, location: &str, csv: &str, status: &str) {
        self.state.imports.set_status(location, csv, status);
    }

    /// Answers the next CSV reads with `statuses` (429, 503, …), one each, in turn.
    pub fn refuse_csv_reads(&self, statuses: impl IntoIterator<Item = u16>) {
        lock(&self.state.refused_reads).extend(statuses);
    }

    /// The CSV reads (`GET …/csv/{csvId}`) received so far.
    pub fn csv_reads(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == "GET")
            .collect()
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
        lock(&self.state.received).clone()
    }

    /// The finalize requests received so far.
    pub fn finalize_requests(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
    }

    /// The bearer tokens of the finalize requests received so far, in order (for tests to
    /// compare; the stand-in never prints them).
    pub fn finalize_tokens(&self) -> Vec<String> {
        self.finalize_requests()
            .iter()
            .map(|r| {
                r.bearer
                    .as_ref()
                    .map(|t| t.expose().clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Stops accepting connections and waits (briefly) for open ones to finish.
    pub async fn stop(self) {
        self.shutdown.shutdown(Duration::from_secs(2)).await;
    }
}

/// A poisoned lock only means a test thread panicked; the data is still what it was.
/// The stand-in's app-webhook key pair, from a fixed seed.
fn app_key_pair() -> aws_lc_rs::signature::Ed25519KeyPair {
    const SEED: [u8; 32] = *b"ghl-csv-finalize stand-in app ke";
    aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&SEED)
        .expect("a 32-byte seed makes a key pair")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Answers one request; `Err` closes the connection without an answer.
async fn answer(
    state: &State,
    request: Request<Incoming>,
) -> Result<Response<StandInBody>, &'static str> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if parts.method == Method::GET && parts.uri.path() == "/v2/oauth/chooselocation" {
        return Ok(choose_location(&state.behaviour, parts.uri.query()));
    }
    if parts.method == Method::POST && parts.uri.path().starts_with(CALLBACK_PATH) {
        let behaviour = &state.behaviour;
        let (status, body) = state.callbacks.receive(
            &parts.headers,
            &bytes,
            behaviour.callback_secret.as_deref(),
            behaviour.refuse_first_callbacks,
        );
        return Ok(json_response(status, &body, None));
    }
    let mut received = record(&parts, &bytes);
    let is_token_call = parts.method == Method::POST && parts.uri.path() == "/oauth/token";
    let is_mint = parts.method == Method::POST && parts.uri.path() == "/oauth/locationToken";
    let form: HashMap<String, String> = if is_token_call || is_mint {
        url::form_urlencoded::parse(&bytes).into_owned().collect()
    } else {
        HashMap::new()
    };
    if is_token_call {
        received.body = token_endpoint::redacted_form(&form);
    }
    // Recorded on arrival, so a request still waiting for its answer is seen too.
    let index = (!state.behaviour.forget_requests).then(|| {
        let mut all = lock(&state.received);
        all.push(received.clone());
        all.len() - 1
    });
    let on_the_wire = if is_mint {
        let version = parts.headers.get("version").and_then(|v| v.to_str().ok());
        let (status, body, delay) = {
            let mut pairs = lock(&state.pairs);
            let (status, body) = pairs.mint(bearer(&parts.headers), version, &form);
            (status, body, pairs.endpoint.mint_delay)
        };
        tokio::time::sleep(delay).await;
        Ok(json_response(status, &body, None))
    } else if is_token_call {
        let form_encoded = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/x-www-form-urlencoded");
        let (status, body, delay) = {
            let mut pairs = lock(&state.pairs);
            let (status, body) =
                pairs.refresh(state.behaviour.oauth_client.as_ref(), form_encoded, &form);
            (status, body, pairs.endpoint.delay)
        };
        tokio::time::sleep(delay).await;
        Ok(json_response(status, &body, None))
    } else if let Some((location, csv_id)) = csv_target(&parts.method, parts.uri.path()) {
        if parts.method == Method::GET {
            let page = page_of(parts.uri.query());
            Ok(csv_answer(state, &parts.headers, location, csv_id, page))
        } else {
            finalize_answer(state, &parts.headers, &bytes, location, csv_id).await
        }
    } else {
        let message = format!("Cannot {} {}", parts.method, parts.uri.path());
        Ok(json_response(
            404,
            &json!({"statusCode": 404, "message": message}),
            None,
        ))
    };
    received.status = on_the_wire.as_ref().map_or(0, |r| r.status().as_u16());
    if let Some(index) = index {
        if let Some(entry) = lock(&state.received).get_mut(index) {
            entry.status = received.status;
        }
    }
    if state.log_to_stdout {
        println!("{}", json!({"standin": "request", "received": received}));
    }
    if received.status == 200 && received.method == "PATCH" {
        state.finalized.fetch_add(1, Ordering::SeqCst);
    }
    on_the_wire
}

/// The answer to a finalize request: the script's next step, a load-run fault, or the
/// documented answer.
async fn finalize_answer(
    state: &State,
    headers: &http::HeaderMap,
    body: &[u8],
    location: &str,
    csv_id: &str,
) -> Result<Response<StandInBody>, &'static str> {
    let n = state.finalize_count.fetch_add(1, Ordering::SeqCst);
    let scripted = {
        let mut script = lock(&state.script);
        if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().cloned()
        }
    };
    match scripted {
        Some(Scripted::Reply(reply)) => {
            if reply.applies() {
                state.imports.apply(location, csv_id);
            }
            return Ok(reply.send().await);
        }
        Some(Scripted::SilentAfterApplying) => {
            state.imports.apply(location, csv_id);
            std::future::pending().await
        }
        Some(Scripted::CloseBeforeAnswer) => return Err("closed before answering, as scripted"),
        Some(Scripted::BreakMidBody) => return Ok(script::break_mid_body()),
        Some(Scripted::Trickle { every }) => return Ok(script::trickle(every)),
        Some(Scripted::Silent) => std::future::pending().await,
        Some(Scripted::Documented) | None => {}
    }
    let limited = state
        .behaviour
        .burst_limit
        .map(|limit| state.windows.take(location, limit));
    let with_limits = |mut response: Response<StandInBody>| {
        if let Some((headers, _)) = &limited {
            response.headers_mut().extend(headers.clone());
        }
        response
    };
    if limited.as_ref().is_some_and(|(_, over)| *over) {
        let body = json!({"statusCode": 429, "message": "Too many requests"});
        return Ok(with_limits(json_response(429, &body, None)));
    }
    let faults = &state.behaviour.faults;
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if let Some((status, retry_after)) = fault(faults, n) {
        let body = json!({"statusCode": status, "message": "simulated fault"});
        return Ok(with_limits(json_response(
            status,
            &body,
            retry_after.as_deref(),
        )));
    }
    let live_access = lock(&state.pairs).access_token(location).map(str::to_owned);
    let required = live_access
        .as_ref()
        .or(state.behaviour.required_token.as_ref());
    let (status, body) = finalize(required, headers, body, csv_id);
    if status == 200 {
        state.imports.apply(location, csv_id);
    }
    Ok(with_limits(json_response(status, &body, None)))
}

/// HighLevel's chooselocation page as the stand-in plays it: the installer "chooses" at once,
/// and is sent back to the app's `redirect_uri` with the scripted code and the same `state`.
fn choose_location(behaviour: &Behaviour, query: Option<&str>) -> Response<StandInBody> {
    let param = |name: &str| {
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let target = param("redirect_uri").and_then(|uri| url::Url::parse(&uri).ok());
    let (Some(mut target), Some(state)) = (target, param("state")) else {
        return json_response(
            400,
            &json!({"message": "redirect_uri and state are required"}),
            None,
        );
    };
    let code = behaviour
        .install_code
        .clone()
        .unwrap_or_else(|| "company:stand-in-company".into());
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    let mut response = json_response(302, &json!({}), None);
    if let Ok(location) = http::HeaderValue::from_str(target.as_str()) {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    response
}

/// The answer to a CSV read: the import's status as it stands, to a caller with the token.
fn csv_answer(
    state: &State,
    headers: &http::HeaderMap,
    location: &str,
    csv_id: &str,
    page: (u64, u64),
) -> Response<StandInBody> {
    let live_access = lock(&state.pairs).access_token(location).map(str::to_owned);
    let required = live_access
        .as_ref()
        .or(state.behaviour.required_token.as_ref());
    if let Some((status, body)) = refused(required, headers) {
        return json_response(status, &body, None);
    }
    if let Some(status) = lock(&state.refused_reads).pop_front() {
        let body = json!({"statusCode": status, "message": "simulated fault"});
        return json_response(status, &body, None);
    }
    let import_time = state
        .behaviour
        .import_time
        .unwrap_or(imports::DEFAULT_IMPORT_TIME);
    let body = state.imports.read(location, csv_id, import_time, page);
    json_response(200, &body, None)
}

/// `skip` and `limit` from a CSV read's query string (0 and 10 when absent; at most 100).
fn page_of(query: Option<&str>) -> (u64, u64) {
    let (mut skip, mut limit) = (0, 10);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match (name.as_ref(), value.parse::<u64>()) {
            ("skip", Ok(n)) => skip = n,
            ("limit", Ok(n)) => limit = n.min(100),
            _ => {}
        }
    }
    (skip, limit)
}

fn record(parts: &http::request::Parts, bytes: &[u8]) -> Received {
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
    Received {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers,
        body: serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
        status: 0,
        bearer: bearer(&parts.headers).map(|t| Redacted::new(t.to_owned())),
    }
}

fn json_response(status: u16, body: &Value, retry_after: Option<&str>) -> Response<StandInBody> {
    let mut response = Response::new(script::full(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(value) = retry_after.and_then(|v| http::HeaderValue::from_str(v).ok()) {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, value);
    }
    response
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The locationId and csvId when the request is a finalize call (`PATCH`) or a CSV read
/// (`GET`).
fn csv_target<'a>(method: &Method, path: &'a str) -> Option<(&'a str, &'a str)> {
    if method != Method::PATCH && method != Method::GET {
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
            Some((location, csv))
        }
        _ => None,
    }
}

fn fault(faults: &Faults, n: u64) -> Option<(u16, Option<String>)> {
    let status = faults.fault_status.unwrap_or(429);
    let random_hit = faults.random_fault_rate > 0.0
        && (crate::random::random_u64() % 10_000) as f64 / 10_000.0 < faults.random_fault_rate;
    (n < faults.fail_first || random_hit).then(|| (status, faults.retry_after.clone()))
}

/// 401 without the token (`required`, when one is) or 400 without the accepted `Version`.
fn refused(required: Option<&String>, headers: &http::HeaderMap) -> Option<(u16, Value)> {
    let authorized = match (required, bearer(headers)) {
        (_, None) => false,
        (Some(required), Some(token)) => required == token,
        (None, Some(_)) => true,
    };
    if !authorized {
        return Some((
            401,
            json!({"statusCode": 401, "message": "Invalid JWT", "error": "Unauthorized"}),
        ));
    }
    let version = headers.get("version").and_then(|v| v.to_str().ok());
    if !version.is_some_and(|v| ACCEPTED_VERSIONS.contains(&v)) {
        return Some((
            400,
            json!({"statusCode": 400, "message": "Version header is missing or not supported"}),
        ));
    }
    None
}

/// HighLevel's documented answers for the finalize call; `required` is the only bearer token
/// accepted, when one is.
fn finalize(
    required: Option<&String>,
    headers: &http::HeaderMap,
    body: &[u8],
    csv_id: &str,
) -> (u16, Value) {
    if let Some(refusal) = refused(required, headers) {
        return refusal;
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
        assert_eq!(finalize(None, &headers(&GOOD), b"{}", "c1").0, 200);
        assert_eq!(
            finalize(None, &headers(&GOOD), br#"{"userId":"u"}"#, "c1").0,
            200
        );
        assert_eq!(finalize(None, &headers(&GOOD[1..]), b"{}", "c1").0, 401);
        assert_eq!(finalize(None, &headers(&GOOD[..1]), b"{}", "c1").0, 400);
        assert_eq!(
            finalize(None, &headers(&GOOD), br#"{"userId":5}"#, "c1").0,
            422
        );
        assert_eq!(finalize(None, &headers(&GOOD), b"[]", "c1").0, 422);
        assert_eq!(finalize(None, &headers(&GOOD), b"{}", "unknown-1").0, 400);
    }

    #[test]
    fn accepts_only_the_required_token_when_one_is_set() {
        let required = "right".to_owned();
        assert_eq!(
            finalize(Some(&required), &headers(&GOOD), b"{}", "c").0,
            401
        );
    }

    #[test]
    fn recognises_only_the_finalize_and_csv_read_routes() {
        assert_eq!(
            csv_target(&Method::PATCH, "/social-media-posting/L/csv/C"),
            Some(("L", "C"))
        );
        assert_eq!(
            csv_target(&Method::GET, "/social-media-posting/L/csv/C"),
            Some(("L", "C"))
        );
        assert_eq!(
            csv_target(&Method::POST, "/social-media-posting/L/csv/C"),
            None
        );
        assert_eq!(
            csv_target(&Method::PATCH, "/social-media-posting/L/csv/C/x"),
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
