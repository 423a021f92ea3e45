//! OAuth token pairs kept in the token secret: reading them, deciding when to refresh, the
//! refresh request, and applying HighLevel's answer. All pure; the I/O is in [`super::store`].
//!
//! An entry looks like
//! `{"access_token":…,"refresh_token":…,"expires_at":1767225600,"client_id":…,"client_secret":…,"user_type":"Location",…}`
//! (`expires_in` + `issued_at` may stand in for `expires_at`). Unknown fields are kept on write.

use std::time::Duration;

use aws_lc_rs::digest;
use serde_json::{Map, Value};

use super::token::Token;
use crate::redact::Redacted;

/// `user_type` sent when the entry names none.
pub(crate) const DEFAULT_USER_TYPE: &str = "Location";

/// The refresh-relevant part of an OAuth entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthEntry {
    /// The refresh token (rotates on every use).
    pub refresh_token: Redacted<String>,
    /// The app's client id.
    pub client_id: Option<String>,
    /// The app's client secret.
    pub client_secret: Option<Redacted<String>>,
    /// `Location` or `Company`.
    pub user_type: String,
    /// When the access token expires, in Unix seconds, if known.
    pub expires_at: Option<i64>,
}

impl OAuthEntry {
    /// Reads an entry object; `None` when it has no `refresh_token` (a plain token entry).
    pub fn from_object(object: &Map<String, Value>) -> Result<Option<Self>, String> {
        let refresh_token = match object.get("refresh_token") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(token)) if !token.trim().is_empty() => {
                Redacted::new(token.trim().to_owned())
            }
            Some(_) => {
                return Err("an OAuth entry's refresh_token must be a non-empty string".into())
            }
        };
        let text = |key: &str| -> Result<Option<String>, String> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("an OAuth entry's {key} must be a string")),
            }
        };
        let expires_at = match seconds(object.get("expires_at"), "expires_at")? {
            Some(at) => Some(at),
            None => match (
                seconds(object.get("expires_in"), "expires_in")?,
                seconds(object.get("issued_at"), "issued_at")?,
            ) {
                (Some(expires_in), Some(issued_at)) => Some(issued_at.saturating_add(expires_in)),
                _ => None,
            },
        };
        Ok(Some(Self {
            refresh_token,
            client_id: text("client_id")?,
            client_secret: text("client_secret")?.map(Redacted::new),
            user_type: text("user_type")?.unwrap_or_else(|| DEFAULT_USER_TYPE.to_owned()),
            expires_at,
        }))
    }

    /// True when the access token expires within `skew` of `now` (Unix seconds).
    pub fn expires_within(&self, now: i64, skew: Duration) -> bool {
        self.expires_at.is_some_and(|at| {
            at.saturating_sub(now) <= i64::try_from(skew.as_secs()).unwrap_or(i64::MAX)
        })
    }

    /// The form body of the refresh request, or why it cannot be made.
    pub fn refresh_form(&self) -> Result<Redacted<String>, String> {
        let client_id = self
            .client_id
            .as_deref()
            .ok_or("the OAuth entry has no client_id")?;
        let client_secret = self
            .client_secret
            .as_ref()
            .ok_or("the OAuth entry has no client_secret")?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret.expose())
            .append_pair("refresh_token", self.refresh_token.expose())
            .append_pair("user_type", &self.user_type)
            .finish();
        Ok(Redacted::new(body))
    }
}

/// Reads a number of seconds given as a JSON number or a numeric string.
fn seconds(value: Option<&Value>, key: &str) -> Result<Option<i64>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| format!("an OAuth entry's {key} is out of range")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(|f| Some(f as i64))
            .map_err(|_| format!("an OAuth entry's {key} must be a number of seconds")),
        Some(_) => Err(format!(
            "an OAuth entry's {key} must be a number of seconds"
        )),
    }
}

/// A successful answer of the token endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The new access token.
    pub access_token: Token,
    /// The new refresh token (the old one is now dead).
    pub refresh_token: Token,
    /// Lifetime of the access token, in seconds.
    pub expires_in: i64,
}

impl Grant {
    /// Reads the token endpoint's JSON answer; `None` if it lacks a usable pair.
    pub(crate) fn from_value(value: &Value) -> Option<Self> {
        let token = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .and_then(|s| Token::parse(s).ok())
        };
        Some(Self {
            access_token: token("access_token")?,
            refresh_token: token("refresh_token")?,
            expires_in: seconds(value.get("expires_in"), "expires_in")
                .ok()
                .flatten()
                .unwrap_or(86_399),
        })
    }

    /// Writes the new pair into an entry object, keeping every other field. `expires_at` is
    /// always written; `expires_in` and `issued_at` are updated when the entry had them.
    pub(crate) fn apply(&self, entry: &mut Map<String, Value>, now: i64) {
        entry.insert(
            "access_token".into(),
            Value::String(self.access_token.expose().to_owned()),
        );
        entry.insert(
            "refresh_token".into(),
            Value::String(self.refresh_token.expose().to_owned()),
        );
        entry.insert(
            "expires_at".into(),
            Value::from(now.saturating_add(self.expires_in)),
        );
        if entry.contains_key("expires_in") {
            entry.insert("expires_in".into(), Value::from(self.expires_in));
        }
        if entry.contains_key("issued_at") {
            entry.insert("issued_at".into(), Value::from(now));
        }
    }
}

/// The fields a refresh changes in an entry: on a conflicting write only these are applied to
/// the entry as it is then stored, so an operator's concurrent edit (a rotated
/// `client_secret`) is kept.
pub(crate) const REFRESHED_FIELDS: [&str; 5] = [
    "access_token",
    "refresh_token",
    "expires_at",
    "expires_in",
    "issued_at",
];

/// The `ClientRequestToken` for writing a successor of `version_id` of `secret_id`. Secrets
/// Manager accepts one version per token: a second, different write for the same version read
/// fails with `ResourceExistsException`, so no writer can overwrite a pair it never saw.
pub(crate) fn successor_token(secret_id: &str, version_id: Option<&str>) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(secret_id.as_bytes());
    context.update(b"\n");
    context.update(version_id.unwrap_or("").as_bytes());
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(value: Value) -> Option<OAuthEntry> {
        OAuthEntry::from_object(value.as_object().unwrap()).unwrap()
    }

    #[test]
    fn a_plain_token_object_is_not_oauth() {
        assert_eq!(entry(json!({"access_token": "a"})), None);
    }

    #[test]
    fn reads_expires_at_or_expires_in_plus_issued_at_with_expires_at_winning() {
        let e = entry(json!({"access_token": "a", "refresh_token": "r", "expires_at": 100, "expires_in": 5, "issued_at": 1})).unwrap();
        assert_eq!(e.expires_at, Some(100));
        let e = entry(json!({"access_token": "a", "refresh_token": "r", "expires_in": 86399, "issued_at": 1000})).unwrap();
        assert_eq!(e.expires_at, Some(87_399));
        let e =
            entry(json!({"access_token": "a", "refresh_token": "r", "expires_at": "1767225600"}))
                .unwrap();
        assert_eq!(e.expires_at, Some(1_767_225_600));
        let e = entry(json!({"access_token": "a", "refresh_token": "r"})).unwrap();
        assert_eq!(e.expires_at, None);
        assert_eq!(e.user_type, "Location");
    }

    #[test]
    fn refreshes_inside_the_skew_only() {
        let e =
            entry(json!({"access_token": "a", "refresh_token": "r", "expires_at": 1000})).unwrap();
        let skew = Duration::from_secs(300);
        assert!(e.expires_within(700, skew));
        assert!(e.expires_within(2000, skew));
        assert!(!e.expires_within(699, skew));
        let unknown = entry(json!({"access_token": "a", "refresh_token": "r"})).unwrap();
        assert!(!unknown.expires_within(i64::MAX, skew));
    }

    #[test]
    fn builds_the_refresh_form_exactly() {
        let e = entry(json!({"access_token": "a", "refresh_token": "r+1", "client_id": "cid", "client_secret": "s&x", "user_type": "Company"})).unwrap();
        assert_eq!(
            e.refresh_form().unwrap().expose(),
            "grant_type=refresh_token&client_id=cid&client_secret=s%26x&refresh_token=r%2B1&user_type=Company"
        );
        let no_client = entry(json!({"access_token": "a", "refresh_token": "r"})).unwrap();
        assert!(no_client.refresh_form().is_err());
    }

    #[test]
    fn applies_a_grant_keeping_other_fields() {
        let grant = Grant::from_value(
            &json!({"access_token":"a2","refresh_token":"r2","expires_in":86399,"scope":"x"}),
        )
        .unwrap();
        let mut object = json!({"access_token": "a1", "refresh_token": "r1", "expires_in": 5, "issued_at": 1, "locationId": "L1"})
            .as_object()
            .unwrap()
            .clone();
        grant.apply(&mut object, 1000);
        assert_eq!(
            Value::Object(object),
            json!({"access_token": "a2", "refresh_token": "r2", "expires_in": 86399, "issued_at": 1000, "locationId": "L1", "expires_at": 87399})
        );
    }

    #[test]
    fn refuses_a_grant_without_a_pair() {
        assert!(Grant::from_value(&json!({"access_token": "a2"})).is_none());
        assert!(
            Grant::from_value(&json!({"access_token": "a2", "refresh_token": "r 2"})).is_none()
        );
        assert!(Grant::from_value(&json!("not an object")).is_none());
    }

    #[test]
    fn derives_one_write_token_per_version_read() {
        let a = successor_token("ghl/token", Some("v1"));
        assert_eq!(a.len(), 64);
        assert_eq!(a, successor_token("ghl/token", Some("v1")));
        assert_ne!(a, successor_token("ghl/token", Some("v2")));
        assert_ne!(a, successor_token("ghl/other", Some("v1")));
    }

    #[test]
    fn debug_never_shows_the_refresh_token_or_client_secret() {
        let e = entry(json!({"access_token": "a", "refresh_token": "rt-secret", "client_id": "c", "client_secret": "cs-secret"})).unwrap();
        let shown = format!("{e:?} {:?}", e.refresh_form().unwrap());
        assert!(
            !shown.contains("rt-secret") && !shown.contains("cs-secret"),
            "{shown}"
        );
    }
}
