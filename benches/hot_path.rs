//! `cargo bench --bench hot_path`: the pure hot path (event → parsed request → outbound request
//! → response envelope), the audit line and metrics document every request writes, the
//! rate-limit bookkeeping of each HighLevel answer, and a
//! whole warm invocation against a bare reqwest call to the same local server — our overhead
//! as a fraction of the least any client could spend.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ghl_csv_finalize::fronts::http::event::{self, PathParams};
use ghl_csv_finalize::fronts::http::inbound::{self, Sources};
use ghl_csv_finalize::fronts::http::response;
use ghl_csv_finalize::highlevel::ratelimit::{Pauses, RateLimit};
use ghl_csv_finalize::highlevel::HighLevel;
use ghl_csv_finalize::highlevel::Outcome;
use ghl_csv_finalize::local::standin::{Behaviour, StandIn};
use ghl_csv_finalize::observe::{Audit, Lines, Measures, Mode, Observer};
use ghl_csv_finalize::request::ids::{CsvId, LocationId};
use ghl_csv_finalize::tokens::{Token, TokenCounters};
use ghl_csv_finalize::upstream::UpstreamReply;
use ghl_csv_finalize::{App, Config};

const EVENT: &str = include_str!("../events/apigw-v2-highlevel-workflow.json");

/// What observing a request costs: its audit line and its EMF document made and serialized
/// (written nowhere, so the figure is ours, not the terminal's).
fn observe(c: &mut Criterion) {
    let observer = Observer::new(
        "GhlCsvFinalize".into(),
        Lines::Discard,
        std::sync::Arc::new(TokenCounters::default()),
    );
    let audit = Audit {
        request_id: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef".into(),
        finalization_id: Some("fz_c3407cf8081b2cdf7d0464c1617d0c31".into()),
        mode: Some(Mode::Sync),
        credential: "hl-workflows".into(),
        webhook_id: Some("msg_2Lh9KoXEhbXoGVZ1c8Aq1j4".into()),
        source_ip: Some("34.123.45.67".into()),
        user_agent: Some("HighLevel-Workflows/1.0".into()),
        location_id: Some("ve9EPM428h8vShlRW1KT".into()),
        csv_id: Some("6578b9a4c5c9e5a0f0f3b2d1".into()),
        status: 503,
        code: Some("upstream_unavailable"),
        attempts: 3,
        replayed: false,
        duration_ms: 812,
        upstream_status: Some(429),
    };
    let measures = Measures {
        upstream_latency_ms: Some(640),
        rate_limit_remaining: Some(0),
        ..Measures::default()
    };
    c.bench_function(
        "audit line + EMF document (a failure: three directives)",
        |b| b.iter(|| observer.record(&audit, measures)),
    );

    // What each HighLevel answer adds: its rate-limit headers read, and the location's pause
    // looked up before the call.
    let mut answer = http::HeaderMap::new();
    for (name, value) in [
        ("x-ratelimit-max", "100"),
        ("x-ratelimit-remaining", "97"),
        ("x-ratelimit-interval-milliseconds", "10000"),
        ("x-ratelimit-limit-daily", "200000"),
        ("x-ratelimit-daily-remaining", "199123"),
    ] {
        answer.insert(name, http::HeaderValue::from_static(value));
    }
    let pauses = Pauses::default();
    let location = LocationId::parse("ve9EPM428h8vShlRW1KT").unwrap();
    c.bench_function("rate-limit headers read + pause looked up", |b| {
        b.iter(|| {
            let limit = RateLimit::from_headers(std::hint::black_box(&answer));
            (limit.pause(), pauses.remaining(&location))
        })
    });
}

fn hot_path(c: &mut Criterion) {
    let base = url::Url::parse("https://services.leadconnectorhq.com").unwrap();
    let highlevel = HighLevel::new(
        ghl_csv_finalize::app::https::client().unwrap(),
        http::HeaderValue::from_static("2021-07-28"),
        &base,
    )
    .unwrap();
    let token = Token::parse("pit-bench-token").unwrap();
    c.bench_function("event -> request -> outbound -> envelope", |b| {
        b.iter(|| {
            let (request, _) = event::into_request(serde_json::from_str(EVENT).unwrap());
            let params: Vec<(&str, &str)> = request
                .extensions()
                .get::<PathParams>()
                .map(|p| p.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                .unwrap_or_default();
            let body = request.body().as_ref();
            let kind = inbound::body_kind(request.headers().get("content-type"), body).unwrap();
            let parsed = inbound::parse(Sources {
                path_params: &params,
                path: request.uri().path(),
                query: request.uri().query(),
                body,
                kind,
            })
            .unwrap();
            let call = highlevel
                .finalize_call(&parsed.location_id, &parsed.csv_id, parsed.user_id.as_ref())
                .unwrap();
            let headers = highlevel.headers(token.bearer());
            let reply = UpstreamReply::from_bytes(
                200,
                br#"{"success":true,"statusCode":200,"message":"ok"}"#,
                false,
            );
            let outcome = Outcome::Finalized {
                reply,
                attempts: 1,
                call: Default::default(),
            };
            let envelope = response::outcome(&parsed, &outcome, None, "bench");
            std::hint::black_box((call, headers, envelope));
        })
    });
    c.bench_function("id parsing", |b| {
        b.iter(|| {
            (
                LocationId::parse(std::hint::black_box("ve9EPM428h8vShlRW1KT")),
                CsvId::parse(std::hint::black_box("6578b9a4c5c9e5a0f0f3b2d1")),
            )
        })
    });
}

fn warm_invocation_vs_bare_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (standin, app) = runtime.block_on(async {
        let standin = StandIn::start(
            ([127, 0, 0, 1], 0).into(),
            Behaviour::for_load(Duration::ZERO),
        )
        .await
        .unwrap();
        let base = standin.base_url();
        let config = Config::local("pit-bench", &base).unwrap();
        (standin, App::build(config).await.unwrap())
    });
    let url = format!(
        "{}/social-media-posting/ve9EPM428h8vShlRW1KT/csv/6578b9a4c5c9e5a0f0f3b2d1",
        standin.base_url()
    );
    let bare = reqwest::Client::new();

    let mut group = c.benchmark_group("warm invocation vs bare reqwest");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("bare reqwest PATCH", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = bare
                .patch(&url)
                .header("authorization", "Bearer pit-bench")
                .header("version", "2021-07-28")
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap()
        })
    });
    group.bench_function("whole handler", |b| {
        b.to_async(&runtime).iter(|| async {
            let (request, _) = event::into_request(serde_json::from_str(EVENT).unwrap());
            let response = app.respond(request).await;
            assert_eq!(response.status(), 200);
            response
        })
    });
    group.finish();
}

criterion_group!(benches, observe, hot_path, warm_invocation_vs_bare_call);
criterion_main!(benches);
