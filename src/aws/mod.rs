//! The AWS services the function talks to, each through the official SDK client, with its
//! failures sorted into what the caller should do.
//!
//! - [`http_client`]: the SDK's HTTP client, sending through the function's one reqwest client.
//! - [`clients`]: the clients a configuration needs (and only those), built once.
//! - [`secrets_manager`]: token and inbound-auth secrets (read, and conditional writes of
//!   refreshed OAuth pairs).
//!
//! DynamoDB and SQS are used through their SDK clients by [`crate::records`] and
//! [`crate::queue`], with the same [`classify`].

pub mod clients;
pub mod http_client;
pub(crate) mod secrets_manager;

pub use clients::{AwsClients, Services, SqsClient};
pub use http_client::sdk_http_client;
pub use secrets_manager::SecretsClient;

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::BoxError;

/// How a call to an AWS service failed, by what the caller should do about it.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The resource (secret, table, queue) does not exist.
    Missing,
    /// A lasting fault the operator must fix (access denied, a malformed request, …); safe to
    /// log.
    Lasting(String),
    /// Throttling, timeouts, network faults, 5xx: worth retrying later.
    Passing(BoxError),
}

/// Sorts an SDK error. Service errors are told apart by their code (throttling answers come
/// with 400 as often as 429) and status; anything that never got a service answer is passing,
/// but a request the SDK could not even build is lasting.
pub(crate) fn classify<E>(error: SdkError<E>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or("Unknown");
            let status = context.raw().status().as_u16();
            if is_missing(code) {
                Fault::Missing
            } else if status == 429 || status >= 500 || is_passing(code) {
                Fault::Passing(DisplayErrorContext(error).to_string().into())
            } else {
                Fault::Lasting(format!("the service answered {code}"))
            }
        }
        SdkError::ConstructionFailure(_) => Fault::Lasting(DisplayErrorContext(error).to_string()),
        _ => Fault::Passing(DisplayErrorContext(error).to_string().into()),
    }
}

fn is_missing(code: &str) -> bool {
    matches!(
        code,
        "ResourceNotFoundException"
            | "QueueDoesNotExist"
            | "AWS.SimpleQueueService.NonExistentQueue"
    )
}

fn is_passing(code: &str) -> bool {
    code.contains("Throttl")
        || matches!(
            code,
            "InternalServiceError"
                | "InternalServerError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "LimitExceededException"
                | "TransactionConflictException"
                | "KmsThrottled"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_passing_from_lasting_and_missing_codes() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestThrottled",
            "InternalServerError",
            "LimitExceededException",
        ] {
            assert!(is_passing(code), "{code}");
        }
        for code in [
            "AccessDeniedException",
            "ValidationException",
            "UnrecognizedClientException",
        ] {
            assert!(!is_passing(code) && !is_missing(code), "{code}");
        }
        for code in ["ResourceNotFoundException", "QueueDoesNotExist"] {
            assert!(is_missing(code), "{code}");
        }
    }
}
