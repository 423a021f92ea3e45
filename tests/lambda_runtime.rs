//! The real `bootstrap` binary under a Lambda Runtime API emulator, configured only through
//! environment variables — Secrets Manager reached via `AWS_ENDPOINT_URL_SECRETS_MANAGER`
//! (moto), HighLevel via `GHL_API_BASE_URL` (the project's stand-in).

#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/stores.rs"]
mod stores;

use std::process::Stdio;
use std::time::Duration;

use ghl_csv_finalize::local::runtime_api::{Posted, RuntimeApi};
use helpers::*;
use serde_json::Value;
use tokio::process::{Child, Command};

/// The binary under test: `GHL_BOOTSTRAP` (CI points it at the release build, where a panic
/// would abort the process), else the one cargo built for these tests.
fn bootstrap_path() -> String {
    std::env::var("GHL_BOOTSTRAP").unwrap_or_else(|_| env!("CARGO_BIN_EXE_bootstrap").to_owned())
}

fn bootstrap(runtime_api: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(bootstrap_path());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "ghl-csv-finalize")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/29/[$LATEST]0123456789abcdef",
        )
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/ghl-csv-finalize")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SESSION_TOKEN", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("the bootstrap binary starts")
}

/// The HighLevel stand-in, answering as HighLevel documents.
async fn highlevel() -> StandIn {
    StandIn::start(([127, 0, 0, 1], 0).into(), Behaviour::default())
        .await
        .expect("the stand-in starts")
}

fn response_of(outcome: &Option<Posted>) -> (u64, Value) {
    let outcome = outcome.as_ref().expect("the function answered in time");
    assert_eq!(outcome.kind, "response", "{}", outcome.body);
    let lambda: Value = serde_json::from_str(&outcome.body).unwrap();
    let body = serde_json::from_str(lambda["body"].as_str().unwrap()).unwrap();
    (lambda["statusCode"].as_u64().unwrap(), body)
}

#[tokio::test]
async fn the_bootstrap_binary_serves_events_configured_by_environment_only() {
    let highlevel = highlevel().await;
    let base = unique("ghl-bin");
    let (token_id, auth_id) = (format!("{base}/token"), format!("{base}/inbound"));
    put_secret(&token_id, TOKEN).await;
    put_secret(&auth_id, &format!(r#"{{"apiKeys":["{API_KEY}"]}}"#)).await;
    let runtime = RuntimeApi::start().await.unwrap();
    let mut child = bootstrap(
        &runtime.address(),
        &[
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint()),
            ("GHL_TOKEN_SECRET_ID", &token_id),
            ("INBOUND_AUTH_SECRET_ID", &auth_id),
            ("GHL_API_BASE_URL", &highlevel.base_url()),
        ],
    );
    let timeout = Duration::from_secs(15);

    let (status, body) = response_of(&runtime.invoke(EV_PATH_PARAMS, timeout).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], 1);
    assert_eq!(body["requestId"], "emulated-request-1");
    let (status, _) = response_of(&runtime.invoke(EV_HEALTHZ, timeout).await);
    assert_eq!(status, 200);
    let (status, body) = response_of(&runtime.invoke(&without_credentials(EV_REST), timeout).await);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = response_of(&runtime.invoke(EV_ALB, timeout).await);
    assert_eq!(status, 200);

    assert_eq!(highlevel.finalize_tokens(), [TOKEN, TOKEN]);

    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let logs = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let audit: Vec<&Value> = lines.iter().filter(|l| l["audit"] == true).collect();
    assert_eq!(audit.len(), 4, "one audit line per event on stdout: {logs}");
    assert_eq!(
        (audit[0]["status"].as_u64(), audit[0]["credential"].as_str()),
        (Some(200), Some("key#0"))
    );
    let documents: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert_eq!(
        documents.len(),
        4,
        "one EMF document per event, each a line of its own"
    );
    assert_eq!(
        documents[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "GhlCsvFinalize"
    );
    assert_eq!(
        documents[0]["ColdStart"], 1,
        "the instance's first document"
    );
    assert!(!logs.contains(TOKEN) && !logs.contains(API_KEY));
}

#[tokio::test]
async fn refuses_to_start_without_inbound_auth_naming_the_variable() {
    let runtime = RuntimeApi::start().await.unwrap();
    let child = bootstrap(&runtime.address(), &[("GHL_TOKEN", "pit-local")]);
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("INBOUND_AUTH_SECRET_ID"), "{printed}");
}

#[tokio::test]
async fn serves_with_a_local_token_when_unauthenticated_access_is_allowed() {
    let highlevel = highlevel().await;
    let runtime = RuntimeApi::start().await.unwrap();
    let _child = bootstrap(
        &runtime.address(),
        &[
            ("GHL_TOKEN", "pit-local-dev"),
            ("ALLOW_UNAUTHENTICATED", "true"),
            ("GHL_API_BASE_URL", &highlevel.base_url()),
        ],
    );
    let (status, body) = response_of(
        &runtime
            .invoke(
                &without_credentials(EV_FUNCTION_URL),
                Duration::from_secs(15),
            )
            .await,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(highlevel.finalize_tokens(), ["pit-local-dev"]);
}

#[tokio::test]
async fn one_process_answers_a_long_run_of_hostile_events_and_then_a_valid_one() {
    let highlevel = highlevel().await;
    let runtime = RuntimeApi::start().await.unwrap();
    let mut child = bootstrap(
        &runtime.address(),
        &[
            ("GHL_TOKEN", "pit-local-dev"),
            ("ALLOW_UNAUTHENTICATED", "true"),
            ("GHL_API_BASE_URL", &highlevel.base_url()),
        ],
    );
    let pid = child.id().expect("the process runs");
    // Drain its logs as they come: a full pipe would stall the process, not the test.
    let logs = drain(child.stdout.take());
    let timeout = Duration::from_secs(15);
    let mut hostile: Vec<(String, String, u16)> = Vec::new();
    for (kind, event) in kinds() {
        for (what, event, status) in malformed_shapes(event) {
            hostile.push((format!("{kind}, {what}"), event, status));
        }
    }
    for (what, event) in [
        ("not an HTTP event", "{}"),
        ("a JSON array", "[1,2,3]"),
        ("a JSON string", "\"x\""),
        ("null", "null"),
        (
            "a body marked base64 that is not",
            &edit(EV_BASE64_CUSTOM_DATA, |v| {
                v["body"] = serde_json::json!("%%%")
            }),
        ),
    ] {
        hostile.push((what.to_owned(), event.to_owned(), 400));
    }
    // HighLevel answering with a Retry-After too large for any clock.
    highlevel.script([Scripted::status(429).retry_after("18446744073709551615")]);
    hostile.push((
        "an absurd Retry-After".into(),
        EV_PATH_PARAMS.to_owned(),
        503,
    ));
    for round in 0..3 {
        for (what, event, status) in &hostile {
            let answer = runtime.invoke(event, timeout).await;
            assert!(answer.is_some(), "round {round}, {what}: no answer in time");
            let (got, body) = response_of(&answer);
            assert_eq!(got, u64::from(*status), "round {round}, {what}: {body}");
            assert_eq!(body["ok"], false, "{what}");
        }
    }
    highlevel.script([Scripted::Documented]);
    let (status, body) = response_of(&runtime.invoke(EV_PATH_PARAMS, timeout).await);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "the process is still running"
    );
    assert_eq!(
        child.id(),
        Some(pid),
        "the same process answered every event"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let logs = logs.await.unwrap();
    assert!(logs.contains("\"audit\":true"), "its audit lines were read");
}

/// Reads a child's output to the end in the background.
fn drain(output: Option<tokio::process::ChildStdout>) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut output) = output {
            use tokio::io::AsyncReadExt;
            let _ = output.read_to_string(&mut text).await;
        }
        text
    })
}

#[tokio::test]
async fn logs_no_credential_of_any_kind_even_at_trace() {
    const TOKEN_SENTINEL: &str = "pit-SENTINEL-bin-token-5521";
    const KEY_SENTINEL: &str = "SENTINEL-bin-api-key-3380";
    const WEBHOOK_BYTES_B64: &str = "U0VOVElORUwtYmluLXdlYmhvb2stc2VjcmV0";
    let webhook_secret = format!("whsec_{WEBHOOK_BYTES_B64}");
    let highlevel = highlevel().await;
    let base = unique("ghl-trace");
    let (token_id, auth_id) = (format!("{base}/token"), format!("{base}/inbound"));
    put_secret(&token_id, TOKEN_SENTINEL).await;
    put_secret(
        &auth_id,
        &serde_json::json!({"apiKeys": [KEY_SENTINEL], "webhookSecrets": [webhook_secret]})
            .to_string(),
    )
    .await;
    let runtime = RuntimeApi::start().await.unwrap();
    let mut child = bootstrap(
        &runtime.address(),
        &[
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint()),
            ("GHL_TOKEN_SECRET_ID", &token_id),
            ("INBOUND_AUTH_SECRET_ID", &auth_id),
            ("GHL_API_BASE_URL", &highlevel.base_url()),
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
            ("AWS_ACCESS_KEY_ID", "AKIASENTINEL0000KEY"),
            ("AWS_SECRET_ACCESS_KEY", "SENTINEL-aws-secret-access-key"),
            ("AWS_SESSION_TOKEN", "SENTINEL-aws-session-token"),
        ],
    );
    let stdout = drain(child.stdout.take());
    let timeout = Duration::from_secs(15);
    let with_key =
        |key: &str| with_header(&without_credentials(EV_PATH_PARAMS), "x-api-key", Some(key));
    let signed_event = signed(EV_WORKFLOW, &webhook_secret, now_unix());
    let signature = serde_json::from_str::<Value>(&signed_event).unwrap()["headers"]
        ["webhook-signature"]
        .as_str()
        .unwrap()
        .trim_start_matches("v1,")
        .to_owned();
    for (event, status) in [
        (with_key(KEY_SENTINEL), 200),
        (signed_event, 200),
        (with_key("SENTINEL-wrong-presented-key"), 401),
    ] {
        let (got, body) = response_of(&runtime.invoke(&event, timeout).await);
        assert_eq!(got, status, "{body}");
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let logs = stdout.await.unwrap();
    assert!(
        logs.contains("\"TRACE\""),
        "TRACE lines were written: the check means something"
    );
    for secret in [
        TOKEN_SENTINEL,
        KEY_SENTINEL,
        WEBHOOK_BYTES_B64,
        signature.as_str(),
        "SENTINEL",
    ] {
        let lines: Vec<&str> = logs.lines().filter(|line| line.contains(secret)).collect();
        assert!(
            lines.is_empty(),
            "log lines hold {secret}: {}",
            lines.join("\n")
        );
    }
}

/// Queue mode in moto: a token and an inbound-auth secret, a records table and a queue; the
/// environment the receiver and the worker share (more variables appended by the caller).
async fn queue_mode(highlevel: &StandIn) -> (Vec<(String, String)>, stores::Queues) {
    let base = unique("ghl-bin-queue");
    let (token_id, auth_id) = (format!("{base}/token"), format!("{base}/inbound"));
    put_secret(&token_id, TOKEN).await;
    put_secret(&auth_id, &format!(r#"{{"apiKeys":["{API_KEY}"]}}"#)).await;
    let table = unique("ghl-bin-records");
    stores::create_table(&table).await;
    let queues = stores::create_queues(&unique("ghl-bin-queue"), 10).await;
    let env = [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint()),
        ("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint()),
        ("AWS_ENDPOINT_URL_SQS", moto_endpoint()),
        ("GHL_TOKEN_SECRET_ID", &token_id),
        ("INBOUND_AUTH_SECRET_ID", &auth_id),
        ("GHL_API_BASE_URL", &highlevel.base_url()),
        ("IDEMPOTENCY_TABLE", &table),
        ("QUEUE_URL", &queues.url),
    ];
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (env, queues)
}

/// `env` as `bootstrap` takes it.
fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The SQS event Lambda's event source mapping would send for `messages`, each on its first
/// receive.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> String {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.message_id, "receiptHandle": m.receipt_handle,
                "body": m.body, "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn, "awsRegion": "us-east-1"})
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}

#[tokio::test]
async fn queue_mode_runs_receiver_and_worker_from_one_binary_configured_by_environment_only() {
    let highlevel = highlevel().await;
    let (env, queues) = queue_mode(&highlevel).await;
    let env = borrowed(&env);
    let timeout = Duration::from_secs(15);
    // The receiver and the worker: two instances of the same binary, as the template deploys.
    let receiver_api = RuntimeApi::start().await.unwrap();
    let mut receiver = bootstrap(&receiver_api.address(), &env);
    let (status, body) = response_of(&receiver_api.invoke(EV_PATH_PARAMS, timeout).await);
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("queued")),
        "{body}"
    );
    assert!(highlevel.received().is_empty());

    let worker_api = RuntimeApi::start().await.unwrap();
    let mut worker = bootstrap(&worker_api.address(), &env);
    let sqs = stores::sqs_client(moto_endpoint());
    let received = sqs
        .receive_message()
        .queue_url(&queues.url)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap();
    let event = sqs_event(&received[..1], &queues.arn);
    let answer = worker_api
        .invoke(&event, timeout)
        .await
        .expect("the worker answered");
    assert_eq!(answer.kind, "response", "{}", answer.body);
    assert_eq!(
        serde_json::from_str::<Value>(&answer.body).unwrap(),
        serde_json::json!({"batchItemFailures": []})
    );
    assert_eq!(
        highlevel.finalize_tokens(),
        [TOKEN],
        "finalized once, by the worker"
    );

    let status_event = stores::status_event(body["finalizationId"].as_str().unwrap());
    let (status, record) = response_of(&receiver_api.invoke(&status_event, timeout).await);
    assert_eq!(
        (status, record["finalization"]["status"].as_str()),
        (200, Some("finalized")),
        "{record}"
    );
    for child in [&mut receiver, &mut worker] {
        child.start_kill().unwrap();
    }
}

/// The path-parameter sample event for `csv` at `location`.
fn event_for(location: &str, csv: &str) -> String {
    edit(EV_PATH_PARAMS, |v| {
        v["pathParameters"]["locationId"] = serde_json::json!(location);
        v["pathParameters"]["csvId"] = serde_json::json!(csv);
        v["rawPath"] = serde_json::json!(format!("/locations/{location}/csv/{csv}/finalize"));
    })
}

/// The JSON lines a stopped bootstrap wrote.
async fn lines_of(mut child: Child) -> Vec<Value> {
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_concurrency_one_process_serves_many_invocations_each_keeping_its_own() {
    let highlevel = highlevel().await;
    // The first finalize to arrive is answered after 3 s; the rest at once.
    highlevel.script([
        Scripted::ok().delayed(Duration::from_secs(3)),
        Scripted::Documented,
    ]);
    let runtime = RuntimeApi::start().await.unwrap();
    let child = bootstrap(
        &runtime.address(),
        &[
            ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
            ("GHL_TOKEN", TOKEN),
            ("ALLOW_UNAUTHENTICATED", "true"),
            ("GHL_API_BASE_URL", &highlevel.base_url()),
        ],
    );
    let timeout = Duration::from_secs(20);
    let locations: Vec<String> = (0..5).map(|i| format!("FastLocation{i}")).collect();
    let slow_event = event_for("SlowLocation", "slow-csv");
    let fast_events: Vec<String> = locations.iter().map(|l| event_for(l, "fast-csv")).collect();
    let slow = runtime.invoke(&slow_event, timeout);
    let fast = async {
        while highlevel.finalize_requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let answers = futures_util::future::join_all(
            fast_events
                .iter()
                .map(|event| runtime.invoke(event, timeout)),
        )
        .await;
        // Every fast one answered while the slow one still waits for HighLevel.
        (answers, highlevel.finalized())
    };
    let (slow, (fast, finalized_meanwhile)) = tokio::join!(slow, fast);
    assert_eq!(
        finalized_meanwhile, 5,
        "the slow finalize delayed none of the others"
    );
    let mut request_ids = std::collections::HashSet::new();
    for (answer, location) in fast.iter().zip(&locations) {
        let (status, body) = response_of(answer);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["locationId"],
            location.as_str(),
            "each invocation its own answer"
        );
        assert!(request_ids.insert(body["requestId"].as_str().unwrap().to_owned()));
    }
    let (status, body) = response_of(&slow);
    assert_eq!(
        (status, &body["locationId"]),
        (200, &serde_json::json!("SlowLocation"))
    );
    let lines = lines_of(child).await;
    let audit: Vec<&Value> = lines.iter().filter(|l| l["audit"] == true).collect();
    assert_eq!(audit.len(), 6);
    for line in audit {
        // An audit line's request id is its own invocation's, not a neighbour's.
        let id = line["requestId"].as_str().unwrap();
        let location = line["locationId"].as_str().unwrap();
        let fast_index = locations.iter().position(|l| l == location);
        match fast_index {
            Some(i) => assert_eq!(
                Some(id),
                response_of(&fast[i]).1["requestId"].as_str(),
                "{line}"
            ),
            None => assert_eq!(Some(id), body["requestId"].as_str(), "{line}"),
        }
    }
    let documents = lines.iter().filter(|l| l.get("_aws").is_some()).count();
    assert_eq!(documents, 6, "one EMF document per invocation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_concurrent_invocations_for_one_expired_oauth_token_make_one_refresh() {
    let highlevel = StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour {
            oauth_client: Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned())),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    highlevel.oauth_pair(LOCATION, "access-0", "refresh-0");
    highlevel.token_endpoint(TokenEndpoint {
        delay: Duration::from_millis(300),
        ..Default::default()
    });
    let token_id = format!("{}/token", unique("ghl-bin"));
    put_secret(
        &token_id,
        &oauth_entry("access-0", "refresh-0", now_unix() - 5).to_string(),
    )
    .await;
    let runtime = RuntimeApi::start().await.unwrap();
    let child = bootstrap(
        &runtime.address(),
        &[
            ("AWS_LAMBDA_MAX_CONCURRENCY", "6"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint()),
            ("GHL_TOKEN_SECRET_ID", &token_id),
            ("ALLOW_UNAUTHENTICATED", "true"),
            ("GHL_API_BASE_URL", &highlevel.base_url()),
        ],
    );
    let timeout = Duration::from_secs(20);
    let events: Vec<String> = (0..6)
        .map(|i| event_for(LOCATION, &format!("csv-{i}")))
        .collect();
    let answers =
        futures_util::future::join_all(events.iter().map(|e| runtime.invoke(e, timeout))).await;
    for answer in &answers {
        let (status, body) = response_of(answer);
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        highlevel.refreshes(),
        (1, 0),
        "one refresh for six invocations"
    );
    let live = highlevel.live_pair(LOCATION).unwrap().0;
    assert!(highlevel.finalize_tokens().iter().all(|t| *t == live));
    drop(lines_of(child).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_concurrency_six_finalizes_are_in_flight_at_once() {
    let highlevel = highlevel().await;
    highlevel.script([Scripted::ok().delayed(Duration::from_secs(2))]);
    let runtime = RuntimeApi::start().await.unwrap();
    let child = bootstrap(
        &runtime.address(),
        &[
            ("AWS_LAMBDA_MAX_CONCURRENCY", "6"),
            ("GHL_TOKEN", TOKEN),
            ("ALLOW_UNAUTHENTICATED", "true"),
            ("GHL_API_BASE_URL", &highlevel.base_url()),
        ],
    );
    let events: Vec<String> = (0..6)
        .map(|i| event_for(&format!("Location{i}"), "csv"))
        .collect();
    let invoked = futures_util::future::join_all(
        events
            .iter()
            .map(|e| runtime.invoke(e, Duration::from_secs(20))),
    );
    // Six PATCHes received before the first is answered: six invocations at once.
    let (answers, answered_meanwhile) = tokio::join!(invoked, answered_once_sent(&highlevel, 6));
    assert_eq!(
        answered_meanwhile, 0,
        "all six arrived before any was answered"
    );
    for answer in &answers {
        assert_eq!(response_of(answer).0, 200);
    }
    drop(lines_of(child).await);
}

/// How many finalizes HighLevel had answered once it had received `n`: 0 means all `n` were in
/// flight at once. The count decides; the 10 s bound only ends a run that hung.
async fn answered_once_sent(highlevel: &StandIn, n: usize) -> u64 {
    for _ in 0..1000 {
        if highlevel.finalize_requests().len() >= n {
            return highlevel.finalized();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("HighLevel never received {n} finalizes");
}

/// Whether `line` was written inside the invocation `request_id` (lambda_runtime's span names
/// it; the JSON formatter writes the spans a line was written in).
fn written_in(line: &Value, request_id: &str) -> bool {
    line["spans"]
        .as_array()
        .is_some_and(|spans| spans.iter().any(|s| s["requestId"] == request_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_for_different_locations_never_mix_tokens_deadlines_or_log_lines() {
    let highlevel = highlevel().await;
    // Every finalize is answered after 4 s: longer than the short invocation may wait.
    highlevel.script([Scripted::ok().delayed(Duration::from_secs(4))]);
    let prefix = unique("ghl-bin-mix");
    let locations: Vec<String> = (0..4).map(|i| format!("MixLocation{i}")).collect();
    for location in &locations {
        put_secret(
            &format!("{prefix}/{location}"),
            &format!("token-of-{location}"),
        )
        .await;
    }
    let runtime = RuntimeApi::start().await.unwrap();
    let child = bootstrap(
        &runtime.address(),
        &[
            ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint()),
            ("GHL_TOKEN_SECRET_ID", &format!("{prefix}/{{locationId}}")),
            ("ALLOW_UNAUTHENTICATED", "true"),
            ("GHL_API_BASE_URL", &highlevel.base_url()),
        ],
    );
    // Location 0 is invoked with 2.5 s left (2 s after Lambda's margin, for its secret read
    // and its PATCH); the others with 20 s. Two invocations per location, all at once.
    let invocations: Vec<(usize, String, Duration)> = (0..8)
        .map(|i| {
            let location = i % 4;
            let left = if i == 0 { 2_500 } else { 20_000 };
            (
                location,
                event_for(&locations[location], &format!("csv{i}")),
                Duration::from_millis(left),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let runtime = &runtime;
    let answers =
        futures_util::future::join_all(invocations.iter().map(|(_, event, left)| async move {
            let answer = runtime.invoke(event, *left).await;
            (answer, started.elapsed())
        }))
        .await;
    let mut request_ids = Vec::new();
    for (i, ((answer, took), (location, _, _))) in answers.iter().zip(&invocations).enumerate() {
        let (status, body) = response_of(answer);
        if i == 0 {
            // Its own deadline, not a neighbour's: it gave up before HighLevel answered.
            assert_eq!(status, 504, "{body}");
            assert_eq!(body["error"]["code"], "upstream_timeout");
            assert!(
                *took < Duration::from_millis(3_500),
                "answered after {took:?}"
            );
        } else {
            // The short deadline cut none of the others.
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["locationId"], locations[*location].as_str(), "{body}");
        }
        request_ids.push(body["requestId"].as_str().unwrap().to_owned());
    }
    // Each finalize carried its own location's token.
    let requests = highlevel.finalize_requests();
    assert_eq!(requests.len(), 8);
    for request in &requests {
        let location = locations
            .iter()
            .find(|l| request.path.contains(&format!("/{l}/")))
            .expect("a finalize for one of the locations");
        let token = request.bearer.as_ref().map(|t| t.expose().clone());
        assert_eq!(
            token,
            Some(format!("token-of-{location}")),
            "{}",
            request.path
        );
    }
    let lines = lines_of(child).await;
    for (i, request_id) in request_ids.iter().enumerate() {
        let location = locations[invocations[i].0].as_str();
        let csv = format!("csv{i}");
        // Its audit line and EMF document, and nobody else's.
        let audit: Vec<&Value> = lines
            .iter()
            .filter(|l| l["audit"] == true && l["requestId"] == request_id.as_str())
            .collect();
        assert_eq!(audit.len(), 1, "{request_id}");
        assert_eq!(
            (audit[0]["locationId"].as_str(), audit[0]["csvId"].as_str()),
            (Some(location), Some(csv.as_str()))
        );
        let expected_status = if i == 0 { 504 } else { 200 };
        assert_eq!(audit[0]["status"], expected_status);
        let documents = lines
            .iter()
            .filter(|l| l.get("_aws").is_some() && l["requestId"] == request_id.as_str())
            .count();
        assert_eq!(documents, 1, "one EMF document for {request_id}");
        // Every other line written inside this invocation names its location, if any.
        for line in lines.iter().filter(|l| written_in(l, request_id)) {
            let text = line.to_string();
            for other in locations.iter().filter(|l| *l != location) {
                assert!(!text.contains(other.as_str()), "{request_id}: {text}");
            }
        }
    }
    // The timed-out invocation's cause went to its own log lines.
    assert!(
        lines
            .iter()
            .any(|l| written_in(l, &request_ids[0]) && l["level"] != "INFO"),
        "the 504's cause is logged inside its invocation: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_concurrency_a_worker_process_works_two_sqs_batches_at_once() {
    let highlevel = highlevel().await;
    let (mut env, queues) = queue_mode(&highlevel).await;
    for (key, value) in [
        ("FOLLOW_IMPORTS", "false"),
        ("AWS_LAMBDA_MAX_CONCURRENCY", "4"),
    ] {
        env.push((key.to_owned(), value.to_owned()));
    }
    let env = borrowed(&env);
    let timeout = Duration::from_secs(20);
    let receiver_api = RuntimeApi::start().await.unwrap();
    let receiver = bootstrap(&receiver_api.address(), &env);
    for i in 0..4 {
        let (status, body) = response_of(
            &receiver_api
                .invoke(&event_for(LOCATION, &format!("batch-csv{i}")), timeout)
                .await,
        );
        assert_eq!(status, 202, "{body}");
    }
    drop(lines_of(receiver).await);
    let sqs = stores::sqs_client(moto_endpoint());
    let mut messages = Vec::new();
    for _ in 0..20 {
        if messages.len() == 4 {
            break;
        }
        let received = sqs
            .receive_message()
            .queue_url(&queues.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        messages.extend(received.messages.unwrap_or_default());
    }
    assert_eq!(messages.len(), 4, "the four queued finalizes");
    let batches = [
        sqs_event(&messages[..2], &queues.arn),
        sqs_event(&messages[2..], &queues.arn),
    ];
    // Every finalize is answered after 2 s: one batch's two cannot hide the other's.
    highlevel.script([Scripted::ok().delayed(Duration::from_secs(2))]);
    let worker_api = RuntimeApi::start().await.unwrap();
    let worker = bootstrap(&worker_api.address(), &env);
    let invoked =
        futures_util::future::join_all(batches.iter().map(|b| worker_api.invoke(b, timeout)));
    let (answers, answered_meanwhile) = tokio::join!(invoked, answered_once_sent(&highlevel, 4));
    assert_eq!(
        answered_meanwhile, 0,
        "both batches' finalizes in flight at once"
    );
    for answer in &answers {
        let answer = answer.as_ref().expect("the worker answered");
        assert_eq!(answer.kind, "response", "{}", answer.body);
        assert_eq!(
            serde_json::from_str::<Value>(&answer.body).unwrap(),
            serde_json::json!({"batchItemFailures": []})
        );
    }
    let mut finalized: Vec<String> = highlevel
        .finalize_requests()
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    finalized.sort();
    assert_eq!(
        finalized,
        ["batch-csv0", "batch-csv1", "batch-csv2", "batch-csv3"],
        "each message finalized once"
    );
    let lines = lines_of(worker).await;
    let audit = lines.iter().filter(|l| l["audit"] == true).count();
    assert_eq!(audit, 4, "one audit line per message");
}
