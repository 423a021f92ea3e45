//! Queue mode (`QUEUE_URL`) against SQS and DynamoDB in moto: the receiver's 202, the worker's
//! batch answers and visibility changes, the record's life through `queued`, `retrying`,
//! `finalized` and `failed`, the last receive and the dead-letter queue, duplicates and
//! outages.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::stores::*;

/// A queue-mode deployment; messages go to the dead-letter queue after `max_receives`.
async fn queue_app(max_receives: u32) -> TestApp {
    spawn_app_with(Setup {
        queue: true,
        env: vec![
            ("QUEUE_MAX_RECEIVES", max_receives.to_string()),
            ("SECRET_CACHE_TTL_SECS", "0".into()),
            ("MAX_ATTEMPTS", "1".into()),
        ],
        ..Setup::default()
    })
    .await
}

fn id_of(response: &TestResponse) -> String {
    response.body["finalizationId"]
        .as_str()
        .expect("a finalizationId")
        .to_owned()
}

async fn record_status(t: &TestApp, id: &str) -> Value {
    let status = t.status_of(id).await;
    assert_eq!(status.status, 200, "{}", status.text);
    status.body["finalization"].clone()
}

#[tokio::test]
async fn the_receiver_answers_202_and_sends_one_message_without_reading_a_token() {
    let t = queue_app(10).await;
    let reads_before = t.reads.count();
    let accepted = t.invoke(EV_JSON_BODY).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let id = id_of(&accepted);
    assert_eq!(
        accepted.body,
        json!({"ok": true, "status": "queued", "locationId": LOCATION, "csvId": CSV,
               "finalizationId": id, "requestId": accepted.body["requestId"]})
    );
    assert_eq!(
        t.reads.count() - reads_before,
        1,
        "the inbound-auth secret only"
    );
    assert!(t.highlevel.received().is_empty(), "HighLevel is not called");
    assert_eq!(t.queue_depths().await, (1, 0));
    assert_eq!(record_status(&t, &id).await["status"], "queued");
}

#[tokio::test]
async fn a_duplicate_while_queued_gets_202_and_sends_no_second_message() {
    let t = queue_app(10).await;
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    let again = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (again.status, again.body["status"].as_str()),
        (202, Some("queued")),
        "{}",
        again.text
    );
    assert_eq!(id_of(&again), id);
    assert_eq!(t.queue_depths().await, (1, 0), "one message");
}

#[tokio::test]
async fn a_duplicate_before_the_first_send_is_confirmed_gets_409_not_a_promise() {
    let t = queue_app(10).await;
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    // As between the first receiver's record write and its confirmed send: still locked.
    let until = now_unix() as u64 * 1000 + 20_000;
    t.set_record_field(&id, "lock_until_ms", AttributeValue::N(until.to_string()))
        .await;
    let again = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (again.status, code(&again)),
        (409, "request_in_progress"),
        "{}",
        again.text
    );
    assert!(again.headers.contains_key("retry-after"));
    assert_eq!(t.queue_depths().await, (1, 0), "one message");
}

#[tokio::test]
async fn the_worker_finalizes_and_a_later_duplicate_gets_the_stored_200() {
    let t = queue_app(10).await;
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    let event = t.receive_event().await.expect("the message");
    let answer = t.work(&event).await;
    assert_eq!(TestApp::failures(&answer), Vec::<String>::new(), "{answer}");
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
    let record = record_status(&t, &id).await;
    assert_eq!(
        (record["status"].as_str(), record["attempts"].as_u64()),
        (Some("finalized"), Some(1))
    );
    let duplicate = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (duplicate.status, &duplicate.body["replayed"]),
        (200, &json!(true)),
        "{}",
        duplicate.text
    );
    assert_eq!(duplicate.headers["idempotent-replayed"], "true");
    assert_eq!(
        t.queue_depths().await,
        (1, 0),
        "the worked message is deleted by the event source mapping, not us"
    );
}

#[tokio::test]
async fn a_message_delivered_twice_finalizes_once() {
    let t = queue_app(10).await;
    t.invoke(EV_JSON_BODY).await;
    let event = t.receive_event().await.expect("the message");
    let other = t.another_instance().await;
    let (a, b) = tokio::join!(t.work(&event), work_on(&other, &event));
    let failures = [TestApp::failures(&a), TestApp::failures(&b)].concat();
    assert!(
        failures.len() <= 1,
        "at most the one that found it busy comes back: {a} {b}"
    );
    assert_eq!(
        TestApp::failures(&t.work(&event).await),
        Vec::<String>::new(),
        "a finalized record ends it"
    );
    assert_eq!(t.highlevel.finalize_requests().len(), 1, "finalized once");
}

#[tokio::test]
async fn a_batch_with_the_same_message_twice_finalizes_once() {
    let t = queue_app(10).await;
    t.invoke(EV_JSON_BODY).await;
    let mut event = t.receive_event().await.expect("the message");
    let mut copy = event["Records"][0].clone();
    copy["messageId"] = json!("a-duplicate-delivery");
    event["Records"].as_array_mut().unwrap().push(copy);
    let answer = t.work(&event).await;
    assert!(TestApp::failures(&answer).len() <= 1, "{answer}");
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
}

#[tokio::test]
async fn a_transient_failure_marks_retrying_and_brings_the_message_back_later() {
    let t = queue_app(10).await;
    t.highlevel_answers_in_turn([Scripted::status(429).retry_after("120"), Scripted::ok()]);
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    let event = t.receive_event().await.expect("the message");
    let message_id = event["Records"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = t.work(&event).await;
    assert_eq!(
        TestApp::failures(&answer),
        [message_id],
        "reported, so SQS keeps it"
    );
    let record = record_status(&t, &id).await;
    assert_eq!(record["status"], "retrying");
    assert_eq!(record["error"]["code"], "upstream_unavailable");
    assert_eq!(record["attempts"], 1);
    assert!(
        t.receive_event().await.is_none(),
        "invisible for HighLevel's Retry-After"
    );
    let duplicate = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (duplicate.status, duplicate.body["status"].as_str()),
        (202, Some("retrying"))
    );

    t.make_visible(&event).await; // as if the 120 s had passed
    let again = t.receive_event().await.expect("the message comes back");
    assert_eq!(
        again["Records"][0]["attributes"]["ApproximateReceiveCount"],
        "2"
    );
    assert_eq!(
        TestApp::failures(&t.work(&again).await),
        Vec::<String>::new()
    );
    let record = record_status(&t, &id).await;
    assert_eq!(
        (record["status"].as_str(), record["attempts"].as_u64()),
        (Some("finalized"), Some(2))
    );
    assert!(record.get("error").is_none());
}

#[tokio::test]
async fn an_outage_answering_retry_after_one_second_does_not_bring_the_message_back_within_it() {
    let t = queue_app(10).await;
    t.highlevel_answers_in_turn([Scripted::status(503).retry_after("1")]);
    t.invoke(EV_JSON_BODY).await;
    let event = t.receive_event().await.expect("the message");
    assert_eq!(TestApp::failures(&t.work(&event).await).len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        t.receive_event().await.is_none(),
        "invisible for the backoff (at least 15 s on the first receive), not HighLevel's 1 s"
    );
}

#[tokio::test]
async fn a_stale_message_for_another_csv_under_the_same_record_ends_without_a_call() {
    let t = queue_app(10).await;
    t.highlevel_answers(highlevel_ok());
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    let event = t.receive_event().await.expect("the message");
    // The same record id, another CSV: a message left over from an earlier record whose key
    // was reused after it expired.
    let stale = edit_message(&event, |body| body["csvId"] = json!("AnEarlierCsv0001"));
    assert_eq!(
        TestApp::failures(&t.work(&stale).await),
        Vec::<String>::new(),
        "done: a retry cannot make it the record's"
    );
    assert!(t.highlevel.finalize_requests().is_empty(), "no PATCH");
    assert_eq!(
        record_status(&t, &id).await["status"],
        "queued",
        "untouched"
    );
    assert_eq!(
        TestApp::failures(&t.work(&event).await),
        Vec::<String>::new()
    );
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
    assert_eq!(record_status(&t, &id).await["status"], "finalized");
}

/// An SQS event whose first message's body is changed by `change`.
fn edit_message(event: &Value, change: impl FnOnce(&mut Value)) -> Value {
    let mut event = event.clone();
    let mut body: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    change(&mut body);
    event["Records"][0]["body"] = json!(body.to_string());
    event
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried_in_queue_mode() {
    let t = spawn_app_with(Setup {
        queue: true,
        env: vec![("UPSTREAM_TIMEOUT_MS", "300".into())],
        ..Setup::default()
    })
    .await;
    t.highlevel_answers_in_turn([Scripted::Silent, Scripted::ok()]);
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    let event = t.receive_event().await.unwrap();
    assert_eq!(
        TestApp::failures(&t.work(&event).await).len(),
        1,
        "a lost finalize is worse than a repeated one"
    );
    assert_eq!(
        record_status(&t, &id).await["error"]["code"],
        "upstream_timeout"
    );
}

#[tokio::test]
async fn a_permanent_failure_marks_failed_and_the_message_is_done() {
    let t = queue_app(10).await;
    t.highlevel_answers(Scripted::status(422));
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    let event = t.receive_event().await.unwrap();
    assert_eq!(
        TestApp::failures(&t.work(&event).await),
        Vec::<String>::new(),
        "a retry cannot help"
    );
    let record = record_status(&t, &id).await;
    assert_eq!(
        (record["status"].as_str(), record["error"]["code"].as_str()),
        (Some("failed"), Some("upstream_rejected"))
    );
    assert_eq!(record["upstream"]["status"], 422, "the record says why");
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
}

#[tokio::test]
async fn the_last_receive_marks_failed_and_sqs_moves_the_message_to_the_dead_letter_queue() {
    let t = queue_app(2).await;
    t.highlevel_answers(Scripted::status(503));
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    for receive in 1..=2 {
        let event = t
            .receive_event()
            .await
            .unwrap_or_else(|| panic!("receive {receive}"));
        assert_eq!(
            TestApp::failures(&t.work(&event).await).len(),
            1,
            "receive {receive}"
        );
        let expected = if receive == 1 { "retrying" } else { "failed" };
        assert_eq!(
            record_status(&t, &id).await["status"],
            expected,
            "receive {receive}"
        );
        t.make_visible(&event).await;
    }
    assert!(t.receive_event().await.is_none(), "past maxReceiveCount");
    assert_eq!(
        t.queue_depths().await,
        (0, 1),
        "in the dead-letter queue, for an operator to redrive"
    );
    assert_eq!(t.highlevel.finalize_requests().len(), 2);
}

#[tokio::test]
async fn a_last_receive_kept_from_an_outcome_by_a_busy_record_marks_it_failed() {
    let t = queue_app(1).await;
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    // Another live invocation holds the record (as a duplicate delivery would).
    let until = now_unix() as u64 * 1000 + 60_000;
    t.set_record_field(&id, "status", AttributeValue::S("in_progress".into()))
        .await;
    t.set_record_field(&id, "lock_until_ms", AttributeValue::N(until.to_string()))
        .await;
    let event = t.receive_event().await.expect("the message");
    assert_eq!(
        TestApp::failures(&t.work(&event).await).len(),
        1,
        "it stays for SQS to dead-letter"
    );
    assert!(
        t.highlevel.finalize_requests().is_empty(),
        "the holder runs it"
    );
    let record = record_status(&t, &id).await;
    assert_eq!(
        (record["status"].as_str(), record["error"]["code"].as_str()),
        (Some("failed"), Some("request_in_progress")),
        "a message in the dead-letter queue has a record that says failed: {record}"
    );
}

#[tokio::test]
async fn a_failed_record_is_finalized_when_its_message_is_redriven() {
    let t = queue_app(10).await;
    t.highlevel_answers_in_turn([Scripted::status(422), Scripted::ok()]);
    let id = id_of(&t.invoke(EV_JSON_BODY).await);
    let event = t.receive_event().await.unwrap();
    t.work(&event).await;
    assert_eq!(record_status(&t, &id).await["status"], "failed");
    // The same message again (a redrive from the dead-letter queue) runs again.
    assert_eq!(
        TestApp::failures(&t.work(&event).await),
        Vec::<String>::new()
    );
    assert_eq!(record_status(&t, &id).await["status"], "finalized");
}

#[tokio::test]
async fn a_queue_outage_is_503_queue_unavailable_and_the_record_is_not_left_queued() {
    let (t, proxy) = app_behind_fault_proxy(true).await;
    proxy.fail("SendMessage", 500, "InternalError");
    let refused = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (refused.status, code(&refused)),
        (503, "queue_unavailable"),
        "{}",
        refused.text
    );
    assert_eq!(refused.headers["retry-after"], "2");
    let id = id_of(&refused);
    let record = record_status(&t, &id).await;
    assert_eq!(
        (record["status"].as_str(), record["error"]["code"].as_str()),
        (Some("failed"), Some("queue_unavailable"))
    );

    proxy.heal();
    let accepted = t.invoke(EV_JSON_BODY).await;
    assert_eq!(accepted.status, 202, "a retry queues it: {}", accepted.text);
    assert_eq!(t.queue_depths().await, (1, 0));
}

#[tokio::test]
async fn a_store_outage_in_queue_mode_sends_nothing() {
    let (t, proxy) = app_behind_fault_proxy(true).await;
    proxy.fail("PutItem", 500, "InternalServerError");
    let refused = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (refused.status, code(&refused)),
        (503, "store_unavailable"),
        "{}",
        refused.text
    );
    assert_eq!(proxy.calls("SendMessage"), 0);
}

#[tokio::test]
async fn a_store_outage_in_the_worker_brings_the_message_back() {
    let (t, proxy) = app_behind_fault_proxy(true).await;
    t.invoke(EV_JSON_BODY).await;
    let event = t.receive_event().await.unwrap();
    proxy.fail("GetItem", 500, "InternalServerError");
    assert_eq!(TestApp::failures(&t.work(&event).await).len(), 1);
    assert!(
        t.highlevel.finalize_requests().is_empty(),
        "nothing runs without its record"
    );
}

#[tokio::test]
async fn a_message_that_does_not_parse_is_dropped_and_a_malformed_event_keeps_every_message() {
    let t = queue_app(10).await;
    let mut event: Value = serde_json::from_str(EV_SQS).unwrap();
    event["Records"][0]["body"] = json!("{\"csvId\": \"../../etc\"}");
    assert_eq!(
        TestApp::failures(&t.work(&event).await),
        Vec::<String>::new(),
        "a retry cannot make it parse"
    );
    let malformed = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m-1", "body": 7}]});
    assert_eq!(
        TestApp::failures(&t.work(&malformed).await),
        ["m-1"],
        "nothing deleted that was not handled"
    );
    assert!(t.highlevel.finalize_requests().is_empty());
}

#[tokio::test]
async fn the_sample_sqs_event_finalizes_its_message() {
    let t = queue_app(10).await;
    let answer = t.work(&serde_json::from_str(EV_SQS).unwrap()).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let record = record_status(&t, SAMPLE_FINALIZATION_ID).await;
    assert_eq!(
        record["status"], "finalized",
        "a record gone from the table is made again from the message"
    );
    assert_eq!(
        t.highlevel.finalize_requests()[0].path,
        format!("/social-media-posting/{LOCATION}/csv/{CSV}")
    );
}
