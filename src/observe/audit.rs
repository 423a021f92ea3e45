//! The audit line: one JSON line per request or queue message, with the contract's fields —
//! who asked (the credential's name, never the credential), for what, and what came of it.

use serde::Serialize;

/// Which front handled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A request answered with its outcome.
    Sync,
    /// A request accepted for queue mode (202), or answered from its record there.
    Queue,
    /// A queued message, by the worker.
    Worker,
}

impl Mode {
    /// As written.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Queue => "queue",
            Mode::Worker => "worker",
        }
    }
}

/// The facts of one request or message, as the audit line and the metrics tell them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audit {
    /// Lambda's request id.
    pub request_id: String,
    /// The record's id, when records are kept.
    pub finalization_id: Option<String>,
    /// Which front.
    pub mode: Option<Mode>,
    /// The credential's name (`name`, else `key#N` / `secret#N`), else `none`.
    pub credential: String,
    /// The `webhook-id` header, when one came.
    pub webhook_id: Option<String>,
    /// The caller's address, as the front end reports it (none for a queued message).
    pub source_ip: Option<String>,
    /// The caller's `User-Agent` (none for a queued message).
    pub user_agent: Option<String>,
    /// The location, once known.
    pub location_id: Option<String>,
    /// The CSV import, once known.
    pub csv_id: Option<String>,
    /// The status answered (for a message: the status its outcome maps to).
    pub status: u16,
    /// The contract's error code, for an error.
    pub code: Option<&'static str>,
    /// Finalize requests sent to HighLevel.
    pub attempts: u32,
    /// Answered from a finalized record.
    pub replayed: bool,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The status of HighLevel's last answer, if one came.
    pub upstream_status: Option<u16>,
}

impl Audit {
    /// The line. Optional fields are left out when absent; `sourceIp` and `userAgent` are always
    /// there (`null` for a queued message).
    pub fn to_line(&self) -> String {
        // Serialized straight from borrowed fields: no intermediate JSON tree (the hot path's
        // budget for the line and the metrics together is 20 µs).
        serde_json::to_string(&Line {
            audit: true,
            request_id: &self.request_id,
            finalization_id: self.finalization_id.as_deref(),
            mode: self.mode.map(Mode::as_str),
            credential: &self.credential,
            webhook_id: self.webhook_id.as_deref(),
            source_ip: self.source_ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            location_id: self.location_id.as_deref(),
            csv_id: self.csv_id.as_deref(),
            status: self.status,
            code: self.code,
            attempts: self.attempts,
            replayed: self.replayed,
            duration_ms: self.duration_ms,
            upstream_status: self.upstream_status,
        })
        // Strings and numbers only: serializing cannot fail.
        .unwrap_or_default()
    }
}

/// The audit line as written, in the contract's field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    audit: bool,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    finalization_id: Option<&'a str>,
    mode: Option<&'static str>,
    credential: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_id: Option<&'a str>,
    source_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    csv_id: Option<&'a str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    attempts: u32,
    replayed: bool,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn writes_the_contracts_fields_and_leaves_out_the_absent_ones() {
        let audit = Audit {
            request_id: "req-1".into(),
            finalization_id: Some("fz_1".into()),
            mode: Some(Mode::Sync),
            credential: "zapier".into(),
            webhook_id: None,
            source_ip: Some("203.0.113.10".into()),
            user_agent: None,
            location_id: Some("L1".into()),
            csv_id: Some("C1".into()),
            status: 503,
            code: Some("upstream_unavailable"),
            attempts: 3,
            replayed: false,
            duration_ms: 812,
            upstream_status: Some(429),
        };
        let line = audit.to_line();
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            json!({"audit": true, "requestId": "req-1", "finalizationId": "fz_1", "mode": "sync",
                   "credential": "zapier", "sourceIp": "203.0.113.10", "userAgent": null,
                   "locationId": "L1", "csvId": "C1", "status": 503, "code": "upstream_unavailable",
                   "attempts": 3, "replayed": false, "durationMs": 812, "upstreamStatus": 429})
        );
    }

    #[test]
    fn escapes_what_a_caller_sent_so_the_line_stays_one_json_line() {
        let audit = Audit {
            user_agent: Some("evil\"agent\n{\"audit\":false}\u{7}".into()),
            ..Audit::default()
        };
        let line = audit.to_line();
        assert!(!line.contains('\n'), "one line");
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (parsed["audit"].as_bool(), parsed["userAgent"].as_str()),
            (Some(true), audit.user_agent.as_deref())
        );
    }
}
