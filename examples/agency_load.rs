//! One agency connection for many sub-accounts, measured (run it with `scripts/bench agency`).
//!
//! N locations (default 1,000) finalized in process against the HighLevel stand-in, with
//! Secrets Manager in moto behind a counting proxy, two ways side by side:
//! - **agency**: one agency secret (`GHL_AGENCY_SECRET_ID`); each location's token minted on
//!   its first finalize;
//! - **per location**: a secret per location (`GHL_TOKEN_SECRET_ID=bench/{locationId}/token`).
//!
//! Each way: a first round (one finalize per location: the mints, or the secret reads), then
//! warm rounds over every location. Printed: mints per location, Secrets Manager reads per
//! finalize, and p50/p99 of a warm finalize (the minted token cached) for both ways.
//!
//! Usage: agency_load [LOCATIONS=1000] [WARM_ROUNDS=5]

#[path = "common/moto.rs"]
mod moto;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ghl_csv_finalize::aws::{AwsClients, SecretsClient};
use ghl_csv_finalize::local::standin::{Behaviour, StandIn};
use ghl_csv_finalize::{App, Config};
use lambda_http::Body;
use moto::{counting_proxy, secrets, start_moto};

const COMPANY: &str = "bench-company";

fn location(i: usize) -> String {
    format!("BenchLocation{i:06}")
}

async fn app(token_variable: &str, secret: &str, standin: &StandIn, proxy: &str) -> App {
    let env = [
        (token_variable, secret.to_owned()),
        ("ALLOW_UNAUTHENTICATED", "true".to_owned()),
        ("GHL_API_BASE_URL", standin.base_url()),
    ];
    let config = Config::from_lookup(|name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("bench settings");
    let config = Config {
        lines: ghl_csv_finalize::observe::Lines::Discard,
        ..config
    };
    let http = ghl_csv_finalize::app::https::client().expect("the HTTPS client builds");
    let aws = AwsClients {
        secrets: Some(SecretsClient::from_client(secrets(proxy))),
        dynamodb: None,
        sqs: None,
    };
    App::build_with(config, http, aws)
        .await
        .expect("the app builds")
}

/// One finalize for each of `n` locations, round `round`; each one's latency.
async fn round(app: &App, n: usize, round: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let request = http::Request::post(format!(
            "/locations/{}/csv/bench-{round}-{i}/finalize",
            location(i)
        ))
        .body(Body::Empty)
        .expect("a request");
        let started = Instant::now();
        let answer = app.respond(request).await;
        latencies.push(started.elapsed());
        assert_eq!(
            answer.status(),
            200,
            "every finalize succeeds: {}",
            String::from_utf8_lossy(answer.body().as_ref())
        );
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let (_moto_process, moto) = start_moto();
    let admin = secrets(&moto);
    let entry = serde_json::json!({
        "access_token": "bench-agency-access", "refresh_token": "bench-agency-refresh",
        "expires_at": 4_102_444_800_i64, "user_type": "Company", "companyId": COMPANY,
        "client_id": "bench-client", "client_secret": "bench-secret",
    });
    admin
        .create_secret()
        .name("bench/agency")
        .secret_string(entry.to_string())
        .send()
        .await
        .expect("moto takes the agency secret");
    for i in 0..n {
        admin
            .create_secret()
            .name(format!("bench/{}/token", location(i)))
            .secret_string(format!("pit-bench-{i}"))
            .send()
            .await
            .expect("moto takes a location secret");
    }
    let (proxy, calls) = counting_proxy(moto.clone()).await;
    // Both ways built and given their first round, then their warm rounds taken in turn, so
    // neither is measured on a quieter or warmer machine than the other.
    let mut ways = Vec::new();
    for (way, variable, secret) in [
        ("agency", "GHL_AGENCY_SECRET_ID", "bench/agency"),
        (
            "per location",
            "GHL_TOKEN_SECRET_ID",
            "bench/{locationId}/token",
        ),
    ] {
        // A stand-in of its own: one that minted for a location accepts only the minted token.
        let standin = StandIn::start(
            ([127, 0, 0, 1], 0).into(),
            Behaviour::for_load(Duration::ZERO),
        )
        .await
        .expect("stand-in");
        standin.oauth_pair(COMPANY, "bench-agency-access", "bench-agency-refresh");
        let app = app(variable, secret, &standin, &proxy).await;
        let before = calls.secrets.load(Ordering::SeqCst);
        round(&app, n, 0).await;
        let first_reads = calls.secrets.load(Ordering::SeqCst) - before;
        ways.push((way, standin, app, first_reads, 0u64, Vec::new()));
    }
    for r in 1..=rounds {
        for (_, _, app, _, warm_reads, warm) in &mut ways {
            let before = calls.secrets.load(Ordering::SeqCst);
            warm.extend(round(app, n, r).await);
            *warm_reads += calls.secrets.load(Ordering::SeqCst) - before;
        }
    }
    let mints = ways[0].1.mints();
    let mut table = Vec::new();
    for (way, _, _, first_reads, warm_reads, mut warm) in ways {
        warm.sort();
        table.push((
            way,
            first_reads,
            warm_reads,
            percentile(&warm, 0.5),
            percentile(&warm, 0.99),
        ));
    }
    let minted: u64 = mints.values().sum();
    let once_each = (0..n).all(|i| mints.get(&location(i)) == Some(&1));
    println!("| agency: locations | {n} (first round, then {rounds} warm rounds over all) |");
    println!(
        "| agency: mints per location | {:.2} ({minted} in all; exactly one each: {once_each}) |",
        minted as f64 / n as f64
    );
    for (way, first_reads, warm_reads, p50, p99) in &table {
        println!(
            "| {way}: Secrets Manager reads per finalize, first round / warm | {:.3} / {:.4} |",
            *first_reads as f64 / n as f64,
            *warm_reads as f64 / (n * rounds) as f64
        );
        println!(
            "| {way}: warm finalize p50 / p99 | {} / {} |",
            ms(*p50),
            ms(*p99)
        );
    }
    assert!(once_each, "one mint per location");
    let (agency_p50, per_location_p50) = (table[0].3, table[1].3);
    println!(
        "| agency p50 / per-location p50 | {:.2}× |",
        agency_p50.as_secs_f64() / per_location_p50.as_secs_f64()
    );
}
