//! The one error type, and the one place it becomes a status and an error code.
//!
//! Each variant says what the caller should do about it. [`Error::status`] and [`Error::code`]
//! map it to the contract's table; 5xx messages stay opaque and the cause (the `#[source]`
//! chain) goes to the log instead.

use std::time::Duration;

use http::StatusCode;

use crate::request::ids::LocationId;
use crate::upstream::UpstreamReply;

/// A boxed cause, kept for the log.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can stop a finalize request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Use `POST` to finalize, or `GET …/healthz`.
    #[error("method or path not allowed: POST finalizes, GET …/healthz checks health")]
    MethodNotAllowed,

    /// Send a smaller body.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// Present a valid API key or webhook signature.
    #[error("missing or invalid credentials: send x-api-key, Authorization: Bearer, or a Standard Webhooks signature")]
    Unauthorized,

    /// Send JSON or a urlencoded form.
    #[error(
        "unsupported content type: send application/json or application/x-www-form-urlencoded"
    )]
    UnsupportedMediaType,

    /// Fix the named field or the body.
    #[error("{message}")]
    InvalidRequest {
        /// The field at fault, when one is.
        field: Option<&'static str>,
        /// What is wrong, without echoing secrets.
        message: String,
    },

    /// The operator has not configured a token for this location.
    #[error("no HighLevel token is configured for location {0}")]
    LocationNotAllowed(LocationId),

    /// The caller's credential is scoped to other locations.
    #[error("this credential may not act for location {0}")]
    CredentialNotAllowed(LocationId),

    /// The operator must fix the deployment; details are in the log only.
    #[error("configuration error: {message}")]
    Config {
        /// Log-only description.
        message: String,
        /// Log-only cause.
        #[source]
        source: Option<BoxError>,
    },

    /// Retry later: a secret could not be read for a transient cause.
    #[error("a secret could not be read for a transient cause")]
    SecretUnavailable(#[source] BoxError),

    /// HighLevel refused the request as made (400/404/422 and other client errors).
    #[error("HighLevel rejected the request with status {}", .0.status)]
    UpstreamRejected(UpstreamReply),

    /// HighLevel refused the token (401 after a re-read, or 403).
    #[error("HighLevel refused the token with status {}", .0.status)]
    UpstreamAuthFailed(UpstreamReply),

    /// The token endpoint refused the refresh token and no newer pair appeared: another
    /// instance's refresh won, and its pair will be there on a later try (queue mode retries).
    #[error("the OAuth refresh token was refused and no newer pair appeared (status {})", .0.status)]
    RefreshLost(UpstreamReply),

    /// HighLevel failed or is overloaded: retry later.
    #[error("HighLevel is unavailable{}", .reply.as_ref().map(|r| format!(" (last status {})", r.status)).unwrap_or_default())]
    UpstreamUnavailable {
        /// HighLevel's last answer, if one came.
        reply: Option<UpstreamReply>,
        /// When the caller should retry, if retrying makes sense.
        retry_after: Option<Duration>,
        /// Log-only cause (connection errors).
        #[source]
        source: Option<BoxError>,
    },

    /// The deadline passed before HighLevel answered; the import may or may not be finalized.
    #[error("HighLevel did not answer before the deadline")]
    UpstreamTimeout,

    /// No such finalization record (or not one this caller may see).
    #[error("no finalization record with this id")]
    NotFound,

    /// A request with the same idempotency key is running: retry in a moment.
    #[error("a request with the same idempotency key is in progress; retry shortly")]
    RequestInProgress,

    /// The idempotency key was used for another locationId, csvId or userId.
    #[error("this idempotency key was already used for another {0}")]
    IdempotencyKeyReused(&'static str),

    /// The finalization records are unavailable: retry later (nothing was finalized).
    #[error("the finalization records are unavailable; nothing was finalized")]
    StoreUnavailable(#[source] BoxError),

    /// The queue could not take the request: retry later (nothing was queued).
    #[error("the queue is unavailable; nothing was queued")]
    QueueUnavailable(#[source] BoxError),
}

/// `Retry-After` for a request whose key is in progress.
pub const IN_PROGRESS_RETRY_AFTER: Duration = Duration::from_secs(1);
/// `Retry-After` when the records or the queue fail.
pub const STORE_RETRY_AFTER: Duration = Duration::from_secs(2);

impl Error {
    /// A 400 for one field.
    pub fn invalid_field(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            field: Some(field),
            message: message.into(),
        }
    }

    /// A 400 about the body as a whole.
    pub fn invalid_body(message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            field: None,
            message: message.into(),
        }
    }

    /// A configuration error with a log-only cause.
    pub fn config(message: impl Into<String>, source: impl Into<Option<BoxError>>) -> Self {
        Error::Config {
            message: message.into(),
            source: source.into(),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Error::LocationNotAllowed(_) | Error::CredentialNotAllowed(_) => StatusCode::FORBIDDEN,
            Error::Config { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Error::SecretUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UpstreamRejected(reply) => match reply.status {
                400 | 404 | 422 => {
                    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                _ => StatusCode::BAD_GATEWAY,
            },
            Error::UpstreamAuthFailed(_) | Error::RefreshLost(_) => StatusCode::BAD_GATEWAY,
            Error::UpstreamUnavailable { retry_after, .. } => match retry_after {
                Some(_) => StatusCode::SERVICE_UNAVAILABLE,
                None => StatusCode::BAD_GATEWAY,
            },
            Error::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::RequestInProgress => StatusCode::CONFLICT,
            Error::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::StoreUnavailable(_) | Error::QueueUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The contract's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MethodNotAllowed => "method_not_allowed",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::Unauthorized => "unauthorized",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::InvalidRequest { .. } => "invalid_request",
            Error::LocationNotAllowed(_) | Error::CredentialNotAllowed(_) => "location_not_allowed",
            Error::Config { .. } => "config_error",
            Error::SecretUnavailable(_) => "secret_unavailable",
            Error::UpstreamRejected(_) => "upstream_rejected",
            Error::UpstreamAuthFailed(_) | Error::RefreshLost(_) => "upstream_auth_failed",
            Error::UpstreamUnavailable { .. } => "upstream_unavailable",
            Error::UpstreamTimeout => "upstream_timeout",
            Error::NotFound => "not_found",
            Error::RequestInProgress => "request_in_progress",
            Error::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Error::StoreUnavailable(_) => "store_unavailable",
            Error::QueueUnavailable(_) => "queue_unavailable",
        }
    }

    /// The message shown to the caller. Server-side faults get a fixed text; the cause is logged.
    pub fn public_message(&self) -> String {
        match self {
            Error::Config { .. } => {
                "the function is misconfigured; its operator can find the cause in its logs".into()
            }
            Error::SecretUnavailable(_) => {
                "the token store is temporarily unavailable; retry later".into()
            }
            other => other.to_string(),
        }
    }

    /// The field at fault, for `error.field`.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Error::InvalidRequest { field, .. } => *field,
            Error::IdempotencyKeyReused(field) => Some(field),
            _ => None,
        }
    }

    /// HighLevel's answer, for the response's `upstream` member.
    pub fn upstream(&self) -> Option<&UpstreamReply> {
        match self {
            Error::UpstreamRejected(reply)
            | Error::UpstreamAuthFailed(reply)
            | Error::RefreshLost(reply) => Some(reply),
            Error::UpstreamUnavailable { reply, .. } => reply.as_ref(),
            _ => None,
        }
    }

    /// Whether the same finalize may succeed later unchanged: HighLevel overloaded, failing or
    /// silent (a timed-out attempt included), a secret, the records or the queue unavailable.
    /// The queue worker retries these and gives up at once on the rest (a rejected request, a
    /// refused token, a location without a token, a configuration fault).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::SecretUnavailable(_)
                | Error::RefreshLost(_)
                | Error::UpstreamUnavailable { .. }
                | Error::UpstreamTimeout
                | Error::RequestInProgress
                | Error::StoreUnavailable(_)
                | Error::QueueUnavailable(_)
        )
    }

    /// The `Retry-After` to send, in whole seconds.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::UpstreamUnavailable { retry_after, .. } => *retry_after,
            Error::RequestInProgress => Some(IN_PROGRESS_RETRY_AFTER),
            Error::StoreUnavailable(_) | Error::QueueUnavailable(_) => Some(STORE_RETRY_AFTER),
            _ => None,
        }
    }
}

/// Formats an error with its whole `source` chain, for the log.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16) -> UpstreamReply {
        UpstreamReply::new(status, serde_json::json!({"message": "x"}), false)
    }

    #[test]
    fn maps_every_contract_row_to_its_status_and_code() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (Error::invalid_field("csvId", "bad"), 400, "invalid_request"),
            (Error::Unauthorized, 401, "unauthorized"),
            (
                Error::LocationNotAllowed(LocationId::parse("L1").unwrap()),
                403,
                "location_not_allowed",
            ),
            (
                Error::CredentialNotAllowed(LocationId::parse("L1").unwrap()),
                403,
                "location_not_allowed",
            ),
            (Error::MethodNotAllowed, 405, "method_not_allowed"),
            (
                Error::PayloadTooLarge { limit: 1 },
                413,
                "payload_too_large",
            ),
            (Error::UnsupportedMediaType, 415, "unsupported_media_type"),
            (
                Error::UpstreamRejected(reply(400)),
                400,
                "upstream_rejected",
            ),
            (
                Error::UpstreamRejected(reply(404)),
                404,
                "upstream_rejected",
            ),
            (
                Error::UpstreamRejected(reply(422)),
                422,
                "upstream_rejected",
            ),
            (
                Error::UpstreamRejected(reply(409)),
                502,
                "upstream_rejected",
            ),
            (
                Error::UpstreamAuthFailed(reply(401)),
                502,
                "upstream_auth_failed",
            ),
            (
                Error::UpstreamAuthFailed(reply(403)),
                502,
                "upstream_auth_failed",
            ),
            (Error::RefreshLost(reply(400)), 502, "upstream_auth_failed"),
            (
                Error::UpstreamUnavailable {
                    reply: Some(reply(500)),
                    retry_after: None,
                    source: None,
                },
                502,
                "upstream_unavailable",
            ),
            (
                Error::UpstreamUnavailable {
                    reply: Some(reply(429)),
                    retry_after: Some(Duration::from_secs(3)),
                    source: None,
                },
                503,
                "upstream_unavailable",
            ),
            (Error::UpstreamTimeout, 504, "upstream_timeout"),
            (Error::NotFound, 404, "not_found"),
            (Error::RequestInProgress, 409, "request_in_progress"),
            (
                Error::IdempotencyKeyReused("csvId"),
                422,
                "idempotency_key_reused",
            ),
            (
                Error::StoreUnavailable("down".into()),
                503,
                "store_unavailable",
            ),
            (
                Error::QueueUnavailable("down".into()),
                503,
                "queue_unavailable",
            ),
            (
                Error::SecretUnavailable("throttled".into()),
                503,
                "secret_unavailable",
            ),
            (Error::config("x", None), 500, "config_error"),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    #[test]
    fn only_passing_faults_are_worth_retrying_from_the_queue() {
        let transient = [
            Error::SecretUnavailable("throttled".into()),
            Error::UpstreamUnavailable {
                reply: Some(reply(500)),
                retry_after: None,
                source: None,
            },
            Error::UpstreamTimeout,
            Error::StoreUnavailable("down".into()),
            // Another instance's refresh won: its pair is there on the next receive.
            Error::RefreshLost(reply(400)),
        ];
        let permanent = [
            Error::UpstreamRejected(reply(422)),
            Error::UpstreamAuthFailed(reply(403)),
            Error::LocationNotAllowed(LocationId::parse("L1").unwrap()),
            Error::config("no table", None),
            Error::invalid_body("bad"),
        ];
        assert!(transient.iter().all(Error::is_transient));
        assert!(!permanent.iter().any(Error::is_transient));
    }

    #[test]
    fn server_side_messages_hide_their_cause() {
        let error = Error::config("secret ghl/token is not JSON", Some("boom".into()));
        assert!(!error.public_message().contains("ghl/token"));
        assert!(chain(&error).contains("boom"));
    }
}
