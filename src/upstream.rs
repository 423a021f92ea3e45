//! The HighLevel HTTP client: one request, built exactly as the contract gives it, sent once.
//!
//! [`HighLevel::send`] makes one attempt within a deadline and sorts the outcome into
//! [`Attempt`]: an answer, a failure that provably never reached HighLevel (safe to retry),
//! a failure after the request went out (not safe to retry), or the deadline.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use crate::error::{BoxError, Error};
use crate::ids::{CsvId, LocationId, UserId};
use crate::token_secret::Token;

/// Upstream bytes read at most; the rest is dropped so a huge answer cannot exhaust memory.
pub const MAX_BODY_READ: usize = 1024 * 1024;
/// Upstream bodies larger than this are not parsed but kept as a short text excerpt.
pub const MAX_BODY_KEPT: usize = 64 * 1024;
/// Length of the excerpt kept from a non-JSON or oversized body.
pub const EXCERPT_CHARS: usize = 2048;

/// HighLevel's answer as shown to the caller.
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

    /// Builds the reply from raw bytes: JSON when it parses and is small, else a text excerpt.
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
}

/// A reply plus the `Retry-After` header HighLevel sent with it.
#[derive(Debug)]
pub struct Answer {
    /// The reply.
    pub reply: UpstreamReply,
    /// Raw `Retry-After`, if present.
    pub retry_after: Option<String>,
}

/// The outcome of one attempt.
#[derive(Debug)]
pub enum Attempt {
    /// HighLevel answered.
    Answered(Answer),
    /// The request never reached HighLevel, or the connection closed before any answer:
    /// safe to retry.
    NotDelivered(BoxError),
    /// The connection broke after the request was sent: it may have been applied.
    Broken(BoxError),
    /// The deadline passed.
    TimedOut,
}

/// The finalize request's parts.
#[derive(Debug, Clone)]
pub struct FinalizeCall {
    /// Target URL.
    pub url: Url,
    /// JSON body bytes.
    pub body: Vec<u8>,
}

/// Builds `{base}/social-media-posting/{locationId}/csv/{csvId}`. The ids are validated, so
/// they are placed as they are.
pub fn finalize_url(
    base: &Url,
    location: &LocationId,
    csv: &CsvId,
) -> Result<Url, url::ParseError> {
    let base = base.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/social-media-posting/{location}/csv/{csv}"))
}

/// `{"userId": "…"}`, or `{}` when no user is known.
pub fn finalize_body(user: Option<&UserId>) -> Vec<u8> {
    match user {
        Some(user) => format!(r#"{{"userId":"{user}"}}"#).into_bytes(),
        None => b"{}".to_vec(),
    }
}

/// Describes the request that would be sent, the token redacted (for `--dry-run`).
pub fn describe(call: &FinalizeCall, headers: &HeaderMap) -> Value {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| {
            let shown = if value.is_sensitive() {
                "Bearer [redacted]".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), Value::String(shown))
        })
        .collect();
    serde_json::json!({
        "method": "PATCH",
        "url": call.url.as_str(),
        "headers": headers,
        "body": serde_json::from_slice::<Value>(&call.body).unwrap_or(Value::Null),
    })
}

/// The HighLevel client, built once per instance.
#[derive(Debug, Clone)]
pub struct HighLevel {
    http: reqwest::Client,
    version: HeaderValue,
    token_url: Url,
}

impl HighLevel {
    /// Builds the client. No redirects are followed: a redirect would carry the bearer token
    /// somewhere the operator did not configure.
    pub fn new(version: HeaderValue, base_url: &Url) -> Result<Self, BoxError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(concat!("ghl-csv-finalize/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = base_url.as_str().trim_end_matches('/');
        let token_url = Url::parse(&format!("{base}/oauth/token"))?;
        Ok(Self {
            http,
            version,
            token_url,
        })
    }

    /// The headers of the finalize request, the token marked sensitive.
    pub fn headers(&self, token: &Token) -> Result<HeaderMap, Error> {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| Error::config("the HighLevel token is not a valid header value", None))?;
        bearer.set_sensitive(true);
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(AUTHORIZATION, bearer);
        headers.insert("Version", self.version.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        Ok(headers)
    }

    /// Sends one finalize attempt, answering by `deadline`.
    pub async fn send(
        &self,
        call: &FinalizeCall,
        headers: HeaderMap,
        deadline: Instant,
    ) -> Attempt {
        let request = self
            .http
            .patch(call.url.clone())
            .headers(headers)
            .body(call.body.clone());
        exchange(request, deadline).await
    }

    /// Calls `POST {base}/oauth/token` once with a form-encoded refresh request.
    pub async fn refresh_token(
        &self,
        form: crate::redact::Redacted<String>,
        deadline: Instant,
    ) -> Attempt {
        let request = self
            .http
            .post(self.token_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form.expose().clone());
        exchange(request, deadline).await
    }
}

/// Sends a request and reads its answer (bounded), all by `deadline`.
async fn exchange(request: reqwest::RequestBuilder, deadline: Instant) -> Attempt {
    let response = match tokio::time::timeout_at(deadline, request.send()).await {
        Err(_) => return Attempt::TimedOut,
        Ok(Err(error)) if not_delivered(&error) => return Attempt::NotDelivered(Box::new(error)),
        Ok(Err(error)) => return Attempt::Broken(Box::new(error)),
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match tokio::time::timeout_at(deadline, read_bounded(response)).await {
        Err(_) => Attempt::TimedOut,
        Ok(Err(error)) => Attempt::Broken(Box::new(error)),
        Ok(Ok((bytes, cut))) => Attempt::Answered(Answer {
            reply: UpstreamReply::from_bytes(status, &bytes, cut),
            retry_after,
        }),
    }
}

/// Reads at most [`MAX_BODY_READ`] bytes; reports whether the body was longer.
async fn read_bounded(mut response: reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_READ - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

/// True when the request provably got no answer: a failed connect, or a connection that was
/// closed or reset before any response (as when a kept-alive connection has gone stale).
fn not_delivered(error: &reqwest::Error) -> bool {
    if error.is_connect() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
            if hyper_error.is_incomplete_message() {
                return true;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids() -> (LocationId, CsvId) {
        (
            LocationId::parse("L1").unwrap(),
            CsvId::parse("C1").unwrap(),
        )
    }

    #[test]
    fn builds_the_finalize_url_with_or_without_a_trailing_slash_or_prefix() {
        let (l, c) = ids();
        for (base, expected) in [
            (
                "https://services.leadconnectorhq.com",
                "https://services.leadconnectorhq.com/social-media-posting/L1/csv/C1",
            ),
            (
                "https://services.leadconnectorhq.com/",
                "https://services.leadconnectorhq.com/social-media-posting/L1/csv/C1",
            ),
            (
                "http://127.0.0.1:9/prefix/",
                "http://127.0.0.1:9/prefix/social-media-posting/L1/csv/C1",
            ),
        ] {
            assert_eq!(
                finalize_url(&Url::parse(base).unwrap(), &l, &c)
                    .unwrap()
                    .as_str(),
                expected
            );
        }
    }

    #[test]
    fn sends_the_user_id_or_an_empty_object() {
        let user = UserId::parse("U1").unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&finalize_body(Some(&user))).unwrap(),
            json!({"userId": "U1"})
        );
        assert_eq!(finalize_body(None), b"{}");
    }

    #[test]
    fn sets_the_contract_headers_and_marks_the_token_sensitive() {
        let base = Url::parse("https://services.leadconnectorhq.com").unwrap();
        let client = HighLevel::new(HeaderValue::from_static("2021-07-28"), &base).unwrap();
        let headers = client.headers(&Token::new("pit-1".into())).unwrap();
        assert_eq!(headers["authorization"], "Bearer pit-1");
        assert!(headers["authorization"].is_sensitive());
        assert_eq!(headers["version"], "2021-07-28");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["accept"], "application/json");
        assert!(!format!("{headers:?}").contains("pit-1"));
    }

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
}
