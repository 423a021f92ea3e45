//! Following each import to its end in queue mode: after a finalize the worker checks the
//! import through delayed follow-up messages on the same queue — each check a message of its
//! own, so following never spends the finalize message's receives — until it is over or timed
//! out, keeping what it saw on the record; against SQS and DynamoDB in moto and the stand-in.

use std::time::Duration;

use ghl_csv_finalize::local::standin::ImportScript;
use serde_json::{json, Value};

use crate::helpers::*;

async fn following(import_time: Duration) -> TestApp {
    spawn_app_with(Setup {
        queue: true,
        env: vec![("FOLLOW_INTERVAL_SECS", "1".into())],
        standin: Behaviour {
            import_time: Some(import_time),
            ..Behaviour::default()
        },
        ..Setup::default()
    })
    .await
}

/// Accepts and finalizes the sample request; its record's id.
async fn finalized(t: &TestApp) -> String {
    t.highlevel_answers(highlevel_ok());
    let accepted = t.invoke(EV_JSON_BODY).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let event = t.receive_event().await.expect("the finalize message");
    assert_eq!(
        TestApp::failures(&t.work(&event).await),
        Vec::<String>::new()
    );
    accepted.body["finalizationId"].as_str().unwrap().to_owned()
}

/// The next follow-up on the queue (sent delayed by its interval), and its body.
async fn next_follow_up(t: &TestApp) -> (Value, Value) {
    for _ in 0..40 {
        if let Some(event) = t.receive_event().await {
            let body: Value =
                serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
            return (event, body);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no follow-up came");
}

async fn record(t: &TestApp, id: &str) -> Value {
    t.status_of(id).await.body["finalization"].clone()
}

#[tokio::test]
async fn queue_mode_follows_an_import_to_its_end_in_messages_of_its_own() {
    let t = following(Duration::ZERO).await;
    t.highlevel.script_import(
        LOCATION,
        CSV,
        ImportScript {
            posts: 5,
            errors: vec![(1, "account disconnected".into())],
            ends: "completed".into(),
            time: None,
        },
    );
    let id = finalized(&t).await;
    let (event, body) = next_follow_up(&t).await;
    assert_eq!(
        (&body["kind"], &body["intervalSecs"]),
        (&json!("follow"), &json!(1))
    );
    assert_eq!(
        event["Records"][0]["attributes"]["ApproximateReceiveCount"], "1",
        "a message of its own"
    );
    assert_eq!(
        TestApp::failures(&t.work(&event).await),
        Vec::<String>::new()
    );
    let import = record(&t, &id).await["import"].clone();
    assert_eq!(
        (&import["status"], &import["posts"], &import["failedPosts"]),
        (&json!("completed"), &json!(5), &json!(1))
    );
    assert_eq!(import["errors"][0]["message"], "account disconnected");
    let metrics = t
        .metric_documents()
        .into_iter()
        .find(|m| m["ImportsCompleted"] == 1)
        .expect("the check that saw it end");
    assert_eq!(metrics["PostsFailed"], 1);
    assert!(metrics["ImportDurationMs"].is_u64());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(t.receive_event().await.is_none(), "nothing more to check");
}

#[tokio::test]
async fn a_running_import_is_checked_again_twice_as_late() {
    let t = following(Duration::from_secs(600)).await;
    let id = finalized(&t).await;
    let (event, _) = next_follow_up(&t).await;
    assert_eq!(
        TestApp::failures(&t.work(&event).await),
        Vec::<String>::new()
    );
    assert_eq!(record(&t, &id).await["import"]["status"], "importing");
    let (_, body) = next_follow_up(&t).await;
    assert_eq!(body["intervalSecs"], 2, "twice the interval");
}

#[tokio::test]
async fn an_import_past_its_timeout_ends_timed_out() {
    let t = following(Duration::from_secs(600)).await;
    let id = finalized(&t).await;
    let (event, _) = next_follow_up(&t).await;
    // As if the finalize were two hours old (FOLLOW_TIMEOUT_SECS: an hour).
    let old = now_unix() as u64 * 1000 - 2 * 3600 * 1000;
    let mut late = event.clone();
    let mut body: Value =
        serde_json::from_str(late["Records"][0]["body"].as_str().unwrap()).unwrap();
    body["finalizedAtMs"] = json!(old);
    late["Records"][0]["body"] = json!(body.to_string());
    assert_eq!(
        TestApp::failures(&t.work(&late).await),
        Vec::<String>::new()
    );
    let import = record(&t, &id).await["import"].clone();
    assert_eq!(import["status"], "timed_out", "{import}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(t.receive_event().await.is_none(), "no further check");
}

#[tokio::test]
async fn a_read_refused_with_429_or_503_only_delays_the_next_check() {
    let t = following(Duration::ZERO).await;
    let id = finalized(&t).await;
    let (mut event, _) = next_follow_up(&t).await;
    for (refused, next_interval) in [(429, 2), (503, 4)] {
        t.highlevel.refuse_csv_reads([refused]);
        assert_eq!(
            TestApp::failures(&t.work(&event).await),
            Vec::<String>::new(),
            "a refused read is no failure of the message"
        );
        assert!(
            record(&t, &id).await.get("import").is_none(),
            "{refused}: nothing seen"
        );
        let (next, body) = next_follow_up(&t).await;
        assert_eq!(body["intervalSecs"], next_interval, "{refused}");
        event = next;
    }
    t.work(&event).await;
    assert_eq!(record(&t, &id).await["import"]["status"], "completed");
}

#[tokio::test]
async fn an_import_deleted_after_its_finalize_ends_its_following() {
    let t = following(Duration::from_secs(600)).await;
    let id = finalized(&t).await;
    t.highlevel.set_csv_status(LOCATION, CSV, "deleted");
    let (event, _) = next_follow_up(&t).await;
    t.work(&event).await;
    let import = record(&t, &id).await["import"].clone();
    assert_eq!(import["status"], "deleted", "{import}");
    assert!(import["completedAt"].is_string());
    assert!(t
        .metric_documents()
        .iter()
        .any(|m| m["ImportDurationMs"].is_u64()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(t.receive_event().await.is_none(), "nothing more to check");
}
