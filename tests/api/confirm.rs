//! Confirming with HighLevel: the CSV's status, read before the first PATCH and kept on the
//! record, settles every PATCH that may have been applied unseen — a holder that died after its
//! PATCH, a timed-out attempt in queue mode — so a finalize is applied once, against DynamoDB in
//! moto and the stand-in's imports (`pending` until a PATCH applies, then `importing`).

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::helpers::*;

async fn app_with_records() -> TestApp {
    spawn_app_with(Setup {
        records: true,
        standin: Behaviour {
            import_time: Some(Duration::from_secs(600)),
            ..Behaviour::default()
        },
        ..Setup::default()
    })
    .await
}

/// Runs a first invocation that is cut off while HighLevel has not answered its PATCH, as if its
/// instance died; then ends its record's lock, as time would. Returns the record's id.
async fn holder_dies_after_its_patch(t: &TestApp) -> String {
    let cut = tokio::time::timeout(
        Duration::from_millis(500),
        t.invoke_with_deadline(EV_JSON_BODY, Duration::from_secs(5)),
    )
    .await;
    assert!(cut.is_err(), "the first invocation is still waiting");
    assert_eq!(
        t.highlevel.finalize_requests().len(),
        1,
        "its PATCH went out"
    );
    let id = finalization_id_of(t).await;
    let stored = t.stored_record(&id).await.expect("its record");
    assert_eq!(
        stored
            .get("csv_status_before")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("pending"),
        "the CSV's status was kept before the PATCH"
    );
    let past = (now_unix() as u64 * 1000 - 1).to_string();
    t.set_record_field(&id, "lock_until_ms", AttributeValue::N(past))
        .await;
    id
}

/// The record id of the sample request (its key is its csvId), from the status route's 409.
async fn finalization_id_of(t: &TestApp) -> String {
    let busy = t.invoke(EV_JSON_BODY).await;
    assert_eq!(busy.status, 409, "{}", busy.text);
    busy.body["finalizationId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_takeover_after_an_applied_patch_confirms_it_by_the_csv_status_and_sends_none() {
    let t = app_with_records().await;
    t.highlevel_answers_in_turn([Scripted::SilentAfterApplying, Scripted::ok()]);
    let id = holder_dies_after_its_patch(&t).await;

    let taken_over = t.invoke(EV_JSON_BODY).await;
    assert_eq!(taken_over.status, 200, "{}", taken_over.text);
    assert_eq!(taken_over.body["confirmed"], true);
    assert_eq!(taken_over.body["attempts"], 1);
    assert_eq!(t.highlevel.finalize_requests().len(), 1, "no second PATCH");
    assert_eq!(t.highlevel.applied(LOCATION, CSV), 1);
    let metrics = t.metric_documents().pop().expect("its EMF document");
    assert_eq!(
        (&metrics["ConfirmedByStatus"], &metrics["Finalized"]),
        (&Value::from(1), &Value::from(1)),
        "{metrics}"
    );
    let status = t.status_of(&id).await;
    assert_eq!(status.body["finalization"]["status"], "finalized");
    assert_eq!(status.body["finalization"]["confirmedBy"], "csv_status");

    let replay = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (
            replay.status,
            &replay.body["replayed"],
            &replay.body["confirmed"]
        ),
        (200, &Value::Bool(true), &Value::Bool(true)),
        "{}",
        replay.text
    );
    assert_eq!(replay.body["attempts"], 1);
}

#[tokio::test]
async fn a_takeover_after_a_patch_that_never_arrived_sends_it_once() {
    let t = app_with_records().await;
    t.highlevel_answers_in_turn([Scripted::Silent, Scripted::ok()]);
    holder_dies_after_its_patch(&t).await;
    let taken_over = t.invoke(EV_JSON_BODY).await;
    assert_eq!(taken_over.status, 200, "{}", taken_over.text);
    assert!(taken_over.body.get("confirmed").is_none());
    assert_eq!(t.highlevel.finalize_requests().len(), 2);
    assert_eq!(t.highlevel.applied(LOCATION, CSV), 1, "applied once");
}

#[tokio::test]
async fn a_takeover_of_a_deleted_import_is_a_permanent_failure() {
    let t = app_with_records().await;
    t.highlevel_answers_in_turn([Scripted::Silent, Scripted::ok()]);
    let id = holder_dies_after_its_patch(&t).await;
    t.highlevel.set_csv_status(LOCATION, CSV, "deleted");
    let taken_over = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (taken_over.status, code(&taken_over)),
        (422, "upstream_rejected"),
        "{}",
        taken_over.text
    );
    assert_eq!(t.highlevel.finalize_requests().len(), 1, "no PATCH");
    let status = t.status_of(&id).await;
    assert_eq!(status.body["finalization"]["status"], "failed");
}

#[tokio::test]
async fn a_csv_read_that_fails_never_stops_a_finalize() {
    let t = app_with_records().await;
    // A read whose answer holds no plausible status fails like any other read.
    t.highlevel.set_csv_status(LOCATION, CSV, "has space");
    t.highlevel_answers(Scripted::ok());
    let response = t.invoke(EV_JSON_BODY).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(t.highlevel.csv_reads().len(), 1);
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
    let id = response.body["finalizationId"].as_str().unwrap();
    let stored = t.stored_record(id).await.expect("its record");
    assert!(!stored.contains_key("csv_status_before"), "nothing kept");
}

#[tokio::test]
async fn queue_mode_confirms_a_timed_out_attempt_before_sending_it_again() {
    let t = spawn_app_with(Setup {
        queue: true,
        env: vec![("UPSTREAM_TIMEOUT_MS", "1500".into())],
        standin: Behaviour {
            import_time: Some(Duration::from_secs(600)),
            ..Behaviour::default()
        },
        ..Setup::default()
    })
    .await;
    t.highlevel_answers_in_turn([Scripted::SilentAfterApplying, Scripted::ok()]);
    let accepted = t.invoke(EV_JSON_BODY).await;
    let id = accepted.body["finalizationId"].as_str().unwrap().to_owned();
    let event = t.receive_event().await.expect("the message");
    assert_eq!(
        TestApp::failures(&t.work(&event).await).len(),
        1,
        "comes back"
    );
    let record = t.status_of(&id).await.body["finalization"].clone();
    assert_eq!(
        (record["status"].as_str(), record["error"]["code"].as_str()),
        (Some("retrying"), Some("upstream_timeout"))
    );
    t.make_visible(&event).await;
    let again = t.receive_event().await.expect("the message comes back");
    assert_eq!(
        TestApp::failures(&t.work(&again).await),
        Vec::<String>::new(),
        "done"
    );
    assert_eq!(t.highlevel.finalize_requests().len(), 1, "not sent again");
    assert_eq!(t.highlevel.applied(LOCATION, CSV), 1);
    let record = t.status_of(&id).await.body["finalization"].clone();
    assert_eq!(
        (record["status"].as_str(), record["confirmedBy"].as_str()),
        (Some("finalized"), Some("csv_status"))
    );
}
