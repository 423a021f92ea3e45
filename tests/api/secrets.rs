//! Token and inbound-auth secrets through the real SDK client: every accepted form, the cache
//! (reads counted), and how each Secrets Manager failure is answered. Failures moto cannot
//! produce (access denied, throttling, 5xx) come from a local server answering in the
//! Secrets Manager wire format.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn token_sent_for(secret: &str, per_location: bool) -> (u16, Option<String>) {
    let t = spawn_app_with(Setup {
        token_secret: Some(secret.to_owned()),
        per_location,
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    let response = t.invoke(EV_PATH_PARAMS).await;
    let sent = t.bearer_tokens().first().map(|t| format!("Bearer {t}"));
    (response.status, sent)
}

#[tokio::test]
async fn reads_every_accepted_token_secret_form() {
    let oauth = json!({"access_token": "pit-oauth-access", "refresh_token": "r-1", "expires_at": 4_102_444_800u64,
                       "client_id": "c", "client_secret": "s", "user_type": "Location"}).to_string();
    let cases = [
        ("  pit-bare-token\n".to_owned(), false, "pit-bare-token"),
        (
            json!({"access_token": "pit-access"}).to_string(),
            false,
            "pit-access",
        ),
        (
            json!({"token": "pit-token-field"}).to_string(),
            false,
            "pit-token-field",
        ),
        (
            json!({LOCATION: "pit-map-string", "Other1": "x"}).to_string(),
            false,
            "pit-map-string",
        ),
        (
            json!({"Other1": "x", LOCATION: {"access_token": "pit-map-object"}}).to_string(),
            false,
            "pit-map-object",
        ),
        ("pit-per-location".to_owned(), true, "pit-per-location"),
        (oauth, false, "pit-oauth-access"),
    ];
    for (secret, per_location, expected) in cases {
        let (status, sent) = token_sent_for(&secret, per_location).await;
        assert_eq!(status, 200, "{secret}");
        assert_eq!(sent.as_deref(), Some(format!("Bearer {expected}").as_str()));
    }
}

#[tokio::test]
async fn caches_secrets_across_warm_invocations() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    for _ in 0..5 {
        assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    }
    assert_eq!(
        t.reads.count(),
        2,
        "one read of the auth secret and one of the token secret"
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_secret_read() {
    let t = Arc::new(spawn_app().await);
    t.highlevel_answers(highlevel_ok());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let t = Arc::clone(&t);
        tasks.spawn(async move { t.invoke(EV_PATH_PARAMS).await.status });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(t.reads.count(), 2);
}

#[tokio::test]
async fn reads_again_once_the_ttl_has_passed() {
    let t = spawn_app_with(Setup {
        env: vec![("SECRET_CACHE_TTL_SECS", "0".into())],
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    for _ in 0..3 {
        assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    }
    assert_eq!(t.reads.count(), 6);
}

#[tokio::test]
async fn a_missing_token_secret_is_a_configuration_error_with_an_opaque_message() {
    let t = spawn_app_with(Setup {
        token_secret: None,
        ..Setup::default()
    })
    .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 500);
    assert_eq!(code(&response), "config_error");
    assert!(
        !response.text.contains(&t.token_secret_id),
        "5xx bodies stay opaque: {}",
        response.text
    );
}

#[tokio::test]
async fn an_unparsable_or_binary_token_secret_is_a_configuration_error() {
    for secret in ["{\"access_token\": ", "{}", "has a space", "[\"x\"]"] {
        let t = spawn_app_with(Setup {
            token_secret: Some(secret.into()),
            ..Setup::default()
        })
        .await;
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!(response.status, 500, "{secret}");
        assert_eq!(code(&response), "config_error");
    }
    let t = spawn_app_with(Setup {
        token_secret: None,
        ..Setup::default()
    })
    .await;
    let admin = sdk_client(moto_endpoint(), None);
    admin
        .create_secret()
        .name(&t.token_secret_id)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
            b"\x00\x01binary".to_vec(),
        ))
        .send()
        .await
        .unwrap();
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 500);
    assert_eq!(code(&response), "config_error");
}

#[tokio::test]
async fn picks_up_a_fixed_secret_on_the_next_request() {
    let t = spawn_app_with(Setup {
        token_secret: None,
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 500);
    put_secret(&t.token_secret_id, TOKEN).await;
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
}

#[tokio::test]
async fn a_missing_or_unparsable_inbound_auth_secret_is_a_configuration_error() {
    for auth_secret in [
        None,
        Some("not json".to_owned()),
        Some(r#"{"webhookSecrets":["whsec_!!!"]}"#.to_owned()),
    ] {
        let t = spawn_app_with(Setup {
            auth_secret,
            ..Setup::default()
        })
        .await;
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!(response.status, 500, "{}", response.text);
        assert_eq!(code(&response), "config_error");
    }
}

#[tokio::test]
async fn an_empty_inbound_auth_secret_refuses_everyone() {
    let t = spawn_app_with(Setup {
        auth_secret: Some("{}".into()),
        ..Setup::default()
    })
    .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 401);
}

#[tokio::test]
async fn serves_without_inbound_auth_only_when_explicitly_allowed() {
    let t = spawn_app_with(Setup {
        unauthenticated: true,
        auth_secret: None,
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    assert_eq!(
        t.invoke(&without_credentials(EV_PATH_PARAMS)).await.status,
        200
    );
    assert_eq!(t.reads.count(), 1, "only the token secret is read");
}

/// A local endpoint that answers every Secrets Manager call with an AWS JSON-protocol error.
async fn secrets_manager_failing_with(status: u16, error_type: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(status)
                .insert_header("x-amzn-errortype", error_type)
                .set_body_raw(
                    json!({"__type": error_type, "message": "simulated"}).to_string(),
                    "application/x-amz-json-1.1",
                ),
        )
        .mount(&server)
        .await;
    server
}

async fn app_against(server: &MockServer) -> TestApp {
    spawn_app_with(Setup {
        token_secret: None,
        auth_secret: None,
        secrets_endpoint: Some(server.uri()),
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn access_denied_is_a_configuration_error() {
    let server = secrets_manager_failing_with(400, "AccessDeniedException").await;
    let response = app_against(&server).await.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 500, "{}", response.text);
    assert_eq!(code(&response), "config_error");
}

#[tokio::test]
async fn throttling_and_server_errors_are_transient() {
    for (status, error_type) in [(400, "ThrottlingException"), (500, "InternalServiceError")] {
        let server = secrets_manager_failing_with(status, error_type).await;
        let response = app_against(&server).await.invoke(EV_PATH_PARAMS).await;
        assert_eq!(response.status, 503, "{error_type}: {}", response.text);
        assert_eq!(code(&response), "secret_unavailable");
    }
}

#[tokio::test]
async fn an_unreachable_secrets_manager_is_transient() {
    let (socket, endpoint) = refusing_address();
    let t = spawn_app_with(Setup {
        token_secret: None,
        auth_secret: None,
        secrets_endpoint: Some(endpoint),
        ..Setup::default()
    })
    .await;
    let response = answered_within(Duration::from_secs(10), t.invoke(EV_PATH_PARAMS)).await;
    assert_eq!(response.status, 503, "{}", response.text);
    assert_eq!(code(&response), "secret_unavailable");
    drop(socket);
}

/// The path-parameter event for another location.
fn for_location(location: &str) -> String {
    edit(EV_PATH_PARAMS, |v| {
        v["pathParameters"]["locationId"] = serde_json::json!(location);
        v["rawPath"] = serde_json::json!(format!("/locations/{location}/csv/{CSV}/finalize"));
    })
}

#[tokio::test]
async fn remembers_an_unknown_location_instead_of_reading_for_it_on_every_request() {
    let t = spawn_app_with(Setup {
        per_location: true,
        ..Setup::default()
    })
    .await;
    for _ in 0..5 {
        let response = t.invoke(&for_location("UnknownLocation01")).await;
        assert_eq!(
            (response.status, code(&response)),
            (403, "location_not_allowed")
        );
    }
    assert_eq!(
        t.reads.count(),
        2,
        "the auth secret and one read for the unknown location"
    );
    for location in ["UnknownLocation02", "UnknownLocation03"] {
        assert_eq!(t.invoke(&for_location(location)).await.status, 403);
    }
    assert_eq!(t.reads.count(), 4, "each unknown location is read once");
    t.highlevel_answers(highlevel_ok());
    assert_eq!(
        t.invoke(EV_PATH_PARAMS).await.status,
        200,
        "known locations are served"
    );
}

#[tokio::test]
async fn remembers_an_unknown_location_no_longer_than_the_cache_ttl() {
    let t = spawn_app_with(Setup {
        per_location: true,
        env: vec![("SECRET_CACHE_TTL_SECS", "0".into())],
        ..Setup::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            t.invoke(&for_location("UnknownLocation04")).await.status,
            403
        );
    }
    assert_eq!(
        t.reads.count(),
        6,
        "with no cache, every request reads both secrets"
    );
}

#[tokio::test]
async fn reads_a_failing_inbound_auth_secret_at_most_once_a_second() {
    let t = spawn_app_with(Setup {
        auth_secret: None,
        ..Setup::default()
    })
    .await;
    for _ in 0..10 {
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!((response.status, code(&response)), (500, "config_error"));
    }
    assert_eq!(
        t.reads.count(),
        1,
        "one read for ten requests within a second"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    put_secret(
        &t.auth_secret_id,
        &format!(r#"{{"apiKeys":["{API_KEY}"]}}"#),
    )
    .await;
    t.highlevel_answers(highlevel_ok());
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(
        response.status, 200,
        "the fixed secret is read again after a second"
    );
    assert_eq!(t.reads.count(), 3);
}
