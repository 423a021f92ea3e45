//! Completion callbacks: when a followed import ends (or its finalize fails for good), a signed
//! `POST` to the request's `callbackUrl` (or `CALLBACK_URL`), retried through the queue for
//! 24 hours; every URL a callback may not reach refused at the receiver. Against SQS and
//! DynamoDB in moto, the stand-in, and a receiver on loopback (`CALLBACK_ALLOW_PRIVATE=true`);
//! signatures verified with the `standardwebhooks` reference library.

use std::time::Duration;

use ghl_csv_finalize::local::standin::ImportScript;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::stores::FaultProxy;

const CALLBACK_SECRET: &str = "whsec_Y2FsbGJhY2stc2lnbmluZy1zZWNyZXQtMDAx";
const LIMITED_KEY: &str = "limited-key-0001";

fn auth_secret(callback_secret: bool) -> String {
    let mut secret = json!({
        "apiKeys": [API_KEY, {"name": "limited", "key": LIMITED_KEY, "callbackHosts": ["hooks.example.com"]}],
        "webhookSecrets": [WEBHOOK_SECRET],
    });
    if callback_secret {
        secret["callbackSecret"] = json!(CALLBACK_SECRET);
    }
    secret.to_string()
}

/// Queue mode following imports (checked a second after the finalize), callbacks allowed to
/// reach loopback, and `env` on top.
async fn calling_back(import_time: Duration, env: Vec<(&'static str, String)>) -> TestApp {
    calling_back_through(None, import_time, env).await
}

/// [`calling_back`], its DynamoDB and SQS calls sent to `aws_endpoint` (a fault proxy, say).
async fn calling_back_through(
    aws_endpoint: Option<String>,
    import_time: Duration,
    env: Vec<(&'static str, String)>,
) -> TestApp {
    let mut all = vec![
        ("FOLLOW_INTERVAL_SECS", "1".to_owned()),
        ("CALLBACK_ALLOW_PRIVATE", "true".to_owned()),
    ];
    all.extend(env);
    spawn_app_with(Setup {
        queue: true,
        auth_secret: Some(auth_secret(true)),
        env: all,
        standin: Behaviour {
            import_time: Some(import_time),
            ..Behaviour::default()
        },
        aws_endpoint,
        ..Setup::default()
    })
    .await
}

/// A receiver on loopback answering `first` once, then 200; its callback URL.
async fn receiver_answering_first(first: impl wiremock::Respond + 'static) -> (MockServer, String) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let url = format!("http://127.0.0.1:{}/cb", server.address().port());
    (server, url)
}

/// The next try of record `id`'s `csv.import.completed` callback, first tried now, as the
/// queue would deliver it (it waits 30 s there; tests receive it at once).
fn completed_callback_due(id: &str) -> Value {
    json!({"kind": "callback", "finalizationId": id, "locationId": LOCATION, "csvId": CSV,
           "type": "csv.import.completed", "occurredAtMs": 1, "firstTriedAtMs": now_unix() * 1000,
           "delaySecs": 30})
}

/// A receiver's answer: 503, and from then on the record store refuses every write, so the
/// store fails just as the callback's state is to be kept.
struct RefusedThenTheStoreFails(FaultProxy);

impl wiremock::Respond for RefusedThenTheStoreFails {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        self.0.fail("PutItem", 500, "InternalServerError");
        ResponseTemplate::new(503)
    }
}

/// A receiver on loopback answering `status`; its callback URL.
async fn receiver(status: u16) -> (MockServer, String) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    let url = format!(
        "http://127.0.0.1:{}/csv-done?mine=1",
        server.address().port()
    );
    (server, url)
}

/// The sample request naming `callback` in its body.
fn request_calling_back(callback: &str) -> String {
    let body = json!({"locationId": LOCATION, "csvId": CSV, "callbackUrl": callback});
    with_body(EV_JSON_BODY, &body.to_string(), Some("application/json"))
}

/// Accepts `event` (202) and works its finalize message; the record's id.
async fn accepted_and_finalized(t: &TestApp, event: &str) -> String {
    t.highlevel_answers(highlevel_ok());
    let accepted = t.invoke(event).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let message = t.receive_event().await.expect("the finalize message");
    assert_eq!(
        TestApp::failures(&t.work(&message).await),
        Vec::<String>::new()
    );
    accepted.body["finalizationId"].as_str().unwrap().to_owned()
}

/// Waits for the next message on the queue (a delayed one included) and works it.
async fn work_next(t: &TestApp) -> Value {
    for _ in 0..40 {
        if let Some(event) = t.receive_event().await {
            assert_eq!(
                TestApp::failures(&t.work(&event).await),
                Vec::<String>::new()
            );
            return serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no message came");
}

async fn record(t: &TestApp, id: &str) -> Value {
    t.status_of(id).await.body["finalization"].clone()
}

/// The callbacks `server` received: each verified with the reference library, as JSON.
async fn verified(server: &MockServer) -> Vec<Value> {
    let webhook = standardwebhooks::Webhook::new(CALLBACK_SECRET).unwrap();
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| {
            webhook
                .verify(&request.body, &request.headers)
                .expect("every callback verifies");
            assert_eq!(request.headers["content-type"], "application/json");
            serde_json::from_slice(&request.body).unwrap()
        })
        .collect()
}

/// An SQS event carrying `body` once.
fn event_of(body: &Value) -> Value {
    json!({"Records": [{
        "messageId": unique("m"), "receiptHandle": "r", "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"}]})
}

#[tokio::test]
async fn an_import_followed_to_completed_is_reported_by_a_signed_callback() {
    let t = calling_back(Duration::ZERO, vec![]).await;
    let (server, url) = receiver(204).await;
    let id = accepted_and_finalized(&t, &request_calling_back(&url)).await;
    assert_eq!(work_next(&t).await["kind"], "follow");
    let received = verified(&server).await;
    assert_eq!(received.len(), 1);
    let callback = &received[0];
    assert_eq!(callback["type"], "csv.import.completed");
    assert_eq!(callback["finalizationId"], id.as_str());
    assert_eq!(
        (&callback["locationId"], &callback["csvId"]),
        (&json!(LOCATION), &json!(CSV))
    );
    assert_eq!(callback["finalize"]["status"], "finalized");
    assert_eq!(callback["import"]["status"], "completed");
    assert!(callback["timestamp"].is_string());
    let request = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        request.headers["webhook-id"].to_str().unwrap(),
        format!("{id}.csv.import.completed")
    );
    assert_eq!(
        request.url.query(),
        Some("mine=1"),
        "the caller's URL as given"
    );
    assert_eq!(
        record(&t, &id).await["callback"],
        json!({"type": "csv.import.completed", "status": "delivered", "attempts": 1, "lastStatus": 204})
    );
    let metrics = t.metric_documents();
    assert!(
        metrics
            .iter()
            .any(|m| m["ImportsCompleted"] == 1 && m["CallbacksDelivered"] == 1),
        "the check that saw the end delivered the callback"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(t.receive_event().await.is_none(), "nothing more to do");
}

#[tokio::test]
async fn a_failed_import_is_reported_with_its_post_errors() {
    let t = calling_back(Duration::ZERO, vec![]).await;
    t.highlevel.script_import(
        LOCATION,
        CSV,
        ImportScript {
            posts: 4,
            errors: vec![(2, "the date is in the past".into())],
            ends: "failed".into(),
            time: None,
        },
    );
    let (server, url) = receiver(200).await;
    accepted_and_finalized(&t, &request_calling_back(&url)).await;
    work_next(&t).await;
    let callback = &verified(&server).await[0];
    assert_eq!(callback["type"], "csv.import.failed");
    assert_eq!(
        callback["import"]["errors"],
        json!([{"index": 2, "message": "the date is in the past"}])
    );
    assert_eq!(callback["import"]["failedPosts"], 1);
}

#[tokio::test]
async fn a_callback_not_accepted_is_tried_again_through_the_queue_until_delivered() {
    let t = calling_back(Duration::ZERO, vec![]).await;
    let (server, url) = receiver_answering_first(ResponseTemplate::new(503)).await;
    let id = accepted_and_finalized(&t, &request_calling_back(&url)).await;
    work_next(&t).await;
    assert_eq!(
        record(&t, &id).await["callback"],
        json!({"type": "csv.import.completed", "status": "pending", "attempts": 1, "lastStatus": 503})
    );
    // Its next try waits 30 s on the queue; the same message, received now.
    let due = completed_callback_due(&id);
    assert_eq!(
        TestApp::failures(&t.work(&event_of(&due)).await),
        Vec::<String>::new()
    );
    assert_eq!(
        record(&t, &id).await["callback"],
        json!({"type": "csv.import.completed", "status": "delivered", "attempts": 2, "lastStatus": 200})
    );
    let mut received = verified(&server).await;
    assert_eq!(received.len(), 2);
    for callback in &mut received {
        // The test's own message above says when it happened.
        callback.as_object_mut().unwrap().remove("timestamp");
    }
    assert_eq!(received[0], received[1], "the same callback each time");
    assert!(t
        .metric_documents()
        .iter()
        .any(|m| m["CallbacksDelivered"] == 1));
    // Delivered: a late copy of a try does nothing.
    t.work(&event_of(&due)).await;
    assert_eq!(verified(&server).await.len(), 2);
}

#[tokio::test]
async fn a_callback_whose_state_could_not_be_kept_is_still_tried_again_until_delivered() {
    let proxy = FaultProxy::start().await;
    let t = calling_back_through(Some(proxy.url.clone()), Duration::ZERO, vec![]).await;
    let (server, url) = receiver_answering_first(RefusedThenTheStoreFails(proxy.clone())).await;
    let id = accepted_and_finalized(&t, &request_calling_back(&url)).await;
    // The check: the callback is refused, its next try queued, and its state not kept.
    work_next(&t).await;
    assert_eq!(verified(&server).await.len(), 1);
    proxy.heal();
    assert_eq!(record(&t, &id).await["callback"], Value::Null);
    // The queued next try (it waits 30 s on the queue; the same message, received now).
    let due = completed_callback_due(&id);
    assert_eq!(
        TestApp::failures(&t.work(&event_of(&due)).await),
        Vec::<String>::new()
    );
    assert_eq!(verified(&server).await.len(), 2, "tried again, not lost");
    assert_eq!(
        record(&t, &id).await["callback"],
        json!({"type": "csv.import.completed", "status": "delivered", "attempts": 2, "lastStatus": 200})
    );
}

#[tokio::test]
async fn a_callback_that_times_out_is_pending_and_one_failing_for_24_hours_is_given_up() {
    let t = calling_back(Duration::ZERO, vec![]).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let url = format!("http://127.0.0.1:{}/slow", server.address().port());
    let id = accepted_and_finalized(&t, &request_calling_back(&url)).await;
    let follow_up = loop {
        if let Some(event) = t.receive_event().await {
            break event;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The callback is given 10 s, not the receiver's 30.
    answered_within(Duration::from_secs(20), t.work(&follow_up)).await;
    assert_eq!(
        record(&t, &id).await["callback"],
        json!({"type": "csv.import.completed", "status": "pending", "attempts": 1})
    );
    let day_ago = (now_unix() - 24 * 3600 - 1) * 1000;
    let due = json!({"kind": "callback", "finalizationId": id, "locationId": LOCATION, "csvId": CSV,
                     "type": "csv.import.completed", "occurredAtMs": 1, "firstTriedAtMs": day_ago,
                     "delaySecs": 900});
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    t.work(&event_of(&due)).await;
    assert_eq!(
        record(&t, &id).await["callback"],
        json!({"type": "csv.import.completed", "status": "failed", "attempts": 2, "lastStatus": 500})
    );
    assert!(t
        .metric_documents()
        .iter()
        .any(|m| m["CallbacksFailed"] == 1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(t.receive_event().await.is_none(), "no further try");
}

#[tokio::test]
async fn a_record_is_kept_while_its_callback_is_being_tried() {
    let t = calling_back(Duration::ZERO, vec![("IDEMPOTENCY_TTL_SECS", "600".into())]).await;
    let (_server, url) = receiver(502).await;
    let id = accepted_and_finalized(&t, &request_calling_back(&url)).await;
    work_next(&t).await;
    let item = t.stored_record(&id).await.expect("the record");
    let kept_until: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert!(
        kept_until >= now_unix() + 24 * 3600,
        "kept past the last try, not the 10 minutes of IDEMPOTENCY_TTL_SECS"
    );
}

#[tokio::test]
async fn a_finalize_that_fails_for_good_is_reported_as_csv_finalize_failed() {
    let t = calling_back(Duration::ZERO, vec![]).await;
    let (server, url) = receiver(200).await;
    t.highlevel_answers(Scripted::status(422));
    let accepted = t.invoke(&request_calling_back(&url)).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let message = t.receive_event().await.expect("the finalize message");
    t.work(&message).await;
    let callback = &verified(&server).await[0];
    assert_eq!(callback["type"], "csv.finalize.failed");
    assert_eq!(callback["finalize"]["status"], "failed");
    assert!(callback.get("import").is_none());
}

#[tokio::test]
async fn an_import_past_its_timeout_is_reported_as_timed_out() {
    let t = calling_back(Duration::from_secs(600), vec![]).await;
    let (server, url) = receiver(200).await;
    let id = accepted_and_finalized(&t, &request_calling_back(&url)).await;
    let mut follow_up = loop {
        if let Some(event) = t.receive_event().await {
            break event;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut body: Value =
        serde_json::from_str(follow_up["Records"][0]["body"].as_str().unwrap()).unwrap();
    body["finalizedAtMs"] = json!((now_unix() - 2 * 3600) * 1000);
    follow_up["Records"][0]["body"] = json!(body.to_string());
    t.work(&follow_up).await;
    let callback = &verified(&server).await[0];
    assert_eq!(callback["type"], "csv.import.timed_out");
    assert_eq!(callback["finalizationId"], id.as_str());
}

#[tokio::test]
async fn callback_url_from_the_settings_serves_requests_that_name_none() {
    let (server, url) = receiver(200).await;
    let t = calling_back(Duration::ZERO, vec![("CALLBACK_URL", url)]).await;
    accepted_and_finalized(&t, EV_JSON_BODY).await;
    work_next(&t).await;
    assert_eq!(verified(&server).await[0]["type"], "csv.import.completed");
}

#[tokio::test]
async fn refuses_every_callback_url_a_callback_may_not_reach_before_queueing() {
    // Not allowed to reach private addresses, as deployed.
    let t = spawn_app_with(Setup {
        queue: true,
        auth_secret: Some(auth_secret(true)),
        ..Setup::default()
    })
    .await;
    for url in [
        "http://hooks.example.com/cb",
        "https://127.0.0.1/cb",
        "https://10.1.2.3/cb",
        "https://172.16.0.1/cb",
        "https://192.168.1.1/cb",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/cb",
        "https://0.0.0.0/cb",
        "https://224.0.0.1/cb",
        "https://[::1]/cb",
        "https://[::]/cb",
        "https://[fe80::1]/cb",
        "https://[fd00::1]/cb",
        "https://[ff02::1]/cb",
        "https://[::ffff:169.254.169.254]/cb",
        "https://localhost/cb",
        "https://user:pw@hooks.example.com/cb",
        "ftp://hooks.example.com/cb",
    ] {
        let refused = t.invoke(&request_calling_back(url)).await;
        assert_eq!(
            (refused.status, refused.body["error"]["field"].as_str()),
            (400, Some("callbackUrl")),
            "{url}: {}",
            refused.text
        );
        assert!(!refused.text.contains("user:pw"));
    }
    let too_long = format!("https://hooks.example.com/{}", "a".repeat(2048));
    assert_eq!(t.invoke(&request_calling_back(&too_long)).await.status, 400);
    assert!(t.receive_event().await.is_none(), "nothing was queued");
    assert!(
        t.upstream_requests().is_empty(),
        "nothing reached HighLevel"
    );
}

#[tokio::test]
async fn a_credential_may_name_only_its_callback_hosts() {
    let t = calling_back(Duration::ZERO, vec![]).await;
    let (_server, url) = receiver(200).await;
    let limited = with_header(
        &request_calling_back(&url),
        "authorization",
        Some(&format!("Bearer {LIMITED_KEY}")),
    );
    let refused = t.invoke(&limited).await;
    assert_eq!(
        (refused.status, refused.body["error"]["field"].as_str()),
        (400, Some("callbackUrl")),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("callbackHosts"));
    let open = t.invoke(&request_calling_back(&url)).await;
    assert_eq!(open.status, 202, "{}", open.text);
}

#[tokio::test]
async fn a_signed_request_names_its_callback_only_in_the_signed_body() {
    let t = calling_back(Duration::ZERO, vec![]).await;
    let (_server, url) = receiver(200).await;
    let body = json!({"locationId": LOCATION, "csvId": CSV});
    let event = with_body(EV_JSON_BODY, &body.to_string(), Some("application/json"));
    let event = with_header(
        &signed(&event, WEBHOOK_SECRET, now_unix()),
        "x-callback-url",
        Some(&url),
    );
    let refused = t.invoke(&event).await;
    assert_eq!(
        (refused.status, refused.body["error"]["field"].as_str()),
        (400, Some("callbackUrl")),
        "{}",
        refused.text
    );
    let in_body = signed(&request_calling_back(&url), WEBHOOK_SECRET, now_unix());
    assert_eq!(t.invoke(&in_body).await.status, 202);
}

#[tokio::test]
async fn a_callback_url_is_refused_where_nothing_follows_the_import_or_nothing_signs() {
    let url = "https://hooks.example.com/cb";
    let sync = spawn_app_with(Setup {
        records: true,
        auth_secret: Some(auth_secret(true)),
        ..Setup::default()
    })
    .await;
    let refused = sync.invoke(&request_calling_back(url)).await;
    assert_eq!(
        (refused.status, refused.body["error"]["field"].as_str()),
        (400, Some("callbackUrl"))
    );
    assert!(sync.upstream_requests().is_empty());
    let unsigned = spawn_app_with(Setup {
        queue: true,
        auth_secret: Some(auth_secret(false)),
        ..Setup::default()
    })
    .await;
    let refused = unsigned.invoke(&request_calling_back(url)).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.text.contains("callbackSecret"));
}
