//! The audit line and the EMF metrics of real requests and queue messages: the contract's
//! fields, units and dimensions, checked against the EMF specification's rules, for a success,
//! each error family, a replay, a queued request and a worked message — and never a secret.

use serde_json::{json, Value};

use crate::helpers::*;

/// Checks an EMF document by the specification: an `_aws` object with a numeric `Timestamp`,
/// directives in the namespace, every metric a root number with a known unit, every dimension
/// a root string; no per-location dimension.
fn assert_emf(document: &Value) {
    let aws = &document["_aws"];
    assert!(
        aws["Timestamp"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000_000),
        "{document}"
    );
    let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
    assert!(!directives.is_empty());
    for directive in directives {
        assert_eq!(directive["Namespace"], "GhlCsvFinalize");
        for set in directive["Dimensions"].as_array().unwrap() {
            for key in set.as_array().unwrap() {
                let key = key.as_str().unwrap();
                assert!(
                    ["code", "status"].contains(&key),
                    "no per-location dimension: {key}"
                );
                assert!(document[key].is_string(), "{key} is a root string");
            }
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(document[name].is_number(), "{name} in {document}");
            let unit = metric["Unit"].as_str().unwrap();
            let expected = if name.ends_with("Ms") {
                "Milliseconds"
            } else {
                "Count"
            };
            assert_eq!(unit, expected, "{name}");
        }
    }
}

/// The one audit line and one metrics document of the last request.
fn last(t: &TestApp) -> (Value, Value) {
    let audit = t.audit_lines().pop().expect("an audit line");
    let metrics = t.metric_documents().pop().expect("a metrics document");
    assert_emf(&metrics);
    (audit, metrics)
}

#[tokio::test]
async fn a_finalize_writes_one_audit_line_and_one_metrics_document() {
    let t = spawn_app_with(Setup {
        records: true,
        ..Setup::default()
    })
    .await;
    let signed_event = signed(EV_WORKFLOW, WEBHOOK_SECRET, now_unix());
    let response = t.invoke(&signed_event).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!((t.audit_lines().len(), t.metric_documents().len()), (1, 1));
    let (audit, metrics) = last(&t);
    assert_eq!(audit["requestId"], response.body["requestId"]);
    assert_eq!(audit["finalizationId"], response.body["finalizationId"]);
    assert_eq!(
        (audit["mode"].as_str(), audit["credential"].as_str()),
        (Some("sync"), Some("secret#0"))
    );
    assert!(
        audit["webhookId"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg")),
        "{audit}"
    );
    assert_eq!(
        audit["sourceIp"], "34.123.45.67",
        "the workflow sample's sourceIp"
    );
    assert!(audit["userAgent"].is_string());
    assert_eq!(
        (audit["locationId"].as_str(), audit["csvId"].as_str()),
        (Some(LOCATION), Some(CSV))
    );
    assert_eq!(
        (
            audit["status"].as_u64(),
            audit["attempts"].as_u64(),
            audit["upstreamStatus"].as_u64()
        ),
        (Some(200), Some(1), Some(200))
    );
    assert_eq!(
        (audit["replayed"].as_bool(), audit.get("code")),
        (Some(false), None)
    );
    assert!(audit["durationMs"].is_u64());
    assert_eq!(
        (
            metrics["Requests"].as_u64(),
            metrics["Finalized"].as_u64(),
            metrics["Failed"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    assert!(metrics["UpstreamLatencyMs"].is_u64());
    assert_eq!(
        (
            metrics["UpstreamStatus"].as_u64(),
            metrics["status"].as_str()
        ),
        (Some(1), Some("200"))
    );
    assert_eq!(metrics["ColdStart"], 1, "the instance's first document");

    let replay = t.invoke(&signed_event).await;
    assert_eq!(replay.body["replayed"], true);
    let (audit, metrics) = last(&t);
    assert_eq!(
        (
            audit["replayed"].as_bool(),
            audit["attempts"].as_u64(),
            audit.get("upstreamStatus")
        ),
        (Some(true), Some(0), None)
    );
    assert_eq!(
        (
            metrics["Replayed"].as_u64(),
            metrics["Finalized"].as_u64(),
            metrics.get("ColdStart")
        ),
        (Some(1), Some(0), None)
    );
}

#[tokio::test]
async fn each_error_family_is_counted_by_its_code() {
    let t = spawn_app().await;
    let cases: Vec<(String, Option<Scripted>, u16, &str)> = vec![
        (
            without_credentials(EV_PATH_PARAMS),
            None,
            401,
            "unauthorized",
        ),
        (
            with_body(EV_JSON_BODY, "{not json", Some("application/json")),
            None,
            400,
            "invalid_request",
        ),
        (
            EV_PATH_PARAMS.to_owned(),
            Some(Scripted::status(422)),
            422,
            "upstream_rejected",
        ),
        (
            EV_PATH_PARAMS.to_owned(),
            Some(Scripted::status(403)),
            502,
            "upstream_auth_failed",
        ),
        (
            EV_PATH_PARAMS.to_owned(),
            Some(Scripted::status(503).retry_after("600")),
            503,
            "upstream_unavailable",
        ),
    ];
    for (event, answer, status, code) in cases {
        if let Some(answer) = answer {
            t.highlevel_answers(answer);
        }
        let response = t.invoke(&event).await;
        assert_eq!(response.status, status, "{}", response.text);
        let (audit, metrics) = last(&t);
        assert_eq!(
            (audit["status"].as_u64(), audit["code"].as_str()),
            (Some(u64::from(status)), Some(code))
        );
        assert_eq!(
            (metrics["Failed"].as_u64(), metrics["code"].as_str()),
            (Some(1), Some(code))
        );
        assert_eq!(
            metrics["AuthFailures"].as_u64(),
            Some(u64::from(status == 401))
        );
        assert_eq!(
            metrics["ServerErrors"].as_u64(),
            Some(u64::from(status >= 500))
        );
        let by_code = metrics["_aws"]["CloudWatchMetrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["Dimensions"] == json!([["code"]]))
            .expect("a by-code directive");
        assert_eq!(by_code["Metrics"][0]["Name"], "Failed");
        if status == 401 {
            assert_eq!(audit["credential"], "none");
            assert!(
                audit.get("locationId").is_none(),
                "nothing of the payload for an unauthenticated caller"
            );
        }
    }
}

#[tokio::test]
async fn a_queued_request_and_its_worked_message_each_have_their_line() {
    let t = spawn_app_with(Setup {
        queue: true,
        ..Setup::default()
    })
    .await;
    let accepted = t.invoke(EV_JSON_BODY).await;
    assert_eq!(accepted.status, 202);
    let (audit, metrics) = last(&t);
    assert_eq!(
        (audit["mode"].as_str(), audit["status"].as_u64()),
        (Some("queue"), Some(202))
    );
    assert_eq!(
        (metrics["Queued"].as_u64(), metrics["Finalized"].as_u64()),
        (Some(1), Some(0))
    );
    let event = t.receive_event().await.unwrap();
    assert_eq!(
        TestApp::failures(&t.work(&event).await),
        Vec::<String>::new()
    );
    let (audit, metrics) = last(&t);
    assert_eq!(
        (
            audit["mode"].as_str(),
            audit["status"].as_u64(),
            audit["credential"].as_str()
        ),
        (Some("worker"), Some(200), Some("none"))
    );
    assert_eq!(audit["finalizationId"], accepted.body["finalizationId"]);
    assert_eq!(
        (audit["sourceIp"].clone(), audit["userAgent"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(metrics["Finalized"].as_u64(), Some(1));
    assert!(metrics["QueueAgeMs"].is_u64(), "{metrics}");
}

#[tokio::test]
async fn rate_limit_headers_become_a_metric() {
    let t = spawn_app_with(Setup {
        standin: Behaviour {
            burst_limit: Some(ghl_csv_finalize::local::standin::BurstLimit::HIGHLEVEL),
            ..Behaviour::default()
        },
        ..Setup::default()
    })
    .await;
    assert_eq!(t.invoke(EV_PATH_PARAMS).await.status, 200);
    let (_, metrics) = last(&t);
    assert_eq!(metrics["RateLimitRemaining"].as_u64(), Some(99));
}

#[tokio::test]
async fn no_secret_reaches_an_audit_line_or_a_metrics_document() {
    let t = spawn_app().await;
    for event in [
        signed(EV_WORKFLOW, WEBHOOK_SECRET, now_unix()),
        EV_PATH_PARAMS.to_owned(),
        with_header(EV_PATH_PARAMS, "x-api-key", Some("wrong-key-SENTINEL")),
    ] {
        t.invoke(&event).await;
    }
    let written = t.app.kept_lines().concat();
    assert_eq!(t.audit_lines().len(), 3);
    for secret in [TOKEN, API_KEY, WEBHOOK_SECRET, "SENTINEL", "v1,"] {
        assert!(!written.contains(secret), "{secret} in {written}");
    }
}
