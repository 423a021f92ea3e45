//! Cold-start and warm-invocation benchmark (run it with `scripts/bench`).
//!
//! Spawns the release `bootstrap` under the project's Lambda Runtime API emulator, with moto
//! for Secrets Manager (behind a counting proxy) and the HighLevel stand-in, and reports: init
//! time (spawn → first `/runtime/invocation/next`), first invocation, warm p50/p99 over
//! sequential invocations, peak RSS (VmHWM), Secrets Manager calls and new upstream TCP
//! connections per warm invocation. The same run measures a no-op function (the floor) and
//! quotes our figures as ratios to it.
//!
//! Usage: coldstart BOOTSTRAP NOOP [WARM_INVOCATIONS] [COLD_STARTS]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghl_csv_finalize::local::runtime_api::RuntimeApi;
use ghl_csv_finalize::local::server::serve_connections;
use ghl_csv_finalize::local::standin::{Behaviour, StandIn};
use tokio::process::{Child, Command};

const EVENT: &str = include_str!("../events/apigw-v2-path-params.json");
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

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn spawn(binary: &str, runtime: &RuntimeApi, env: &[(String, String)]) -> Child {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "ghl-csv-finalize")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_SESSION_TOKEN", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("the binary starts")
}

/// One cold start and `warm` warm invocations of `binary`.
async fn measure(
    binary: &str,
    env: &[(String, String)],
    warm: usize,
    before_warm: impl Fn(),
    after_warm: impl Fn(),
) -> Figures {
    let runtime = RuntimeApi::start().await.expect("emulator");
    let spawned = Instant::now();
    let child = spawn(binary, &runtime, env);
    let first = runtime
        .invoke(EVENT, TIMEOUT)
        .await
        .expect("first invocation answered");
    assert_eq!(first.kind, "response", "{}", first.body);
    assert!(first.body.contains("\"statusCode\":200"), "{}", first.body);
    let first_done = Instant::now();
    let init = runtime.first_poll().expect("polled") - spawned;
    before_warm();
    let mut latencies = Vec::with_capacity(warm);
    for _ in 0..warm {
        let started = Instant::now();
        let outcome = runtime.invoke(EVENT, TIMEOUT).await.expect("answered");
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

/// A pass-through to moto that counts Secrets Manager calls.
async fn counting_proxy(moto: String) -> (String, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let client = reqwest::Client::new();
    let handle = serve_connections(
        listener,
        Default::default(),
        move |request: http::Request<hyper::body::Incoming>| {
            let (client, moto, counter) = (client.clone(), moto.clone(), Arc::clone(&counter));
            async move {
                use http_body_util::BodyExt;
                counter.fetch_add(1, Ordering::SeqCst);
                let (parts, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let mut forward = client
                    .post(format!("{moto}{}", parts.uri.path()))
                    .body(body);
                for (name, value) in &parts.headers {
                    if name != http::header::HOST {
                        forward = forward.header(name, value);
                    }
                }
                let mut response =
                    http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                if let Ok(answer) = forward.send().await {
                    *response.status_mut() = answer.status();
                    *response.headers_mut() = answer.headers().clone();
                    *response.body_mut() =
                        http_body_util::Full::new(answer.bytes().await.unwrap_or_default());
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        },
    );
    std::mem::forget(handle);
    (format!("http://{address}"), calls)
}

fn start_moto() -> (std::process::Child, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/moto_server.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with moto (pip install 'moto[server]')");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("moto starts");
    (child, line.trim().to_owned())
}

async fn create_secrets(moto: &str) {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(ghl_csv_finalize::aws::sdk_http_client(
            ghl_csv_finalize::https::client().expect("the HTTPS client builds"),
        ))
        .region(Region::new("us-east-1"))
        .endpoint_url(moto)
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
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
    let (proxy, secret_calls) = counting_proxy(moto).await;
    let standin = StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour {
            forget_requests: true,
            ..Behaviour::default()
        },
    )
    .await
    .expect("stand-in");
    let env: Vec<(String, String)> = vec![
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), proxy),
        ("GHL_TOKEN_SECRET_ID".into(), "bench/token".into()),
        ("INBOUND_AUTH_SECRET_ID".into(), "bench/inbound".into()),
        ("GHL_API_BASE_URL".into(), standin.base_url()),
    ];

    let mut ours_init = Vec::new();
    let mut ours_first = Vec::new();
    let mut floor_init = Vec::new();
    for _ in 0..colds {
        let f = measure(&noop, &[], 0, || {}, || {}).await;
        floor_init.push(f.init);
        let o = measure(&bootstrap, &env, 0, || {}, || {}).await;
        ours_init.push(o.init);
        ours_first.push(o.first);
    }
    let floor = measure(&noop, &[], warm, || {}, || {}).await;
    let marks = Arc::new(std::sync::Mutex::new((0u64, 0u64, 0u64, 0u64)));
    let (m1, m2) = (Arc::clone(&marks), Arc::clone(&marks));
    let (c1, c2) = (Arc::clone(&secret_calls), Arc::clone(&secret_calls));
    let standin = Arc::new(standin);
    let (s1, s2) = (Arc::clone(&standin), Arc::clone(&standin));
    let ours = measure(
        &bootstrap,
        &env,
        warm,
        move || {
            let mut m = m1.lock().unwrap();
            m.0 = c1.load(Ordering::SeqCst);
            m.1 = s1.connections();
        },
        move || {
            let mut m = m2.lock().unwrap();
            m.2 = c2.load(Ordering::SeqCst);
            m.3 = s2.connections();
        },
    )
    .await;
    let (calls_before, conns_before, calls_after, conns_after) = *marks.lock().unwrap();
    let size = std::fs::metadata(&bootstrap).map(|m| m.len()).unwrap_or(0);

    let (ours_init, floor_init, ours_first) =
        (median(ours_init), median(floor_init), median(ours_first));
    let (p50, p99) = (percentile(&ours.warm, 0.50), percentile(&ours.warm, 0.99));
    let (floor_p50, floor_p99) = (percentile(&floor.warm, 0.50), percentile(&floor.warm, 0.99));
    let per_warm = |before: u64, after: u64| (after - before) as f64 / warm as f64;
    println!("| figure | ghl-csv-finalize | no-op floor | ratio / budget |");
    println!("|---|---|---|---|");
    println!(
        "| init, median of {colds} (spawn → first /next) | {} | {} | {:.1}× (budget ≤ 2×) |",
        ms(ours_init),
        ms(floor_init),
        ours_init.as_secs_f64() / floor_init.as_secs_f64()
    );
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
        p99.as_secs_f64() / floor_p99.as_secs_f64()
    );
    println!(
        "| peak RSS (VmHWM) | {:.1} MiB | {:.1} MiB | budget ≤ 16 MiB |",
        ours.peak_rss_kib as f64 / 1024.0,
        floor.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "| Secrets Manager calls per warm invocation | {:.3} | — | must be 0 |",
        per_warm(calls_before, calls_after)
    );
    println!(
        "| new upstream TCP connections per warm invocation | {:.3} | — | must be 0 |",
        per_warm(conns_before, conns_after)
    );
    println!(
        "| stripped binary | {:.2} MB | — | budget ≤ 6.5 MB |",
        size as f64 / 1e6
    );
}
