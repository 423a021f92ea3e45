//! The inbound-auth rules: API keys and Standard Webhooks signatures, each a named credential
//! that may be scoped to some locations.
//!
//! The keys live in a Secrets Manager secret, parsed here by [`InboundKeys::parse`]:
//!
//! ```json
//! {"apiKeys": ["key1", {"name": "zapier", "key": "key2", "locations": ["ve9EPM428h8vShlRW1KT"]}],
//!  "webhookSecrets": ["whsec_…", {"name": "hl-workflows", "secret": "whsec_…", "locations": ["…"]}],
//!  "callbackSecret": "whsec_…"}
//! ```
//!
//! An entry may also limit the hosts its callers may name as a completion callback
//! (`"callbackHosts": ["hooks.example.com", "*.zapier.com"]`); `callbackSecret` signs every
//! callback ([`sign_webhook`]).
//!
//! [`InboundKeys::authenticate`] is pure: given the headers, the raw body bytes and the current
//! time it names the [`Credential`] that let the caller in, if any, comparing in constant time.
//! Signatures are checked over the exact bytes received, never over re-serialized JSON.

use aws_lc_rs::{constant_time, digest, hmac};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::HeaderMap;
use serde_json::{Map, Value};

use crate::redact::Redacted;
use crate::request::ids::LocationId;

/// How far a webhook timestamp may be from now, either way (Standard Webhooks: 5 minutes).
pub(super) const WEBHOOK_TOLERANCE_SECS: u64 = 5 * 60;

/// Most signatures read from one `webhook-signature` header; bounds the work a caller can cause.
const MAX_SIGNATURES: usize = 16;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Nothing: inbound authentication is disabled (`ALLOW_UNAUTHENTICATED=true`).
    None,
    /// An API key (`x-api-key` or `Authorization: Bearer`).
    ApiKey,
    /// A Standard Webhooks signature over the body, which then alone names the ids.
    Signature,
}

/// The credential that let a caller in: its name for the log (never the credential itself)
/// and the locations it may finalize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The entry's `name`, else `key#N` / `secret#N` (N: its place in the list, from 0).
    pub name: String,
    /// How the caller proved it.
    pub proof: Proof,
    /// The locations it may act for; `None` for every location.
    pub locations: Option<Vec<LocationId>>,
    /// The hosts it may name as a completion callback (`callbackHosts`, lower case; `*.` for
    /// any name under one); `None` for any host.
    pub callback_hosts: Option<Vec<String>>,
}

impl Credential {
    /// The caller when inbound authentication is disabled: `none`, for every location.
    pub fn unauthenticated() -> Self {
        Self {
            name: "none".into(),
            proof: Proof::None,
            locations: None,
            callback_hosts: None,
        }
    }

    /// Whether this credential may act for `location`.
    pub fn allows(&self, location: &LocationId) -> bool {
        self.locations
            .as_ref()
            .is_none_or(|allowed| allowed.contains(location))
    }

    /// Whether this credential may name `host` as a completion callback.
    pub fn allows_callback_host(&self, host: &str) -> bool {
        self.callback_hosts
            .as_ref()
            .is_none_or(|listed| crate::request::callback::host_listed(host, listed))
    }
}

/// The credentials that callers may present. Holds digests and keys, never prints them.
#[derive(Debug, Clone)]
pub struct InboundKeys {
    api_keys: Vec<(Redacted<[u8; 32]>, Credential)>,
    webhook_keys: Vec<(Redacted<hmac::Key>, Credential)>,
    callback_key: Option<CallbackKey>,
}

/// The key completion callbacks are signed with (`callbackSecret`).
#[derive(Debug, Clone)]
pub struct CallbackKey(Redacted<hmac::Key>);

impl CallbackKey {
    /// The key of a `whsec_<base64>` secret.
    pub fn parse(secret: &str) -> Result<Self, &'static str> {
        webhook_key(secret).map(Self)
    }
}

impl InboundKeys {
    /// Parses the inbound-auth secret. Errors describe the problem without quoting any value.
    pub fn parse(secret: &str) -> Result<Self, String> {
        let shape = "a JSON object of the form {\"apiKeys\": [..], \"webhookSecrets\": [..]}";
        let document: Value = serde_json::from_str(secret).map_err(|e| {
            format!(
                "inbound-auth secret is not {shape} ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
        let Value::Object(document) = document else {
            return Err(format!("inbound-auth secret is not {shape}"));
        };
        let mut api_keys = Vec::new();
        for (i, entry) in list(&document, "apiKeys")?.iter().enumerate() {
            let (key, credential) = read_entry(entry, "apiKeys", i, "key", Proof::ApiKey)?;
            api_keys.push((Redacted::new(sha256(key.as_bytes())), credential));
        }
        let mut webhook_keys = Vec::new();
        for (i, entry) in list(&document, "webhookSecrets")?.iter().enumerate() {
            let (secret, credential) =
                read_entry(entry, "webhookSecrets", i, "secret", Proof::Signature)?;
            let key = webhook_key(secret)
                .map_err(|problem| format!("inbound-auth secret: webhookSecrets[{i}] {problem}"))?;
            webhook_keys.push((key, credential));
        }
        let callback_key = match document.get("callbackSecret") {
            None | Some(Value::Null) => None,
            Some(Value::String(secret)) => Some(
                CallbackKey::parse(secret)
                    .map_err(|problem| format!("inbound-auth secret: callbackSecret {problem}"))?,
            ),
            Some(_) => {
                return Err("inbound-auth secret: callbackSecret must be a string".to_owned())
            }
        };
        Ok(Self {
            api_keys,
            webhook_keys,
            callback_key,
        })
    }

    /// The key completion callbacks are signed with, when the secret has a `callbackSecret`.
    pub fn callback_key(&self) -> Option<&CallbackKey> {
        self.callback_key.as_ref()
    }

    /// True when no credential is configured, so every caller will be refused.
    pub fn is_empty(&self) -> bool {
        self.api_keys.is_empty() && self.webhook_keys.is_empty()
    }

    /// The credential of a valid API key or a valid, fresh webhook signature on the request.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Option<&Credential> {
        presented_api_key(headers)
            .and_then(|key| self.api_key_match(key))
            .or_else(|| self.webhook_signature_match(headers, body, now_unix))
    }

    /// Compares digests so that neither the key's length nor its content shows in the timing;
    /// every configured key is compared, with no early exit.
    fn api_key_match(&self, presented: &[u8]) -> Option<&Credential> {
        let digest = sha256(presented);
        let mut found = None;
        for (configured, credential) in &self.api_keys {
            if constant_time::verify_slices_are_equal(configured.expose(), &digest).is_ok() {
                found = found.or(Some(credential));
            }
        }
        found
    }

    fn webhook_signature_match(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Option<&Credential> {
        if self.webhook_keys.is_empty() {
            return None;
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let (id, timestamp, signatures) = (
            header("webhook-id")?,
            header("webhook-timestamp")?,
            header("webhook-signature")?,
        );
        let sent_at = timestamp.parse::<i64>().ok()?;
        if now_unix.abs_diff(sent_at) > WEBHOOK_TOLERANCE_SECS {
            return None;
        }
        let presented: Vec<Vec<u8>> = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .take(MAX_SIGNATURES)
            .filter_map(|s| BASE64.decode(s).ok())
            .collect();
        if presented.is_empty() {
            return None;
        }
        let mut found = None;
        for (key, credential) in &self.webhook_keys {
            let tag = sign(key.expose(), id, timestamp, body);
            let matched = presented.iter().fold(false, |any, candidate| {
                any | constant_time::verify_slices_are_equal(tag.as_ref(), candidate).is_ok()
            });
            if matched {
                found = found.or(Some(credential));
            }
        }
        found
    }
}

/// The list `name` of the secret (absent or null: empty).
fn list<'a>(document: &'a Map<String, Value>, name: &str) -> Result<&'a [Value], String> {
    match document.get(name) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("inbound-auth secret: {name} must be a list")),
    }
}

/// One entry: a bare credential string, or `{"name"?, "<field>", "locations"?}`.
fn read_entry<'a>(
    entry: &'a Value,
    list: &str,
    index: usize,
    field: &str,
    proof: Proof,
) -> Result<(&'a str, Credential), String> {
    let at = format!("inbound-auth secret: {list}[{index}]");
    // Named after the credential's kind: `key#0`, `secret#1`, ….
    let default_name = format!("{field}#{index}");
    let (credential, name, locations, callback_hosts) = match entry {
        Value::String(credential) => (credential.as_str(), default_name, None, None),
        Value::Object(object) => {
            let credential = object
                .get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at} has no {field} string"))?;
            let name = match object.get("name") {
                None | Some(Value::Null) => default_name,
                Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_owned(),
                Some(_) => return Err(format!("{at}: name must be a non-empty string")),
            };
            let locations = match object.get("locations") {
                None | Some(Value::Null) => None,
                Some(Value::Array(ids)) => Some(
                    ids.iter()
                        .map(|id| id.as_str().and_then(|id| LocationId::parse(id).ok()))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| format!("{at}: locations must be a list of location ids"))?,
                ),
                Some(_) => return Err(format!("{at}: locations must be a list of location ids")),
            };
            (credential, name, locations, callback_hosts(object, &at)?)
        }
        _ => {
            return Err(format!(
                "{at} must be a string or an object with {field}, name and locations"
            ))
        }
    };
    if credential.is_empty() {
        return Err(format!("{at} is empty"));
    }
    Ok((
        credential,
        Credential {
            name,
            proof,
            locations,
            callback_hosts,
        },
    ))
}

/// An entry's `callbackHosts`: host names, lower case, each optionally `*.`-prefixed.
fn callback_hosts(object: &Map<String, Value>, at: &str) -> Result<Option<Vec<String>>, String> {
    let problem = || format!("{at}: callbackHosts must be a list of host names");
    match object.get("callbackHosts") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(hosts)) => hosts
            .iter()
            .map(|host| {
                let host = host
                    .as_str()
                    .ok_or_else(problem)?
                    .trim()
                    .to_ascii_lowercase();
                let name = host.strip_prefix("*.").unwrap_or(&host);
                let plausible = !name.is_empty()
                    && name.len() <= 253
                    && name.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    });
                plausible.then_some(host.clone()).ok_or_else(problem)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(problem()),
    }
}

/// The HMAC key of a Standard Webhooks secret, `whsec_<base64>` (the prefix may be left out).
fn webhook_key(secret: &str) -> Result<Redacted<hmac::Key>, &'static str> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| "is not whsec_ followed by base64")?;
    if bytes.is_empty() {
        return Err("is empty");
    }
    Ok(Redacted::new(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
}

/// The Standard Webhooks `webhook-signature` of a message this function sends (a completion
/// callback): `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign_webhook(key: &CallbackKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = sign(key.0.expose(), id, &timestamp.to_string(), body);
    format!("v1,{}", BASE64.encode(tag.as_ref()))
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

    fn authenticates(keys: &InboundKeys, headers: &HeaderMap, body: &[u8], now: i64) -> bool {
        keys.authenticate(headers, body, now).is_some()
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
        assert!(authenticates(
            &keys,
            &headers(&[("x-api-key", "k-one")]),
            b"",
            NOW
        ));
        assert!(authenticates(
            &keys,
            &headers(&[("authorization", "Bearer k-two")]),
            b"",
            NOW
        ));
        assert!(authenticates(
            &keys,
            &headers(&[("authorization", "bearer k-two")]),
            b"",
            NOW
        ));
    }

    #[test]
    fn refuses_a_wrong_or_missing_api_key() {
        let keys = keys();
        assert!(!authenticates(
            &keys,
            &headers(&[("x-api-key", "k-on")]),
            b"",
            NOW
        ));
        assert!(!authenticates(
            &keys,
            &headers(&[("x-api-key", "k-one ")]),
            b"",
            NOW
        ));
        assert!(!authenticates(
            &keys,
            &headers(&[("authorization", "Basic k-one")]),
            b"",
            NOW
        ));
        assert!(!authenticates(
            &keys,
            &headers(&[("authorization", "Bearer")]),
            b"",
            NOW
        ));
        assert!(!authenticates(&keys, &HeaderMap::new(), b"", NOW));
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
        assert!(authenticates(&keys(), &h, body, NOW + 299));
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
        assert!(!authenticates(
            &keys,
            &h,
            br#"{"locationId":"L1", "csvId":"C1"}"#,
            NOW
        ));
        assert!(!authenticates(&keys, &h, body, NOW + 301));
        assert!(!authenticates(&keys, &h, body, NOW - 301));
        let other_id = headers(&[
            ("webhook-id", "msg_2"),
            ("webhook-timestamp", &NOW.to_string()),
            ("webhook-signature", &good),
        ]);
        assert!(!authenticates(&keys, &other_id, body, NOW));
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
            assert!(!authenticates(&keys(), &h, body, NOW), "{sent_at}");
        }
    }

    #[test]
    fn refuses_everything_when_nothing_is_configured() {
        let keys = InboundKeys::parse("{}").unwrap();
        assert!(keys.is_empty());
        assert!(InboundKeys::parse(r#"{"apiKeys": null}"#)
            .unwrap()
            .is_empty());
        assert!(!authenticates(
            &keys,
            &headers(&[("x-api-key", "")]),
            b"",
            NOW
        ));
    }

    #[test]
    fn names_each_credential_and_scopes_it_to_its_locations() {
        let keys = InboundKeys::parse(&format!(
            r#"{{"apiKeys":["k-bare",{{"name":"zapier","key":"k-scoped","locations":["L1","L2"]}},{{"key":"k-unnamed"}}],
                 "webhookSecrets":[{{"name":"hl-workflows","secret":"{SECRET}","locations":["L3"]}}]}}"#
        ))
        .unwrap();
        let by_key = |key: &str| {
            keys.authenticate(&headers(&[("x-api-key", key)]), b"", NOW)
                .cloned()
        };
        let bare = by_key("k-bare").unwrap();
        assert_eq!((bare.name.as_str(), bare.proof), ("key#0", Proof::ApiKey));
        assert!(bare.allows(&LocationId::parse("Anywhere1").unwrap()));
        let scoped = by_key("k-scoped").unwrap();
        assert_eq!(scoped.name, "zapier");
        assert!(scoped.allows(&LocationId::parse("L2").unwrap()));
        assert!(!scoped.allows(&LocationId::parse("L9").unwrap()));
        assert_eq!(by_key("k-unnamed").unwrap().name, "key#2");
        assert_eq!(by_key("k-none"), None);
        let body = br#"{"locationId":"L3","csvId":"C1"}"#;
        let signed = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &NOW.to_string()),
            ("webhook-signature", &signature(SECRET, "msg_1", NOW, body)),
        ]);
        let signer = keys.authenticate(&signed, body, NOW).unwrap();
        assert_eq!(
            (signer.name.as_str(), signer.proof),
            ("hl-workflows", Proof::Signature)
        );
        assert!(signer.allows(&LocationId::parse("L3").unwrap()));
    }

    #[test]
    fn refuses_entries_of_neither_form_and_bad_location_lists() {
        for bad in [
            r#"{"apiKeys":[7]}"#,
            r#"{"apiKeys":[{"name":"x"}]}"#,
            r#"{"apiKeys":[{"key":"k","locations":"L1"}]}"#,
            r#"{"apiKeys":[{"key":"k","locations":["a/b"]}]}"#,
            r#"{"apiKeys":[{"key":"k","locations":[5]}]}"#,
            r#"{"apiKeys":[{"key":"k","name":""}]}"#,
            r#"{"webhookSecrets":[{"key":"whsec_AAAA"}]}"#,
            r#"{"apiKeys":"k"}"#,
            r#"{"apiKeys":[{"key":"k","callbackHosts":"a.example.com"}]}"#,
            r#"{"apiKeys":[{"key":"k","callbackHosts":["a example"]}]}"#,
            r#"{"apiKeys":[{"key":"k","callbackHosts":[7]}]}"#,
            r#"{"callbackSecret":"whsec_***"}"#,
            r#"{"callbackSecret":""}"#,
            r#"{"callbackSecret":["whsec_AAAA"]}"#,
            r#"[]"#,
        ] {
            assert!(InboundKeys::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_errors_never_quote_the_secret() {
        for bad in [
            r#"{"apiKeys": "topsecret"}"#,
            r#"{"webhookSecrets": ["whsec_top secret!"]}"#,
            r#"{"apiKeys": [{"key": "topsecret", "locations": "x"}]}"#,
            r#"{"callbackSecret": "whsec_top secret!"}"#,
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
    fn reads_the_callback_secret_and_each_credentials_callback_hosts() {
        let parsed = InboundKeys::parse(&format!(
            r#"{{"apiKeys":[{{"key":"k1","callbackHosts":["Hooks.Example.com","*.zapier.com"]}},"k2"],
                "callbackSecret":"{SECRET}"}}"#
        ))
        .unwrap();
        assert!(parsed.callback_key().is_some());
        let limited = parsed
            .authenticate(&headers(&[("x-api-key", "k1")]), b"", NOW)
            .unwrap();
        assert!(limited.allows_callback_host("hooks.example.com"));
        assert!(limited.allows_callback_host("a.zapier.com"));
        assert!(!limited.allows_callback_host("evil.example.net"));
        let open = parsed
            .authenticate(&headers(&[("x-api-key", "k2")]), b"", NOW)
            .unwrap();
        assert!(open.allows_callback_host("evil.example.net"));
        assert!(keys().callback_key().is_none());
    }

    #[test]
    fn a_signature_made_for_a_callback_verifies_as_a_webhook() {
        let key = CallbackKey::parse(SECRET).unwrap();
        let body = br#"{"type":"csv.import.completed"}"#;
        let header = sign_webhook(&key, "fz_1.csv.import.completed", NOW, body);
        assert_eq!(
            header,
            signature(SECRET, "fz_1.csv.import.completed", NOW, body)
        );
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
