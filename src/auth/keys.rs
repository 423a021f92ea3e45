//! The inbound-auth rules: API keys and Standard Webhooks signatures.
//!
//! The keys live in a Secrets Manager secret (`{"apiKeys": [...], "webhookSecrets": [...]}`),
//! parsed here by [`InboundKeys::parse`]. [`InboundKeys::authenticate`] is pure: given the
//! headers, the raw body bytes and the current time it says yes or no, comparing in constant
//! time. Signatures are checked over the exact bytes received, never over re-serialized JSON.

use aws_lc_rs::{constant_time, digest, hmac};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::HeaderMap;
use serde::Deserialize;

use crate::redact::Redacted;

/// How far a webhook timestamp may be from now, either way (Standard Webhooks: 5 minutes).
pub(super) const WEBHOOK_TOLERANCE_SECS: i64 = 5 * 60;

/// Most signatures read from one `webhook-signature` header; bounds the work a caller can cause.
const MAX_SIGNATURES: usize = 16;

/// The credentials that callers may present. Holds digests and keys, never prints them.
#[derive(Debug, Clone)]
pub struct InboundKeys {
    api_key_digests: Vec<Redacted<[u8; 32]>>,
    webhook_keys: Vec<Redacted<hmac::Key>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKeys {
    #[serde(default)]
    api_keys: Option<Vec<String>>,
    #[serde(default)]
    webhook_secrets: Option<Vec<String>>,
}

impl InboundKeys {
    /// Parses the inbound-auth secret. Errors describe the problem without quoting any value.
    pub fn parse(secret: &str) -> Result<Self, String> {
        let raw: RawKeys = serde_json::from_str(secret).map_err(|e| {
            format!(
                "inbound-auth secret is not a JSON object of the form {{\"apiKeys\": [..], \"webhookSecrets\": [..]}} ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
        let mut api_key_digests = Vec::new();
        for (i, key) in raw.api_keys.unwrap_or_default().iter().enumerate() {
            if key.is_empty() {
                return Err(format!("inbound-auth secret: apiKeys[{i}] is empty"));
            }
            api_key_digests.push(Redacted::new(sha256(key.as_bytes())));
        }
        let mut webhook_keys = Vec::new();
        for (i, secret) in raw.webhook_secrets.unwrap_or_default().iter().enumerate() {
            let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
            let bytes = BASE64.decode(encoded).map_err(|_| {
                format!("inbound-auth secret: webhookSecrets[{i}] is not whsec_ followed by base64")
            })?;
            if bytes.is_empty() {
                return Err(format!("inbound-auth secret: webhookSecrets[{i}] is empty"));
            }
            webhook_keys.push(Redacted::new(hmac::Key::new(hmac::HMAC_SHA256, &bytes)));
        }
        Ok(Self {
            api_key_digests,
            webhook_keys,
        })
    }

    /// True when no credential is configured, so every caller will be refused.
    pub fn is_empty(&self) -> bool {
        self.api_key_digests.is_empty() && self.webhook_keys.is_empty()
    }

    /// True when the request carries a valid API key or a valid, fresh webhook signature.
    pub fn authenticate(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> bool {
        let by_key = presented_api_key(headers).is_some_and(|key| self.api_key_matches(key));
        by_key || self.webhook_signature_matches(headers, body, now_unix)
    }

    /// Compares digests so that neither the key's length nor its content shows in the timing;
    /// every configured key is compared, with no early exit.
    fn api_key_matches(&self, presented: &[u8]) -> bool {
        let digest = sha256(presented);
        self.api_key_digests
            .iter()
            .fold(false, |found, configured| {
                found | constant_time::verify_slices_are_equal(configured.expose(), &digest).is_ok()
            })
    }

    fn webhook_signature_matches(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> bool {
        if self.webhook_keys.is_empty() {
            return false;
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let (Some(id), Some(timestamp), Some(signatures)) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) else {
            return false;
        };
        let Ok(sent_at) = timestamp.parse::<i64>() else {
            return false;
        };
        if now_unix.abs_diff(sent_at) > WEBHOOK_TOLERANCE_SECS.unsigned_abs() {
            return false;
        }
        let presented: Vec<Vec<u8>> = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .take(MAX_SIGNATURES)
            .filter_map(|s| BASE64.decode(s).ok())
            .collect();
        if presented.is_empty() {
            return false;
        }
        self.webhook_keys.iter().fold(false, |found, key| {
            let tag = sign(key.expose(), id, timestamp, body);
            found
                | presented.iter().fold(false, |any, candidate| {
                    any | constant_time::verify_slices_are_equal(tag.as_ref(), candidate).is_ok()
                })
        })
    }
}

/// The Standard Webhooks signed content: `{id}.{timestamp}.{body}`.
fn sign(key: &hmac::Key, id: &str, timestamp: &str, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// The API key from `x-api-key`, or from `Authorization: Bearer <key>`.
fn presented_api_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(key) = headers.get("x-api-key") {
        return Some(key.as_bytes());
    }
    let authorization = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = authorization.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_767_225_600;

    fn keys() -> InboundKeys {
        InboundKeys::parse(&format!(
            r#"{{"apiKeys":["k-one","k-two"],"webhookSecrets":["{SECRET}"]}}"#
        ))
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn signature(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
        let key_bytes = BASE64.decode(secret.trim_start_matches("whsec_")).unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
        let tag = sign(&key, id, &ts.to_string(), body);
        format!("v1,{}", BASE64.encode(tag.as_ref()))
    }

    #[test]
    fn accepts_any_configured_api_key_in_either_header() {
        let keys = keys();
        assert!(keys.authenticate(&headers(&[("x-api-key", "k-one")]), b"", NOW));
        assert!(keys.authenticate(&headers(&[("authorization", "Bearer k-two")]), b"", NOW));
        assert!(keys.authenticate(&headers(&[("authorization", "bearer k-two")]), b"", NOW));
    }

    #[test]
    fn refuses_a_wrong_or_missing_api_key() {
        let keys = keys();
        assert!(!keys.authenticate(&headers(&[("x-api-key", "k-on")]), b"", NOW));
        assert!(!keys.authenticate(&headers(&[("x-api-key", "k-one ")]), b"", NOW));
        assert!(!keys.authenticate(&headers(&[("authorization", "Basic k-one")]), b"", NOW));
        assert!(!keys.authenticate(&headers(&[("authorization", "Bearer")]), b"", NOW));
        assert!(!keys.authenticate(&HeaderMap::new(), b"", NOW));
    }

    #[test]
    fn accepts_a_valid_webhook_signature_among_several() {
        let body = br#"{"locationId":"L1","csvId":"C1"}"#;
        let good = signature(SECRET, "msg_1", NOW, body);
        let list = format!("v1,AAAA {good} v2,zzz");
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &NOW.to_string()),
            ("webhook-signature", &list),
        ]);
        assert!(keys().authenticate(&h, body, NOW + 299));
    }

    #[test]
    fn refuses_a_signature_over_other_bytes_an_other_id_or_a_stale_time() {
        let body = br#"{"locationId":"L1","csvId":"C1"}"#;
        let good = signature(SECRET, "msg_1", NOW, body);
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &NOW.to_string()),
            ("webhook-signature", &good),
        ]);
        let keys = keys();
        assert!(!keys.authenticate(&h, br#"{"locationId":"L1", "csvId":"C1"}"#, NOW));
        assert!(!keys.authenticate(&h, body, NOW + 301));
        assert!(!keys.authenticate(&h, body, NOW - 301));
        let other_id = headers(&[
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", &NOW.to_string()),
            ("webhook-signature", &good),
        ]);
        assert!(!keys.authenticate(&other_id, body, NOW));
    }

    #[test]
    fn refuses_extreme_timestamps_without_overflowing() {
        let body = b"{}";
        for sent_at in [i64::MIN, i64::MIN + 1, i64::MAX, -1, 0] {
            let h = headers(&[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &sent_at.to_string()),
                (
                    "webhook-signature",
                    &signature(SECRET, "msg_1", sent_at, body),
                ),
            ]);
            assert!(!keys().authenticate(&h, body, NOW), "{sent_at}");
        }
    }

    #[test]
    fn refuses_everything_when_nothing_is_configured() {
        let keys = InboundKeys::parse("{}").unwrap();
        assert!(keys.is_empty());
        assert!(!keys.authenticate(&headers(&[("x-api-key", "")]), b"", NOW));
    }

    #[test]
    fn parse_errors_never_quote_the_secret() {
        for bad in [
            r#"{"apiKeys": "topsecret"}"#,
            r#"{"webhookSecrets": ["whsec_top secret!"]}"#,
            "topsecret",
        ] {
            let error = InboundKeys::parse(bad).unwrap_err();
            assert!(
                !error.contains("topsecret") && !error.contains("top secret"),
                "{error}"
            );
        }
    }

    #[test]
    fn debug_output_hides_keys() {
        let shown = format!("{:?}", keys());
        assert!(
            !shown.contains("k-one") && !shown.contains("MfKQ9r8"),
            "{shown}"
        );
    }
}
