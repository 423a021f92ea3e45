//! OAuth sub-account tokens that refresh themselves: proactive and 401-driven refresh, the map
//! form, a reused refresh token recovered by re-reading, a failed write kept and retried, and
//! concurrent instances (separate `App`s sharing one moto) racing on one expired pair.
//!
//! The local token endpoint issues rotating refresh tokens and refuses a reused one with 400
//! `invalid_grant`, as HighLevel does.

mod helpers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use helpers::*;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

const CLIENT_ID: &str = "client-id-1";
const CLIENT_SECRET: &str = "client-secret-1";
const OTHER_LOCATION: &str = "Lx2OtherLocation99";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// HighLevel's token endpoint and finalize endpoint, sharing which pairs are live.
#[derive(Default)]
struct Live {
    /// location → (live access token, live refresh token)
    pairs: HashMap<String, (String, String)>,
    issued: u32,
    successes: u32,
    refused: u32,
}

#[derive(Clone)]
struct OAuthHighLevel {
    live: Arc<Mutex<Live>>,
    token_delay: Duration,
    token_failure: Option<u16>,
}

impl OAuthHighLevel {
    fn new(pairs: &[(&str, &str, &str)]) -> Self {
        let mut live = Live::default();
        for (location, access, refresh) in pairs {
            live.pairs.insert(
                location.to_string(),
                (access.to_string(), refresh.to_string()),
            );
        }
        Self {
            live: Arc::new(Mutex::new(live)),
            token_delay: Duration::ZERO,
            token_failure: None,
        }
    }

    fn successes(&self) -> u32 {
        self.live.lock().unwrap().successes
    }

    fn refused(&self) -> u32 {
        self.live.lock().unwrap().refused
    }

    fn live_pair(&self, location: &str) -> (String, String) {
        self.live.lock().unwrap().pairs[location].clone()
    }

    async fn mount(&self, t: &TestApp) {
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(TokenEndpoint(self.clone()))
            .mount(&t.highlevel)
            .await;
        Mock::given(method("PATCH"))
            .and(path_regex(r"^/social-media-posting/[^/]+/csv/[^/]+$"))
            .respond_with(FinalizeEndpoint(self.clone()))
            .mount(&t.highlevel)
            .await;
    }
}

struct TokenEndpoint(OAuthHighLevel);

impl Respond for TokenEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let delay = self.0.token_delay;
        if let Some(status) = self.0.token_failure {
            return ResponseTemplate::new(status)
                .set_body_json(json!({"error": "simulated"}))
                .set_delay(delay);
        }
        assert_eq!(
            request.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            form.get("grant_type").map(String::as_str),
            Some("refresh_token")
        );
        assert_eq!(form.get("user_type").map(String::as_str), Some("Location"));
        if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
            || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
        {
            return ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"}));
        }
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        let mut live = self.0.live.lock().unwrap();
        let Some(location) = live
            .pairs
            .iter()
            .find(|(_, (_, refresh))| *refresh == presented)
            .map(|(l, _)| l.clone())
        else {
            live.refused += 1;
            return ResponseTemplate::new(400)
                .set_body_json(
                    json!({"error": "invalid_grant", "error_description": "Invalid refresh token"}),
                )
                .set_delay(delay);
        };
        live.issued += 1;
        live.successes += 1;
        let n = live.issued;
        let pair = (
            format!("access-{n}-{location}"),
            format!("refresh-{n}-{location}"),
        );
        live.pairs.insert(location.clone(), pair.clone());
        ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": pair.0, "token_type": "Bearer", "expires_in": 86399,
                                  "refresh_token": pair.1, "scope": "socialplanner/csv.write", "userType": "Location",
                                  "locationId": location}))
            .set_delay(delay)
    }
}

struct FinalizeEndpoint(OAuthHighLevel);

impl Respond for FinalizeEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let location = request
            .url
            .path()
            .split('/')
            .nth(2)
            .unwrap_or("")
            .to_owned();
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let live = self.0.live.lock().unwrap();
        match live.pairs.get(&location) {
            Some((access, _)) if bearer == format!("Bearer {access}") => highlevel_ok(),
            _ => ResponseTemplate::new(401).set_body_json(
                json!({"statusCode": 401, "message": "Invalid JWT", "error": "Unauthorized"}),
            ),
        }
    }
}

fn oauth_entry(access: &str, refresh: &str, expires_at: i64) -> Value {
    json!({"access_token": access, "refresh_token": refresh, "expires_at": expires_at,
           "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "user_type": "Location",
           "companyId": "keep-me-company", "scope": "socialplanner/csv.write"})
}

async fn stored(secret_id: &str) -> Value {
    let admin = sdk_client(moto_endpoint(), None);
    let text = admin
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The path-parameter sample event, for another location.
fn event_for(location: &str) -> String {
    edit(EV_PATH_PARAMS, |v| {
        v["pathParameters"]["locationId"] = json!(location);
        v["rawPath"] = json!(format!("/locations/{location}/csv/{CSV}/finalize"));
    })
}

fn secret_setup(secret: Value) -> Setup {
    Setup {
        token_secret: Some(secret.to_string()),
        ..Setup::default()
    }
}

#[tokio::test]
async fn refreshes_an_access_token_that_expires_within_the_skew_and_stores_the_new_pair() {
    for per_location in [false, true] {
        let t = spawn_app_with(Setup {
            per_location,
            ..secret_setup(oauth_entry("access-0", "refresh-0", now() + 60))
        })
        .await;
        let highlevel = OAuthHighLevel::new(&[(LOCATION, "access-0", "refresh-0")]);
        highlevel.mount(&t).await;
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(
            response.body["attempts"], 1,
            "the token-endpoint call is not counted"
        );
        assert_eq!(highlevel.successes(), 1);
        let secret_id = ghl_csv_finalize::tokens::resolve(
            &t.token_secret_id,
            &ghl_csv_finalize::ids::LocationId::parse(LOCATION).unwrap(),
        );
        let secret = stored(&secret_id).await;
        let (access, refresh) = highlevel.live_pair(LOCATION);
        assert_eq!(secret["access_token"], access.as_str());
        assert_eq!(secret["refresh_token"], refresh.as_str());
        let expires_at = secret["expires_at"].as_i64().unwrap();
        assert!(
            (expires_at - (now() + 86399)).abs() < 30,
            "expires_at = now + expires_in"
        );
        assert_eq!(
            secret["companyId"], "keep-me-company",
            "unknown fields are kept"
        );
        assert_eq!(secret["client_secret"], CLIENT_SECRET);
        // Warm invocations use the new pair without refreshing again.
        assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
        assert_eq!(highlevel.successes(), 1);
    }
}

#[tokio::test]
async fn updates_expires_in_and_issued_at_when_the_entry_uses_them() {
    let mut entry = oauth_entry("access-0", "refresh-0", 0);
    entry.as_object_mut().unwrap().remove("expires_at");
    entry["expires_in"] = json!(86399);
    entry["issued_at"] = json!(now() - 86399);
    let t = spawn_app_with(secret_setup(entry)).await;
    let highlevel = OAuthHighLevel::new(&[(LOCATION, "access-0", "refresh-0")]);
    highlevel.mount(&t).await;
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    let secret = stored(&t.token_secret_id).await;
    assert_eq!(secret["expires_in"], 86399);
    assert!((secret["issued_at"].as_i64().unwrap() - now()).abs() < 30);
    assert!((secret["expires_at"].as_i64().unwrap() - (now() + 86399)).abs() < 30);
}

#[tokio::test]
async fn refreshes_when_highlevel_answers_401_and_retries_once() {
    let t = spawn_app_with(secret_setup(oauth_entry(
        "access-0",
        "refresh-0",
        now() + 80_000,
    )))
    .await;
    // HighLevel no longer accepts access-0 (revoked), but refresh-0 is still live.
    let highlevel = OAuthHighLevel::new(&[(LOCATION, "access-revoked", "refresh-0")]);
    highlevel.mount(&t).await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 2);
    assert_eq!(highlevel.successes(), 1);
    assert_eq!(
        stored(&t.token_secret_id).await["refresh_token"],
        highlevel.live_pair(LOCATION).1.as_str()
    );
}

#[tokio::test]
async fn keeps_every_other_entry_of_a_map_secret() {
    let secret = json!({
        LOCATION: oauth_entry("access-0", "refresh-0", now() + 10),
        OTHER_LOCATION: oauth_entry("access-other", "refresh-other", now() + 80_000),
        "PlainLocation1": "pit-plain-token",
    });
    let t = spawn_app_with(secret_setup(secret.clone())).await;
    let highlevel = OAuthHighLevel::new(&[
        (LOCATION, "access-0", "refresh-0"),
        (OTHER_LOCATION, "access-other", "refresh-other"),
    ]);
    highlevel.mount(&t).await;
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    let after = stored(&t.token_secret_id).await;
    assert_eq!(after[OTHER_LOCATION], secret[OTHER_LOCATION]);
    assert_eq!(after["PlainLocation1"], "pit-plain-token");
    assert_eq!(
        after[LOCATION]["refresh_token"],
        highlevel.live_pair(LOCATION).1.as_str()
    );
    assert_eq!(after[LOCATION]["companyId"], "keep-me-company");
}

#[tokio::test]
async fn adopts_the_pair_another_instance_stored_when_the_refresh_token_was_already_used() {
    let t = spawn_app_with(secret_setup(oauth_entry(
        "access-0",
        "refresh-0",
        now() + 10,
    )))
    .await;
    // Another instance already spent refresh-0; its new pair reaches the secret a moment later.
    let highlevel = OAuthHighLevel::new(&[(LOCATION, "access-won", "refresh-won")]);
    highlevel.mount(&t).await;
    let secret_id = t.token_secret_id.clone();
    let winner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        put_secret(
            &secret_id,
            &oauth_entry("access-won", "refresh-won", now() + 86399).to_string(),
        )
        .await;
    });
    let response = t.invoke(EV_PATH_PARAMS).await;
    winner.await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(highlevel.refused(), 1);
    assert_eq!(highlevel.successes(), 0);
    assert_eq!(
        stored(&t.token_secret_id).await["refresh_token"],
        "refresh-won"
    );
}

#[tokio::test]
async fn answers_502_when_the_refresh_token_is_refused_and_no_newer_pair_appears() {
    let t = spawn_app_with(secret_setup(oauth_entry(
        "access-0",
        "refresh-dead",
        now() + 10,
    )))
    .await;
    let highlevel = OAuthHighLevel::new(&[(LOCATION, "access-x", "refresh-x")]);
    highlevel.mount(&t).await;
    let started = std::time::Instant::now();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 502, "{}", response.text);
    assert_eq!(code(&response), "upstream_auth_failed");
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "waited for a winner's pair"
    );
    assert!(
        t.upstream_requests()
            .await
            .iter()
            .all(|r| r.method.as_str() == "POST"),
        "finalize was not called"
    );
}

#[tokio::test]
async fn maps_token_endpoint_failures_to_the_contract() {
    for (failure, status, expected_code) in [
        (Some(401u16), 502u16, "upstream_auth_failed"),
        (Some(422), 502, "upstream_auth_failed"),
        (Some(503), 503, "upstream_unavailable"),
        (Some(429), 503, "upstream_unavailable"),
    ] {
        let t = spawn_app_with(secret_setup(oauth_entry(
            "access-0",
            "refresh-0",
            now() + 10,
        )))
        .await;
        let mut highlevel = OAuthHighLevel::new(&[(LOCATION, "access-0", "refresh-0")]);
        highlevel.token_failure = failure;
        highlevel.mount(&t).await;
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!(response.status, status, "{failure:?}: {}", response.text);
        assert_eq!(code(&response), expected_code);
        assert_eq!(
            stored(&t.token_secret_id).await["refresh_token"],
            "refresh-0",
            "nothing written"
        );
    }
    let mut entry = oauth_entry("access-0", "refresh-0", now() + 10);
    entry.as_object_mut().unwrap().remove("client_secret");
    let t = spawn_app_with(secret_setup(entry)).await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!((response.status, code(&response)), (500, "config_error"));
}

/// A Secrets Manager endpoint in front of moto that fails PutSecretValue while told to.
async fn flaky_writes() -> (String, Arc<AtomicBool>) {
    let fail = Arc::new(AtomicBool::new(true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let failing = Arc::clone(&fail);
    let client = reqwest::Client::new();
    let handle = ghl_csv_finalize::local::server::serve_connections(
        listener,
        move |request: http::Request<hyper::body::Incoming>| {
            let (failing, client) = (Arc::clone(&failing), client.clone());
            async move {
                use http_body_util::BodyExt;
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let target = parts
                    .headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                if target.ends_with("PutSecretValue") && failing.load(Ordering::SeqCst) {
                    let mut response =
                        http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
                            br#"{"__type":"InternalServiceError","message":"simulated"}"#,
                        )));
                    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    return Ok::<_, std::convert::Infallible>(response);
                }
                let mut forward = client
                    .post(format!("{}{}", moto_endpoint(), parts.uri.path()))
                    .body(body);
                for (name, value) in &parts.headers {
                    if name != http::header::HOST {
                        forward = forward.header(name, value);
                    }
                }
                let answer = forward.send().await.unwrap();
                let mut response =
                    http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                *response.status_mut() = answer.status();
                *response.headers_mut() = answer.headers().clone();
                *response.body_mut() = http_body_util::Full::new(answer.bytes().await.unwrap());
                Ok(response)
            }
        },
    );
    std::mem::forget(handle);
    (format!("http://{address}"), fail)
}

#[tokio::test]
async fn keeps_a_pair_it_could_not_store_and_stores_it_first_on_the_next_request() {
    let (endpoint, fail_writes) = flaky_writes().await;
    let t = spawn_app_with(Setup {
        secrets_endpoint: Some(endpoint),
        ..secret_setup(oauth_entry("access-0", "refresh-0", now() + 10))
    })
    .await;
    let highlevel = OAuthHighLevel::new(&[(LOCATION, "access-0", "refresh-0")]);
    highlevel.mount(&t).await;

    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 503, "{}", response.text);
    assert_eq!(code(&response), "secret_unavailable");
    assert!(
        t.upstream_requests()
            .await
            .iter()
            .all(|r| r.method.as_str() == "POST"),
        "finalize was not called"
    );
    assert_eq!(
        stored(&t.token_secret_id).await["refresh_token"],
        "refresh-0",
        "the write failed"
    );

    fail_writes.store(false, Ordering::SeqCst);
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        highlevel.successes(),
        1,
        "the kept pair was used, not a second refresh"
    );
    assert_eq!(
        stored(&t.token_secret_id).await["refresh_token"],
        highlevel.live_pair(LOCATION).1.as_str()
    );
}

/// A second instance (a separate `App`, own caches) sharing `first`'s secret and HighLevel.
async fn another_instance(first: &TestApp) -> TestApp {
    spawn_app_with(Setup {
        token_secret: None,
        existing_token_secret_id: Some(first.token_secret_id.clone()),
        api_base_url: Some(first.highlevel.uri()),
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_refreshing_two_locations_of_one_map_secret_keep_both_pairs() {
    let secret = json!({
        LOCATION: oauth_entry("access-a", "refresh-a", now() + 10),
        OTHER_LOCATION: oauth_entry("access-b", "refresh-b", now() + 10),
    });
    let first = spawn_app_with(secret_setup(secret)).await;
    let mut highlevel = OAuthHighLevel::new(&[
        (LOCATION, "access-a", "refresh-a"),
        (OTHER_LOCATION, "access-b", "refresh-b"),
    ]);
    highlevel.token_delay = Duration::from_millis(300);
    highlevel.mount(&first).await;
    let second = another_instance(&first).await;
    let other_event = event_for(OTHER_LOCATION);
    let (a, b) = tokio::join!(first.invoke(EV_PATH_PARAMS), second.invoke(&other_event));
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.text, b.text);
    assert_eq!(highlevel.successes(), 2);
    let after = stored(&first.token_secret_id).await;
    assert_eq!(
        after[LOCATION]["refresh_token"],
        highlevel.live_pair(LOCATION).1.as_str()
    );
    assert_eq!(
        after[OTHER_LOCATION]["refresh_token"],
        highlevel.live_pair(OTHER_LOCATION).1.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_racing_on_one_expired_pair_all_succeed_with_one_refresh() {
    let first = spawn_app_with(secret_setup(oauth_entry(
        "access-0",
        "refresh-0",
        now() - 5,
    )))
    .await;
    let mut highlevel = OAuthHighLevel::new(&[(LOCATION, "access-0", "refresh-0")]);
    highlevel.token_delay = Duration::from_millis(200);
    highlevel.mount(&first).await;
    let mut instances = vec![Arc::new(first)];
    for _ in 0..3 {
        let other = another_instance(&instances[0]).await;
        instances.push(Arc::new(other));
    }
    let mut calls = tokio::task::JoinSet::new();
    for instance in &instances {
        for _ in 0..3 {
            let instance = Arc::clone(instance);
            calls.spawn(async move { instance.invoke(EV_PATH_PARAMS).await });
        }
    }
    while let Some(response) = calls.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status, 200, "{}", response.text);
    }
    assert_eq!(
        highlevel.successes(),
        1,
        "exactly one successful refresh for one expiry"
    );
    let after = stored(&instances[0].token_secret_id).await;
    assert_eq!(
        after["refresh_token"],
        highlevel.live_pair(LOCATION).1.as_str(),
        "the secret holds the live pair"
    );
}

#[tokio::test]
async fn a_token_endpoint_that_times_out_is_unavailable_and_counts_against_the_budget() {
    let setup = Setup {
        env: vec![("UPSTREAM_TIMEOUT_MS", "500".into())],
        ..secret_setup(oauth_entry("access-0", "refresh-0", now() + 10))
    };
    let t = spawn_app_with(setup).await;
    let mut highlevel = OAuthHighLevel::new(&[(LOCATION, "access-0", "refresh-0")]);
    highlevel.token_delay = Duration::from_secs(5);
    highlevel.mount(&t).await;
    let started = std::time::Instant::now();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the token call is bounded by UPSTREAM_TIMEOUT_MS"
    );
    assert_eq!(response.status, 503, "{}", response.text);
    assert_eq!(code(&response), "upstream_unavailable");
}
