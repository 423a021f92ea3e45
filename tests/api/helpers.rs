//! Shared set-up for the integration tests: a real Secrets Manager protocol endpoint (moto on
//! 127.0.0.1), the project's HighLevel stand-in over real HTTP, and the real [`App`] built
//! around them. Event fixtures come from `events/` so the samples stay true.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_secretsmanager::config::ConfigBag;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Intercept, Region};
use ghl_csv_finalize::aws::SecretsClient;
#[allow(unused_imports)]
pub use ghl_csv_finalize::local::standin::{Behaviour, Received, Scripted, StandIn, TokenEndpoint};
use ghl_csv_finalize::{App, Config};
use lambda_http::{Context, Request, RequestExt};
use serde_json::{json, Value};

pub const API_KEY: &str = "demo-api-key-0001";
pub const LOCATION: &str = "ve9EPM428h8vShlRW1KT";
pub const CSV: &str = "6578b9a4c5c9e5a0f0f3b2d1";
pub const USER: &str = "U3pQ7kXlsQvC9eUJjK2b";
pub const TOKEN: &str = "pit-test-9f8e7d6c-token-value";
pub const WEBHOOK_SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC1ieXRlcy0wMDE=";

pub const EV_PATH_PARAMS: &str = include_str!("../../events/apigw-v2-path-params.json");
pub const EV_JSON_BODY: &str = include_str!("../../events/apigw-v2-json-body.json");
pub const EV_WORKFLOW: &str = include_str!("../../events/apigw-v2-highlevel-workflow.json");
pub const EV_BASE64_CUSTOM_DATA: &str =
    include_str!("../../events/apigw-v2-base64-custom-data-string.json");
pub const EV_FORM: &str = include_str!("../../events/apigw-v2-form-body.json");
pub const EV_HEALTHZ: &str = include_str!("../../events/apigw-v2-healthz.json");
pub const EV_FUNCTION_URL: &str = include_str!("../../events/function-url.json");
pub const EV_REST: &str = include_str!("../../events/apigw-v1-rest-query.json");
pub const EV_ALB: &str = include_str!("../../events/alb.json");
pub const EV_STATUS: &str = include_str!("../../events/apigw-v2-finalization-status.json");
pub const EV_SQS: &str = include_str!("../../events/sqs-batch.json");

/// Every finalize event in `events/`, by file name.
pub const FINALIZE_EVENTS: [(&str, &str); 8] = [
    ("apigw-v2-path-params.json", EV_PATH_PARAMS),
    ("apigw-v2-json-body.json", EV_JSON_BODY),
    ("apigw-v2-highlevel-workflow.json", EV_WORKFLOW),
    (
        "apigw-v2-base64-custom-data-string.json",
        EV_BASE64_CUSTOM_DATA,
    ),
    ("apigw-v2-form-body.json", EV_FORM),
    ("function-url.json", EV_FUNCTION_URL),
    ("apigw-v1-rest-query.json", EV_REST),
    ("alb.json", EV_ALB),
];

/// The moto server for this test binary, started once. `MOTO_ENDPOINT` reuses a running one.
pub fn moto_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<(String, Option<Mutex<Child>>)> = OnceLock::new();
    &ENDPOINT
        .get_or_init(|| {
            if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
                return (endpoint, None);
            }
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/moto_server.py");
            let mut child = Command::new("python3")
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python3 must be installed to run moto");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("moto prints its endpoint");
            assert!(
                line.starts_with("http://127.0.0.1:"),
                "moto did not start (pip install 'moto[server]', or run scripts/test): {line:?}"
            );
            (line.trim().to_owned(), Some(Mutex::new(child)))
        })
        .0
}

/// Counts GetSecretValue calls made through the real SDK client.
#[derive(Debug, Clone, Default)]
pub struct ReadCounter(Arc<AtomicUsize>);

impl ReadCounter {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for ReadCounter {
    fn name(&self) -> &'static str {
        "ReadCounter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_secretsmanager::error::BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The one HTTPS client, as the function builds it.
pub fn https_client() -> reqwest::Client {
    ghl_csv_finalize::app::https::client().expect("the HTTPS client builds")
}

/// A real SDK client for `endpoint`, sending through the function's HTTPS client, with test
/// credentials and our production timeouts.
pub fn sdk_client(endpoint: &str, counter: Option<ReadCounter>) -> aws_sdk_secretsmanager::Client {
    sdk_client_through(https_client(), endpoint, counter)
}

/// [`sdk_client`] sending through `http`.
pub fn sdk_client_through(
    http: reqwest::Client,
    endpoint: &str,
    counter: Option<ReadCounter>,
) -> aws_sdk_secretsmanager::Client {
    let mut builder = aws_sdk_secretsmanager::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(ghl_csv_finalize::aws::sdk_http_client(http))
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .timeout_config(ghl_csv_finalize::aws::clients::timeouts());
    if let Some(counter) = counter {
        builder = builder.interceptor(counter);
    }
    aws_sdk_secretsmanager::Client::from_conf(builder.build())
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Creates (or overwrites) a secret in moto.
pub async fn put_secret(name: &str, value: &str) {
    let admin = sdk_client(moto_endpoint(), None);
    let created = admin
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await;
    if created.is_err() {
        admin
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .expect("moto accepts PutSecretValue");
    }
}

/// HighLevel's documented success answer, whatever the request.
pub fn highlevel_ok() -> Scripted {
    Scripted::ok()
}

/// How a test app is set up. Defaults: token secret holding [`TOKEN`], inbound auth secret
/// holding [`API_KEY`] and [`WEBHOOK_SECRET`], the stand-in answering as HighLevel documents.
pub struct Setup {
    /// The token secret's value; `None` leaves it uncreated.
    pub token_secret: Option<String>,
    /// Use `<name>/{locationId}/token` as the secret id (the value is stored for [`LOCATION`]).
    pub per_location: bool,
    /// The inbound-auth secret's value; `None` leaves it uncreated.
    pub auth_secret: Option<String>,
    /// Turn inbound auth off instead.
    pub unauthenticated: bool,
    /// Extra environment, e.g. `("MAX_ATTEMPTS", "2")`.
    pub env: Vec<(&'static str, String)>,
    /// Secrets Manager endpoint; defaults to moto.
    pub secrets_endpoint: Option<String>,
    /// HighLevel base URL; defaults to the app's own stand-in.
    pub api_base_url: Option<String>,
    /// How the app's stand-in behaves.
    pub standin: Behaviour,
    /// Use this existing token secret id instead of creating one (apps sharing a secret).
    pub existing_token_secret_id: Option<String>,
    /// Keep finalization records in a new DynamoDB table (`IDEMPOTENCY_TABLE`).
    pub records: bool,
    /// Queue mode: a new SQS queue with a dead-letter queue (`QUEUE_URL`); implies `records`.
    pub queue: bool,
    /// DynamoDB and SQS endpoint; defaults to moto (a fault proxy in front of it, say).
    pub aws_endpoint: Option<String>,
    /// The token secret is the agency's (`GHL_AGENCY_SECRET_ID`), not `GHL_TOKEN_SECRET_ID`.
    pub agency: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            token_secret: Some(TOKEN.to_owned()),
            per_location: false,
            auth_secret: Some(format!(
                r#"{{"apiKeys":["{API_KEY}"],"webhookSecrets":["{WEBHOOK_SECRET}"]}}"#
            )),
            unauthenticated: false,
            env: Vec::new(),
            secrets_endpoint: None,
            api_base_url: None,
            standin: Behaviour::default(),
            existing_token_secret_id: None,
            records: false,
            queue: false,
            aws_endpoint: None,
            agency: false,
        }
    }
}

pub struct TestApp {
    pub app: App,
    pub highlevel: StandIn,
    pub reads: ReadCounter,
    pub token_secret_id: String,
    pub auth_secret_id: String,
    /// The records table, when kept.
    pub table: Option<String>,
    /// The queue and its dead-letter queue, in queue mode.
    pub queues: Option<crate::stores::Queues>,
    /// What another instance of the same deployment is built from.
    instance: Instance,
}

/// The configuration and endpoints of a deployment, to build more instances of it.
#[derive(Clone)]
struct Instance {
    env: HashMap<&'static str, String>,
    secrets_endpoint: String,
    aws_endpoint: String,
}

impl Instance {
    async fn build(&self, reads: Option<ReadCounter>) -> App {
        let mut config = Config::from_lookup(|name| self.env.get(name).cloned())
            .expect("valid test configuration");
        config.lines = ghl_csv_finalize::observe::Lines::memory();
        let http = https_client();
        let secrets = SecretsClient::from_client(sdk_client_through(
            http.clone(),
            &self.secrets_endpoint,
            reads,
        ));
        let aws = ghl_csv_finalize::aws::AwsClients {
            secrets: Some(secrets),
            dynamodb: Some(crate::stores::dynamodb_client(&self.aws_endpoint)),
            sqs: Some(ghl_csv_finalize::aws::SqsClient::from_client(
                crate::stores::sqs_client(&self.aws_endpoint),
            )),
        };
        App::build_with(config, http, aws)
            .await
            .expect("app builds")
    }
}

/// A finished response, parsed.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
    pub text: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Setup::default()).await
}

pub async fn spawn_app_with(setup: Setup) -> TestApp {
    // Before this test reaches any callsite, so none is cached as unwanted (see the function).
    keep_callsites_asking();
    let highlevel = StandIn::start(([127, 0, 0, 1], 0).into(), setup.standin.clone())
        .await
        .expect("the stand-in starts");
    let base = unique("ghl-test");
    let token_name = format!("{base}/token");
    let token_secret_id = match (&setup.existing_token_secret_id, setup.per_location) {
        (Some(existing), _) => existing.clone(),
        (None, true) => format!("{base}/{{locationId}}/token"),
        (None, false) => token_name.clone(),
    };
    let auth_secret_id = format!("{base}/inbound");
    if let Some(value) = &setup.token_secret {
        let name = if setup.per_location {
            format!("{base}/{LOCATION}/token")
        } else {
            token_name
        };
        put_secret(&name, value).await;
    }
    if let Some(value) = &setup.auth_secret {
        put_secret(&auth_secret_id, value).await;
    }
    let mut env: HashMap<&str, String> = HashMap::new();
    let token_variable = if setup.agency {
        "GHL_AGENCY_SECRET_ID"
    } else {
        "GHL_TOKEN_SECRET_ID"
    };
    env.insert(token_variable, token_secret_id.clone());
    env.insert(
        "GHL_API_BASE_URL",
        setup
            .api_base_url
            .clone()
            .unwrap_or_else(|| highlevel.base_url()),
    );
    if setup.unauthenticated {
        env.insert("ALLOW_UNAUTHENTICATED", "true".into());
    } else {
        env.insert("INBOUND_AUTH_SECRET_ID", auth_secret_id.clone());
    }
    let max_receives = setup
        .env
        .iter()
        .find(|(key, _)| *key == "QUEUE_MAX_RECEIVES")
        .map_or(10, |(_, value)| value.parse().expect("a number"));
    for (key, value) in setup.env {
        env.insert(key, value);
    }
    let table = if setup.records || setup.queue {
        let table = unique("ghl-records");
        crate::stores::create_table(&table).await;
        env.insert("IDEMPOTENCY_TABLE", table.clone());
        Some(table)
    } else {
        None
    };
    let queues = if setup.queue {
        let queues = crate::stores::create_queues(&unique("ghl-queue"), max_receives).await;
        env.insert("QUEUE_URL", queues.url.clone());
        Some(queues)
    } else {
        None
    };
    let reads = ReadCounter::default();
    let instance = Instance {
        env,
        secrets_endpoint: setup
            .secrets_endpoint
            .unwrap_or_else(|| moto_endpoint().to_owned()),
        aws_endpoint: setup
            .aws_endpoint
            .unwrap_or_else(|| moto_endpoint().to_owned()),
    };
    let app = instance.build(Some(reads.clone())).await;
    TestApp {
        app,
        highlevel,
        reads,
        token_secret_id,
        auth_secret_id,
        table,
        queues,
        instance,
    }
}

impl TestApp {
    /// Another instance of the same deployment: its own clients and caches, the same secrets,
    /// table, queue and HighLevel.
    pub async fn another_instance(&self) -> App {
        self.instance.build(None).await
    }

    /// HighLevel answers every finalize request with `answer`.
    pub fn highlevel_answers(&self, answer: Scripted) {
        self.highlevel.script([answer]);
    }

    /// HighLevel answers the finalize requests with `answers` in turn, repeating the last.
    pub fn highlevel_answers_in_turn(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.highlevel.script(answers);
    }

    /// Runs a Lambda event through the handler, with a Lambda context 30 s from its deadline.
    pub async fn invoke(&self, event: &str) -> TestResponse {
        self.invoke_with_deadline(event, Duration::from_secs(30))
            .await
    }

    pub async fn invoke_with_deadline(&self, event: &str, remaining: Duration) -> TestResponse {
        self.send(request_with_deadline(event, remaining)).await
    }

    pub async fn send(&self, request: Request) -> TestResponse {
        send_to(&self.app, request).await
    }

    /// The audit lines written so far, parsed.
    pub fn audit_lines(&self) -> Vec<Value> {
        kept_json(&self.app)
            .into_iter()
            .filter(|l| l["audit"] == true)
            .collect()
    }

    /// The EMF metric documents written so far, parsed.
    pub fn metric_documents(&self) -> Vec<Value> {
        kept_json(&self.app)
            .into_iter()
            .filter(|l| l.get("_aws").is_some())
            .collect()
    }

    /// Every request HighLevel received (finalize and token endpoint).
    pub fn upstream_requests(&self) -> Vec<Received> {
        self.highlevel.received()
    }

    /// The bearer tokens of the finalize requests HighLevel received, in order.
    pub fn bearer_tokens(&self) -> Vec<String> {
        self.highlevel.finalize_tokens()
    }
}

/// The lines an instance kept, parsed (each must be JSON).
pub fn kept_json(app: &App) -> Vec<Value> {
    app.kept_lines()
        .iter()
        .map(|line| serde_json::from_str(line).expect("every kept line is JSON"))
        .collect()
}

/// Sends `request` to `app` (one instance of a deployment) and reads the answer.
pub async fn send_to(app: &App, request: Request) -> TestResponse {
    let response = app.respond(request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = String::from_utf8(response.body().to_vec()).expect("responses are UTF-8");
    // Every answer is JSON but the install routes' pages and redirects.
    let html_or_redirect = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
        || status == 302;
    let body = if html_or_redirect {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("responses are JSON")
    };
    TestResponse {
        status,
        headers,
        body,
        text,
    }
}

/// Runs `work` and checks it was over within `limit` (an answer before a deadline).
pub async fn answered_within<T>(limit: Duration, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = work.await;
    let took = started.elapsed();
    assert!(
        took < limit,
        "answered after {took:?}, not within {limit:?}"
    );
    answer
}

/// Runs `work` and checks it took at least `at_least` (a wait that was honoured).
pub async fn waited_at_least<T>(at_least: Duration, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let answer = work.await;
    let took = started.elapsed();
    assert!(took >= at_least, "took {took:?}, less than {at_least:?}");
    answer
}

/// The OAuth app the tests refresh with.
pub const CLIENT_ID: &str = "client-id-1";
pub const CLIENT_SECRET: &str = "client-secret-1";

/// The JSON a secret holds now, as stored in moto.
pub async fn stored_secret(secret_id: &str) -> Value {
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

/// An OAuth entry of a token secret, with fields an operator might add (kept on write).
pub fn oauth_entry(access: &str, refresh: &str, expires_at: i64) -> Value {
    json!({"access_token": access, "refresh_token": refresh, "expires_at": expires_at,
           "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "user_type": "Location",
           "companyId": "keep-me-company", "scope": "socialplanner/csv.write"})
}

/// An app whose token secret is `secret`, and whose stand-in knows the OAuth client and holds
/// each `(location, access, refresh)` of `live` as the live pair.
pub async fn spawn_oauth_app(secret: Value, live: &[(&str, &str, &str)], setup: Setup) -> TestApp {
    let t = spawn_app_with(Setup {
        token_secret: Some(secret.to_string()),
        standin: Behaviour {
            oauth_client: Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())),
            ..setup.standin.clone()
        },
        ..setup
    })
    .await;
    for (location, access, refresh) in live {
        t.highlevel.oauth_pair(location, access, refresh);
    }
    t
}

/// Parses a Lambda event into a request with a Lambda context, as the Lambda runtime loop does.
pub fn request_with_deadline(event: &str, remaining: Duration) -> Request {
    let event: Value = serde_json::from_str(event).expect("the event is JSON");
    let (request, _) = ghl_csv_finalize::fronts::http::event::into_request(event);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut context = Context::default();
    context.request_id = unique("lambda-request");
    context.deadline = now_ms + remaining.as_millis() as u64;
    request.with_lambda_context(context)
}

/// Edits an event's JSON.
pub fn edit(event: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut value: Value = serde_json::from_str(event).unwrap();
    change(&mut value);
    value.to_string()
}

/// Replaces a v2 event's body (and content type, when given).
pub fn with_body(event: &str, body: &str, content_type: Option<&str>) -> String {
    edit(event, |v| {
        v["body"] = Value::String(body.to_owned());
        v["isBase64Encoded"] = Value::Bool(false);
        match content_type {
            Some(ct) => v["headers"]["content-type"] = Value::String(ct.to_owned()),
            None => {
                v["headers"].as_object_mut().unwrap().remove("content-type");
            }
        }
    })
}

/// Sets (or with `None` removes) a header of an event, in `headers` and, for REST and ALB
/// events that have them, `multiValueHeaders`.
pub fn with_header(event: &str, name: &str, value: Option<&str>) -> String {
    edit(event, |v| {
        for (member, multi) in [("headers", false), ("multiValueHeaders", true)] {
            let Some(headers) = v.get_mut(member).and_then(Value::as_object_mut) else {
                continue;
            };
            headers.retain(|key, _| !key.eq_ignore_ascii_case(name));
            if let Some(value) = value {
                let value = if multi {
                    serde_json::json!([value])
                } else {
                    Value::String(value.to_owned())
                };
                headers.insert(name.to_owned(), value);
            }
        }
    })
}

/// Removes every credential header from a v2 event.
pub fn without_credentials(event: &str) -> String {
    with_header(
        &with_header(event, "x-api-key", None),
        "authorization",
        None,
    )
}

/// Signs `body` with the independent `standardwebhooks` implementation and returns the event
/// with the three Standard Webhooks headers set (and no API key).
pub fn signed(event: &str, secret: &str, timestamp: i64) -> String {
    let body = serde_json::from_str::<Value>(event).unwrap()["body"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let id = unique("msg");
    let signature = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign(&id, timestamp, body.as_bytes())
        .unwrap();
    let event = without_credentials(event);
    let event = with_header(&event, "webhook-id", Some(&id));
    let event = with_header(&event, "webhook-timestamp", Some(&timestamp.to_string()));
    with_header(&event, "webhook-signature", Some(&signature))
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The error code of a response, or `""`.
pub fn code(response: &TestResponse) -> &str {
    response.body["error"]["code"].as_str().unwrap_or("")
}

// The malformed event shapes the contract names, for every event kind (tests/api/events.rs
// and the real binary in tests/lambda_runtime.rs).

/// The four event kinds, each a valid finalize event from `events/`.
pub fn kinds() -> [(&'static str, &'static str); 4] {
    [
        ("REST API", EV_REST),
        ("HTTP API", EV_JSON_BODY),
        ("Function URL", EV_FUNCTION_URL),
        ("ALB", EV_ALB),
    ]
}

fn is_rest_or_alb(event: &Value) -> bool {
    event.get("httpMethod").is_some()
}

/// Sets the raw query string (payload 2.0) or one query parameter (REST, ALB).
pub fn with_query(event: &str, query: &str) -> String {
    edit(event, |v| {
        if is_rest_or_alb(v) {
            v["queryStringParameters"] = json!({"x": query});
            v["multiValueQueryStringParameters"] = Value::Null;
            if v["requestContext"].get("elb").is_none() {
                // API Gateway hands the values decoded; an ALB hands them as sent.
                v["queryStringParameters"] = json!({});
                v["path"] = json!(format!("/finalize?{query}"));
            }
        } else {
            v["rawQueryString"] = json!(query);
        }
    })
}

pub fn with_path(event: &str, path: &str) -> String {
    edit(event, |v| {
        let member = if is_rest_or_alb(v) { "path" } else { "rawPath" };
        v[member] = json!(path);
    })
}

pub fn with_method(event: &str, method: Value) -> String {
    edit(event, |v| {
        if is_rest_or_alb(v) {
            v["httpMethod"] = method;
        } else {
            v["requestContext"]["http"]["method"] = method;
        }
    })
}

/// The malformed shapes of the contract, for one event kind, with the status each must get.
pub fn malformed_shapes(event: &str) -> Vec<(String, String, u16)> {
    let long = "a".repeat(70 * 1024);
    let mut shapes = vec![
        ("a space in the query", with_query(event, "a=b c"), 400),
        ("a quote in the query", with_query(event, "a=\"x\""), 400),
        ("< and > in the query", with_query(event, "a=<script>"), 400),
        (
            "a byte outside ASCII in the query",
            with_query(event, "a=é"),
            400,
        ),
        (
            "a 70 KB query",
            with_query(event, &format!("a={long}")),
            400,
        ),
        ("a 70 KB path", with_path(event, &format!("/{long}")), 400),
        ("a space in the path", with_path(event, "/fin alize"), 400),
        (
            "a garbage Host",
            with_header(event, "host", Some("exa mple/com")),
            400,
        ),
        (
            "a garbage X-Forwarded-Proto",
            with_header(event, "x-forwarded-proto", Some("ht tp<>")),
            400,
        ),
        (
            "a control character in a header value",
            with_header(event, "x-extra", Some("a\u{1}b")),
            400,
        ),
        (
            "a control character in a header name",
            with_header(event, "x-ex\ntra", Some("1")),
            400,
        ),
        (
            "a method that is not a token",
            with_method(event, json!("PO ST")),
            405,
        ),
        (
            "a method that is not a string",
            with_method(event, json!(7)),
            405,
        ),
        ("no method at all", with_method(event, Value::Null), 400),
        (
            "a body that is not a string",
            edit(event, |v| v["body"] = json!({"csvId": "C1"})),
            400,
        ),
    ];
    shapes.push((
        "a malformed path with a method that is not allowed",
        with_method(&with_path(event, "/a b"), json!("PUT")),
        405,
    ));
    shapes
        .into_iter()
        .map(|(what, event, status)| (what.to_owned(), event, status))
        .collect()
}

/// Log lines written on this thread while the guard lives (the tests run on a current-thread
/// runtime, so that is everything the app logs).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every crate's JSON log lines up to `level` on this thread, through the Lambda
/// binary's own filter (which holds back the crates that would log raw payloads).
pub fn capture_logs(level: tracing::Level) -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(ghl_csv_finalize::observe::logging::filter(level.as_str()))
        .with_writer(move || writer.clone())
        .finish();
    keep_callsites_asking();
    let guard = tracing::subscriber::set_default(subscriber);
    // Callsites cache whether any subscriber wants them; another test's capture at another
    // level may have cached "never" for lines this one wants. Ask every callsite again.
    tracing::callsite::rebuild_interest_cache();
    (logs, guard)
}

/// Makes every callsite ask the current thread's subscriber at each event, for the whole test
/// binary.
///
/// tracing caches per callsite whether any registered subscriber wants it. While only one
/// subscriber is registered (a capture in one test), tracing-core asks not that subscriber but
/// the *calling thread's* default, so a callsite first reached by a test on another thread (no
/// subscriber there) is cached as "never", and the capture misses it. Two standing subscribers
/// that answer "sometimes" keep more than one registered, so no callsite is ever cached "never".
fn keep_callsites_asking() {
    static STANDING: OnceLock<[tracing::Dispatch; 2]> = OnceLock::new();
    STANDING.get_or_init(|| {
        [
            tracing::Dispatch::new(AskEveryTime),
            tracing::Dispatch::new(AskEveryTime),
        ]
    });
}

/// A subscriber that wants nothing itself but leaves every callsite's interest open.
struct AskEveryTime;

impl tracing::Subscriber for AskEveryTime {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The response's `Retry-After`, in seconds.
pub fn retry_after_secs(response: &TestResponse) -> u64 {
    response.headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a Retry-After in seconds: {:?}", response.headers))
}

/// An address on 127.0.0.1 that refuses every connection for as long as the returned socket
/// lives: bound but never listened on, so no other test's server can take the port meanwhile
/// (a port merely freed can be).
pub fn refusing_address() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bound");
    let address = format!("http://{}", socket.local_addr().expect("an address"));
    (socket, address)
}
