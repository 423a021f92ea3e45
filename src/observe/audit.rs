//! The audit line: one JSON line per request or queue message, with the contract's fields —
//! who asked (the credential's name, never the credential), for what, and what came of it.

use serde_json::{json, Map, Value};

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
    /// The line's JSON. Optional fields are left out when absent; `sourceIp` and `userAgent`
    /// are always there (`null` for a queued message).
    pub fn to_json(&self) -> Value {
        let mut line = Map::new();
        line.insert("audit".into(), json!(true));
        line.insert("requestId".into(), json!(self.request_id));
        if let Some(id) = &self.finalization_id {
            line.insert("finalizationId".into(), json!(id));
        }
        line.insert("mode".into(), json!(self.mode.map(Mode::as_str)));
        line.insert("credential".into(), json!(self.credential));
        if let Some(id) = &self.webhook_id {
            line.insert("webhookId".into(), json!(id));
        }
        line.insert("sourceIp".into(), json!(self.source_ip));
        line.insert("userAgent".into(), json!(self.user_agent));
        if let Some(id) = &self.location_id {
            line.insert("locationId".into(), json!(id));
        }
        if let Some(id) = &self.csv_id {
            line.insert("csvId".into(), json!(id));
        }
        line.insert("status".into(), json!(self.status));
        if let Some(code) = self.code {
            line.insert("code".into(), json!(code));
        }
        line.insert("attempts".into(), json!(self.attempts));
        line.insert("replayed".into(), json!(self.replayed));
        line.insert("durationMs".into(), json!(self.duration_ms));
        if let Some(status) = self.upstream_status {
            line.insert("upstreamStatus".into(), json!(status));
        }
        Value::Object(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            audit.to_json(),
            json!({"audit": true, "requestId": "req-1", "finalizationId": "fz_1", "mode": "sync",
                   "credential": "zapier", "sourceIp": "203.0.113.10", "userAgent": null,
                   "locationId": "L1", "csvId": "C1", "status": 503, "code": "upstream_unavailable",
                   "attempts": 3, "replayed": false, "durationMs": 812, "upstreamStatus": 429})
        );
    }
}
