//! The command-line tool: `demo`, `serve`, `invoke`, `finalize`, `--dry-run` and bad arguments,
//! run as a real process against the project's HighLevel stand-in.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::helpers::*;
use ghl_csv_finalize::local::standin::{Behaviour, StandIn};
use serde_json::Value;

// The stand-in runs in this test process while a blocking child process talks to it, so the
// async tests use a multi-threaded runtime.
const BIN: &str = env!("CARGO_BIN_EXE_ghl-csv-finalize");
const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/events");

fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the CLI runs")
}

/// Runs the CLI, checks that it succeeded, and returns what it printed.
fn cli_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = cli(args, env);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn local_env(standin: &StandIn) -> Vec<(&'static str, String)> {
    vec![
        ("GHL_TOKEN", TOKEN.to_owned()),
        ("ALLOW_UNAUTHENTICATED", "true".into()),
        ("GHL_API_BASE_URL", standin.base_url()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn standin() -> StandIn {
    StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour {
            required_token: Some(TOKEN.into()),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end_offline_and_never_prints_the_token() {
    let stdout = cli_ok(&["demo"], &[]);
    assert!(
        stdout.contains(
            "PATCH /social-media-posting/ve9EPM428h8vShlRW1KT/csv/6578b9a4c5c9e5a0f0f3b2d1"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("authorization: Bearer [redacted]"),
        "{stdout}"
    );
    assert!(stdout.contains("version: 2021-07-28"));
    assert!(stdout.contains("\"ok\": true"));
    assert!(!stdout.contains("pit-demo"), "the demo token is redacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_runs_every_sample_event_through_the_handler() {
    let standin = standin().await;
    let env = local_env(&standin);
    for (name, _) in FINALIZE_EVENTS
        .iter()
        .chain([("apigw-v2-healthz.json", "")].iter())
    {
        let stdout = cli_ok(&["invoke", &format!("{EVENTS}/{name}")], &env_refs(&env));
        let body: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(body["ok"], true, "{name}");
    }
    assert_eq!(standin.received().len(), FINALIZE_EVENTS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_exits_non_zero_on_an_error_response() {
    let standin = standin().await;
    let mut env = local_env(&standin);
    env[0].1 = "pit-wrong-token".into();
    let output = cli(
        &["invoke", &format!("{EVENTS}/apigw-v2-path-params.json")],
        &env_refs(&env),
    );
    assert_eq!(output.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["error"]["code"], "upstream_auth_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reads_the_token_but_sends_nothing_upstream() {
    let standin = standin().await;
    let env = local_env(&standin);
    let stdout = cli_ok(
        &[
            "invoke",
            "--dry-run",
            &format!("{EVENTS}/apigw-v2-json-body.json"),
        ],
        &env_refs(&env),
    );
    let body: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body["dryRun"], true);
    assert_eq!(body["request"]["method"], "PATCH");
    assert_eq!(
        body["request"]["url"],
        format!(
            "{}/social-media-posting/{LOCATION}/csv/{CSV}",
            standin.base_url()
        )
    );
    assert_eq!(
        body["request"]["headers"]["authorization"],
        "Bearer [redacted]"
    );
    assert_eq!(body["request"]["body"], serde_json::json!({"userId": USER}));
    let stdout = cli_ok(
        &[
            "finalize",
            "--location",
            LOCATION,
            "--csv",
            CSV,
            "--dry-run",
        ],
        &env_refs(&env),
    );
    assert!(!stdout.contains(TOKEN));
    assert!(
        standin.received().is_empty(),
        "a dry run never calls HighLevel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_calls_highlevel_directly() {
    let standin = standin().await;
    let env = local_env(&standin);
    cli_ok(
        &[
            "finalize",
            "--location",
            LOCATION,
            "--csv",
            CSV,
            "--user",
            USER,
        ],
        &env_refs(&env),
    );
    let received = standin.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, serde_json::json!({"userId": USER}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_tools_reach_aws_through_the_service_endpoint_variables() {
    let standin = standin().await;
    let secret = unique("cli-token");
    put_secret(&secret, TOKEN).await;
    let home = std::env::temp_dir().join(unique("cli-home"));
    let home = home.to_string_lossy().into_owned();
    let env = [
        ("GHL_TOKEN_SECRET_ID", secret.as_str()),
        ("ALLOW_UNAUTHENTICATED", "true"),
        ("GHL_API_BASE_URL", &standin.base_url()),
        // Only the service's own variable says where Secrets Manager is.
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        // No profile or file of this machine's takes part.
        ("HOME", &home),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    cli_ok(&["finalize", "--location", LOCATION, "--csv", CSV], &env);
    assert_eq!(
        standin.finalize_tokens(),
        [TOKEN],
        "the token came from the secret in moto"
    );
}

#[test]
fn bad_arguments_exit_with_status_2_and_a_clear_message() {
    for args in [
        &["finalize", "--location", "a/b", "--csv", "C1"][..],
        &["finalize", "--csv", "C1"],
        &["invoke"],
        &["serve", "--addr", "not-an-address"],
        &["no-such-command"],
    ] {
        let output = cli(args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error:") && stderr.contains("--help"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_real_http_requests_and_stops_on_sigterm() {
    let standin = standin().await;
    let (mut child, base) = spawn_serve(&[], &local_env(&standin));

    let client = reqwest::Client::new();
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let finalize = client
        .post(format!("{base}/locations/{LOCATION}/csv/{CSV}/finalize"))
        .send()
        .await
        .unwrap();
    assert_eq!(finalize.status(), 200);
    let body: Value = serde_json::from_slice(&finalize.bytes().await.unwrap()).unwrap();
    assert_eq!(body["attempts"], 1);
    let too_large = client
        .post(format!("{base}/finalize"))
        .header("content-type", "application/json")
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    assert_eq!(standin.finalize_requests().len(), 1);
    assert_eq!(
        standin.csv_reads().len(),
        1,
        "the CSV's status, read once before the PATCH (serve keeps records in memory)"
    );

    // Graceful stop: SIGTERM, as a container runtime would send.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "serve exits cleanly on SIGTERM");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_queue_goes_through_the_receiver_the_queue_and_the_worker() {
    let stdout = cli_ok(&["demo", "--queue"], &[]);
    assert!(
        stdout.contains("What the receiver answered (202 Accepted)"),
        "{stdout}"
    );
    assert!(stdout.contains("\"status\": \"finalized\""), "{stdout}");
    assert_eq!(
        stdout.matches("  PATCH /social-media-posting/").count(),
        1,
        "{stdout}"
    );
    assert!(
        stdout.contains("  GET /social-media-posting/ve9EPM428h8vShlRW1KT/csv/6578b9a4c5c9e5a0f0f3b2d1?skip=0&limit=1"),
        "the CSV's status is read before the PATCH: {stdout}"
    );
    assert!(
        stdout.contains("(following the import after the finalize)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"type\": \"csv.import.completed\""),
        "{stdout}"
    );
    assert!(
        stdout.contains(".csv.import.completed, signature verified)"),
        "the stand-in verified the callback's signature: {stdout}"
    );
}

#[test]
fn demo_agency_finalizes_two_locations_through_one_agency_token() {
    let stdout = cli_ok(&["demo", "--agency"], &[]);
    assert_eq!(stdout.matches(": 200 OK").count(), 4, "{stdout}");
    assert_eq!(
        stdout.matches("POST /oauth/locationToken -> 200").count(),
        2,
        "one mint per location: {stdout}"
    );
    assert!(
        stdout.contains("tokens minted for Lx2SecondSubAccount9: 1"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("pit-demo-agency"),
        "no token printed: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_queue_follows_imports_as_its_environment_says() {
    let standin = standin().await;
    let mut env = local_env(&standin);
    env.push(("FOLLOW_INTERVAL_SECS", "1".into()));
    let (mut child, base) = spawn_serve(&["--queue"], &env);
    // The stand-in's import takes 2 s; checked after 1 s, then 2 s later.
    let status = queued_until(&base, Duration::from_secs(10), |status| {
        status["finalization"]["import"]["status"] == "completed"
    })
    .await;
    assert_eq!(
        status["finalization"]["import"]["status"], "completed",
        "FOLLOW_INTERVAL_SECS=1 is honoured (the default would wait 30 s): {status}"
    );
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_queue_answers_202_and_its_worker_finalizes_once() {
    let standin = standin().await;
    let (mut child, base) = spawn_serve(&["--queue"], &local_env(&standin));
    let status = queued_until(&base, Duration::from_secs(5), |status| {
        status["finalization"]["status"] == "finalized"
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("{base}/locations/{LOCATION}/csv/{CSV}/finalize");
    assert_eq!(status["finalization"]["status"], "finalized", "{status}");
    let again = client.post(&url).send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(standin.finalize_requests().len(), 1, "finalized once");
    child.kill().unwrap();
    let _ = child.wait();
}

/// Sends the sample finalize to a `serve --queue` at `base` (202), then asks the status route
/// until its record is as `wanted` (or `limit` passed); the last answer.
async fn queued_until(base: &str, limit: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
    let client = reqwest::Client::new();
    let url = format!("{base}/locations/{LOCATION}/csv/{CSV}/finalize");
    let accepted = client.post(&url).send().await.unwrap();
    assert_eq!(accepted.status(), 202);
    let body: Value = serde_json::from_slice(&accepted.bytes().await.unwrap()).unwrap();
    let id = body["finalizationId"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    loop {
        let answer = client
            .get(format!("{base}/finalizations/{id}"))
            .send()
            .await
            .unwrap();
        let status: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        if wanted(&status) || started.elapsed() > limit {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Starts `serve` on a free loopback port with `extra` arguments; returns it and its base URL,
/// read from the first line it prints (`listening on http://…`).
fn spawn_serve(extra: &[&str], env: &[(&str, String)]) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(extra)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .expect("prints its address")
        .to_owned();
    (child, base)
}
