//! Retries, backoff, `Retry-After`, the whole-call budget and the Lambda deadline, and the one
//! token re-read after a 401 — against a local HighLevel stand-in over real HTTP.

mod helpers;

use std::time::{Duration, Instant};

use helpers::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::ResponseTemplate;

fn status(code: u16) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({"statusCode": code}))
}

fn with_env(env: &[(&'static str, &str)]) -> Setup {
    Setup {
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Setup::default()
    }
}

#[tokio::test]
async fn retries_429_502_503_and_504_until_highlevel_succeeds() {
    let t = spawn_app_with(with_env(&[("MAX_ATTEMPTS", "5")])).await;
    t.highlevel_answers(Sequence::new([
        status(429),
        status(502),
        status(503),
        status(504),
        highlevel_ok(),
    ]))
    .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 5);
    assert_eq!(t.upstream_requests().await.len(), 5);
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_503_and_retry_after() {
    let t = spawn_app().await;
    t.highlevel_answers(status(503)).await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 503);
    assert_eq!(code(&response), "upstream_unavailable");
    assert_eq!(response.body["attempts"], 3);
    assert_eq!(response.body["upstream"]["status"], 503);
    assert!(response.headers.contains_key("retry-after"));
    assert_eq!(
        t.upstream_requests().await.len(),
        3,
        "MAX_ATTEMPTS defaults to 3"
    );
}

/// Answers 429 with `retry_after`, then 200; checks the function waited at least `min_wait`.
async fn assert_waits_for(retry_after: &str, min_wait: Duration) {
    let t = spawn_app().await;
    t.highlevel_answers(Sequence::new([
        status(429).insert_header("Retry-After", retry_after),
        highlevel_ok(),
    ]))
    .await;
    let started = Instant::now();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["attempts"], 2);
    assert!(
        started.elapsed() >= min_wait,
        "waited {:?} for Retry-After {retry_after}",
        started.elapsed()
    );
}

#[tokio::test]
async fn waits_as_long_as_retry_after_says_in_seconds() {
    assert_waits_for("1", Duration::from_millis(950)).await;
}

#[tokio::test]
async fn honours_retry_after_given_as_an_http_date() {
    // HTTP dates have whole seconds: "now + 2 s" is at least one second away.
    let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    assert_waits_for(&at, Duration::from_millis(900)).await;
}

#[tokio::test]
async fn answers_503_at_once_when_retry_after_exceeds_the_budget() {
    let t = spawn_app().await;
    t.highlevel_answers(status(429).insert_header("Retry-After", "120"))
        .await;
    let started = Instant::now();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait out the Retry-After"
    );
    assert_eq!(response.status, 503);
    assert_eq!(response.headers["retry-after"], "120");
    assert_eq!(response.body["attempts"], 1);
}

#[tokio::test]
async fn does_not_retry_an_attempt_that_timed_out_and_answers_504() {
    let t = spawn_app_with(with_env(&[("UPSTREAM_TIMEOUT_MS", "400")])).await;
    t.highlevel_answers(highlevel_ok().set_delay(Duration::from_secs(5)))
        .await;
    let started = Instant::now();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered before the slow upstream"
    );
    assert_eq!(response.status, 504);
    assert_eq!(code(&response), "upstream_timeout");
    assert_eq!(response.body["attempts"], 1);
    assert_eq!(t.upstream_requests().await.len(), 1);
}

#[tokio::test]
async fn stops_500_ms_before_the_lambda_deadline() {
    let t = spawn_app().await; // UPSTREAM_TIMEOUT_MS is 10 s
    t.highlevel_answers(highlevel_ok().set_delay(Duration::from_secs(8)))
        .await;
    let started = Instant::now();
    let response = t
        .invoke_with_deadline(EV_PATH_PARAMS, Duration::from_millis(1500))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered after the Lambda deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 504);
}

#[tokio::test]
async fn sends_nothing_when_the_lambda_deadline_leaves_no_time() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok()).await;
    assert_eq!(
        t.invoke(EV_PATH_PARAMS).await.status,
        200,
        "secrets now cached"
    );
    let response = t
        .invoke_with_deadline(EV_PATH_PARAMS, Duration::from_millis(100))
        .await;
    assert_eq!(
        (response.status, code(&response)),
        (504, "upstream_timeout")
    );
    assert_eq!(
        t.upstream_requests().await.len(),
        1,
        "the second call never reached HighLevel"
    );
}

#[tokio::test]
async fn retries_a_refused_connection_and_then_answers_503() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let t = spawn_app_with(Setup {
        api_base_url: Some(url),
        ..Setup::default()
    })
    .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 503, "{}", response.text);
    assert_eq!(code(&response), "upstream_unavailable");
    assert_eq!(response.body["attempts"], 3);
    assert!(response.headers.contains_key("retry-after"));
}

/// A server that closes the first `drops` connections without answering, then answers 200.
async fn closes_then_answers(drops: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut seen = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 8192];
            let _ = socket.read(&mut buffer).await;
            seen += 1;
            if seen > drops {
                let body = r#"{"success":true}"#;
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = socket.write_all(answer.as_bytes()).await;
            }
            drop(socket);
        }
    });
    url
}

#[tokio::test]
async fn retries_a_connection_closed_before_any_response_byte() {
    let url = closes_then_answers(1).await;
    let t = spawn_app_with(Setup {
        api_base_url: Some(url),
        ..Setup::default()
    })
    .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 2);
}

#[tokio::test]
async fn does_not_retry_a_connection_that_broke_mid_response() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buffer = vec![0u8; 8192];
            let _ = socket.read(&mut buffer).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"succ")
                .await;
            drop(socket);
        }
    });
    let t = spawn_app_with(Setup {
        api_base_url: Some(url),
        ..Setup::default()
    })
    .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 502, "{}", response.text);
    assert_eq!(code(&response), "upstream_unavailable");
    assert_eq!(response.body["attempts"], 1);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn re_reads_the_secret_once_after_a_401_and_retries_with_the_new_token() {
    let t = spawn_app().await;
    t.highlevel_answers(Sequence::new([highlevel_ok(), status(401), highlevel_ok()]))
        .await;
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    put_secret(&t.token_secret_id, "pit-rotated-token-2").await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 2);
    let tokens: Vec<String> = t
        .upstream_requests()
        .await
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        tokens,
        [
            format!("Bearer {TOKEN}"),
            format!("Bearer {TOKEN}"),
            "Bearer pit-rotated-token-2".to_owned()
        ]
    );
    assert_eq!(t.reads.count(), 3, "auth secret once, token secret twice");
}

#[tokio::test]
async fn answers_502_when_highlevel_refuses_the_re_read_token_too() {
    let t = spawn_app().await;
    t.highlevel_answers(status(401)).await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 502);
    assert_eq!(code(&response), "upstream_auth_failed");
    assert_eq!(response.body["attempts"], 2);
    assert_eq!(t.upstream_requests().await.len(), 2);
    assert_eq!(t.reads.count(), 3, "exactly one re-read");
}

#[tokio::test]
async fn the_retry_after_a_401_does_not_count_against_max_attempts() {
    let t = spawn_app_with(with_env(&[("MAX_ATTEMPTS", "1")])).await;
    t.highlevel_answers(Sequence::new([status(401), highlevel_ok()]))
        .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 2);

    let t = spawn_app_with(with_env(&[("MAX_ATTEMPTS", "2")])).await;
    t.highlevel_answers(Sequence::new([status(401), status(503), status(503)]))
        .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body["attempts"], 3);
}
