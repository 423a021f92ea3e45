//! Fault injection: what HighLevel and Secrets Manager do when they misbehave, and the
//! contract's answer to each — in time, with the right number of attempts, never a panic.
//! (The basic rows — 429 with `Retry-After`, 5xx sequences, refused and dropped connections,
//! throttling, access denied — are in `retries.rs` and `secrets.rs`.)

use std::time::Duration;

use crate::helpers::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw HTTP/1.1 server on 127.0.0.1 standing in for Secrets Manager: `answer` writes
/// whatever it likes on each connection.
async fn raw_server<F, Fut>(answer: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer(socket));
        }
    });
    url
}

async fn read_request(socket: &mut TcpStream) {
    let mut buffer = vec![0u8; 16 * 1024];
    let _ = socket.read(&mut buffer).await;
}

/// A Secrets Manager endpoint that reads the request and never answers.
async fn silent_secrets_manager() -> String {
    raw_server(|mut socket| async move {
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

/// An app whose HighLevel budget is `budget_ms`.
async fn app_with_budget(budget_ms: &str) -> TestApp {
    spawn_app_with(Setup {
        env: vec![("UPSTREAM_TIMEOUT_MS", budget_ms.to_owned())],
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn a_body_that_trickles_past_the_deadline_is_a_504_without_retry() {
    let t = app_with_budget("800").await;
    t.highlevel_answers(Scripted::Trickle {
        every: Duration::from_millis(50),
    });
    let response = answered_within(Duration::from_secs(3), t.invoke(EV_PATH_PARAMS)).await;
    assert_eq!(response.status, 504, "{}", response.text);
    assert_eq!(response.body["attempts"], 1);
}

#[tokio::test]
async fn headers_that_never_come_are_a_504_within_the_budget() {
    let t = app_with_budget("600").await;
    t.highlevel_answers(Scripted::Silent);
    let response = answered_within(Duration::from_secs(3), t.invoke(EV_PATH_PARAMS)).await;
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
    t.highlevel_answers(Scripted::raw(500, "text/html", html));
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
    t.highlevel_answers(Scripted::json(
        200,
        serde_json::json!({"success": true, "posts": items}),
    ));
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["ok"], true);
    assert!(response.text.len() < 8 * 1024);
    assert_eq!(response.body["upstream"]["truncated"], true);
}

#[tokio::test]
async fn a_non_json_success_body_is_passed_on_as_text() {
    let t = spawn_app().await;
    t.highlevel_answers(Scripted::raw(200, "text/plain", "OK"));
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["upstream"]["body"], "OK");
}

#[tokio::test]
async fn keep_alive_connections_closed_by_the_server_between_invocations_are_not_errors() {
    // The stand-in answers keep-alive style (no `connection: close`), then closes the
    // connection 20 ms later anyway.
    let t = spawn_app_with(Setup {
        standin: Behaviour {
            close_idle_after: Some(Duration::from_millis(20)),
            ..Behaviour::default()
        },
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
    assert!(
        t.highlevel.connections() > 1,
        "the stand-in did close idle connections"
    );
}

#[tokio::test]
async fn reuses_one_connection_across_warm_invocations() {
    let t = spawn_app().await;
    for _ in 0..20 {
        assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    }
    assert_eq!(
        t.highlevel.connections(),
        1,
        "one pooled connection serves every warm invocation"
    );
}

#[tokio::test]
async fn a_secrets_manager_that_never_answers_is_a_503_in_bounded_time() {
    let t = app_against_secrets_manager(silent_secrets_manager().await).await;
    // The SDK's operation timeout bounds it.
    let response = answered_within(Duration::from_secs(8), t.invoke(EV_PATH_PARAMS)).await;
    assert_eq!(
        (response.status, code(&response)),
        (503, "secret_unavailable"),
        "{}",
        response.text
    );
}

#[tokio::test]
async fn an_endpoint_answering_garbage_for_secrets_manager_is_a_configuration_error() {
    let url = raw_server(|mut socket| async move {
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
    let t = app_against_secrets_manager(silent_secrets_manager().await).await;
    let lambda_deadline = Duration::from_millis(1500);
    let response = answered_within(
        lambda_deadline,
        t.invoke_with_deadline(EV_PATH_PARAMS, lambda_deadline),
    )
    .await;
    assert_eq!(
        (response.status, code(&response)),
        (503, "secret_unavailable"),
        "{}",
        response.text
    );
}
