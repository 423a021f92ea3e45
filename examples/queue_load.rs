//! Queue mode under load, and the worker's concurrency (run it with `scripts/bench queue`).
//!
//! 1. **Batch concurrency**: one worker invocation with 1 message, then with 10, against a
//!    HighLevel stand-in answering every finalize in 200 ms. Concurrent finalizing makes the
//!    batch of 10 take about as long as one; serial would take 10×.
//! 2. **Load**: N requests (default 10,000), arriving steadily over twice the outage, through
//!    the receiver (`App::respond`), the in-memory queue and four drain loops, with the
//!    stand-in failing 10% of finalizes at random (429 with `Retry-After: 2`) and down for 60 s
//!    in the middle (503, no `Retry-After`, so the messages back off from 30 s). At the end every request must have been finalized exactly
//!    once: one 200 per csvId at the stand-in, none lost, none doubled, no dead letter.
//!
//! Usage: queue_load [REQUESTS=10000] [OUTAGE_SECS=60]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghl_csv_finalize::app::config::DeliveryConfig;
use ghl_csv_finalize::local::drain;
use ghl_csv_finalize::local::standin::{Behaviour, Faults, Scripted, StandIn};
use ghl_csv_finalize::{App, Config};
use lambda_http::lambda_runtime::Context;
use lambda_http::Body;
use serde_json::{json, Value};

const TOKEN: &str = "pit-queue-load";
const LOCATION: &str = "ve9EPM428h8vShlRW1KT";

async fn app(base_url: &str, queue: bool) -> Arc<App> {
    let mut config = Config::local(TOKEN, base_url).expect("local settings");
    config.delivery = DeliveryConfig::in_memory(queue);
    config.max_attempts = 1; // every fault goes back to the queue: the hardest case
    Arc::new(App::build(config).await.expect("the app builds"))
}

fn finalize_request(csv: &str) -> lambda_http::Request {
    http::Request::post(format!("/locations/{LOCATION}/csv/{csv}/finalize"))
        .body(Body::Empty)
        .expect("a request")
}

/// An SQS event of `n` messages for new csvIds, as the event source mapping delivers them.
fn sqs_event(n: usize, round: usize) -> Value {
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let csv = format!("batch-{round}-{i}");
            let id = format!("fz_{:032x}", round * 1000 + i + 1);
            let body = json!({"finalizationId": id, "locationId": LOCATION, "csvId": csv,
                              "acceptedAtMs": 0, "requestId": "bench"});
            json!({"messageId": format!("m-{round}-{i}"), "receiptHandle": "r", "body": body.to_string(),
                   "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"})
        })
        .collect();
    json!({ "Records": records })
}

async fn batch_concurrency() {
    let standin = StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour::for_load(Duration::from_millis(200)),
    )
    .await
    .expect("stand-in");
    let app = app(&standin.base_url(), true).await;
    let mut context = Context::default();
    context.request_id = "bench".into();
    let mut timings = Vec::new();
    for (round, n) in [(1, 1), (2, 10), (3, 1), (4, 10)] {
        let started = Instant::now();
        let answer = app.work_sqs(sqs_event(n, round), &context).await;
        assert!(
            answer.batch_item_failures.is_empty(),
            "every message finalized"
        );
        timings.push((n, started.elapsed()));
    }
    let one = timings
        .iter()
        .filter(|(n, _)| *n == 1)
        .map(|(_, d)| *d)
        .min()
        .unwrap();
    let ten = timings
        .iter()
        .filter(|(n, _)| *n == 10)
        .map(|(_, d)| *d)
        .min()
        .unwrap();
    println!(
        "| worker: 1 message, stand-in answering in 200 ms | {:.0} ms |",
        one.as_secs_f64() * 1e3
    );
    println!(
        "| worker: batch of 10, same stand-in | {:.0} ms ({:.2}× one message; budget well under 2×) |",
        ten.as_secs_f64() * 1e3,
        ten.as_secs_f64() / one.as_secs_f64()
    );
    assert_eq!(standin.finalized(), 22);
}

async fn load(requests: usize, outage: Duration) {
    let standin = StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour {
            faults: Faults {
                fault_status: Some(429),
                retry_after: Some("2".into()),
                random_fault_rate: 0.10,
                ..Faults::default()
            },
            ..Behaviour::default()
        },
    )
    .await
    .expect("stand-in");
    let standin = Arc::new(standin);
    let app = app(&standin.base_url(), true).await;
    let queue = app.memory_queue().expect("queue mode");
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(drain::run(Arc::clone(&app), Arc::clone(&queue))))
        .collect();
    let started = Instant::now();
    let mut outage_window = None;
    for chunk_start in (0..requests).step_by(100) {
        if outage_window.is_none() && chunk_start >= requests / 2 {
            standin.script([Scripted::status(503)]);
            outage_window = Some(Instant::now());
            let standin = Arc::clone(&standin);
            tokio::spawn(async move {
                tokio::time::sleep(outage).await;
                standin.script([Scripted::Documented]);
            });
        }
        let answers = futures_util::future::join_all(
            (chunk_start..(chunk_start + 100).min(requests))
                .map(|i| app.respond(finalize_request(&format!("load-{i}")))),
        )
        .await;
        for answer in answers {
            assert_eq!(answer.status(), 202, "the receiver accepts every request");
        }
        // A steady arrival rate over twice the outage, so half the requests arrive while
        // HighLevel is down.
        tokio::time::sleep(outage * 2 / (requests / 100).max(1) as u32).await;
    }
    let accepted_after = started.elapsed();
    // Wait until every request was finalized (or give up after 15 minutes).
    let finalized_per_csv = loop {
        let mut per_csv: HashMap<String, u32> = HashMap::new();
        for received in standin.finalize_requests() {
            if received.status == 200 {
                *per_csv.entry(received.path.clone()).or_default() += 1;
            }
        }
        if per_csv.len() >= requests || started.elapsed() > Duration::from_secs(900) {
            break per_csv;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let drained_after = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await; // anything still in flight shows up
    let attempts = standin.finalize_requests().len();
    let doubled = finalized_per_csv.values().filter(|&&n| n > 1).count();
    let lost = requests - finalized_per_csv.len();
    for worker in workers {
        worker.abort();
    }
    println!(
        "| load: requests accepted (202) | {requests} in {:.1} s |",
        accepted_after.as_secs_f64()
    );
    println!(
        "| load: HighLevel outage | {} s, starting after {} requests |",
        outage.as_secs(),
        requests / 2
    );
    println!("| load: finalize attempts (10% random 429s, the outage's 503s) | {attempts} |");
    println!(
        "| load: all finalized after | {:.1} s |",
        drained_after.as_secs_f64()
    );
    println!("| load: finalized exactly once / lost / doubled / dead letters | {} / {lost} / {doubled} / {} |",
        finalized_per_csv.values().filter(|&&n| n == 1).count(), queue.dead_letters().len());
    assert_eq!(
        (lost, doubled, queue.dead_letters().len()),
        (0, 0, 0),
        "exactly once"
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let outage = Duration::from_secs(args.get(2).and_then(|v| v.parse().ok()).unwrap_or(60));
    println!("| figure | value |");
    println!("|---|---|");
    batch_concurrency().await;
    load(requests, outage).await;
}
