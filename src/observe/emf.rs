//! CloudWatch Embedded Metric Format: one document per request or queue message, written as
//! one JSON line to stdout, from which CloudWatch Logs extracts the metrics — no API call, no
//! latency.
//!
//! The document holds up to three metric directives in one namespace (`METRICS_NAMESPACE`):
//! the counts without dimensions (no per-location dimension, so the metric count stays fixed
//! however many sub-accounts there are), `Failed` by `code`, and `UpstreamStatus` by `status`.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::audit::{Audit, Mode};
use crate::highlevel::Outcome;

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
    /// Location tokens minted from the agency's pair since the instance's previous document.
    pub tokens_minted: u64,
    /// Refreshed OAuth pairs this instance holds that could not yet be written back.
    pub unwritten_token_pairs: u64,
    /// For a queued message: time since the receiver accepted it.
    pub queue_age_ms: Option<u64>,
    /// A finalize ran but what came of it could not be written to its record (1) or was (0).
    pub unrecorded_results: u64,
    /// HighLevel's CSV status showed an unseen PATCH applied (1), so none was sent now.
    pub confirmed_by_status: u64,
    /// A followed import ended `completed` (1).
    pub imports_completed: u64,
    /// A followed import ended `failed` (1).
    pub imports_failed: u64,
    /// The failed posts of a followed import that ended.
    pub posts_failed: u64,
    /// From the finalize to the end of its import, when followed to it.
    pub import_duration_ms: Option<u64>,
    /// HighLevel's app webhook reported an install (1).
    pub app_installs: u64,
    /// A completion callback was answered with a 2xx (1).
    pub callbacks_delivered: u64,
    /// A completion callback was given up, never answered with a 2xx in 24 hours (1).
    pub callbacks_failed: u64,
    /// The instance's first document.
    pub cold_start: bool,
}

impl Measures {
    /// What a finalize's outcome measures: whether it finalized, HighLevel's latency (when it
    /// was called) and its last `X-RateLimit-Remaining`.
    pub(crate) fn of(outcome: &Outcome) -> Self {
        let call = outcome.call();
        Self {
            finalized: matches!(
                outcome,
                Outcome::Finalized { .. } | Outcome::Confirmed { .. }
            ),
            confirmed_by_status: matches!(outcome, Outcome::Confirmed { .. }).into(),
            upstream_latency_ms: (outcome.attempts() > 0)
                .then_some(call.latency.as_millis() as u64),
            rate_limit_remaining: call.rate_limit.remaining,
            ..Self::default()
        }
    }
}

/// A metric: its name, value and unit. Serialized as its definition (`Name`, `Unit`); the
/// value goes to the document's root.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metric {
    name: &'static str,
    #[serde(skip)]
    value: u64,
    unit: &'static str,
}

const fn count(name: &'static str, value: u64) -> Metric {
    Metric {
        name,
        value,
        unit: "Count",
    }
}

const fn milliseconds(name: &'static str, value: u64) -> Metric {
    Metric {
        name,
        value,
        unit: "Milliseconds",
    }
}

/// `Failed`, by `code` (present only for a failure, so its value is 1).
const FAILED_BY_CODE: &[Metric] = &[count("Failed", 1)];
/// `UpstreamStatus`, by `status` (present only when HighLevel answered).
const UPSTREAM_BY_STATUS: &[Metric] = &[count("UpstreamStatus", 1)];

/// The EMF document for one request or message, at `timestamp_ms`, as one JSON line.
pub fn document(namespace: &str, audit: &Audit, measures: &Measures, timestamp_ms: u64) -> String {
    let failed = audit.status >= 400;
    let mut plain = Vec::with_capacity(20);
    plain.extend([
        count("Requests", 1),
        count("Finalized", measures.finalized.into()),
        count("Failed", failed.into()),
        count("ServerErrors", (audit.status >= 500).into()),
        count("Replayed", audit.replayed.into()),
        count("Queued", measures.queued.into()),
        count("Attempts", audit.attempts.into()),
        count("TokenRefreshes", measures.token_refreshes),
        count("TokensMinted", measures.tokens_minted),
        count("UnwrittenTokenPairs", measures.unwritten_token_pairs),
        count("UnrecordedResults", measures.unrecorded_results),
        count("ConfirmedByStatus", measures.confirmed_by_status),
        count("ImportsCompleted", measures.imports_completed),
        count("ImportsFailed", measures.imports_failed),
        count("PostsFailed", measures.posts_failed),
        count("CallbacksDelivered", measures.callbacks_delivered),
        count("AppInstalls", measures.app_installs),
        count("CallbacksFailed", measures.callbacks_failed),
        count("AuthFailures", (audit.status == 401).into()),
    ]);
    if let Some(latency) = measures.upstream_latency_ms {
        plain.push(milliseconds("UpstreamLatencyMs", latency));
    }
    if let Some(duration) = measures.import_duration_ms {
        plain.push(milliseconds("ImportDurationMs", duration));
    }
    if let Some(remaining) = measures.rate_limit_remaining {
        plain.push(count("RateLimitRemaining", remaining));
    }
    if let Some(age) = measures
        .queue_age_ms
        .filter(|_| audit.mode == Some(Mode::Worker))
    {
        plain.push(milliseconds("QueueAgeMs", age));
    }
    if measures.cold_start {
        plain.push(count("ColdStart", 1));
    }
    let document = Document {
        namespace,
        timestamp_ms,
        request_id: &audit.request_id,
        finalization_id: audit.finalization_id.as_deref(),
        plain: &plain,
        code: audit.code.filter(|_| failed),
        status: audit.upstream_status,
    };
    // Serialized straight from these fields, no intermediate JSON tree; numbers and strings
    // only, so it cannot fail.
    serde_json::to_string(&document).unwrap_or_default()
}

/// One document: the `_aws` block, then each metric's value and each dimension's value at the
/// root, as the EMF specification lays it out.
struct Document<'a> {
    namespace: &'a str,
    timestamp_ms: u64,
    /// Not dimensions: properties Logs Insights can match to the audit line, which matters
    /// when one process serves many invocations at once (the request id) and one worker
    /// invocation many messages (the finalization id).
    request_id: &'a str,
    finalization_id: Option<&'a str>,
    plain: &'a [Metric],
    code: Option<&'static str>,
    status: Option<u16>,
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let directive = |dimensions: &'static [&'static str], metrics| Directive {
            namespace: self.namespace,
            dimensions: [dimensions],
            metrics,
        };
        let mut directives = Vec::with_capacity(3);
        directives.push(directive(&[], self.plain));
        if self.code.is_some() {
            directives.push(directive(&["code"], FAILED_BY_CODE));
        }
        if self.status.is_some() {
            directives.push(directive(&["status"], UPSTREAM_BY_STATUS));
        }
        let mut root = serializer.serialize_map(None)?;
        root.serialize_entry(
            "_aws",
            &Aws {
                timestamp: self.timestamp_ms,
                cloud_watch_metrics: &directives,
            },
        )?;
        root.serialize_entry("requestId", self.request_id)?;
        if let Some(id) = self.finalization_id {
            root.serialize_entry("finalizationId", id)?;
        }
        for metric in self.plain {
            root.serialize_entry(metric.name, &metric.value)?;
        }
        if let Some(code) = self.code {
            root.serialize_entry("code", code)?;
        }
        if let Some(status) = self.status {
            // `Failed`'s value is among the counts; `UpstreamStatus` is only here.
            for metric in UPSTREAM_BY_STATUS {
                root.serialize_entry(metric.name, &metric.value)?;
            }
            // A dimension's value is a string.
            root.serialize_entry("status", &status.to_string())?;
        }
        root.end()
    }
}

/// The `_aws` metadata block.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Aws<'a> {
    timestamp: u64,
    cloud_watch_metrics: &'a [Directive<'a>],
}

/// One metric directive: its namespace, its one dimension set, its metrics' definitions.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: [&'static [&'static str]; 1],
    metrics: &'a [Metric],
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The document, parsed.
    fn document(namespace: &str, audit: &Audit, measures: &Measures, timestamp: u64) -> Value {
        let line = super::document(namespace, audit, measures, timestamp);
        assert!(!line.contains('\n'), "one line");
        serde_json::from_str(&line).unwrap()
    }

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
        // Its invocation's request id, as a property no directive names; no finalization id
        // without records.
        assert_eq!(doc["requestId"], "r");
        assert!(!doc["_aws"].to_string().contains("requestId"));
        assert!(doc.get("finalizationId").is_none());
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
        let line = super::document(
            "Ns",
            &audit(503, Some("upstream_unavailable"), None),
            &Measures::default(),
            1,
        );
        assert_eq!(line.matches("\"Failed\":").count(), 1, "one value per name");
    }

    #[test]
    fn a_worker_message_names_its_finalization_beside_the_shared_request_id() {
        let audit = Audit {
            finalization_id: Some("fz_0123456789abcdef0123456789abcdef".into()),
            mode: Some(Mode::Worker),
            ..audit(200, None, Some(200))
        };
        let doc = document("Ns", &audit, &Measures::default(), 1);
        assert_valid(&doc);
        assert_eq!(
            (doc["requestId"].as_str(), doc["finalizationId"].as_str()),
            (Some("r"), Some("fz_0123456789abcdef0123456789abcdef"))
        );
        assert!(
            !doc["_aws"].to_string().contains("finalizationId"),
            "not a dimension"
        );
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
