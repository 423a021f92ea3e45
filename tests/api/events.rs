//! Every event kind — API Gateway REST (payload 1.0), HTTP API and Function URL (payload 2.0),
//! ALB — with the malformed shapes the contract names: each is answered from the table (400,
//! or 405 for a method that is not a token) before authentication, reads no secret and calls
//! nothing upstream. The same shapes, run through the real `bootstrap`, are in
//! `tests/lambda_runtime.rs`.

use crate::helpers::*;

#[tokio::test]
async fn answers_every_malformed_shape_of_every_event_kind_from_the_table() {
    let t = spawn_app().await;
    for (kind, event) in kinds() {
        for (what, malformed, status) in malformed_shapes(event) {
            let response = t.invoke(&malformed).await;
            assert_eq!(response.status, status, "{kind}, {what}: {}", response.text);
            let expected = if status == 405 {
                "method_not_allowed"
            } else {
                "invalid_request"
            };
            assert_eq!(code(&response), expected, "{kind}, {what}");
            assert!(response.body["requestId"].is_string(), "{kind}, {what}");
            assert_eq!(
                t.reads.count(),
                0,
                "{kind}, {what}: refused before any secret read"
            );
        }
    }
    assert!(t.upstream_requests().is_empty());
}

#[tokio::test]
async fn answers_a_malformed_event_before_authenticating_the_caller() {
    let t = spawn_app().await;
    let event = without_credentials(&with_query(EV_JSON_BODY, "a=b c"));
    let response = t.invoke(&event).await;
    assert_eq!((response.status, code(&response)), (400, "invalid_request"));
}

#[tokio::test]
async fn answers_an_event_of_no_known_kind_with_400() {
    let t = spawn_app().await;
    for event in ["{}", "[]", "\"text\"", "null", r#"{"Records": 7}"#] {
        let response = t.invoke(event).await;
        assert_eq!(
            (response.status, code(&response)),
            (400, "invalid_request"),
            "{event}"
        );
    }
}

#[tokio::test]
async fn still_serves_valid_events_with_unusual_but_legal_parts() {
    let t = spawn_app().await;
    t.highlevel_answers(highlevel_ok());
    let cases = [
        // Brackets and pipes, as browsers send them.
        with_query(EV_JSON_BODY, "tag[]=a|b"),
        // A percent-encoded space and UTF-8.
        with_query(EV_JSON_BODY, "note=a%20b%C3%A9"),
        // UTF-8 in a header value is allowed in HTTP.
        with_header(EV_JSON_BODY, "x-note", Some("café")),
        with_header(EV_JSON_BODY, "x-forwarded-proto", Some("https, http")),
        with_header(EV_JSON_BODY, "host", Some("example.com:8443")),
    ];
    for event in cases {
        let response = t.invoke(&event).await;
        assert_eq!(response.status, 200, "{}", response.text);
    }
}
