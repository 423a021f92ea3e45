//! Reading and writing secrets in AWS Secrets Manager, and telling lasting faults from passing
//! ones.
//!
//! The SDK client is built once per instance ([`super::AwsClients`]) and honours
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` (used by the tests to reach a moto server on loopback). [`SecretsClient::read`] gives up at the invocation's
//! deadline and sorts every failure into [`ReadError`]: a missing secret, a configuration fault,
//! or a transient one.

use std::time::Duration;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use super::Fault;
use crate::error::{BoxError, Error};
use crate::redact::Redacted;
use crate::request::deadline::Deadline;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The secret does not exist.
    #[error("secret {id} does not exist")]
    NotFound {
        /// The secret id (a name or ARN, not secret itself).
        id: String,
    },
    /// A lasting fault the operator must fix: access denied, bad content, binary secret, ….
    #[error("secret {id} cannot be used: {problem}")]
    Config {
        /// The secret id.
        id: String,
        /// What is wrong, safe to log.
        problem: String,
    },
    /// Throttling, timeouts, network faults, 5xx: worth retrying later.
    #[error("secret {id} is unavailable for now")]
    Transient {
        /// The secret id.
        id: String,
        /// The SDK's error, for the log.
        #[source]
        source: BoxError,
    },
}

impl ReadError {
    /// The same answer as [`ReadError::into_error`] for a failure kept a moment to be answered
    /// again (the cause as text, for the log).
    pub(crate) fn to_error(&self, what: &str) -> Error {
        let cause = crate::error::chain(self);
        match self {
            ReadError::Transient { .. } => Error::SecretUnavailable(cause.into()),
            _ => Error::config(format!("{what} cannot be used"), Some(cause.into())),
        }
    }

    /// The contract's answer when `what` (e.g. "the token secret") cannot be read: 503 for a
    /// passing fault, 500 for anything the operator must fix.
    pub(crate) fn into_error(self, what: &str) -> Error {
        match self {
            ReadError::Transient { .. } => Error::SecretUnavailable(Box::new(self)),
            other => Error::config(format!("{what} cannot be used"), Some(Box::new(other) as _)),
        }
    }
}

/// A Secrets Manager client, created once and reused across invocations.
#[derive(Debug, Clone)]
pub struct SecretsClient {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsClient {
    /// Wraps a client configured elsewhere (tests add an endpoint and interceptors).
    pub fn from_client(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }

    /// The longest one call (a read or a write, its retries included) may take.
    pub const OPERATION_TIMEOUT: Duration = super::clients::OPERATION_TIMEOUT;

    /// Reads a secret's SecretString with the id of the version read, giving up (as a transient
    /// fault) at `deadline` so the function still answers in time.
    pub(crate) async fn read(&self, id: &str, deadline: Deadline) -> Result<Versioned, ReadError> {
        let sent = self.client.get_secret_value().secret_id(id).send();
        let output = deadline
            .bound(sent)
            .await
            .ok_or_else(|| ReadError::Transient {
                id: id.to_owned(),
                source: "the Lambda deadline came before Secrets Manager answered".into(),
            })?
            .map_err(|e| classify(id, e))?;
        let problem = match (output.secret_string, output.secret_binary.is_some()) {
            (Some(text), _) => {
                return Ok(Versioned {
                    text: Redacted::new(text),
                    version_id: output.version_id,
                })
            }
            (None, true) => "it holds binary data; store the value as a SecretString",
            (None, false) => {
                "the answer holds no SecretString (is the endpoint really Secrets Manager?)"
            }
        };
        Err(ReadError::Config {
            id: id.to_owned(),
            problem: problem.into(),
        })
    }

    /// Writes a new version. `client_request_token` makes the write conditional: Secrets
    /// Manager refuses a second, different write with the same token ([`WriteError::Conflict`]).
    pub(crate) async fn write(
        &self,
        id: &str,
        text: &str,
        client_request_token: &str,
    ) -> Result<Option<String>, WriteError> {
        let result = self
            .client
            .put_secret_value()
            .secret_id(id)
            .secret_string(text)
            .client_request_token(client_request_token)
            .send()
            .await;
        result
            .map(|output| output.version_id)
            .map_err(|error| write_error(id, error))
    }

    /// Creates a secret holding `text` (an installed location's own secret); a secret that
    /// exists already is a [`WriteError::Conflict`].
    pub(crate) async fn create(&self, id: &str, text: &str) -> Result<Option<String>, WriteError> {
        let result = self
            .client
            .create_secret()
            .name(id)
            .secret_string(text)
            .send()
            .await;
        result
            .map(|output| output.version_id)
            .map_err(|error| write_error(id, error))
    }
}

/// Why a write (or a create) of `id` failed: another writer first (`ResourceExistsException`),
/// too many versions for now, or as a read's fault would be.
fn write_error<E>(id: &str, error: SdkError<E>) -> WriteError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = match &error {
        SdkError::ServiceError(context) => context.err().code(),
        _ => None,
    };
    match code {
        Some("ResourceExistsException") => WriteError::Conflict,
        // Too many versions of the secret for now (frequent refreshes of one map secret): it
        // passes as old versions age out, so the write is retried later.
        Some("LimitExceededException") => WriteError::Transient {
            id: id.to_owned(),
            source: "Secrets Manager refused the write: LimitExceededException (too many versions)"
                .into(),
        },
        _ => match classify(id, error) {
            ReadError::Transient { id, source } => WriteError::Transient { id, source },
            ReadError::NotFound { id } => WriteError::Denied {
                id,
                problem: "it does not exist".into(),
            },
            ReadError::Config { id, problem } => WriteError::Denied { id, problem },
        },
    }
}

/// A SecretString and the version it was read from.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    /// The value.
    pub text: Redacted<String>,
    /// Its `VersionId`.
    pub version_id: Option<String>,
}

/// Why a secret could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// Another writer already wrote a successor of the version we read.
    #[error("the secret changed since it was read")]
    Conflict,
    /// A lasting fault: access denied, secret gone, ….
    #[error("secret {id} cannot be written: {problem}")]
    Denied {
        /// The secret id.
        id: String,
        /// What is wrong, safe to log.
        problem: String,
    },
    /// Throttling, timeouts, network faults, 5xx.
    #[error("secret {id} cannot be written for now")]
    Transient {
        /// The secret id.
        id: String,
        /// The SDK's error, for the log.
        #[source]
        source: BoxError,
    },
}

fn classify<E>(id: &str, error: SdkError<E>) -> ReadError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let id = id.to_owned();
    match super::classify(error) {
        Fault::Missing => ReadError::NotFound { id },
        Fault::Lasting(problem) => ReadError::Config { id, problem },
        Fault::Passing(source) => ReadError::Transient { id, source },
    }
}
