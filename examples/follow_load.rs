//! Following imports under load (run it with `scripts/bench follow`).
//!
//! N finalizes (default 1,000) accepted in queue mode within a few seconds, each import taking
//! 5 to 60 s at the stand-in (spread evenly), one in ten ending `failed` with a post error; the
//! deployed follow-up settings (`FOLLOW_INTERVAL_SECS` 30, doubling) and a completion callback
//! per import to the stand-in, which checks its signature. Four drain loops stand for the
//! worker's invocations; each batch they receive is one invocation.
//!
//! At the end every import must have been followed to its end and its callback delivered
//! exactly once (by `webhook-id`, signature verified). Printed: CSV reads per import, worker
//! messages and invocations per import, and how long after its import ended each import's end
//! was seen.
//!
//! Usage: follow_load [FINALIZES=1000]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghl_csv_finalize::app::config::{CallbackConfig, DeliveryConfig};
use ghl_csv_finalize::auth::CallbackKey;
use ghl_csv_finalize::local::drain;
use ghl_csv_finalize::local::standin::{Behaviour, ImportScript, StandIn};
use ghl_csv_finalize::request::callback::{CallbackUrl, Reach};
use ghl_csv_finalize::{App, Config};
use lambda_http::Body;

const TOKEN: &str = "pit-follow-load";
const LOCATION: &str = "ve9EPM428h8vShlRW1KT";
const SECRET: &str = "whsec_Zm9sbG93LWxvYWQtY2FsbGJhY2stc2VjcmV0";
const DRAINS: usize = 4;

/// How long import `i` of `n` takes: evenly from 5 to 60 s.
fn import_time(i: usize, n: usize) -> Duration {
    Duration::from_millis(5_000 + (55_000 * i as u64) / (n.max(2) as u64 - 1))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let standin = StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour {
            callback_secret: Some(SECRET.into()),
            forget_requests: false,
            ..Behaviour::default()
        },
    )
    .await
    .expect("stand-in");
    for i in 0..n {
        let failed = i % 10 == 9;
        standin.script_import(
            LOCATION,
            &csv(i),
            ImportScript {
                posts: 3,
                errors: if failed {
                    vec![(1, "the account is disconnected".into())]
                } else {
                    Vec::new()
                },
                ends: if failed { "failed" } else { "completed" }.into(),
                time: Some(import_time(i, n)),
            },
        );
    }
    let mut config = Config::local(TOKEN, &standin.base_url()).expect("local settings");
    config.delivery = DeliveryConfig::in_memory(true);
    let reach = Reach {
        allow_private: true,
    };
    config.callback = CallbackConfig {
        default_url: CallbackUrl::parse(&standin.callback_url("load"), reach).ok(),
        reach,
        local_key: CallbackKey::parse(SECRET).ok(),
    };
    let app = Arc::new(App::build(config).await.expect("the app builds"));
    let queue = app.memory_queue().expect("queue mode");
    let drains: Vec<_> = (0..DRAINS)
        .map(|_| tokio::spawn(drain::run(Arc::clone(&app), Arc::clone(&queue))))
        .collect();

    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let answers = futures_util::future::join_all(chunk.iter().map(|&i| {
            let request =
                http::Request::post(format!("/locations/{LOCATION}/csv/{}/finalize", csv(i)))
                    .body(Body::Empty)
                    .expect("a request");
            app.respond(request)
        }))
        .await;
        assert!(
            answers.iter().all(|a| a.status() == 202),
            "every finalize accepted"
        );
    }
    let accepted_after = started.elapsed();

    // Until every import's callback came (or 10 minutes).
    let callbacks = loop {
        let callbacks = standin.callbacks();
        if callbacks.len() >= n || started.elapsed() > Duration::from_secs(600) {
            break callbacks;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let done_after = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await; // anything late shows up
    let callbacks = standin.callbacks().len().max(callbacks.len());
    let received = standin.callbacks();
    let mut per_id: HashMap<String, u32> = HashMap::new();
    for callback in &received {
        *per_id.entry(callback.webhook_id.clone()).or_default() += 1;
    }
    let verified = received.iter().filter(|c| c.verified == Some(true)).count();
    let failed = received
        .iter()
        .filter(|c| c.body["type"] == "csv.import.failed")
        .count();
    let once = per_id.values().filter(|&&k| k == 1).count();
    let reads = standin.csv_reads().len();
    let (batches, messages) = queue.handed_over();
    for drain in drains {
        drain.abort();
    }
    let per = |x: usize| x as f64 / n as f64;
    println!(
        "| follow: finalizes accepted (202) | {n} in {:.1} s |",
        accepted_after.as_secs_f64()
    );
    println!("| follow: imports (5–60 s each; 1 in 10 failed) followed to their end and called back | {} in {:.1} s |", per_id.len(), done_after.as_secs_f64());
    println!("| follow: callbacks delivered exactly once / signature verified / csv.import.failed | {once} / {verified} / {failed} (of {callbacks} received) |");
    println!(
        "| follow: CSV reads per import (one before the PATCH, then the checks) | {:.2} |",
        per(reads)
    );
    println!(
        "| follow: worker messages per import (finalize + checks) | {:.2} |",
        per(messages as usize)
    );
    println!(
        "| follow: worker invocations (batches of up to 10) per import | {:.2} |",
        per(batches as usize)
    );
    assert_eq!(per_id.len(), n, "every import called back");
    assert_eq!(once, n, "each exactly once");
    assert_eq!(verified, callbacks, "every signature verifies");
    assert_eq!(failed, n / 10, "the failed imports reported as failed");
    assert!(queue.dead_letters().is_empty(), "no dead letter");
}

fn csv(i: usize) -> String {
    format!("follow-{i}")
}
