//! Fault injection: what HighLevel and Secrets Manager do when they misbehave, and the
//! contract's answer to each — in time, with the right number of attempts, never a panic.
//! (The basic rows — 429 with `Retry-After`, 5xx sequences, refused and dropped connections,
//! throttling, access denied — are in `retries.rs` and `secrets.rs`.)

mod helpers;

use std::time::{Duration, Instant};

use helpers::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::ResponseTemplate;

/// A raw HTTP/1.1 server on 127.0.0.1: `answer` writes whatever it likes on each connection.
async fn raw_server<F, Fut>(answer: F) -> String
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer(socket, n));
            n += 1;
        }
    });
    url
}

async fn read_request(socket: &mut TcpStream) {
    let mut buffer = vec![0u8; 16 * 1024];
    let _ = socket.read(&mut buffer).await;
}

/// A server that reads the request and never answers.
async fn silent_server() -> String {
    raw_server(|mut socket, _| async move {
        read_request(&mut socket).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await
}

/// An app whose Secrets Manager endpoint is `url` (no secrets created).
async fn app_against_secrets_manager(url: String) -> TestApp {
    spawn_app_with(Setup {
        token_secret: None,
        auth_secret: None,
        secrets_endpoint: Some(url),
        ..Setup::default()
    })
    .await
}

fn fast_budget(api_base_url: String, budget_ms: &str) -> Setup {
    Setup {
        api_base_url: Some(api_base_url),
        env: vec![("UPSTREAM_TIMEOUT_MS", budget_ms.to_owned())],
        ..Setup::default()
    }
}

#[tokio::test]
async fn a_body_that_trickles_past_the_deadline_is_a_504_without_retry() {
    let url = raw_server(|mut socket, _| async move {
        read_request(&mut socket).await;
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n").await;
        for _ in 0..1000 {
            if socket.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let t = spawn_app_with(fast_budget(url, "800")).await;
    let started = Instant::now();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered in time: {:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 504, "{}", response.text);
    assert_eq!(response.body["attempts"], 1);
}

#[tokio::test]
async fn headers_that_never_come_are_a_504_within_the_budget() {
    let url = silent_server().await;
    let t = spawn_app_with(fast_budget(url, "600")).await;
    let started = Instant::now();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        (response.status, code(&response)),
        (504, "upstream_timeout")
    );
    assert_eq!(response.body["attempts"], 1);
}

#[tokio::test]
async fn a_huge_non_json_error_body_is_bounded_in_the_response() {
    let t = spawn_app().await;
    let html = format!("<html>{}</html>", "x".repeat(3 * 1024 * 1024));
    t.highlevel_answers(ResponseTemplate::new(500).set_body_raw(html, "text/html"))
        .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(
        (response.status, code(&response)),
        (502, "upstream_unavailable")
    );
    assert!(
        response.text.len() < 8 * 1024,
        "response is {} bytes",
        response.text.len()
    );
    assert_eq!(response.body["upstream"]["truncated"], true);
    assert!(response.body["upstream"]["body"]
        .as_str()
        .unwrap()
        .starts_with("<html>xxx"));
}

#[tokio::test]
async fn a_huge_success_body_is_bounded_and_still_a_success() {
    let t = spawn_app().await;
    let items: Vec<String> = (0..200_000).map(|i| format!("post-{i}")).collect();
    t.highlevel_answers(
        ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"success": true, "posts": items})),
    )
    .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["ok"], true);
    assert!(response.text.len() < 8 * 1024);
    assert_eq!(response.body["upstream"]["truncated"], true);
}

#[tokio::test]
async fn a_non_json_success_body_is_passed_on_as_text() {
    let t = spawn_app().await;
    t.highlevel_answers(ResponseTemplate::new(200).set_body_string("OK"))
        .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["upstream"]["body"], "OK");
}

#[tokio::test]
async fn keep_alive_connections_closed_by_the_server_between_invocations_are_not_errors() {
    // Answers keep-alive style (no `connection: close`), then closes the connection anyway.
    let url = raw_server(|mut socket, _| async move {
        read_request(&mut socket).await;
        let body = br#"{"success":true}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(body).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    })
    .await;
    let t = spawn_app_with(Setup {
        api_base_url: Some(url),
        ..Setup::default()
    })
    .await;
    for pause in [0u64, 5, 20, 40, 100, 0, 10, 30] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!(
            response.status, 200,
            "after a {pause} ms pause: {}",
            response.text
        );
        assert!(response.body["attempts"].as_u64().unwrap() <= 2);
    }
}

#[tokio::test]
async fn reuses_one_connection_across_warm_invocations() {
    let standin = ghl_csv_finalize::local::standin::StandIn::start(
        ([127, 0, 0, 1], 0).into(),
        Default::default(),
    )
    .await
    .unwrap();
    let t = spawn_app_with(Setup {
        api_base_url: Some(standin.base_url()),
        ..Setup::default()
    })
    .await;
    for _ in 0..20 {
        assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    }
    assert_eq!(
        standin.connections(),
        1,
        "one pooled connection serves every warm invocation"
    );
}

#[tokio::test]
async fn a_secrets_manager_that_never_answers_is_a_503_in_bounded_time() {
    let t = app_against_secrets_manager(silent_server().await).await;
    let started = Instant::now();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(
        (response.status, code(&response)),
        (503, "secret_unavailable"),
        "{}",
        response.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the SDK's operation timeout bounds it: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_endpoint_answering_garbage_for_secrets_manager_is_a_configuration_error() {
    let url = raw_server(|mut socket, _| async move {
        read_request(&mut socket).await;
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: 9\r\n\r\nnot json!").await;
    })
    .await;
    let t = app_against_secrets_manager(url).await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(
        (response.status, code(&response)),
        (500, "config_error"),
        "{}",
        response.text
    );
}

#[tokio::test]
async fn a_slow_secrets_manager_is_cut_off_by_the_lambda_deadline() {
    let t = app_against_secrets_manager(silent_server().await).await;
    let started = Instant::now();
    let response = t
        .invoke_with_deadline(EV_PATH_PARAMS, Duration::from_millis(1500))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered before Lambda's deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(
        (response.status, code(&response)),
        (503, "secret_unavailable"),
        "{}",
        response.text
    );
}
