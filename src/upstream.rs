//! HighLevel's answer as the caller sees it: the response's `upstream` member.
//!
//! Both a successful finalize and most upstream errors carry an [`UpstreamReply`], so it sits
//! below the error type and the HighLevel client alike.

use serde_json::Value;

/// Upstream bodies larger than this are not parsed but kept as a short text excerpt.
pub const MAX_BODY_KEPT: usize = 64 * 1024;
/// Length of the excerpt kept from a non-JSON or oversized body.
pub const EXCERPT_CHARS: usize = 2048;

/// HighLevel's status and body, as shown to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamReply {
    /// HTTP status.
    pub status: u16,
    /// The JSON body, or a text excerpt, or `null`.
    pub body: Value,
    /// True when the body was cut short.
    pub truncated: bool,
}

impl UpstreamReply {
    /// A reply from parts.
    pub fn new(status: u16, body: Value, truncated: bool) -> Self {
        Self {
            status,
            body,
            truncated,
        }
    }

    /// The status alone: for answers whose body must not be passed on (the token endpoint's
    /// may echo credentials).
    pub fn status_only(status: u16) -> Self {
        Self::new(status, Value::Null, false)
    }

    /// Builds the reply from raw bytes (`cut` when more were sent than read): JSON when it
    /// parses and is small, else a text excerpt.
    pub fn from_bytes(status: u16, bytes: &[u8], cut: bool) -> Self {
        if bytes.is_empty() {
            return Self::new(status, Value::Null, cut);
        }
        if !cut && bytes.len() <= MAX_BODY_KEPT {
            if let Ok(json) = serde_json::from_slice::<Value>(bytes) {
                return Self::new(status, json, false);
            }
        }
        let text = String::from_utf8_lossy(bytes);
        let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
        let truncated = cut || excerpt.len() < text.len();
        Self::new(status, Value::String(excerpt), truncated)
    }

    /// The `upstream` member of a response: `{"status", "body", "truncated"?}`.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::json!({"status": self.status, "body": self.body});
        if self.truncated {
            value["truncated"] = Value::Bool(true);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_small_json_bodies_and_excerpts_the_rest() {
        assert_eq!(
            UpstreamReply::from_bytes(200, br#"{"a":1}"#, false).body,
            json!({"a": 1})
        );
        assert_eq!(UpstreamReply::from_bytes(502, b"", false).body, Value::Null);
        let html = UpstreamReply::from_bytes(502, b"<html>bad gateway</html>", false);
        assert_eq!(html.body, json!("<html>bad gateway</html>"));
        assert!(!html.truncated);
        let huge = vec![b'x'; MAX_BODY_KEPT + 1];
        let reply = UpstreamReply::from_bytes(200, &huge, false);
        assert!(reply.truncated);
        assert_eq!(reply.body.as_str().unwrap().len(), EXCERPT_CHARS);
        assert!(UpstreamReply::from_bytes(200, br#"{"a":1}"#, true).truncated);
    }

    #[test]
    fn renders_the_upstream_member_with_truncated_only_when_cut() {
        assert_eq!(
            UpstreamReply::new(429, json!({"m": 1}), false).to_json(),
            json!({"status": 429, "body": {"m": 1}})
        );
        assert_eq!(
            UpstreamReply::new(200, json!("x"), true).to_json(),
            json!({"status": 200, "body": "x", "truncated": true})
        );
    }
}
