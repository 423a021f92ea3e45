//! Scoped, named credentials and signatures bound to the ids: an API key or webhook secret
//! limited to some locations is refused (403) for any other before a token is read; a signed
//! request takes its ids from the signed body alone; each request's log line names the
//! credential, never shows it.

use crate::helpers::*;
use serde_json::json;

const OTHER_LOCATION: &str = "OtherLocation000001";

/// An app whose inbound-auth secret is `auth`.
async fn app_with_auth(auth: serde_json::Value) -> TestApp {
    let t = spawn_app_with(Setup {
        auth_secret: Some(auth.to_string()),
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    t
}

fn with_key(event: &str, key: &str) -> String {
    with_header(&without_credentials(event), "x-api-key", Some(key))
}

/// The path-parameter event for another location.
fn for_location(event: &str, location: &str) -> String {
    edit(event, |v| {
        v["pathParameters"]["locationId"] = json!(location);
        v["rawPath"] = json!(format!("/locations/{location}/csv/{CSV}/finalize"));
    })
}

#[tokio::test]
async fn a_key_scoped_to_some_locations_is_refused_for_others_before_any_token_is_read() {
    let t = app_with_auth(json!({"apiKeys": [
        {"name": "zapier-acme", "key": "key-acme", "locations": [LOCATION]},
        "key-any"
    ]}))
    .await;
    let response = t
        .invoke(&with_key(
            &for_location(EV_PATH_PARAMS, OTHER_LOCATION),
            "key-acme",
        ))
        .await;
    assert_eq!(
        (response.status, code(&response)),
        (403, "location_not_allowed"),
        "{}",
        response.text
    );
    assert_eq!(t.reads.count(), 1, "the inbound-auth secret only");
    assert!(t.upstream_requests().is_empty());

    let inside = t.invoke(&with_key(EV_PATH_PARAMS, "key-acme")).await;
    assert_eq!(inside.status, 200, "{}", inside.text);
    let unscoped = t
        .invoke(&with_key(
            &for_location(EV_PATH_PARAMS, OTHER_LOCATION),
            "key-any",
        ))
        .await;
    assert_ne!(unscoped.status, 403, "a bare key serves every location");
}

#[tokio::test]
async fn checks_the_fields_before_the_locations() {
    let t = app_with_auth(json!({"apiKeys": [{"key": "key-acme", "locations": [LOCATION]}]})).await;
    let bad_id = edit(&with_key(EV_PATH_PARAMS, "key-acme"), |v| {
        v["pathParameters"]["locationId"] = json!("no/slashes")
    });
    let response = t.invoke(&bad_id).await;
    assert_eq!((response.status, code(&response)), (400, "invalid_request"));
}

#[tokio::test]
async fn a_webhook_secret_scoped_to_some_locations_is_refused_for_others() {
    let other_secret = "whsec_b3RoZXItd2ViaG9vay1zZWNyZXQtMDAwMDAw";
    let t = app_with_auth(json!({"webhookSecrets": [
        {"name": "hl-acme", "secret": WEBHOOK_SECRET, "locations": [OTHER_LOCATION]},
        {"name": "hl-main", "secret": other_secret, "locations": [LOCATION]}
    ]}))
    .await;
    let refused = t
        .invoke(&signed(EV_WORKFLOW, WEBHOOK_SECRET, now_unix()))
        .await;
    assert_eq!(
        (refused.status, code(&refused)),
        (403, "location_not_allowed")
    );
    let served = t
        .invoke(&signed(EV_WORKFLOW, other_secret, now_unix()))
        .await;
    assert_eq!(served.status, 200, "{}", served.text);
}

#[tokio::test]
async fn names_the_credential_in_the_audit_line_and_never_shows_it() {
    let (logs, _guard) = capture_logs(tracing::Level::INFO);
    let t = app_with_auth(json!({"apiKeys": [
        {"name": "zapier-acme", "key": "key-SENTINEL-acme"},
        "key-SENTINEL-bare"
    ]}))
    .await;
    assert_eq!(
        t.invoke(&with_key(EV_PATH_PARAMS, "key-SENTINEL-acme"))
            .await
            .status,
        200
    );
    assert_eq!(
        t.invoke(&with_key(EV_PATH_PARAMS, "key-SENTINEL-bare"))
            .await
            .status,
        200
    );
    assert_eq!(
        t.invoke(&with_key(EV_PATH_PARAMS, "wrong")).await.status,
        401
    );
    let audit = t.audit_lines();
    let credentials: Vec<&str> = audit
        .iter()
        .map(|line| line["credential"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(credentials, ["zapier-acme", "key#1", "none"]);
    assert!(!logs.text().contains("SENTINEL"));
    assert!(!t.app.kept_lines().concat().contains("SENTINEL"));
}

#[tokio::test]
async fn a_signed_request_takes_its_ids_from_the_signed_body_alone() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    let body = json!({"locationId": LOCATION, "csvId": CSV}).to_string();
    let signed_body = with_body(EV_PATH_PARAMS, &body, Some("application/json"));
    // The body agrees with the path: served.
    let agreeing = edit(&signed_body, |v| v["rawQueryString"] = json!(""));
    let response = t
        .invoke(&signed(&agreeing, WEBHOOK_SECRET, now_unix()))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);

    let cases = [
        (
            "the path names another location",
            for_location(&agreeing, OTHER_LOCATION),
            "locationId",
        ),
        (
            "the query names another CSV",
            edit(&agreeing, |v| {
                v["rawQueryString"] = json!("csvId=AnotherCsv0001")
            }),
            "csvId",
        ),
        (
            "the query adds a userId the body lacks",
            edit(&agreeing, |v| {
                v["rawQueryString"] = json!("userId=SomeoneElse01")
            }),
            "userId",
        ),
        (
            "an empty signed body with the ids in the path",
            edit(&with_body(EV_PATH_PARAMS, "", None), |v| {
                v["rawQueryString"] = json!("")
            }),
            "locationId",
        ),
        (
            "a signed body without a csvId",
            edit(
                &with_body(
                    EV_PATH_PARAMS,
                    &json!({"locationId": LOCATION}).to_string(),
                    Some("application/json"),
                ),
                |v| v["rawQueryString"] = json!(""),
            ),
            "csvId",
        ),
    ];
    for (what, event, field) in cases {
        let response = t.invoke(&signed(&event, WEBHOOK_SECRET, now_unix())).await;
        assert_eq!(
            (response.status, code(&response)),
            (400, "invalid_request"),
            "{what}: {}",
            response.text
        );
        assert_eq!(response.body["error"]["field"], field, "{what}");
    }
    assert_eq!(t.highlevel.finalize_requests().len(), 1);
}

#[tokio::test]
async fn a_signed_json_body_replayed_as_form_data_is_refused_with_415() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    // A JSON body whose text member smuggles form fields for another location and CSV.
    let smuggling = json!({
        "locationId": LOCATION,
        "csvId": CSV,
        "note": format!("&locationId={OTHER_LOCATION}&csvId=AnotherCsv0001"),
    })
    .to_string();
    let as_json = edit(
        &with_body(EV_PATH_PARAMS, &smuggling, Some("application/json")),
        |v| v["rawQueryString"] = json!(""),
    );
    let signed_json = signed(&as_json, WEBHOOK_SECRET, now_unix());
    // The same signed bytes, the unsigned Content-Type changed to a form.
    let as_form = with_header(
        &signed_json,
        "content-type",
        Some("application/x-www-form-urlencoded"),
    );
    let response = t.invoke(&as_form).await;
    assert_eq!(
        (response.status, code(&response)),
        (415, "unsupported_media_type"),
        "{}",
        response.text
    );
    assert!(t.highlevel.finalize_requests().is_empty(), "nothing sent");
    let response = t.invoke(&signed_json).await;
    assert_eq!(
        response.status, 200,
        "as JSON it is served: {}",
        response.text
    );
    assert_eq!(response.body["locationId"], LOCATION);
}

#[tokio::test]
async fn an_api_key_caller_may_still_name_the_ids_in_the_path() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    let event = edit(&with_body(EV_PATH_PARAMS, "", None), |v| {
        v["rawQueryString"] = json!("")
    });
    let response = t.invoke(&event).await;
    assert_eq!(response.status, 200, "{}", response.text);
}

#[tokio::test]
async fn an_inbound_auth_entry_of_neither_form_is_a_configuration_error() {
    for auth in [
        json!({"apiKeys": [42]}),
        json!({"apiKeys": [{"key": "k", "locations": ["not/an/id"]}]}),
        json!({"webhookSecrets": [{"name": "x"}]}),
    ] {
        let t = app_with_auth(auth.clone()).await;
        let response = t.invoke(&with_key(EV_PATH_PARAMS, "k")).await;
        assert_eq!(
            (response.status, code(&response)),
            (500, "config_error"),
            "{auth}"
        );
    }
}
