//! Retries, backoff, `Retry-After`, the whole-call budget and the Lambda deadline, and the one
//! token re-read after a 401 — against the HighLevel stand-in over real HTTP.

use std::time::Duration;

use crate::helpers::*;

fn status(code: u16) -> Scripted {
    Scripted::status(code)
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
    t.highlevel_answers_in_turn([
        status(429),
        status(502),
        status(503),
        status(504),
        highlevel_ok(),
    ]);
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 5);
    assert_eq!(t.upstream_requests().len(), 5);
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_503_and_retry_after() {
    let t = spawn_app().await;
    t.highlevel_answers(status(503));
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 503);
    assert_eq!(code(&response), "upstream_unavailable");
    assert_eq!(response.body["attempts"], 3);
    assert_eq!(response.body["upstream"]["status"], 503);
    assert!(response.headers.contains_key("retry-after"));
    assert_eq!(t.upstream_requests().len(), 3, "MAX_ATTEMPTS defaults to 3");
}

/// Answers 429 with `retry_after`, then 200; checks the function waited at least `min_wait`.
async fn assert_waits_for(retry_after: &str, min_wait: Duration) {
    let t = spawn_app().await;
    t.highlevel_answers_in_turn([status(429).retry_after(retry_after), highlevel_ok()]);
    let response = waited_at_least(min_wait, t.invoke(EV_PATH_PARAMS)).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["attempts"], 2);
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
    t.highlevel_answers(status(429).retry_after("120"));
    // It does not wait out the Retry-After.
    let response = answered_within(Duration::from_secs(5), t.invoke(EV_PATH_PARAMS)).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.headers["retry-after"], "120");
    assert_eq!(response.body["attempts"], 1);
}

#[tokio::test]
async fn answers_503_at_once_to_a_retry_after_of_any_size_or_date() {
    for absurd in [
        "18446744073709551615",
        "9223372036854775807",
        "99999999999999999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let t = spawn_app().await;
        t.highlevel_answers(status(429).retry_after(absurd));
        let response = answered_within(Duration::from_secs(5), t.invoke(EV_PATH_PARAMS)).await;
        assert_eq!(
            (response.status, code(&response)),
            (503, "upstream_unavailable"),
            "{absurd}: {}",
            response.text
        );
        let retry_after = retry_after_secs(&response);
        assert!(retry_after > 200_000_000_000, "{absurd}: {retry_after}");
        assert_eq!(response.body["attempts"], 1);
    }
}

#[tokio::test]
async fn does_not_retry_an_attempt_that_timed_out_and_answers_504() {
    let t = spawn_app_with(with_env(&[("UPSTREAM_TIMEOUT_MS", "400")])).await;
    t.highlevel_answers(highlevel_ok().delayed(Duration::from_secs(5)));
    let response = answered_within(Duration::from_secs(4), t.invoke(EV_PATH_PARAMS)).await;
    assert_eq!(response.status, 504);
    assert_eq!(code(&response), "upstream_timeout");
    assert_eq!(response.body["attempts"], 1);
    assert_eq!(t.upstream_requests().len(), 1);
}

#[tokio::test]
async fn stops_500_ms_before_the_lambda_deadline() {
    let t = spawn_app().await; // UPSTREAM_TIMEOUT_MS is 10 s
    t.highlevel_answers(highlevel_ok().delayed(Duration::from_secs(8)));
    let lambda_deadline = Duration::from_millis(1500);
    let response = answered_within(
        lambda_deadline,
        t.invoke_with_deadline(EV_PATH_PARAMS, lambda_deadline),
    )
    .await;
    assert_eq!(response.status, 504);
}

#[tokio::test]
async fn sends_nothing_when_the_lambda_deadline_leaves_no_time() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
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
        t.upstream_requests().len(),
        1,
        "the second call never reached HighLevel"
    );
}

#[tokio::test]
async fn retries_a_refused_connection_and_then_answers_503() {
    let (refusing, url) = refusing_address();
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
    drop(refusing);
}

#[tokio::test]
async fn retries_a_connection_closed_before_any_response_byte() {
    let t = spawn_app().await;
    t.highlevel_answers_in_turn([Scripted::CloseBeforeAnswer, highlevel_ok()]);
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 2);
}

#[tokio::test]
async fn does_not_retry_a_connection_that_broke_mid_response() {
    let t = spawn_app().await;
    t.highlevel_answers(Scripted::BreakMidBody);
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 502, "{}", response.text);
    assert_eq!(code(&response), "upstream_unavailable");
    assert_eq!(response.body["attempts"], 1);
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
    assert_eq!(t.highlevel.connections(), 1);
}

#[tokio::test]
async fn re_reads_the_secret_once_after_a_401_and_retries_with_the_new_token() {
    let t = spawn_app().await;
    t.highlevel_answers_in_turn([highlevel_ok(), status(401), highlevel_ok()]);
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    put_secret(&t.token_secret_id, "pit-rotated-token-2").await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 2);
    assert_eq!(t.bearer_tokens(), [TOKEN, TOKEN, "pit-rotated-token-2"]);
    assert_eq!(t.reads.count(), 3, "auth secret once, token secret twice");
}

#[tokio::test]
async fn answers_502_when_highlevel_refuses_the_re_read_token_too() {
    let t = spawn_app().await;
    t.highlevel_answers(status(401));
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 502);
    assert_eq!(code(&response), "upstream_auth_failed");
    assert_eq!(response.body["attempts"], 2);
    assert_eq!(t.upstream_requests().len(), 2);
    assert_eq!(t.reads.count(), 3, "exactly one re-read");
}

#[tokio::test]
async fn the_retry_after_a_401_does_not_count_against_max_attempts() {
    let t = spawn_app_with(with_env(&[("MAX_ATTEMPTS", "1")])).await;
    t.highlevel_answers_in_turn([status(401), highlevel_ok()]);
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.body["attempts"], 2);

    let t = spawn_app_with(with_env(&[("MAX_ATTEMPTS", "2")])).await;
    t.highlevel_answers_in_turn([status(401), status(503), status(503)]);
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body["attempts"], 3);
}
