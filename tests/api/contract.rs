//! The contract's inbound rules and status table, driven through the real handler with the
//! sample events from `events/`, moto for Secrets Manager and a local HighLevel stand-in.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn finalizes_every_sample_event_with_the_exact_highlevel_request() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    for (name, event) in FINALIZE_EVENTS {
        let response = t.invoke(event).await;
        assert_eq!(response.status, 200, "{name}: {}", response.text);
        assert_eq!(response.body["ok"], true, "{name}");
        assert_eq!(response.body["locationId"], LOCATION, "{name}");
        assert_eq!(response.body["csvId"], CSV, "{name}");
        assert_eq!(response.body["attempts"], 1, "{name}");
        assert_eq!(response.body["upstream"]["status"], 200, "{name}");
        assert_eq!(
            response.body["upstream"]["body"]["message"], "CSV finalize started",
            "{name}"
        );
        assert!(
            response.body["requestId"]
                .as_str()
                .unwrap()
                .starts_with("lambda-request"),
            "{name}"
        );
        assert_eq!(response.headers["content-type"], "application/json");
    }
    let requests = t.upstream_requests();
    assert_eq!(requests.len(), FINALIZE_EVENTS.len());
    for request in &requests {
        assert_eq!(request.method.as_str(), "PATCH");
        assert_eq!(
            request.path,
            format!("/social-media-posting/{LOCATION}/csv/{CSV}")
        );
        assert_eq!(request.status, 200, "HighLevel's checks passed");
        assert_eq!(
            request.bearer.as_ref().map(|t| t.expose().as_str()),
            Some(TOKEN)
        );
        assert_eq!(request.headers["version"], "2021-07-28");
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.headers["accept"], "application/json");
    }
    let bodies: Vec<serde_json::Value> = requests.iter().map(|r| r.body.clone()).collect();
    assert!(bodies.contains(&json!({"userId": USER})));
    assert!(
        bodies.contains(&json!({})),
        "events without a userId send an empty object"
    );
}

#[tokio::test]
async fn sends_the_default_user_id_when_the_caller_names_none() {
    let t = spawn_app_with(Setup {
        env: vec![("GHL_DEFAULT_USER_ID", "DefaultUser01".into())],
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    let response = t.invoke(EV_ALB).await;
    assert_eq!(response.status, 200, "{}", response.text);
    let requests = t.upstream_requests();
    assert_eq!(requests[0].body, json!({"userId": "DefaultUser01"}));
}

#[tokio::test]
async fn answers_health_checks_without_auth_secrets_or_upstream() {
    let t = spawn_app_with(Setup {
        token_secret: None,
        auth_secret: None,
        ..Setup::default()
    })
    .await;
    let response = t.invoke(EV_HEALTHZ).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["ok"], true);
    assert!(response.body["requestId"].is_string());
    assert_eq!(t.reads.count(), 0);
    assert!(t.upstream_requests().is_empty());
}

#[tokio::test]
async fn rejects_other_methods_and_paths_with_405_before_anything_else() {
    let t = spawn_app().await;
    for (method, path) in [
        ("PUT", "/finalize"),
        ("GET", "/finalize"),
        ("DELETE", "/healthz"),
        ("PATCH", "/x"),
    ] {
        let event = edit(&without_credentials(EV_JSON_BODY), |v| {
            v["requestContext"]["http"]["method"] = json!(method);
            v["rawPath"] = json!(path);
            v["requestContext"]["http"]["path"] = json!(path);
        });
        let response = t.invoke(&event).await;
        assert_eq!(response.status, 405, "{method} {path}");
        assert_eq!(code(&response), "method_not_allowed");
    }
    assert_eq!(t.reads.count(), 0);
}

#[tokio::test]
async fn rejects_a_body_over_256_kib_with_413_before_authentication() {
    let t = spawn_app().await;
    let padding = "x".repeat(256 * 1024);
    let body = format!(r#"{{"locationId":"{LOCATION}","csvId":"{CSV}","pad":"{padding}"}}"#);
    let event = without_credentials(&with_body(EV_JSON_BODY, &body, Some("application/json")));
    let response = t.invoke(&event).await;
    assert_eq!(response.status, 413);
    assert_eq!(code(&response), "payload_too_large");
}

#[tokio::test]
async fn refuses_callers_without_valid_credentials_and_tells_them_nothing_about_the_payload() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    let cases = [
        without_credentials(EV_JSON_BODY),
        with_header(EV_JSON_BODY, "authorization", Some("Bearer wrong-key")),
        with_header(
            &without_credentials(EV_JSON_BODY),
            "x-api-key",
            Some("demo-api-key-000"),
        ),
        // A bad payload and a bad content type still get 401, not 400 or 415.
        with_body(
            &without_credentials(EV_JSON_BODY),
            "{not json",
            Some("application/json"),
        ),
        with_body(
            &without_credentials(EV_JSON_BODY),
            "hello",
            Some("text/plain"),
        ),
    ];
    for event in &cases {
        let response = t.invoke(event).await;
        assert_eq!(response.status, 401, "{}", response.text);
        assert_eq!(code(&response), "unauthorized");
    }
    assert!(t.upstream_requests().is_empty());
}

#[tokio::test]
async fn accepts_a_standard_webhooks_signature_from_an_independent_signer() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    let response = t
        .invoke(&signed(EV_WORKFLOW, WEBHOOK_SECRET, now_unix()))
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
}

#[tokio::test]
async fn refuses_a_signature_that_is_stale_tampered_or_made_with_another_secret() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    let stale = signed(EV_WORKFLOW, WEBHOOK_SECRET, now_unix() - 330);
    let future = signed(EV_WORKFLOW, WEBHOOK_SECRET, now_unix() + 330);
    let other = signed(
        EV_WORKFLOW,
        "whsec_b3RoZXItc2VjcmV0LWJ5dGVzLTAwMDAwMDAw",
        now_unix(),
    );
    let tampered = edit(&signed(EV_WORKFLOW, WEBHOOK_SECRET, now_unix()), |v| {
        let body = v["body"]
            .as_str()
            .unwrap()
            .replace("Acme Bakery", "Acme Bakery ");
        v["body"] = json!(body);
    });
    for event in [stale, future, other, tampered] {
        let response = t.invoke(&event).await;
        assert_eq!(response.status, 401, "{}", response.text);
    }
    assert!(t.upstream_requests().is_empty());
}

#[tokio::test]
async fn accepts_any_of_several_keys_during_rotation() {
    let auth = format!(
        r#"{{"apiKeys":["old-key-1","{API_KEY}"],"webhookSecrets":["whsec_b2xkLXNlY3JldA==","{WEBHOOK_SECRET}"]}}"#
    );
    let t = spawn_app_with(Setup {
        auth_secret: Some(auth),
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    assert_eq!(
        t.invoke(&with_header(EV_PATH_PARAMS, "x-api-key", Some("old-key-1")))
            .await
            .status,
        200
    );
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    assert_eq!(
        t.invoke(&signed(EV_JSON_BODY, WEBHOOK_SECRET, now_unix()))
            .await
            .status,
        200
    );
    assert_eq!(
        t.reads.count(),
        2,
        "one read of each secret, then the cache"
    );
}

#[tokio::test]
async fn rejects_an_unsupported_content_type_with_415_after_authentication() {
    let t = spawn_app().await;
    for content_type in [
        Some("text/plain"),
        None,
        Some("multipart/form-data; boundary=x"),
    ] {
        let response = t
            .invoke(&with_body(
                EV_JSON_BODY,
                r#"{"locationId":"a"}"#,
                content_type,
            ))
            .await;
        assert_eq!(response.status, 415, "{content_type:?}");
        assert_eq!(code(&response), "unsupported_media_type");
    }
}

#[tokio::test]
async fn rejects_bad_bodies_and_fields_with_400_naming_the_field() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    let json_ct = Some("application/json");
    let cases: Vec<(String, Option<&str>)> = vec![
        (with_body(EV_JSON_BODY, "{\"locationId\":", json_ct), None),
        (with_body(EV_JSON_BODY, "[1,2]", json_ct), None),
        (
            with_body(
                EV_JSON_BODY,
                &format!(r#"{{"locationId":"{LOCATION}","csvId":"a/b"}}"#),
                json_ct,
            ),
            Some("csvId"),
        ),
        (
            with_body(
                EV_JSON_BODY,
                &format!(r#"{{"locationId":"{LOCATION}","csvId":"../x"}}"#),
                json_ct,
            ),
            Some("csvId"),
        ),
        (
            with_body(
                EV_JSON_BODY,
                &format!(r#"{{"locationId":"{LOCATION}","csvId":"a%2Fb"}}"#),
                json_ct,
            ),
            Some("csvId"),
        ),
        (
            with_body(
                EV_JSON_BODY,
                &format!(r#"{{"locationId":"{LOCATION}","csvId":12345}}"#),
                json_ct,
            ),
            Some("csvId"),
        ),
        (
            with_body(
                EV_JSON_BODY,
                &format!(r#"{{"locationId":"{LOCATION}","csvId":"ok","userId":""}}"#),
                json_ct,
            ),
            Some("userId"),
        ),
        (
            with_body(EV_JSON_BODY, r#"{"locationId":"é","csvId":"ok"}"#, json_ct),
            Some("locationId"),
        ),
        (
            with_body(EV_JSON_BODY, &format!(r#"{{"csvId":"{CSV}"}}"#), json_ct),
            Some("locationId"),
        ),
        (
            with_body(
                EV_JSON_BODY,
                &format!(r#"{{"locationId":"{LOCATION}"}}"#),
                json_ct,
            ),
            Some("csvId"),
        ),
        (
            with_body(
                EV_JSON_BODY,
                &format!(
                    r#"{{"locationId":"{LOCATION}","csvId":"{CSV}","customData":{{"csvId":"other"}}}}"#
                ),
                json_ct,
            ),
            Some("csvId"),
        ),
        (
            with_body(
                EV_JSON_BODY,
                &format!(r#"{{"locationId":"{LOCATION}","csvId":"{CSV}","customData":"nope"}}"#),
                json_ct,
            ),
            Some("customData"),
        ),
        (
            with_body(
                EV_FORM,
                "locationId=L1&locationId=L2&csvId=C",
                Some("application/x-www-form-urlencoded"),
            ),
            Some("locationId"),
        ),
        (
            edit(EV_PATH_PARAMS, |v| {
                v["rawQueryString"] = json!("locationId=another")
            }),
            Some("locationId"),
        ),
        (
            edit(EV_PATH_PARAMS, |v| {
                v["pathParameters"]["csvId"] = json!("a.b")
            }),
            Some("csvId"),
        ),
        (
            edit(EV_PATH_PARAMS, |v| {
                v["rawQueryString"] = json!("userId=has%20space")
            }),
            Some("userId"),
        ),
    ];
    for (event, field) in cases {
        let response = t.invoke(&event).await;
        assert_eq!(response.status, 400, "{}", response.text);
        assert_eq!(code(&response), "invalid_request");
        assert_eq!(
            response.body["error"]["field"].as_str(),
            field,
            "{}",
            response.text
        );
    }
    assert!(
        t.upstream_requests().is_empty(),
        "no invalid id ever reaches HighLevel"
    );
}

#[tokio::test]
async fn rejects_a_body_marked_base64_that_does_not_decode() {
    let t = spawn_app().await;
    let response = t
        .invoke(&edit(EV_BASE64_CUSTOM_DATA, |v| {
            v["body"] = json!("%%%not base64%%%")
        }))
        .await;
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(code(&response), "invalid_request");
}

#[tokio::test]
async fn a_caller_cannot_mark_its_own_body_as_undecodable() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    // The header an earlier version used as that mark is now just a header.
    let event = with_header(
        EV_BASE64_CUSTOM_DATA,
        "x-ghl-csv-finalize-invalid-base64",
        Some("1"),
    );
    let response = t.invoke(&event).await;
    assert_eq!(response.status, 200, "{}", response.text);
}

#[tokio::test]
async fn reports_a_location_absent_from_the_token_map_as_403() {
    let map = json!({"SomeOtherLocation1": "pit-other", "AnotherLocation2": {"access_token": "pit-another"}}).to_string();
    let t = spawn_app_with(Setup {
        token_secret: Some(map),
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 403);
    assert_eq!(code(&response), "location_not_allowed");
    assert!(t.upstream_requests().is_empty());
}

#[tokio::test]
async fn reports_a_location_without_its_own_secret_as_403() {
    let t = spawn_app_with(Setup {
        token_secret: None,
        per_location: true,
        ..Setup::default()
    })
    .await;
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 403, "{}", response.text);
    assert_eq!(code(&response), "location_not_allowed");
}

#[tokio::test]
async fn passes_highlevel_rejections_through_with_their_status_and_body() {
    for status in [400u16, 404, 422] {
        let t = spawn_app().await;
        let body =
            json!({"statusCode": status, "message": ["csvId not found"], "error": "Bad Request"});
        t.highlevel_answers(Scripted::json(status, body.clone()));
        let response = t.invoke(EV_PATH_PARAMS).await;
        assert_eq!(response.status, status);
        assert_eq!(code(&response), "upstream_rejected");
        assert_eq!(
            response.body["upstream"],
            json!({"status": status, "body": body})
        );
        assert_eq!(response.body["attempts"], 1);
        assert_eq!(t.upstream_requests().len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn maps_a_highlevel_403_to_502_without_retrying() {
    let t = spawn_app().await;
    t.highlevel_answers(Scripted::json(
        403,
        json!({"message": "The token does not have access to this location."}),
    ));
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 502);
    assert_eq!(code(&response), "upstream_auth_failed");
    assert_eq!(t.upstream_requests().len(), 1);
    assert_eq!(t.reads.count(), 2, "no secret re-read on 403");
}

#[tokio::test]
async fn maps_a_highlevel_500_to_502_without_retrying() {
    let t = spawn_app().await;
    t.highlevel_answers(Scripted::raw(500, "text/plain", "Internal Server Error"));
    let response = t.invoke(EV_PATH_PARAMS).await;
    assert_eq!(response.status, 502);
    assert_eq!(code(&response), "upstream_unavailable");
    assert_eq!(response.body["upstream"]["body"], "Internal Server Error");
    assert_eq!(t.upstream_requests().len(), 1);
}

#[tokio::test]
async fn uses_the_lambda_request_id_in_every_response() {
    let t = spawn_app().await;
    let request = request_with_deadline(
        &without_credentials(EV_JSON_BODY),
        std::time::Duration::from_secs(5),
    );
    let expected = lambda_http::RequestExt::lambda_context_ref(&request)
        .unwrap()
        .request_id
        .clone();
    let response = t.send(request).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.body["requestId"], expected.as_str());
}

#[tokio::test]
async fn under_api_v3_a_finalize_without_a_user_is_refused_before_any_token_read() {
    let t = spawn_app_with(Setup {
        env: vec![("GHL_API_VERSION", "v3".into())],
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    let reads_before = t.reads.count();
    let without = with_body(
        EV_JSON_BODY,
        &json!({"locationId": LOCATION, "csvId": CSV}).to_string(),
        Some("application/json"),
    );
    let refused = t.invoke(&without).await;
    assert_eq!(
        (refused.status, code(&refused)),
        (400, "invalid_request"),
        "{}",
        refused.text
    );
    assert_eq!(refused.body["error"]["field"], "userId");
    assert!(t.highlevel.received().is_empty(), "HighLevel is not called");
    assert!(
        t.reads.count() - reads_before <= 1,
        "the inbound-auth secret at most, no token"
    );

    let with_user = with_body(
        EV_JSON_BODY,
        &json!({"locationId": LOCATION, "csvId": CSV, "userId": USER}).to_string(),
        Some("application/json"),
    );
    let served = t.invoke(&with_user).await;
    assert_eq!(served.status, 200, "{}", served.text);
    let sent = t.highlevel.finalize_requests();
    assert_eq!(sent[0].headers["version"], "v3");
    assert_eq!(sent[0].body, json!({"userId": USER}));
}

#[tokio::test]
async fn under_api_v3_the_default_user_stands_in_for_a_missing_one() {
    let t = spawn_app_with(Setup {
        env: vec![
            ("GHL_API_VERSION", "v3".into()),
            ("GHL_DEFAULT_USER_ID", USER.into()),
        ],
        ..Setup::default()
    })
    .await;
    t.highlevel_answers(highlevel_ok());
    let without = with_body(
        EV_JSON_BODY,
        &json!({"locationId": LOCATION, "csvId": CSV}).to_string(),
        Some("application/json"),
    );
    let served = t.invoke(&without).await;
    assert_eq!(served.status, 200, "{}", served.text);
    assert_eq!(
        t.highlevel.finalize_requests()[0].body,
        json!({"userId": USER})
    );
}
