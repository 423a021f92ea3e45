//! `ghl-csv-finalize`: the same handler outside Lambda.
//!
//! - `demo`: the quick start — a sample HighLevel workflow webhook through the real handler,
//!   over real HTTP to a local HighLevel stand-in, offline, with built-in settings; `--queue`
//!   runs it through queue mode (receiver, in-memory queue, worker).
//! - `serve`: the handler as a plain HTTP server (for curl, or a tunnel from an automation
//!   platform); `--queue` adds queue mode with an in-memory queue and its worker.
//! - `invoke EVENT.json`: one Lambda event file through the handler.
//! - `finalize --location L --csv C`: the direct call for an operator.
//! - `standin`: the local HighLevel stand-in on its own.
//!
//! `serve`, `invoke` and `finalize` read the same environment variables as the Lambda
//! function; `--dry-run` does everything but call HighLevel and shows the request instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ghl_csv_finalize::app::config::{
    CallbackConfig, DeliveryConfig, QueueConfig, RecordsConfig, TokenSourceConfig,
};
use ghl_csv_finalize::auth::CallbackKey;
use ghl_csv_finalize::delivery::Follow;
use ghl_csv_finalize::local::drain;
use ghl_csv_finalize::local::server::LocalServer;
use ghl_csv_finalize::local::standin::{Behaviour, BurstLimit, Faults, ReceivedCallback, StandIn};
use ghl_csv_finalize::observe::Lines;
use ghl_csv_finalize::request::callback::Reach;
use ghl_csv_finalize::request::ids::{CsvId, LocationId, UserId};
use ghl_csv_finalize::{App, Config};
use lambda_http::Body;
use serde_json::{json, Value};

/// The sample event `demo` sends unless told otherwise.
const DEMO_EVENT: &str = include_str!("../../events/apigw-v2-highlevel-workflow.json");
/// The token `demo` uses: a stand-in value, never a real credential.
const DEMO_TOKEN: &str = "pit-demo-0000-local-stand-in-token";
/// The secret `demo --queue` signs its callback with: a stand-in value.
const DEMO_CALLBACK_SECRET: &str = "whsec_ZGVtby1jYWxsYmFjay1zZWNyZXQtMDAwMA==";

#[derive(Parser)]
#[command(
    name = "ghl-csv-finalize",
    version,
    about = "Finalize HighLevel Social Planner CSV imports — local tools for the Lambda function"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a sample HighLevel workflow webhook end to end against a local HighLevel stand-in (offline)
    Demo {
        /// A Lambda event file to send instead of the built-in HighLevel workflow sample
        #[arg(long)]
        event: Option<PathBuf>,
        /// Go through queue mode: 202 from the receiver, then the worker finalizes
        #[arg(long, conflicts_with = "agency")]
        queue: bool,
        /// One agency connection for two sub-accounts: each location's token minted on demand
        #[arg(long)]
        agency: bool,
    },
    /// Serve the function's handler over plain HTTP
    Serve {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:9000")]
        addr: SocketAddr,
        /// Do everything but call HighLevel; answer with the request that would be sent
        #[arg(long)]
        dry_run: bool,
        /// Queue mode: answer 202 and finalize from an in-memory queue (records in memory)
        #[arg(long, conflicts_with = "dry_run")]
        queue: bool,
    },
    /// Run one Lambda event file through the handler and print the response
    Invoke {
        /// The event file, e.g. events/apigw-v2-path-params.json
        event: PathBuf,
        /// Do everything but call HighLevel; print the request that would be sent
        #[arg(long)]
        dry_run: bool,
    },
    /// Finalize one CSV import directly (no inbound authentication: you are the operator)
    Finalize {
        /// HighLevel location (sub-account) id
        #[arg(long, value_parser = parse_id::<LocationId>)]
        location: LocationId,
        /// CSV import id
        #[arg(long, value_parser = parse_id::<CsvId>)]
        csv: CsvId,
        /// HighLevel user id (default: GHL_DEFAULT_USER_ID)
        #[arg(long, value_parser = parse_id::<UserId>)]
        user: Option<UserId>,
        /// Do everything but call HighLevel; print the request that would be sent
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the local HighLevel stand-in (PATCH /social-media-posting/{locationId}/csv/{csvId})
    Standin {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:9100")]
        addr: SocketAddr,
        /// Accept only this bearer token (default: any)
        #[arg(long)]
        token: Option<String>,
        /// Answer the first N finalize requests with --fault-status
        #[arg(long, default_value_t = 0)]
        fail_first: u64,
        /// Status for simulated faults
        #[arg(long, default_value_t = 429)]
        fault_status: u16,
        /// Retry-After to send with simulated faults (seconds or an HTTP date)
        #[arg(long)]
        retry_after: Option<String>,
        /// Delay every finalize answer by this many milliseconds
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Fail this share (0.0–1.0) of finalize requests at random
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Play HighLevel's rate limit: this many finalize requests per location per window
        /// (HighLevel: 100), with X-RateLimit-* headers, then 429
        #[arg(long)]
        burst_limit: Option<u64>,
        /// The rate-limit window in milliseconds (HighLevel: 10000)
        #[arg(long, default_value_t = 10_000, requires = "burst_limit")]
        burst_interval_ms: u64,
        /// How long an import stays `importing` after its PATCH before its CSV reads
        /// `completed`, in milliseconds
        #[arg(long, default_value_t = 2_000)]
        import_time_ms: u64,
    },
}

fn parse_id<T: std::str::FromStr<Err = ghl_csv_finalize::request::ids::IdError>>(
    value: &str,
) -> Result<T, String> {
    value
        .parse()
        .map_err(|e| format!("{e} (ids match ^[A-Za-z0-9_-]{{1,64}}$)"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } | Command::Standin { .. } => "info",
        Command::Demo { .. } => "error",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Demo { agency: true, .. } => demo_agency().await,
        Command::Demo { event, queue, .. } => demo(event, queue).await,
        Command::Serve {
            addr,
            dry_run,
            queue,
        } => serve(addr, dry_run, queue).await,
        Command::Invoke { event, dry_run } => {
            let event = std::fs::read_to_string(&event)
                .map_err(|e| format!("cannot read {}: {e}", event.display()))?;
            let app = build(env_config(dry_run, false, false)?).await?;
            let response = app.respond(parse_event(&event)?).await;
            Ok(print_response(response))
        }
        Command::Finalize {
            location,
            csv,
            user,
            dry_run,
        } => {
            let app = build(env_config(dry_run, true, false)?).await?;
            let mut body = json!({"locationId": location.as_str(), "csvId": csv.as_str()});
            if let Some(user) = user {
                body["userId"] = json!(user.as_str());
            }
            let request = http::Request::post("/finalize")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .map_err(|e| e.to_string())?;
            Ok(print_response(app.respond(request).await))
        }
        Command::Standin {
            addr,
            token,
            fail_first,
            fault_status,
            retry_after,
            delay_ms,
            fault_rate,
            burst_limit,
            burst_interval_ms,
            import_time_ms,
        } => {
            let faults = Faults {
                fail_first,
                fault_status: Some(fault_status),
                retry_after,
                delay: Duration::from_millis(delay_ms),
                random_fault_rate: fault_rate.clamp(0.0, 1.0),
            };
            let standin = StandIn::start_logging(
                addr,
                Behaviour {
                    required_token: token,
                    faults,
                    // It prints every request; keeping them too would grow without bound.
                    forget_requests: true,
                    burst_limit: burst_limit.map(|max| BurstLimit {
                        max,
                        interval: Duration::from_millis(burst_interval_ms),
                    }),
                    import_time: Some(Duration::from_millis(import_time_ms)),
                    ..Behaviour::default()
                },
            )
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            println!("HighLevel stand-in listening on {}", standin.base_url());
            println!("use it with: GHL_API_BASE_URL={}", standin.base_url());
            shutdown_signal().await;
            standin.stop().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads the environment like the Lambda function. `operator` is the direct `finalize` call,
/// which has no inbound caller to authenticate. The audit lines and metrics are not printed
/// (the commands print the answer); `serve` prints them.
/// The settings of the environment. With `in_memory_queue`, queue mode in this process: read as
/// if a queue and a table were named (so every queue setting — `FOLLOW_*`, `CALLBACK_*`,
/// `QUEUE_MAX_RECEIVES` — counts as it would deployed), then kept in memory.
fn env_config(dry_run: bool, operator: bool, in_memory_queue: bool) -> Result<Config, String> {
    let mut config = Config::from_lookup(|name| match name {
        "INBOUND_AUTH_SECRET_ID" if operator => None,
        "ALLOW_UNAUTHENTICATED" if operator => Some("true".into()),
        "QUEUE_URL" if in_memory_queue => Some("http://127.0.0.1/in-memory".into()),
        "IDEMPOTENCY_TABLE" if in_memory_queue => Some("in-memory".into()),
        _ => std::env::var(name).ok(),
    })
    .map_err(|e| e.to_string())?;
    if in_memory_queue {
        config.delivery.records = RecordsConfig::Memory;
        config.delivery.queue = QueueConfig::Memory;
    }
    config.dry_run = dry_run;
    config.lines = Lines::Discard;
    Ok(config)
}

async fn build(config: Config) -> Result<App, String> {
    App::build(config).await.map_err(|e| e.to_string())
}

fn parse_event(event: &str) -> Result<lambda_http::Request, String> {
    let event: serde_json::Value =
        serde_json::from_str(event).map_err(|e| format!("not a JSON Lambda event: {e}"))?;
    Ok(ghl_csv_finalize::fronts::http::event::into_request(event).0)
}

/// Prints status and body; the exit code is 0 for 2xx, 1 otherwise.
fn print_response(response: lambda_http::Response<Body>) -> ExitCode {
    let status = response.status();
    println!("{}", pretty(response.body().as_ref()));
    if status.is_success() {
        ExitCode::SUCCESS
    } else {
        eprintln!("the function answered {status}");
        ExitCode::FAILURE
    }
}

fn pretty(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

async fn serve(addr: SocketAddr, dry_run: bool, queue: bool) -> Result<ExitCode, String> {
    let mut config = env_config(dry_run, false, queue)?;
    config.lines = Lines::Stdout;
    if !queue && config.delivery.records == RecordsConfig::None {
        // Without a table, duplicates are still caught within this process.
        config.delivery = DeliveryConfig::in_memory(false);
    }
    let app = Arc::new(build(config).await?);
    let worker = app
        .memory_queue()
        .map(|memory| tokio::spawn(drain::run(Arc::clone(&app), memory)));
    let server = LocalServer::start(Arc::clone(&app), addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!(
        "listening on http://{}{}",
        server.address(),
        if dry_run {
            " (dry run: HighLevel is never called)"
        } else if queue {
            " (queue mode: requests are answered 202 and finalized by the in-memory worker)"
        } else {
            ""
        }
    );
    shutdown_signal().await;
    eprintln!("shutting down: finishing requests in flight");
    server.stop(Duration::from_secs(10)).await;
    if let Some(worker) = worker {
        worker.abort();
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The quick start: built-in settings, a stand-in HighLevel, one sample event. With `queue`,
/// the event goes through queue mode: the receiver answers 202, the worker finalizes from the
/// in-memory queue, and the status route shows the record.
async fn demo(event: Option<PathBuf>, queue: bool) -> Result<ExitCode, String> {
    let (name, event) = match &event {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => (
            "events/apigw-v2-highlevel-workflow.json".to_owned(),
            DEMO_EVENT.to_owned(),
        ),
    };
    let standin = StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Behaviour {
            required_token: Some(DEMO_TOKEN.into()),
            callback_secret: Some(DEMO_CALLBACK_SECRET.into()),
            ..Behaviour::default()
        },
    )
    .await
    .map_err(|e| format!("cannot start the HighLevel stand-in: {e}"))?;
    let base_url = standin.base_url();
    let mut config = Config::local(DEMO_TOKEN, &base_url).map_err(|e| e.to_string())?;
    config.delivery = DeliveryConfig::in_memory(queue);
    if queue {
        // The import is checked a second after its finalize (deployed: 30 s), and its end
        // reported to the stand-in, as CALLBACK_URL would have it.
        config.delivery.follow = Some(Follow {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
        });
        config.callback = CallbackConfig {
            default_url: ghl_csv_finalize::request::callback::CallbackUrl::parse(
                &standin.callback_url("demo"),
                Reach {
                    allow_private: true,
                },
            )
            .ok(),
            reach: Reach {
                allow_private: true,
            },
            local_key: CallbackKey::parse(DEMO_CALLBACK_SECRET).ok(),
        };
    }
    let app = Arc::new(build(config).await?);

    println!("ghl-csv-finalize demo: offline, no AWS or HighLevel account needed");
    println!("  HighLevel stand-in:  {base_url}");
    println!("  token source:        GHL_TOKEN (a built-in demo token)");
    println!("  event:               {name}");
    if queue {
        println!("  mode:                queue (in-memory queue and records, one worker)");
    }
    println!();
    let response = app.respond(parse_event(&event)?).await;
    let mut callback = None;
    let mut status = response.status();
    let mut body = response.body().as_ref().to_vec();
    if let Some(memory) = app.memory_queue() {
        println!("What the receiver answered ({status}):");
        println!("{}", pretty(&body));
        println!();
        let worker = tokio::spawn(drain::run(Arc::clone(&app), memory));
        let id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["finalizationId"].as_str().map(str::to_owned));
        if let Some(id) = id {
            (status, body) = wait_for_record(&app, &id).await?;
        }
        let called_back = wait_for_callback(&standin).await;
        worker.abort();
        if let Some(id) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            v["finalization"]["finalizationId"]
                .as_str()
                .map(str::to_owned)
        }) {
            // The record once the import ended: its `import` and `callback`.
            (status, body) = wait_for_record(&app, &id).await?;
        }
        callback = called_back;
    }

    println!("What HighLevel received:");
    let received = standin.received();
    if received.is_empty() {
        println!("  (nothing: the function did not call HighLevel)");
    }
    let mut patched = false;
    for request in &received {
        if request.method == "GET" && !patched {
            // The CSV's status, read before the first PATCH and kept on the record: what
            // settles a PATCH whose answer is lost.
            println!("  (reading the CSV's status before the PATCH)");
        } else if request.method == "GET" {
            println!("  (following the import after the finalize)");
        }
        patched |= request.method == "PATCH";
        println!("  {} {}", request.method, request.path);
        for (name, value) in &request.headers {
            println!("  {name}: {value}");
        }
        if request.body != Value::String(String::new()) {
            println!("  body: {}", request.body);
        }
        println!("  -> HighLevel answered {}", request.status);
    }
    println!();
    if queue {
        println!("What the status route answers (GET /finalizations/{{id}}, {status}):");
    } else {
        println!("What the function answered ({status}):");
    }
    println!("{}", pretty(&body));
    if queue {
        println!();
        match &callback {
            Some(received) => {
                println!(
                    "The callback the function sent when the import ended (webhook-id {}, signature {}):",
                    received.webhook_id,
                    if received.verified == Some(true) { "verified" } else { "NOT verified" }
                );
                println!("{}", pretty(received.body.to_string().as_bytes()));
            }
            None => println!("No callback came within 15 s."),
        }
    }
    standin.stop().await;
    let finalized = serde_json::from_slice::<Value>(&body)
        .ok()
        .is_some_and(|v| v["ok"] == true && (!queue || v["finalization"]["status"] == "finalized"));
    let called_back = !queue || callback.is_some_and(|c| c.verified == Some(true));
    Ok(if status.is_success() && finalized && called_back {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The agency demo: one agency token (no secret per sub-account), two locations finalized, each
/// with a token minted for it on first use.
async fn demo_agency() -> Result<ExitCode, String> {
    const COMPANY: &str = "demo-company-0001";
    const AGENCY_TOKEN: &str = "pit-demo-agency-0000-local-stand-in-token";
    const LOCATIONS: [&str; 2] = ["ve9EPM428h8vShlRW1KT", "Lx2SecondSubAccount9"];
    let standin = StandIn::start(([127, 0, 0, 1], 0).into(), Behaviour::default())
        .await
        .map_err(|e| format!("cannot start the HighLevel stand-in: {e}"))?;
    standin.oauth_pair(COMPANY, AGENCY_TOKEN, "demo-agency-refresh");
    let mut config = Config::local(DEMO_TOKEN, &standin.base_url()).map_err(|e| e.to_string())?;
    config.token_source = TokenSourceConfig::LocalAgency {
        token: ghl_csv_finalize::tokens::Token::parse(AGENCY_TOKEN).map_err(|e| e.to_string())?,
        company_id: COMPANY.into(),
    };
    let app = build(config).await?;
    println!(
        "ghl-csv-finalize demo --agency: one agency connection for every sub-account, offline"
    );
    println!("  HighLevel stand-in:  {}", standin.base_url());
    println!(
        "  token source:        the agency's token (company {COMPANY}); no secret per sub-account"
    );
    println!();
    let mut all_finalized = true;
    for (i, location) in LOCATIONS.iter().enumerate() {
        for round in 0..2 {
            let request = http::Request::post(format!(
                "/locations/{location}/csv/demo-csv-{i}-{round}/finalize"
            ))
            .body(Body::Empty)
            .map_err(|e| e.to_string())?;
            let response = app.respond(request).await;
            println!(
                "Finalize for {location} (CSV demo-csv-{i}-{round}): {}",
                response.status()
            );
            all_finalized &= response.status().is_success();
        }
    }
    println!();
    println!("What HighLevel received (each location's token minted once, on its first finalize):");
    for request in standin.received() {
        let detail = match request.method.as_str() {
            "POST" => format!("  body: {}", request.body.as_str().unwrap_or_default()),
            _ => String::new(),
        };
        println!(
            "  {} {} -> {}{detail}",
            request.method, request.path, request.status
        );
    }
    let mints = standin.mints();
    println!();
    for location in LOCATIONS {
        println!(
            "  tokens minted for {location}: {}",
            mints.get(location).copied().unwrap_or(0)
        );
    }
    standin.stop().await;
    let once_each = LOCATIONS.iter().all(|l| mints.get(*l) == Some(&1));
    Ok(if all_finalized && once_each {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Waits for the stand-in's first callback (15 s at most).
async fn wait_for_callback(standin: &StandIn) -> Option<ReceivedCallback> {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if let Some(first) = standin.callbacks().into_iter().next() {
            return Some(first);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Asks the status route until the record of `id` is finalized or failed (10 s at most).
async fn wait_for_record(app: &App, id: &str) -> Result<(http::StatusCode, Vec<u8>), String> {
    let started = std::time::Instant::now();
    loop {
        let request = http::Request::get(format!("/finalizations/{id}"))
            .body(Body::Empty)
            .map_err(|e| e.to_string())?;
        let response = app.respond(request).await;
        let status = response.status();
        let body = response.body().as_ref().to_vec();
        let settled = serde_json::from_slice::<Value>(&body)
            .ok()
            .is_some_and(|v| {
                matches!(
                    v["finalization"]["status"].as_str(),
                    Some("finalized" | "failed")
                )
            });
        if settled || started.elapsed() > Duration::from_secs(10) {
            return Ok((status, body));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
