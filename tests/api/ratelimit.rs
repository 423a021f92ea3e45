//! HighLevel's rate-limit headers against the stand-in's burst limit: the pause before the next
//! call for a location whose window is spent, within the budget, and through the message's
//! visibility in queue mode.

use std::time::Duration;

use ghl_csv_finalize::local::standin::BurstLimit;
use serde_json::json;

use crate::helpers::*;

fn limited(max: u64, interval: Duration) -> Behaviour {
    Behaviour {
        burst_limit: Some(BurstLimit { max, interval }),
        ..Behaviour::default()
    }
}

fn finalize_csv(csv: &str) -> String {
    let body = json!({"locationId": LOCATION, "csvId": csv, "userId": USER}).to_string();
    with_body(EV_JSON_BODY, &body, Some("application/json"))
}

fn statuses(t: &TestApp) -> Vec<u16> {
    t.highlevel
        .finalize_requests()
        .iter()
        .map(|r| r.status)
        .collect()
}

#[tokio::test]
async fn waits_out_a_spent_window_instead_of_spending_an_attempt_on_a_429() {
    let window = Duration::from_millis(700);
    let t = spawn_app_with(Setup {
        standin: limited(2, window),
        ..Setup::default()
    })
    .await;
    assert_eq!(t.invoke(&finalize_csv("csv-1")).await.status, 200);
    let second = t.invoke(&finalize_csv("csv-2")).await;
    assert_eq!(second.status, 200, "{}", second.text);
    // HighLevel said 0 remaining: the third call for the location waits for the next window.
    let third = waited_at_least(
        window - Duration::from_millis(100),
        t.invoke(&finalize_csv("csv-3")),
    )
    .await;
    assert_eq!(
        (third.status, third.body["attempts"].as_u64()),
        (200, Some(1)),
        "{}",
        third.text
    );
    assert_eq!(statuses(&t), [200, 200, 200], "no 429 was provoked");
}

#[tokio::test]
async fn a_window_longer_than_the_budget_is_503_with_retry_after_and_no_call() {
    let t = spawn_app_with(Setup {
        standin: limited(1, Duration::from_secs(8)),
        env: vec![("UPSTREAM_TIMEOUT_MS", "1000".into())],
        ..Setup::default()
    })
    .await;
    assert_eq!(t.invoke(&finalize_csv("csv-1")).await.status, 200);
    let refused =
        answered_within(Duration::from_millis(500), t.invoke(&finalize_csv("csv-2"))).await;
    assert_eq!(
        (refused.status, code(&refused)),
        (503, "upstream_unavailable"),
        "{}",
        refused.text
    );
    let retry_after = retry_after_secs(&refused);
    assert!(
        (7..=8).contains(&retry_after),
        "the rest of the window: {retry_after}"
    );
    assert_eq!(statuses(&t), [200], "nothing was sent into a spent window");
}

#[tokio::test]
async fn a_429_without_retry_after_waits_the_window_before_its_retry() {
    let window = Duration::from_millis(600);
    let t = spawn_app_with(Setup {
        standin: limited(1, window),
        ..Setup::default()
    })
    .await;
    let other = t.another_instance().await;
    // Another instance spends the window, so this one learns of it only from the 429.
    assert_eq!(
        send_to(
            &other,
            request_with_deadline(&finalize_csv("csv-0"), Duration::from_secs(30))
        )
        .await
        .status,
        200
    );
    let answered = waited_at_least(
        window - Duration::from_millis(100),
        t.invoke(&finalize_csv("csv-1")),
    )
    .await;
    assert_eq!(
        (answered.status, answered.body["attempts"].as_u64()),
        (200, Some(2)),
        "{}",
        answered.text
    );
    assert_eq!(statuses(&t), [200, 429, 200]);
}

#[tokio::test]
async fn in_queue_mode_a_spent_window_sets_the_messages_visibility() {
    let t = spawn_app_with(Setup {
        queue: true,
        standin: limited(1, Duration::from_secs(30)),
        ..Setup::default()
    })
    .await;
    assert_eq!(t.invoke(&finalize_csv("csv-1")).await.status, 202);
    let first = t.receive_event().await.expect("the first message");
    assert_eq!(
        TestApp::failures(&t.work(&first).await),
        Vec::<String>::new()
    );
    assert_eq!(t.invoke(&finalize_csv("csv-2")).await.status, 202);
    let second = t.receive_event().await.expect("the second message");
    let answer = t.work(&second).await;
    assert_eq!(
        TestApp::failures(&answer).len(),
        1,
        "it comes back after the window: {answer}"
    );
    assert_eq!(statuses(&t), [200], "one call, no 429");
    assert!(
        t.receive_event().await.is_none(),
        "invisible while the window lasts"
    );
}

#[tokio::test]
async fn an_absurd_rate_limit_interval_is_answered_at_once_and_the_instance_lives_on() {
    let t = spawn_app_with(Setup {
        standin: limited(1, Duration::from_millis(u64::MAX)),
        ..Setup::default()
    })
    .await;
    assert_eq!(t.invoke(&finalize_csv("csv-1")).await.status, 200);
    for csv in ["csv-2", "csv-3"] {
        let refused = answered_within(Duration::from_secs(5), t.invoke(&finalize_csv(csv))).await;
        assert_eq!(
            (refused.status, code(&refused)),
            (503, "upstream_unavailable"),
            "{}",
            refused.text
        );
        assert!(retry_after_secs(&refused) > 0);
    }
    assert_eq!(t.invoke(EV_HEALTHZ).await.status, 200, "still answering");
}

#[tokio::test]
async fn a_spent_window_is_no_pause_when_highlevel_said_when_to_come_back() {
    let t = spawn_app().await;
    t.highlevel_answers_in_turn([
        Scripted::status(429)
            .retry_after("1")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-interval-milliseconds", "60000"),
        Scripted::ok(),
        Scripted::ok(),
    ]);
    let first = t.invoke(&finalize_csv("csv-1")).await;
    assert_eq!(
        (first.status, first.body["attempts"].as_u64()),
        (200, Some(2)),
        "{}",
        first.text
    );
    // HighLevel's Retry-After (1 s) was its word; its 60 s window is no pause for the next.
    let second = answered_within(Duration::from_secs(3), t.invoke(&finalize_csv("csv-2"))).await;
    assert_eq!(second.status, 200, "{}", second.text);
}

#[tokio::test]
async fn no_attempt_is_sent_after_a_wait_that_leaves_less_than_a_second() {
    let t = spawn_app_with(Setup {
        env: vec![("UPSTREAM_TIMEOUT_MS", "2500".into())],
        ..Setup::default()
    })
    .await;
    // A 2 s Retry-After fits the 2.5 s budget but would leave the retry half a second.
    t.highlevel_answers_in_turn([Scripted::status(503).retry_after("2"), Scripted::ok()]);
    let response = answered_within(Duration::from_secs(2), t.invoke(&finalize_csv("csv-1"))).await;
    assert_eq!(
        (response.status, code(&response)),
        (503, "upstream_unavailable"),
        "{}",
        response.text
    );
    assert_eq!(response.headers["retry-after"], "2");
    assert_eq!(
        t.highlevel.finalize_requests().len(),
        1,
        "no attempt squeezed in"
    );
}
