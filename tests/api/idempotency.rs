//! Idempotency and finalization records (`IDEMPOTENCY_TABLE`) against DynamoDB in moto: every
//! clause of the contract's section, with the real SDK client, two instances sharing a table,
//! and a fault proxy for store outages.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::stores::*;

/// A synchronous deployment with records, reading its secrets afresh on every request (so a
/// request that reads one shows in the count).
async fn app_with_records() -> TestApp {
    spawn_app_with(Setup {
        records: true,
        env: vec![("SECRET_CACHE_TTL_SECS", "0".into())],
        ..Setup::default()
    })
    .await
}

/// The JSON-body sample for `csv`, with the API key.
fn finalize_csv(csv: &str) -> String {
    let body = json!({"locationId": LOCATION, "csvId": csv, "userId": USER}).to_string();
    with_body(EV_JSON_BODY, &body, Some("application/json"))
}

fn finalization_id(response: &TestResponse) -> String {
    response.body["finalizationId"]
        .as_str()
        .unwrap_or_else(|| panic!("no finalizationId in {}", response.text))
        .to_owned()
}

fn without(mut body: Value, keys: &[&str]) -> Value {
    for key in keys {
        body.as_object_mut().unwrap().remove(*key);
    }
    body
}

#[tokio::test]
async fn a_duplicate_is_answered_from_the_record_and_reads_no_token_or_calls_highlevel() {
    let t = app_with_records().await;
    let first = t.invoke(EV_JSON_BODY).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let id = finalization_id(&first);
    let reads_after_first = t.reads.count();

    let again = t.invoke(EV_JSON_BODY).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["replayed"], true);
    assert_ne!(
        again.body["requestId"], first.body["requestId"],
        "its own requestId"
    );
    assert_eq!(
        without(again.body.clone(), &["replayed", "requestId"]),
        without(first.body.clone(), &["requestId"]),
        "the same body otherwise"
    );
    assert_eq!(finalization_id(&again), id);
    assert_eq!(
        t.highlevel.finalize_requests().len(),
        1,
        "HighLevel was called once"
    );
    assert_eq!(
        t.reads.count() - reads_after_first,
        1,
        "only the inbound-auth secret is read for the replay; the token is not"
    );
}

#[tokio::test]
async fn the_key_is_the_webhook_id_then_the_idempotency_key_then_the_csv_id() {
    let t = app_with_records().await;
    let plain = t.invoke(EV_JSON_BODY).await;
    let keyed = with_header(EV_JSON_BODY, "idempotency-key", Some("order-1"));
    let by_key = t.invoke(&keyed).await;
    assert_eq!((plain.status, by_key.status), (200, 200));
    assert_ne!(
        finalization_id(&plain),
        finalization_id(&by_key),
        "another key, another record"
    );
    assert_eq!(by_key.body.get("replayed"), None, "a new key runs");

    let webhook = with_header(&keyed, "webhook-id", Some("msg_2Lh9"));
    let by_webhook = t.invoke(&webhook).await;
    assert_eq!(
        by_webhook.body.get("replayed"),
        None,
        "webhook-id comes before Idempotency-Key"
    );
    let by_webhook_again = t
        .invoke(&with_header(&webhook, "idempotency-key", Some("other")))
        .await;
    assert_eq!(
        by_webhook_again.body["replayed"], true,
        "the webhook-id decides"
    );
    assert_eq!(t.invoke(&keyed).await.body["replayed"], true);
    assert_eq!(t.highlevel.finalize_requests().len(), 3);
}

#[tokio::test]
async fn the_same_key_for_another_csv_or_user_is_refused_with_422() {
    let t = app_with_records().await;
    let keyed = |csv: &str| with_header(&finalize_csv(csv), "idempotency-key", Some("order-7"));
    assert_eq!(t.invoke(&keyed(CSV)).await.status, 200);
    let reused = t.invoke(&keyed("another-csv")).await;
    assert_eq!(
        (reused.status, code(&reused)),
        (422, "idempotency_key_reused"),
        "{}",
        reused.text
    );
    assert_eq!(reused.body["error"]["field"], "csvId");
    let other_user =
        json!({"locationId": LOCATION, "csvId": CSV, "userId": "someone-else"}).to_string();
    let event = with_header(
        &with_body(EV_JSON_BODY, &other_user, Some("application/json")),
        "idempotency-key",
        Some("order-7"),
    );
    let reused = t.invoke(&event).await;
    assert_eq!(
        (reused.status, reused.body["error"]["field"].as_str()),
        (422, Some("userId"))
    );
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_that_is_not_1_to_255_visible_characters_is_a_400() {
    let t = app_with_records().await;
    for bad in ["k".repeat(256), "two words".to_owned()] {
        let response = t
            .invoke(&with_header(EV_JSON_BODY, "idempotency-key", Some(&bad)))
            .await;
        assert_eq!(
            (response.status, code(&response)),
            (400, "invalid_request"),
            "{bad}"
        );
        assert_eq!(response.body["error"]["field"], "Idempotency-Key");
    }
    assert!(t.highlevel.finalize_requests().is_empty());
}

#[tokio::test]
async fn a_failure_is_recorded_but_a_retry_runs_again() {
    let t = app_with_records().await;
    t.highlevel_answers_in_turn([Scripted::status(422), Scripted::ok()]);
    let failed = t.invoke(EV_JSON_BODY).await;
    assert_eq!(failed.status, 422);
    let id = finalization_id(&failed);
    let status = t.status_of(&id).await;
    assert_eq!(
        status.body["finalization"]["status"], "failed",
        "{}",
        status.text
    );
    assert_eq!(
        status.body["finalization"]["error"]["code"],
        "upstream_rejected"
    );

    let retried = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (retried.status, retried.body.get("replayed")),
        (200, None),
        "{}",
        retried.text
    );
    let status = t.status_of(&id).await;
    assert_eq!(status.body["finalization"]["status"], "finalized");
    assert_eq!(
        status.body["finalization"]["attempts"], 2,
        "attempts add up over tries"
    );
    assert!(status.body["finalization"].get("error").is_none());
    let replay = t.invoke(EV_JSON_BODY).await;
    assert_eq!(replay.body["replayed"], true, "{}", replay.text);
    assert_eq!(
        replay.body["attempts"], retried.body["attempts"],
        "a replay gives the answer's attempts again, not the record's total"
    );
}

#[tokio::test]
async fn concurrent_duplicates_on_two_instances_finalize_once() {
    let t = app_with_records().await;
    t.highlevel_answers(Scripted::ok().delayed(Duration::from_millis(400)));
    let other = t.another_instance().await;
    let (a, b) = tokio::join!(
        t.invoke(EV_JSON_BODY),
        send_to(
            &other,
            request_with_deadline(EV_JSON_BODY, Duration::from_secs(30))
        )
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text, b.text);
    let busy = if a.status == 409 { &a } else { &b };
    assert_eq!(code(busy), "request_in_progress");
    assert_eq!(busy.headers["retry-after"], "1");
    assert_eq!(t.highlevel.finalize_requests().len(), 1, "one finalize");
    let later = send_to(
        &other,
        request_with_deadline(EV_JSON_BODY, Duration::from_secs(30)),
    )
    .await;
    assert_eq!((later.status, &later.body["replayed"]), (200, &json!(true)));
}

#[tokio::test]
async fn a_record_whose_holder_died_is_taken_over_after_its_deadline() {
    let t = app_with_records().await;
    t.highlevel_answers_in_turn([Scripted::Silent, Scripted::ok()]);
    let deadline = Duration::from_millis(1500);
    // The first invocation is cut off while HighLevel is silent, as if its instance died.
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        t.invoke_with_deadline(EV_JSON_BODY, deadline),
    )
    .await;
    assert!(cut.is_err(), "the first invocation is still waiting");
    let blocked = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (blocked.status, code(&blocked)),
        (409, "request_in_progress"),
        "{}",
        blocked.text
    );
    tokio::time::sleep(deadline).await;
    let still = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (still.status, code(&still)),
        (409, "request_in_progress"),
        "the lock outlasts the deadline by a margin for the holder's last write: {}",
        still.text
    );
    // As once the margin has passed too.
    let id = still.body["finalizationId"].as_str().unwrap().to_owned();
    let past = (now_unix() as u64 * 1000 - 1).to_string();
    t.set_record_field(&id, "lock_until_ms", AttributeValue::N(past))
        .await;
    let taken_over = t.invoke(EV_JSON_BODY).await;
    assert_eq!(taken_over.status, 200, "{}", taken_over.text);
    assert_eq!(t.highlevel.finalize_requests().len(), 2);
}

#[tokio::test]
async fn a_replayed_signed_request_is_answered_from_its_record() {
    let t = app_with_records().await;
    let signed_event = signed(EV_WORKFLOW, WEBHOOK_SECRET, now_unix());
    let first = t.invoke(&signed_event).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let replay = t.invoke(&signed_event).await;
    assert_eq!(
        (replay.status, &replay.body["replayed"]),
        (200, &json!(true)),
        "{}",
        replay.text
    );
    assert_eq!(
        t.highlevel.finalize_requests().len(),
        1,
        "the captured request finalized nothing more"
    );
}

#[tokio::test]
async fn the_status_route_shows_a_record_to_callers_who_may_act_for_its_location() {
    let scoped = json!({"apiKeys": [API_KEY, {"name": "elsewhere", "key": "other-location-key", "locations": ["another-location"]}]});
    let t = spawn_app_with(Setup {
        records: true,
        auth_secret: Some(scoped.to_string()),
        ..Setup::default()
    })
    .await;
    let id = finalization_id(&t.invoke(EV_JSON_BODY).await);
    let status = t.status_of(&id).await;
    assert_eq!(status.status, 200, "{}", status.text);
    let record = &status.body["finalization"];
    assert_eq!(record["finalizationId"], json!(id));
    assert_eq!(
        (
            record["status"].as_str(),
            record["locationId"].as_str(),
            record["csvId"].as_str()
        ),
        (Some("finalized"), Some(LOCATION), Some(CSV))
    );
    assert_eq!(record["attempts"], 1);
    assert_eq!(record["upstream"]["status"], 200);
    for field in ["createdAt", "updatedAt"] {
        assert!(
            record[field]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
            "{field}"
        );
    }

    let elsewhere = with_header(&status_event(&id), "x-api-key", Some("other-location-key"));
    let hidden = t.invoke(&elsewhere).await;
    assert_eq!(
        (hidden.status, code(&hidden)),
        (404, "not_found"),
        "another location's record is not found"
    );
    for unknown in [
        "fz_00000000000000000000000000000000",
        "fz_short",
        "..%2F..%2Fetc",
    ] {
        let response = t.invoke(&status_event(unknown)).await;
        assert_eq!(
            (response.status, code(&response)),
            (404, "not_found"),
            "{unknown}"
        );
    }
    let anonymous = t.invoke(&without_credentials(&status_event(&id))).await;
    assert_eq!(anonymous.status, 401, "authenticated like a finalize");
}

#[tokio::test]
async fn without_a_table_every_request_is_new_and_the_status_route_is_404() {
    let t = spawn_app().await;
    let first = t.invoke(EV_JSON_BODY).await;
    let second = t.invoke(EV_JSON_BODY).await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.body.get("finalizationId"), None);
    assert_eq!(t.highlevel.finalize_requests().len(), 2);
    let status = t.invoke(&status_event(SAMPLE_FINALIZATION_ID)).await;
    assert_eq!((status.status, code(&status)), (404, "not_found"));
}

#[tokio::test]
async fn an_expired_record_counts_as_absent_before_dynamodb_deletes_it() {
    let t = app_with_records().await;
    let id = finalization_id(&t.invoke(EV_JSON_BODY).await);
    t.set_record_field(&id, "expires_at", AttributeValue::N("1000".into()))
        .await;
    assert_eq!(t.status_of(&id).await.status, 404, "expired is unknown");
    let again = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (again.status, again.body.get("replayed")),
        (200, None),
        "{}",
        again.text
    );
    assert_eq!(t.highlevel.finalize_requests().len(), 2);
    assert!(t
        .stored_record(&id)
        .await
        .is_some_and(|item| item["expires_at"].as_n().unwrap().parse::<u64>().unwrap() > 1000));
}

#[tokio::test]
async fn a_store_outage_or_throttling_is_503_store_unavailable_and_nothing_is_finalized() {
    let (t, proxy) = app_behind_fault_proxy(false).await;
    for (status, error) in [
        (500, "InternalServerError"),
        (400, "ProvisionedThroughputExceededException"),
        (400, "ThrottlingException"),
    ] {
        proxy.fail("PutItem", status, error);
        let response = t.invoke(EV_JSON_BODY).await;
        assert_eq!(
            (response.status, code(&response)),
            (503, "store_unavailable"),
            "{error}: {}",
            response.text
        );
        assert_eq!(response.headers["retry-after"], "2");
        proxy.heal();
    }
    assert!(
        t.highlevel.finalize_requests().is_empty(),
        "no double finalize is worth an outage"
    );
    assert_eq!(
        t.invoke(EV_JSON_BODY).await.status,
        200,
        "and it works once the store is back"
    );
}

#[tokio::test]
async fn an_unreachable_store_is_503_store_unavailable() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let t = spawn_app_with(Setup {
        records: true,
        aws_endpoint: Some(closed),
        ..Setup::default()
    })
    .await;
    let response = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (response.status, code(&response)),
        (503, "store_unavailable"),
        "{}",
        response.text
    );
    assert!(t.highlevel.finalize_requests().is_empty());
}

#[tokio::test]
async fn access_denied_or_a_missing_table_is_a_configuration_error() {
    let (t, proxy) = app_behind_fault_proxy(false).await;
    proxy.fail("PutItem", 400, "AccessDeniedException");
    let denied = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (denied.status, code(&denied)),
        (500, "config_error"),
        "{}",
        denied.text
    );

    let t = spawn_app_with(Setup {
        env: vec![("IDEMPOTENCY_TABLE", unique("no-such-table"))],
        ..Setup::default()
    })
    .await;
    let missing = t.invoke(EV_JSON_BODY).await;
    assert_eq!(
        (missing.status, code(&missing)),
        (500, "config_error"),
        "{}",
        missing.text
    );
    assert!(
        !missing.text.contains("no-such-table"),
        "5xx bodies stay opaque"
    );
    assert!(t.highlevel.finalize_requests().is_empty());
}

#[tokio::test]
async fn a_record_that_cannot_be_written_after_the_finalize_does_not_hide_the_outcome() {
    let (t, proxy) = app_behind_fault_proxy(false).await;
    // Taking the record goes through; the result's write fails.
    t.highlevel_answers(Scripted::ok().delayed(Duration::from_millis(200)));
    let breaker = break_record_writes_during_the_patch(&proxy, None);
    let response = answered_within(
        Duration::from_secs(5),
        t.invoke_with_deadline(EV_JSON_BODY, Duration::from_secs(3)),
    )
    .await;
    breaker.await.unwrap();
    assert_eq!(
        response.status, 200,
        "the finalize happened: {}",
        response.text
    );
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
    assert!(
        proxy.calls("PutItem") >= 4,
        "the result write was tried again until the deadline: {} PutItems",
        proxy.calls("PutItem")
    );
    let metrics = t
        .metric_documents()
        .pop()
        .expect("the request's EMF document");
    assert_eq!(metrics["UnrecordedResults"], 1, "{metrics}");
    proxy.heal();
    let status = t.status_of(&finalization_id(&response)).await;
    assert_eq!(
        status.body["finalization"]["status"], "in_progress",
        "the result was never written"
    );
}

#[tokio::test]
async fn a_result_write_that_fails_for_a_moment_is_tried_again_and_written() {
    let (t, proxy) = app_behind_fault_proxy(false).await;
    t.highlevel_answers(Scripted::ok().delayed(Duration::from_millis(200)));
    let breaker = break_record_writes_during_the_patch(&proxy, Some(Duration::from_millis(1500)));
    let response = t.invoke(EV_JSON_BODY).await;
    breaker.await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text);
    let status = t.status_of(&finalization_id(&response)).await;
    assert_eq!(status.body["finalization"]["status"], "finalized");
}

#[tokio::test]
async fn a_record_write_whose_answer_was_lost_is_recognised_as_our_own() {
    let (t, proxy) = app_behind_fault_proxy(false).await;
    t.highlevel_answers(highlevel_ok());
    // The record's conditional create is done, its answer lost; the SDK sends it again and
    // DynamoDB refuses the copy, returning the record the first one wrote.
    proxy.lose_answer_once("PutItem");
    let response = t.invoke(EV_JSON_BODY).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
    let id = response.body["finalizationId"].as_str().unwrap();
    let status = t.status_of(id).await;
    assert_eq!(status.body["finalization"]["status"], "finalized");
}

/// While a PATCH answered after 200 ms is under way, every record write starts failing (from
/// 100 ms on), and heals after `heal_after` if given: the result's write meets the outage.
fn break_record_writes_during_the_patch(
    proxy: &FaultProxy,
    heal_after: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    let proxy = proxy.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.fail("PutItem", 500, "InternalServerError");
        if let Some(after) = heal_after {
            tokio::time::sleep(after).await;
            proxy.heal();
        }
    })
}
