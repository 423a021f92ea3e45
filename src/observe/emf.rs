//! CloudWatch Embedded Metric Format: one document per request or queue message, written as
//! one JSON line to stdout, from which CloudWatch Logs extracts the metrics — no API call, no
//! latency.
//!
//! The document holds up to three metric directives in one namespace (`METRICS_NAMESPACE`):
//! the counts without dimensions (no per-location dimension, so the metric count stays fixed
//! however many sub-accounts there are), `Failed` by `code`, and `UpstreamStatus` by `status`.

use serde_json::{json, Map, Value};

use super::audit::{Audit, Mode};

/// What a document measures beyond the audit line's facts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measures {
    /// HighLevel accepted a finalize now (not a replay).
    pub finalized: bool,
    /// Accepted in queue mode (202) now.
    pub queued: bool,
    /// Time spent waiting for HighLevel, when it was called.
    pub upstream_latency_ms: Option<u64>,
    /// HighLevel's `X-RateLimit-Remaining`, when it sent one.
    pub rate_limit_remaining: Option<u64>,
    /// OAuth refreshes since the instance's previous document.
    pub token_refreshes: u64,
    /// Refreshed OAuth pairs this instance holds that could not yet be written back.
    pub unwritten_token_pairs: u64,
    /// For a queued message: time since the receiver accepted it.
    pub queue_age_ms: Option<u64>,
    /// The instance's first document.
    pub cold_start: bool,
}

/// A metric: its name, value and unit.
type Metric = (&'static str, Value, &'static str);

/// The EMF document for one request or message, at `timestamp_ms`.
pub fn document(namespace: &str, audit: &Audit, measures: &Measures, timestamp_ms: u64) -> Value {
    let failed = audit.status >= 400;
    let count = |yes: bool| json!(u64::from(yes));
    let mut plain: Vec<Metric> = vec![
        ("Requests", json!(1), "Count"),
        ("Finalized", count(measures.finalized), "Count"),
        ("Failed", count(failed), "Count"),
        ("ServerErrors", count(audit.status >= 500), "Count"),
        ("Replayed", count(audit.replayed), "Count"),
        ("Queued", count(measures.queued), "Count"),
        ("Attempts", json!(audit.attempts), "Count"),
        ("TokenRefreshes", json!(measures.token_refreshes), "Count"),
        (
            "UnwrittenTokenPairs",
            json!(measures.unwritten_token_pairs),
            "Count",
        ),
        ("AuthFailures", count(audit.status == 401), "Count"),
    ];
    if let Some(latency) = measures.upstream_latency_ms {
        plain.push(("UpstreamLatencyMs", json!(latency), "Milliseconds"));
    }
    if let Some(remaining) = measures.rate_limit_remaining {
        plain.push(("RateLimitRemaining", json!(remaining), "Count"));
    }
    if let Some(age) = measures
        .queue_age_ms
        .filter(|_| audit.mode == Some(Mode::Worker))
    {
        plain.push(("QueueAgeMs", json!(age), "Milliseconds"));
    }
    if measures.cold_start {
        plain.push(("ColdStart", json!(1), "Count"));
    }
    let mut root = Map::new();
    let mut directives = vec![directive(namespace, &[], &plain, &mut root)];
    if let (true, Some(code)) = (failed, audit.code) {
        root.insert("code".into(), json!(code));
        directives.push(directive(
            namespace,
            &["code"],
            &[("Failed", json!(1), "Count")],
            &mut root,
        ));
    }
    if let Some(status) = audit.upstream_status {
        root.insert("status".into(), json!(status.to_string()));
        directives.push(directive(
            namespace,
            &["status"],
            &[("UpstreamStatus", json!(1), "Count")],
            &mut root,
        ));
    }
    root.insert(
        "_aws".into(),
        json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
    );
    Value::Object(root)
}

/// One metric directive; its metrics' values go to the root.
fn directive(
    namespace: &str,
    dimensions: &[&str],
    metrics: &[Metric],
    root: &mut Map<String, Value>,
) -> Value {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, value, unit)| {
            root.insert((*name).into(), value.clone());
            json!({"Name": name, "Unit": unit})
        })
        .collect();
    json!({"Namespace": namespace, "Dimensions": [dimensions], "Metrics": definitions})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(status: u16, code: Option<&'static str>, upstream: Option<u16>) -> Audit {
        Audit {
            request_id: "r".into(),
            mode: Some(Mode::Sync),
            status,
            code,
            attempts: 2,
            upstream_status: upstream,
            ..Audit::default()
        }
    }

    /// Checks a document against the EMF specification's rules: an `_aws` object with a
    /// numeric `Timestamp` and directives whose every metric and dimension is a root member.
    fn assert_valid(document: &Value) {
        let aws = &document["_aws"];
        assert!(aws["Timestamp"].is_u64());
        for directive in aws["CloudWatchMetrics"].as_array().unwrap() {
            assert_eq!(directive["Namespace"], "Ns");
            for set in directive["Dimensions"].as_array().unwrap() {
                for key in set.as_array().unwrap() {
                    assert!(
                        document[key.as_str().unwrap()].is_string(),
                        "dimension {key} is a root string"
                    );
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                assert!(document[name].is_number(), "{name} is a root number");
                assert!(["Count", "Milliseconds"].contains(&metric["Unit"].as_str().unwrap()));
            }
        }
    }

    #[test]
    fn a_finalize_is_one_document_of_counts_without_dimensions_and_its_upstream_status() {
        let measures = Measures {
            finalized: true,
            upstream_latency_ms: Some(120),
            rate_limit_remaining: Some(97),
            cold_start: true,
            ..Measures::default()
        };
        let doc = document(
            "Ns",
            &audit(200, None, Some(200)),
            &measures,
            1_796_202_903_123,
        );
        assert_valid(&doc);
        assert_eq!(
            (
                doc["Requests"].as_u64(),
                doc["Finalized"].as_u64(),
                doc["Failed"].as_u64()
            ),
            (Some(1), Some(1), Some(0))
        );
        assert_eq!(
            (
                doc["UpstreamLatencyMs"].as_u64(),
                doc["RateLimitRemaining"].as_u64()
            ),
            (Some(120), Some(97))
        );
        assert_eq!(
            (doc["ColdStart"].as_u64(), doc["status"].as_str()),
            (Some(1), Some("200"))
        );
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2, "no code directive without a failure");
        assert_eq!(directives[0]["Dimensions"], json!([[]]));
        assert!(doc.get("locationId").is_none(), "no per-location dimension");
    }

    #[test]
    fn a_failure_counts_by_its_code() {
        let doc = document(
            "Ns",
            &audit(503, Some("upstream_unavailable"), Some(429)),
            &Measures::default(),
            1,
        );
        assert_valid(&doc);
        assert_eq!(
            (
                doc["Failed"].as_u64(),
                doc["ServerErrors"].as_u64(),
                doc["code"].as_str()
            ),
            (Some(1), Some(1), Some("upstream_unavailable"))
        );
        let by_code = &doc["_aws"]["CloudWatchMetrics"][1];
        assert_eq!(by_code["Dimensions"], json!([["code"]]));
        assert_eq!(
            by_code["Metrics"],
            json!([{"Name": "Failed", "Unit": "Count"}])
        );
        assert!(doc.get("ColdStart").is_none());
    }

    #[test]
    fn a_queued_message_reports_its_age() {
        let worker = Audit {
            mode: Some(Mode::Worker),
            ..audit(200, None, None)
        };
        let doc = document(
            "Ns",
            &worker,
            &Measures {
                queue_age_ms: Some(5_000),
                ..Measures::default()
            },
            1,
        );
        assert_valid(&doc);
        assert_eq!(doc["QueueAgeMs"].as_u64(), Some(5_000));
        assert_eq!(doc["AuthFailures"].as_u64(), Some(0));
    }
}
