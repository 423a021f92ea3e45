//! The HighLevel HTTP client: requests built exactly as the contract gives them, sent once each.
//!
//! [`HighLevel::send`] makes one exchange within a deadline and sorts how it went into
//! [`Exchange`]: an answer, a failure that provably never reached HighLevel (safe to retry), a
//! failure after the request went out (not safe to retry), or the deadline.

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::ratelimit::{Pauses, RateLimit};
use crate::error::{BoxError, Error};
use crate::redact::Redacted;
use crate::request::ids::{CsvId, LocationId, UserId};
use crate::upstream::UpstreamReply;

/// Upstream bytes read at most; the rest is dropped so a huge answer cannot exhaust memory.
pub(crate) const MAX_BODY_READ: usize = 1024 * 1024;

/// How one request/answer exchange with HighLevel went.
#[derive(Debug)]
pub(crate) enum Exchange {
    /// HighLevel answered, with its raw `Retry-After` if it sent one.
    Answered {
        /// The answer.
        reply: UpstreamReply,
        /// `Retry-After`, verbatim.
        retry_after: Option<String>,
        /// Its rate-limit headers.
        rate_limit: RateLimit,
    },
    /// The request never reached HighLevel, or the connection closed before any answer:
    /// safe to retry.
    NotDelivered(BoxError),
    /// The connection broke after the request was sent: it may have been applied.
    Broken(BoxError),
    /// The deadline passed.
    TimedOut,
}

/// The finalize request for one CSV import: where it goes and what it says.
#[derive(Debug, Clone)]
pub struct FinalizeCall {
    /// The location it is for (its rate-limit window).
    pub location: LocationId,
    /// `{base}/social-media-posting/{locationId}/csv/{csvId}`.
    pub url: Url,
    /// `{"userId": …}` or `{}`.
    pub body: Vec<u8>,
}

/// The HighLevel client, built once per instance.
#[derive(Debug, Clone)]
pub struct HighLevel {
    http: reqwest::Client,
    base_url: Url,
    version: HeaderValue,
    token_url: Url,
    location_token_url: Url,
    pauses: Pauses,
}

/// The API version the token endpoints are called with, whatever `GHL_API_VERSION` says.
const TOKEN_API_VERSION: &str = "2021-07-28";

impl HighLevel {
    /// The client for `base_url` (`GHL_API_BASE_URL`) and API `version`, sending through `http`
    /// (the function's one HTTPS client, which follows no redirects).
    pub fn new(
        http: reqwest::Client,
        version: HeaderValue,
        base_url: &Url,
    ) -> Result<Self, BoxError> {
        let token_url = join(base_url, "oauth/token")?;
        let location_token_url = join(base_url, "oauth/locationToken")?;
        Ok(Self {
            http,
            base_url: base_url.clone(),
            version,
            token_url,
            location_token_url,
            pauses: Pauses::default(),
        })
    }

    /// The finalize request for `csv` of `location`. The ids are validated, so they are placed
    /// as they are.
    pub fn finalize_call(
        &self,
        location: &LocationId,
        csv: &CsvId,
        user: Option<&UserId>,
    ) -> Result<FinalizeCall, Error> {
        let url = join(
            &self.base_url,
            &format!("social-media-posting/{location}/csv/{csv}"),
        )
        .map_err(|e| Error::config("cannot build the HighLevel URL", Some(Box::new(e) as _)))?;
        Ok(FinalizeCall {
            location: location.clone(),
            url,
            body: finalize_body(user),
        })
    }

    /// The headers of the finalize request around `bearer` (`Bearer <token>`, marked sensitive).
    pub fn headers(&self, bearer: HeaderValue) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(reqwest::header::AUTHORIZATION, bearer);
        headers.insert("Version", self.version.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers
    }

    /// Each location's spent rate-limit window, shared by every request of the instance.
    pub(crate) fn pauses(&self) -> &Pauses {
        &self.pauses
    }

    /// Sends one finalize request, answering by `deadline`.
    pub(crate) async fn send(
        &self,
        call: &FinalizeCall,
        headers: HeaderMap,
        deadline: Instant,
    ) -> Exchange {
        let request = self
            .http
            .patch(call.url.clone())
            .headers(headers)
            .body(call.body.clone());
        exchange(request, deadline).await
    }

    /// Reads the CSV import `call` finalizes: its status, and `limit` posts from `skip` on
    /// (`GET …/csv/{csvId}?skip=N&limit=M`), answering by `deadline`.
    pub(crate) async fn read_csv(
        &self,
        call: &FinalizeCall,
        mut headers: HeaderMap,
        (skip, limit): (u64, u64),
        deadline: Instant,
    ) -> Exchange {
        headers.remove(CONTENT_TYPE);
        let mut url = call.url.clone();
        url.query_pairs_mut()
            .append_pair("skip", &skip.to_string())
            .append_pair("limit", &limit.to_string());
        exchange(self.http.get(url).headers(headers), deadline).await
    }

    /// Calls `POST {base}/oauth/token` once with a form-encoded refresh request.
    pub(crate) async fn refresh_token(
        &self,
        form: &Redacted<String>,
        deadline: Instant,
    ) -> Exchange {
        let request = self
            .http
            .post(self.token_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form.expose().clone());
        exchange(request, deadline).await
    }

    /// Calls `POST {base}/oauth/locationToken` once: a token for `location` minted with the
    /// agency's `bearer` for its `company`.
    pub(crate) async fn mint_location_token(
        &self,
        bearer: HeaderValue,
        company: &str,
        location: &LocationId,
        deadline: Instant,
    ) -> Exchange {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("companyId", company)
            .append_pair("locationId", location.as_str())
            .finish();
        let request = self
            .http
            .post(self.location_token_url.clone())
            .header(reqwest::header::AUTHORIZATION, bearer)
            .header("Version", TOKEN_API_VERSION)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form);
        exchange(request, deadline).await
    }
}

/// `{base}/{path}`, keeping any path prefix of the base and ignoring a trailing slash.
fn join(base: &Url, path: &str) -> Result<Url, url::ParseError> {
    let base = base.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/{path}"))
}

/// `{"userId": "…"}`, or `{}` when no user is known.
pub(crate) fn finalize_body(user: Option<&UserId>) -> Vec<u8> {
    match user {
        Some(user) => format!(r#"{{"userId":"{user}"}}"#).into_bytes(),
        None => b"{}".to_vec(),
    }
}

/// The import's status in HighLevel's answer to a CSV read (`results.csv.status`), when it
/// accepted the read and the status is plausible text.
pub(crate) fn csv_status(reply: &UpstreamReply) -> Option<String> {
    if !(200..300).contains(&reply.status) {
        return None;
    }
    let status = reply.body.pointer("/results/csv/status")?.as_str()?.trim();
    let plausible = (1..=64).contains(&status.len())
        && status
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    plausible.then(|| status.to_owned())
}

/// Describes the request that would be sent, the token redacted (for `--dry-run`).
pub(crate) fn describe(call: &FinalizeCall, headers: &HeaderMap) -> Value {
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

/// Sends a request and reads its answer (bounded), all by `deadline`.
async fn exchange(request: reqwest::RequestBuilder, deadline: Instant) -> Exchange {
    let response = match tokio::time::timeout_at(deadline, request.send()).await {
        Err(_) => return Exchange::TimedOut,
        Ok(Err(error)) if not_delivered(&error) => return Exchange::NotDelivered(Box::new(error)),
        Ok(Err(error)) => return Exchange::Broken(Box::new(error)),
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let rate_limit = RateLimit::from_headers(response.headers());
    match tokio::time::timeout_at(deadline, read_bounded(response)).await {
        Err(_) => Exchange::TimedOut,
        Ok(Err(error)) => Exchange::Broken(Box::new(error)),
        Ok(Ok((bytes, cut))) => Exchange::Answered {
            reply: UpstreamReply::from_bytes(status, &bytes, cut),
            retry_after,
            rate_limit,
        },
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

    fn client(base: &str) -> HighLevel {
        HighLevel::new(
            crate::app::https::client().unwrap(),
            HeaderValue::from_static("2021-07-28"),
            &Url::parse(base).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn builds_the_finalize_url_with_or_without_a_trailing_slash_or_prefix() {
        let (l, c) = (
            LocationId::parse("L1").unwrap(),
            CsvId::parse("C1").unwrap(),
        );
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
            let call = client(base).finalize_call(&l, &c, None).unwrap();
            assert_eq!(call.url.as_str(), expected);
        }
        assert_eq!(
            client("http://127.0.0.1:9/prefix/").token_url.as_str(),
            "http://127.0.0.1:9/prefix/oauth/token"
        );
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
    fn sets_the_contract_headers_and_shows_no_token_in_a_dry_run() {
        let mut bearer = HeaderValue::from_static("Bearer pit-1");
        bearer.set_sensitive(true);
        let highlevel = client("https://services.leadconnectorhq.com");
        let headers = highlevel.headers(bearer);
        assert_eq!(headers["authorization"], "Bearer pit-1");
        assert_eq!(headers["version"], "2021-07-28");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["accept"], "application/json");
        assert!(!format!("{headers:?}").contains("pit-1"));
        let call = highlevel
            .finalize_call(
                &LocationId::parse("L1").unwrap(),
                &CsvId::parse("C1").unwrap(),
                None,
            )
            .unwrap();
        let shown = describe(&call, &headers);
        assert_eq!(shown["headers"]["authorization"], "Bearer [redacted]");
        assert_eq!(shown["body"], json!({}));
    }

    #[test]
    fn reads_the_import_status_from_a_csv_read() {
        let reply = |status, body| UpstreamReply::new(status, body, false);
        let body = serde_json::json!({"results": {"csv": {"status": "importing"}}});
        assert_eq!(
            csv_status(&reply(200, body.clone())).as_deref(),
            Some("importing")
        );
        assert_eq!(csv_status(&reply(404, body)), None, "only an accepted read");
        for odd in [
            serde_json::json!({"results": {"csv": {"status": 7}}}),
            serde_json::json!({"results": {}}),
            serde_json::json!({"results": {"csv": {"status": "has space"}}}),
            serde_json::json!({"results": {"csv": {"status": ""}}}),
            serde_json::json!("text"),
        ] {
            assert_eq!(csv_status(&reply(200, odd.clone())), None, "{odd}");
        }
    }
}
