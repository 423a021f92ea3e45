//! Scripted answers: what the stand-in does instead of its documented answer, one finalize
//! request at a time — any status, body or `Retry-After`, a delay, or a fault on the wire
//! (a connection closed before the answer or in the middle of it, a body that trickles, an
//! answer that never comes).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Channel, Full};
use serde_json::{json, Value};

use crate::error::BoxError;

/// The body type of every stand-in answer.
pub type StandInBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// One scripted answer to a finalize request.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// The documented answer, as without a script (token, `Version` and body checked).
    Documented,
    /// This status and body.
    Reply(Reply),
    /// Read the request, then close the connection without a byte of answer.
    CloseBeforeAnswer,
    /// Send `200` with `content-length: 100` and a few bytes of body, then close.
    BreakMidBody,
    /// Send `200` with `content-length: 1000`, then one byte every `every`.
    Trickle {
        /// Pause between bytes.
        every: Duration,
    },
    /// Read the request and never answer.
    Silent,
    /// Apply the finalize (the import starts), then never answer: the answer lost on the way.
    SilentAfterApplying,
}

/// A scripted status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    content_type: String,
    body: Bytes,
    retry_after: Option<String>,
    headers: Vec<(String, String)>,
    delay: Duration,
}

impl Scripted {
    /// `status` with HighLevel's usual error body, `{"statusCode": status}`.
    pub fn status(status: u16) -> Self {
        Self::json(status, json!({"statusCode": status}))
    }

    /// HighLevel's documented success body, whatever the request.
    pub fn ok() -> Self {
        Self::json(
            200,
            json!({"success": true, "statusCode": 200, "message": "CSV finalize started"}),
        )
    }

    /// `status` with a JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Self::raw(status, "application/json", body.to_string())
    }

    /// `status` with any body and content type.
    pub fn raw(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Scripted::Reply(Reply {
            status,
            content_type: content_type.to_owned(),
            body: body.into(),
            retry_after: None,
            headers: Vec::new(),
            delay: Duration::ZERO,
        })
    }

    /// The same reply with a `Retry-After` header (seconds or an HTTP date, sent verbatim).
    pub fn retry_after(self, value: &str) -> Self {
        self.map_reply(|reply| reply.retry_after = Some(value.to_owned()))
    }

    /// The same reply with one more header (HighLevel's `X-RateLimit-*`, say), sent verbatim.
    pub fn header(self, name: &str, value: &str) -> Self {
        self.map_reply(|reply| reply.headers.push((name.to_owned(), value.to_owned())))
    }

    /// The same reply, sent after `delay`.
    pub fn delayed(self, delay: Duration) -> Self {
        self.map_reply(|reply| reply.delay = delay)
    }

    fn map_reply(self, change: impl FnOnce(&mut Reply)) -> Self {
        match self {
            Scripted::Reply(mut reply) => {
                change(&mut reply);
                Scripted::Reply(reply)
            }
            other => other,
        }
    }
}

impl Reply {
    /// Whether HighLevel applied the finalize it answers: a 2xx.
    pub(super) fn applies(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(super) async fn send(&self) -> Response<StandInBody> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut response = Response::new(full(self.body.clone()));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&self.content_type) {
            headers.insert(http::header::CONTENT_TYPE, value);
        }
        if let Some(value) = self
            .retry_after
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(http::header::RETRY_AFTER, value);
        }
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// `200` with `content-length: 100`, a few bytes of body, then a broken connection.
pub(super) fn break_mid_body() -> Response<StandInBody> {
    let (mut sender, body) = Channel::<Bytes, BoxError>::new(1);
    tokio::spawn(async move {
        let _ = sender.send_data(Bytes::from_static(b"{\"succ")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        sender.abort("the stand-in breaks the connection mid-body".into());
    });
    streaming(100, body.boxed())
}

/// `200` with `content-length: 1000`, one byte every `every`.
pub(super) fn trickle(every: Duration) -> Response<StandInBody> {
    let (mut sender, body) = Channel::<Bytes, BoxError>::new(1);
    tokio::spawn(async move {
        for _ in 0..1000 {
            if sender.send_data(Bytes::from_static(b" ")).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    streaming(1000, body.boxed())
}

/// A `200` whose `content-length` promises `length` bytes of `body`.
fn streaming(length: u64, body: StandInBody) -> Response<StandInBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// A whole body at once.
pub(super) fn full(bytes: Bytes) -> StandInBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}
