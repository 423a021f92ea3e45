use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::records::{FinalizationId, Status};
use crate::request::ids::{CsvId, LocationId};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn callbacks(allow_private: bool, lookup: Lookup) -> Callbacks {
    Callbacks::with_lookup(
        crate::app::https::tls_config().unwrap(),
        Reach { allow_private },
        lookup,
        Arc::new(InboundAuth::Disabled),
        Some(CallbackKey::parse(SECRET).unwrap()),
        None,
    )
    .unwrap()
}

fn record(url: &str) -> Record {
    Record {
        id: FinalizationId::parse("fz_0123456789abcdef0123456789abcdef").unwrap(),
        location_id: LocationId::parse("L1").unwrap(),
        csv_id: CsvId::parse("C1").unwrap(),
        user_id: None,
        status: Status::Finalized,
        attempts: 1,
        created_at_ms: 1,
        updated_at_ms: 1,
        owner: None,
        lock_until_ms: None,
        expires_at: u64::MAX / 2000,
        upstream: None,
        error: None,
        csv_status_before: None,
        confirmed_by: None,
        answer_attempts: None,
        import: None,
        callback_url: CallbackUrl::stored(url),
        callback: None,
        version: 1,
    }
}

async fn receiver(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

/// Sends the callback reporting `kind` of a record whose callback goes to `url`, once.
async fn send(callbacks: Callbacks, url: &str, kind: CallbackKind) -> Sent {
    callbacks
        .send(&record(url), kind, 1_000, Deadline::NONE)
        .await
}

fn loopback() -> Lookup {
    Lookup::Fixed(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
}

#[tokio::test]
async fn a_delivered_callback_is_signed_as_standard_webhooks_verifies_it() {
    let server = receiver(204).await;
    let url = format!("http://127.0.0.1:{}/done", server.address().port());
    let sent = send(
        callbacks(true, loopback()),
        &url,
        CallbackKind::ImportCompleted,
    )
    .await;
    assert_eq!(sent, Sent::Delivered(204));
    let received = server.received_requests().await.unwrap();
    let request = &received[0];
    standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(&request.body, &request.headers)
        .expect("the signature verifies");
    assert_eq!(
        request.headers["webhook-id"],
        "fz_0123456789abcdef0123456789abcdef.csv.import.completed"
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["type"], "csv.import.completed");
    assert_eq!(
        body["finalize"],
        json!({"status": "finalized", "attempts": 1})
    );
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_at_delivery_is_never_connected_to() {
    let server = receiver(200).await;
    let port = server.address().port();
    // The receiver's check saw a public address; by delivery the name answers a private one.
    for private in ["10.0.0.7", "127.0.0.1", "169.254.169.254"] {
        let lookup = Lookup::Fixed(vec![private.parse().unwrap()]);
        let url = format!("https://rebinding.example:{port}/done");
        let sent = send(callbacks(false, lookup), &url, CallbackKind::ImportFailed).await;
        assert_eq!(sent, Sent::Undelivered(None), "{private}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_address_the_guarded_lookup_gave_is_the_one_connected_to() {
    let server = receiver(200).await;
    let url = format!("http://localhost:{}/done", server.address().port());
    let sent = send(
        callbacks(true, loopback()),
        &url,
        CallbackKind::ImportFailed,
    )
    .await;
    assert_eq!(sent, Sent::Delivered(200));
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_does_not_count_as_delivered() {
    let elsewhere = receiver(200).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", format!("{}/x", elsewhere.uri())),
        )
        .mount(&server)
        .await;
    let url = format!("http://127.0.0.1:{}/done", server.address().port());
    let sent = send(
        callbacks(true, loopback()),
        &url,
        CallbackKind::ImportCompleted,
    )
    .await;
    assert_eq!(sent, Sent::Undelivered(Some(307)));
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_loopback_receiver_is_refused_unless_private_addresses_are_allowed() {
    let server = receiver(200).await;
    let url = format!("http://127.0.0.1:{}/done", server.address().port());
    let sent = send(
        callbacks(false, loopback()),
        &url,
        CallbackKind::ImportCompleted,
    )
    .await;
    assert_eq!(sent, Sent::Undelivered(None));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_receiver_refuses_a_host_that_resolves_to_a_private_address() {
    let credential = Credential::unauthenticated();
    let refused = callbacks(false, Lookup::Fixed(vec!["192.168.0.10".parse().unwrap()]))
        .admit(
            Some("https://hooks.example.com/cb"),
            &credential,
            Deadline::NONE,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.field(), Some("callbackUrl"));
    let admitted = callbacks(false, Lookup::Fixed(vec!["93.184.216.34".parse().unwrap()]))
        .admit(
            Some("https://hooks.example.com/cb"),
            &credential,
            Deadline::NONE,
        )
        .await
        .unwrap();
    assert_eq!(admitted.unwrap().host(), "hooks.example.com");
}

#[test]
fn a_body_carries_the_finalize_and_the_import_but_never_the_url() {
    let mut record = record("https://hooks.example.com/cb?token=mine");
    record.import = crate::highlevel::Import::from_stored(&json!({
        "status": "failed", "posts": 2, "failedPosts": 1,
        "errors": [{"index": 1, "message": "media refused"}], "checkedAtMs": 5,
    }));
    let body = body(&record, CallbackKind::ImportFailed, 1_700_000_000_000);
    assert_eq!(body["import"]["failedPosts"], 1);
    assert_eq!(body["timestamp"], "2023-11-14T22:13:20.000Z");
    assert!(!body.to_string().contains("token=mine"));
}
