//! One process, many finalizes (run it with `scripts/bench concurrency`).
//!
//! The release `bootstrap` under the Runtime API emulator, against a HighLevel stand-in that
//! answers every finalize in 200 ms: one process at `AWS_LAMBDA_MAX_CONCURRENCY` 1, 8, 32, 64
//! and 256, each given as many invocations at once as it may serve, in rounds; and, in the same
//! run, 64 sequential processes of the same binary (classic Lambda's 64 environments) given 64
//! at once. Printed: throughput, p50/p99 latency of an invocation, peak RSS (the sum over the
//! 64 processes) and CPU time per finalize over the measured rounds.
//!
//! Usage: concurrency BOOTSTRAP [ROUNDS=10]

#[path = "common/process.rs"]
mod process;

use std::time::{Duration, Instant};

use ghl_csv_finalize::local::runtime_api::RuntimeApi;
use ghl_csv_finalize::local::standin::{Behaviour, StandIn};
use process::{cpu_time, spawn, vm_hwm_kib};

const EVENT: &str = include_str!("../events/apigw-v2-path-params.json");
const TIMEOUT: Duration = Duration::from_secs(30);

/// The sample event for a location of its own (`i`).
fn event(i: usize) -> String {
    let mut event: serde_json::Value = serde_json::from_str(EVENT).expect("the sample is JSON");
    let location = format!("BenchLocation{i:04}");
    event["pathParameters"]["locationId"] = serde_json::json!(location);
    event["rawPath"] = serde_json::json!(format!("/locations/{location}/csv/bench-csv/finalize"));
    event.to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// `rounds` rounds of `width` invocations sent at once to whatever polls `runtime`; each
/// invocation's latency, and the time all took.
async fn rounds(runtime: &RuntimeApi, width: usize, rounds: usize) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(width * rounds);
    for _ in 0..rounds {
        let events: Vec<String> = (0..width).map(event).collect();
        let timed = futures_util::future::join_all(events.iter().map(|event| async move {
            let sent = Instant::now();
            let posted = runtime.invoke(event, TIMEOUT).await;
            assert!(
                posted
                    .is_some_and(|p| p.kind == "response" && p.body.contains("\"statusCode\":200")),
                "every invocation finalizes"
            );
            sent.elapsed()
        }))
        .await;
        latencies.extend(timed);
    }
    latencies.sort();
    (latencies, started.elapsed())
}

fn env(standin: &StandIn, concurrency: Option<usize>) -> Vec<(String, String)> {
    let mut env = vec![
        ("GHL_TOKEN".to_owned(), "pit-bench-concurrency".to_owned()),
        ("ALLOW_UNAUTHENTICATED".to_owned(), "true".to_owned()),
        ("GHL_API_BASE_URL".to_owned(), standin.base_url()),
    ];
    if let Some(n) = concurrency {
        env.push(("AWS_LAMBDA_MAX_CONCURRENCY".to_owned(), n.to_string()));
    }
    env
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args.next().expect("usage: concurrency BOOTSTRAP [ROUNDS]");
    let round_count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let standin = StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour::for_load(Duration::from_millis(200)),
    )
    .await
    .expect("stand-in");
    println!(
        "| processes × concurrency | invocations at once | throughput | p50 | p99 | peak RSS | CPU per finalize |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut alone = None;
    let mut at_64 = None;
    // The four the issue names, and 256: how one process fares past the template's default of 64.
    for n in [1, 8, 32, 64, 256] {
        let runtime = RuntimeApi::start().await.expect("emulator");
        let child = spawn(&binary, &runtime, &env(&standin, Some(n)));
        rounds(&runtime, n, 1).await; // warm: connections made, caches filled
        let cpu_before = child.id().map(cpu_time).unwrap_or_default();
        let (latencies, took) = rounds(&runtime, n, round_count).await;
        let cpu = child
            .id()
            .map(cpu_time)
            .unwrap_or_default()
            .saturating_sub(cpu_before);
        let rss = child.id().map_or(0, vm_hwm_kib);
        let p50 = percentile(&latencies, 0.5);
        if n == 1 {
            alone = Some(p50);
        }
        if n == 64 {
            at_64 = Some((p50, rss));
        }
        println!(
            "| 1 × {n} | {n} | {:.0}/s | {} | {} | {:.1} MiB | {:.3} ms |",
            latencies.len() as f64 / took.as_secs_f64(),
            ms(p50),
            ms(percentile(&latencies, 0.99)),
            rss as f64 / 1024.0,
            cpu.as_secs_f64() * 1000.0 / latencies.len() as f64
        );
        drop(child);
    }
    // Classic Lambda: 64 environments, one invocation each at a time.
    let runtime = RuntimeApi::start().await.expect("emulator");
    let children: Vec<_> = (0..64)
        .map(|_| spawn(&binary, &runtime, &env(&standin, None)))
        .collect();
    rounds(&runtime, 64, 1).await;
    let cpu = |children: &[tokio::process::Child]| -> Duration {
        children.iter().filter_map(|c| c.id()).map(cpu_time).sum()
    };
    let cpu_before = cpu(&children);
    let (latencies, took) = rounds(&runtime, 64, round_count).await;
    let cpu_used = cpu(&children).saturating_sub(cpu_before);
    let rss: u64 = children.iter().filter_map(|c| c.id()).map(vm_hwm_kib).sum();
    println!(
        "| 64 × 1 (sequential, today's binary) | 64 | {:.0}/s | {} | {} | {:.1} MiB in all | {:.3} ms |",
        latencies.len() as f64 / took.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        rss as f64 / 1024.0,
        cpu_used.as_secs_f64() * 1000.0 / latencies.len() as f64
    );
    if let (Some(alone), Some((p50, rss))) = (alone, at_64) {
        println!(
            "| 64 at once in one process against one alone (p50) | {:.2}× (target ≤ 1.2×); peak RSS {:.1} MiB (target < 24 MiB) |",
            p50.as_secs_f64() / alone.as_secs_f64(),
            rss as f64 / 1024.0
        );
    }
}
