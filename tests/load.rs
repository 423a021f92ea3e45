//! A bounded load test on loopback: `LOAD_REQUESTS` (default 10,000) requests at concurrency
//! `LOAD_CONCURRENCY` (default 64) through the real `serve` HTTP server into the handler, against
//! the HighLevel stand-in failing 10% of calls at random. Every request must get a contract
//! answer, none may be lost, memory must stay flat and connections must be reused.
//!
//! Figures (throughput, latency percentiles) are printed; for the table in docs/reliability.md run
//! `cargo test --release --test load -- --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ghl_csv_finalize::local::server::LocalServer;
use ghl_csv_finalize::local::standin::{Behaviour, Faults, StandIn};
use ghl_csv_finalize::{App, Config};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_at_concurrency_64_all_get_a_contract_answer() {
    let total = env_number("LOAD_REQUESTS", 10_000);
    let concurrency = env_number("LOAD_CONCURRENCY", 64);
    let faults = Faults {
        fault_status: Some(503),
        random_fault_rate: 0.10,
        ..Faults::default()
    };
    let standin = StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour {
            faults,
            forget_requests: true,
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let base = standin.base_url();
    let config = Config::local("pit-load", &base).unwrap();
    let app = Arc::new(App::build(config).await.unwrap());
    let server = LocalServer::start(app, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let url = format!("http://{}/finalize", server.address());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();

    // One request in ten is invalid (a 400); the rest are valid and distinct.
    let send = move |i: usize| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let csv = if i % 10 == 7 {
                format!("bad.{i}")
            } else {
                format!("load-{i}")
            };
            let body = format!(r#"{{"locationId":"ve9EPM428h8vShlRW1KT","csvId":"{csv}"}}"#);
            let started = Instant::now();
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let status = match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body: serde_json::Value =
                        serde_json::from_slice(&response.bytes().await.unwrap_or_default())
                            .unwrap_or_default();
                    assert_eq!(
                        body["ok"].as_bool(),
                        Some(status == 200),
                        "every answer is the contract's envelope"
                    );
                    status
                }
                Err(error) => panic!("request {i} got no answer: {error}"),
            };
            (status, started.elapsed())
        }
    };

    // Warm up, then measure memory before and after the run.
    let mut warm_ok = 0;
    for i in 0..200 {
        if send(total + i).await.0 == 200 {
            warm_ok += 1;
        }
    }
    // Two equal rounds: memory may settle in the first (pools, buffers), must stay flat in the second.
    let started = Instant::now();
    let mut results = Vec::with_capacity(total);
    let mut rss = Vec::new();
    for round in [0..total / 2, total / 2..total] {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(round.start));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (next, send, end) = (Arc::clone(&next), send.clone(), round.end);
            workers.spawn(async move {
                let mut results = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= end {
                        break results;
                    }
                    results.push(send(i).await);
                }
            });
        }
        while let Some(batch) = workers.join_next().await {
            results.extend(batch.expect("no worker panicked"));
        }
        rss.push(rss_kib());
    }
    let elapsed = started.elapsed();
    let (rss_before, rss_after) = (rss[0], rss[1]);

    assert_eq!(results.len(), total, "no request lost");
    let count = |s: u16| results.iter().filter(|(status, _)| *status == s).count();
    let (ok, invalid, unavailable) = (count(200), count(400), count(503));
    assert_eq!(
        ok + invalid + unavailable,
        total,
        "only 200, 400 and 503 are possible here"
    );
    assert_eq!(invalid, (0..total).filter(|i| i % 10 == 7).count());
    // Every 200 is one import HighLevel finalized, and nothing else was finalized.
    assert_eq!(standin.finalized() as usize, ok + warm_ok);
    assert!(
        unavailable * 100 <= total,
        "with 3 attempts, 10% faults rarely exhaust: {unavailable}"
    );
    assert!(
        standin.connections() as usize <= concurrency + 8,
        "connections are pooled: {}",
        standin.connections()
    );
    assert!(
        rss_after < rss_before + 4 * 1024,
        "memory stays flat: {rss_before} KiB -> {rss_after} KiB"
    );

    let mut latencies: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    println!(
        "load: {total} requests, concurrency {concurrency}, {:.1} s, {:.0} req/s; latency p50 {:?} p90 {:?} p99 {:?} max {:?}; \
         200: {ok}, 400: {invalid}, 503: {unavailable}; upstream connections {}; RSS after each half {rss_before} -> {rss_after} KiB",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
        standin.connections(),
    );
    server.stop(Duration::from_secs(5)).await;
}
