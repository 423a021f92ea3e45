//! Cold-start and warm-invocation benchmark (run it with `scripts/bench`).
//!
//! Spawns the release `bootstrap` under the project's Lambda Runtime API emulator, with moto
//! for Secrets Manager, DynamoDB and SQS (behind a counting proxy) and the HighLevel stand-in,
//! and reports: init time (spawn → first `/runtime/invocation/next`) in each delivery mode,
//! first invocation, warm p50/p99 over sequential invocations, peak RSS (VmHWM), Secrets
//! Manager calls and new upstream TCP connections per warm invocation; with records, the warm
//! overhead against one DynamoDB round trip, and what a replay costs. The same run measures a
//! no-op function (the floor) and quotes our figures as ratios to it.
//!
//! Usage: coldstart BOOTSTRAP NOOP [WARM_INVOCATIONS] [COLD_STARTS]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghl_csv_finalize::local::runtime_api::RuntimeApi;
use ghl_csv_finalize::local::standin::{Behaviour, StandIn};

#[path = "common/moto.rs"]
mod moto;
#[path = "common/process.rs"]
mod process;
use moto::{counting_proxy, start_moto};
use process::{spawn, vm_hwm_kib};

const EVENT: &str = include_str!("../events/apigw-v2-path-params.json");

/// The sample event with an `Idempotency-Key` of `n`: a new finalize each time.
fn keyed_event(n: usize) -> String {
    let mut event: serde_json::Value = serde_json::from_str(EVENT).expect("the sample is JSON");
    event["headers"]["idempotency-key"] =
        serde_json::json!(format!("bench-{n}-{}", std::process::id()));
    event.to_string()
}

fn same_event(_: usize) -> String {
    EVENT.to_owned()
}
const TIMEOUT: Duration = Duration::from_secs(20);

struct Figures {
    init: Duration,
    first: Duration,
    warm: Vec<Duration>,
    peak_rss_kib: u64,
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One cold start and `warm` warm invocations of `binary`.
async fn measure(
    binary: &str,
    env: &[(String, String)],
    warm: usize,
    event: impl Fn(usize) -> String,
    before_warm: impl Fn(),
    after_warm: impl Fn(),
) -> Figures {
    let runtime = RuntimeApi::start().await.expect("emulator");
    let spawned = Instant::now();
    let child = spawn(binary, &runtime, env);
    let first = runtime
        .invoke(&event(0), TIMEOUT)
        .await
        .expect("first invocation answered");
    assert_eq!(first.kind, "response", "{}", first.body);
    assert!(first.body.contains("\"statusCode\":20"), "{}", first.body);
    let first_done = Instant::now();
    let init = runtime.first_poll().expect("polled") - spawned;
    before_warm();
    let mut latencies = Vec::with_capacity(warm);
    for n in 1..=warm {
        let event = event(n);
        let started = Instant::now();
        let outcome = runtime.invoke(&event, TIMEOUT).await.expect("answered");
        latencies.push(started.elapsed());
        assert!(
            outcome.body.contains("\"statusCode\":200"),
            "{}",
            outcome.body
        );
    }
    after_warm();
    latencies.sort();
    let peak_rss_kib = child.id().map(vm_hwm_kib).unwrap_or(0);
    drop(child);
    Figures {
        init,
        first: first_done - spawned - init,
        warm: latencies,
        peak_rss_kib,
    }
}

async fn create_secrets(moto: &str) {
    let client = moto::secrets(moto);
    for (name, value) in [
        ("bench/token", "pit-bench-token"),
        ("bench/inbound", r#"{"apiKeys":["demo-api-key-0001"]}"#),
    ] {
        client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("moto accepts the secret");
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A DynamoDB client for `endpoint`, sending through the function's HTTPS client.
fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Builder, Credentials, Region};
    let http = ghl_csv_finalize::app::https::client().expect("the HTTPS client builds");
    aws_sdk_dynamodb::Client::from_conf(
        Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(ghl_csv_finalize::aws::sdk_http_client(http))
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
            .build(),
    )
}

/// Creates the records table and the queue in moto; their names for the environment.
async fn create_table_and_queue(moto: &str) -> (String, String) {
    ghl_csv_finalize::records::dynamodb::create_table(&dynamodb_client(moto), "bench-records")
        .await
        .expect("moto creates the table");
    use aws_sdk_sqs::config::{BehaviorVersion, Builder, Credentials, Region};
    let http = ghl_csv_finalize::app::https::client().expect("the HTTPS client builds");
    let sqs = aws_sdk_sqs::Client::from_conf(
        Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(ghl_csv_finalize::aws::sdk_http_client(http))
            .region(Region::new("us-east-1"))
            .endpoint_url(moto)
            .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
            .build(),
    );
    let url = sqs
        .create_queue()
        .queue_name("bench-queue")
        .send()
        .await
        .expect("moto creates the queue")
        .queue_url
        .expect("a url");
    ("bench-records".into(), url)
}

/// The median time of one DynamoDB call through `endpoint`, as the function's client sends it:
/// the conditional `PutItem` that takes a record (a new key each time), and a `GetItem`.
async fn dynamodb_round_trips(endpoint: &str) -> (Duration, Duration) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let client = dynamodb_client(endpoint);
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for n in 0..200 {
        let started = Instant::now();
        client
            .put_item()
            .table_name("bench-records")
            .item("pk", AttributeValue::S(format!("fz_reference_{n}")))
            .item("status", AttributeValue::S("in_progress".into()))
            .item("expires_at", AttributeValue::N("9999999999".into()))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", AttributeValue::N("1".into()))
            .send()
            .await
            .expect("PutItem");
        puts.push(started.elapsed());
        let started = Instant::now();
        client
            .get_item()
            .table_name("bench-records")
            .key("pk", AttributeValue::S(format!("fz_reference_{n}")))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        gets.push(started.elapsed());
    }
    (median(puts), median(gets))
}

fn with(env: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = env.to_vec();
    all.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    all
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bootstrap, noop) = match (args.get(1), args.get(2)) {
        (Some(b), Some(n)) => (b.clone(), n.clone()),
        _ => {
            eprintln!("usage: coldstart BOOTSTRAP NOOP [WARM_INVOCATIONS] [COLD_STARTS] (see scripts/bench)");
            std::process::exit(2);
        }
    };
    let warm: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(1000);
    let colds: usize = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(10);

    let (_moto_process, moto) = start_moto();
    create_secrets(&moto).await;
    let (table, queue_url) = create_table_and_queue(&moto).await;
    let (proxy, calls) = counting_proxy(moto.clone()).await;
    let standin = StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour::for_load(Duration::ZERO),
    )
    .await
    .expect("stand-in");
    let env: Vec<(String, String)> = vec![
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), proxy.clone()),
        ("GHL_TOKEN_SECRET_ID".into(), "bench/token".into()),
        ("INBOUND_AUTH_SECRET_ID".into(), "bench/inbound".into()),
        ("GHL_API_BASE_URL".into(), standin.base_url()),
    ];
    let records_env = with(
        &env,
        &[
            ("AWS_ENDPOINT_URL_DYNAMODB", &proxy),
            ("IDEMPOTENCY_TABLE", &table),
        ],
    );
    let queue_env = with(
        &records_env,
        &[("AWS_ENDPOINT_URL_SQS", &moto), ("QUEUE_URL", &queue_url)],
    );

    let mut ours_init = Vec::new();
    let mut ours_first = Vec::new();
    let mut records_init = Vec::new();
    let mut queue_init = Vec::new();
    let mut floor_init = Vec::new();
    for _ in 0..colds {
        let f = measure(&noop, &[], 0, same_event, || {}, || {}).await;
        floor_init.push(f.init);
        let o = measure(&bootstrap, &env, 0, same_event, || {}, || {}).await;
        ours_init.push(o.init);
        ours_first.push(o.first);
        records_init.push(
            measure(&bootstrap, &records_env, 0, keyed_event, || {}, || {})
                .await
                .init,
        );
        queue_init.push(
            measure(&bootstrap, &queue_env, 0, keyed_event, || {}, || {})
                .await
                .init,
        );
    }
    let floor = measure(&noop, &[], warm, same_event, || {}, || {}).await;
    let standin = Arc::new(standin);
    // Counts of (secret calls, DynamoDB calls, upstream connections, finalizes) around the warm run.
    type Marks = (u64, u64, u64, u64, u64);
    let marks = Arc::new(std::sync::Mutex::new((
        (0u64, 0u64, 0u64, 0u64, 0u64),
        (0u64, 0u64, 0u64, 0u64, 0u64),
    )));
    let snapshot = {
        let (calls, standin) = (Arc::clone(&calls), Arc::clone(&standin));
        move || -> Marks {
            (
                calls.secrets.load(Ordering::SeqCst),
                calls.dynamodb.load(Ordering::SeqCst),
                standin.connections(),
                standin.finalized(),
                calls.dynamodb_micros.load(Ordering::SeqCst),
            )
        }
    };
    let run = |env: Vec<(String, String)>, event: fn(usize) -> String| {
        let (before, after) = (snapshot.clone(), snapshot.clone());
        let (m1, m2, marks) = (Arc::clone(&marks), Arc::clone(&marks), Arc::clone(&marks));
        let bootstrap = bootstrap.clone();
        async move {
            let figures = measure(
                &bootstrap,
                &env,
                warm,
                event,
                move || m1.lock().unwrap().0 = before(),
                move || m2.lock().unwrap().1 = after(),
            )
            .await;
            let (b, a) = *marks.lock().unwrap();
            let per = |x: u64, y: u64| (y - x) as f64 / warm as f64;
            (
                figures,
                [
                    per(b.0, a.0),
                    per(b.1, a.1),
                    per(b.2, a.2),
                    per(b.3, a.3),
                    per(b.4, a.4) / 1000.0,
                ],
            )
        }
    };
    let (ours, ours_per) = run(env.clone(), same_event).await;
    let (recorded, recorded_per) = run(records_env.clone(), keyed_event).await;
    let (replayed, replayed_per) = run(records_env.clone(), same_event).await;
    let (round_trip, get_round_trip) = dynamodb_round_trips(&proxy).await;
    let size = std::fs::metadata(&bootstrap).map(|m| m.len()).unwrap_or(0);

    let median_of = |v: Vec<Duration>| median(v);
    let (ours_init, floor_init, ours_first) = (
        median_of(ours_init),
        median_of(floor_init),
        median_of(ours_first),
    );
    let (records_init, queue_init) = (median_of(records_init), median_of(queue_init));
    let (p50, p99) = (percentile(&ours.warm, 0.50), percentile(&ours.warm, 0.99));
    let (floor_p50, floor_p99) = (percentile(&floor.warm, 0.50), percentile(&floor.warm, 0.99));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("| figure | ghl-csv-finalize | no-op floor | ratio / budget |");
    println!("|---|---|---|---|");
    for (mode, init) in [
        ("sync", ours_init),
        ("sync with records", records_init),
        ("queue", queue_init),
    ] {
        println!(
            "| init, {mode}, median of {colds} (spawn → first /next) | {} | {} | {:.1}× (budget ≤ 2×) |",
            ms(init),
            ms(floor_init),
            ratio(init, floor_init)
        );
    }
    println!(
        "| first invocation (secrets read, TLS-free loopback) | {} | — | — |",
        ms(ours_first)
    );
    println!(
        "| warm p50 over {warm} | {} | {} | +{} (budget ≤ +0.30 ms) |",
        ms(p50),
        ms(floor_p50),
        ms(p50.saturating_sub(floor_p50))
    );
    println!(
        "| warm p99 over {warm} | {} | {} | {:.1}× |",
        ms(p99),
        ms(floor_p99),
        ratio(p99, floor_p99)
    );
    println!(
        "| peak RSS (VmHWM) | {:.1} MiB | {:.1} MiB | budget ≤ 16 MiB |",
        ours.peak_rss_kib as f64 / 1024.0,
        floor.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "| Secrets Manager calls per warm invocation | {:.3} | — | must be 0 |",
        ours_per[0]
    );
    println!(
        "| new upstream TCP connections per warm invocation | {:.3} | — | must be 0 |",
        ours_per[2]
    );
    let recorded_p50 = percentile(&recorded.warm, 0.50);
    let waited = Duration::from_secs_f64(recorded_per[4] / 1000.0);
    println!(
        "| records: warm p50, a new key each time | {} | sync without records {} | +{} for {:.2} DynamoDB calls |",
        ms(recorded_p50),
        ms(p50),
        ms(recorded_p50.saturating_sub(p50)),
        recorded_per[1],
    );
    println!(
        "| records: of that, DynamoDB's own time (the proxy's view of the two exchanges, mean) | {} | — | the function adds {} beyond them (budget: no more than the two round trips) |",
        ms(waited),
        ms(recorded_p50.saturating_sub(p50).saturating_sub(waited)),
    );
    println!(
        "| DynamoDB round trip, p50 from the bench (same client kind and proxy): conditional PutItem / GetItem | {} / {} | — | — |",
        ms(round_trip),
        ms(get_round_trip)
    );
    println!(
        "| replay: warm p50 | {} | — | DynamoDB calls {:.2}, secret reads {:.2}, HighLevel calls {:.2} (budget 1 / 0 / 0) |",
        ms(percentile(&replayed.warm, 0.50)),
        replayed_per[1],
        replayed_per[0],
        replayed_per[3]
    );
    println!(
        "| stripped binary | {:.2} MB | — | budget ≤ 6.5 MB |",
        size as f64 / 1e6
    );
}
