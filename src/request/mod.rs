//! The ground floor: what a finalize request is, and the facts of the invocation that carries
//! it. Everything above names a request through these types; this module imports nothing of
//! the crate but its own submodules.
//!
//! - [`ids`]: [`LocationId`](ids::LocationId), [`CsvId`](ids::CsvId) and
//!   [`UserId`](ids::UserId), which cannot hold an id unsafe in a URL.
//! - [`key`]: the [`IdempotencyKey`](key::IdempotencyKey) a request's record is found by.
//! - [`deadline`]: the Lambda deadline, the HighLevel [`Budget`](deadline::Budget) and the
//!   clock.
//! - [`app_event`]: HighLevel's app webhooks (`INSTALL`, `UNINSTALL`), read.
//! - [`callback`]: the completion callback's [`CallbackUrl`](callback::CallbackUrl), and the
//!   addresses a callback may never reach.

pub mod app_event;
pub mod callback;
pub mod deadline;
pub mod ids;
pub mod key;

use std::sync::atomic::{AtomicU64, Ordering};

use deadline::{unix_now, Deadline};
use ids::{CsvId, LocationId, UserId};

/// A validated finalize request: which CSV import of which sub-account, for which user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizeRequest {
    /// The sub-account.
    pub location_id: LocationId,
    /// The CSV import.
    pub csv_id: CsvId,
    /// The user to attribute the posts to, if one is known.
    pub user_id: Option<UserId>,
}

/// The facts of one invocation that the work must respect.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Lambda's request id (or a local one), for the response and the log.
    pub request_id: String,
    /// When the function must have answered.
    pub(crate) deadline: Deadline,
}

impl Invocation {
    /// The invocation Lambda describes in `context`: its request id and deadline. Without one
    /// (the local server, the in-memory queue's loop, a context with no request id) a local
    /// invocation with a fresh `local-…` id and no deadline.
    pub fn of(context: Option<&lambda_http::lambda_runtime::Context>) -> Self {
        match context {
            Some(context) if !context.request_id.is_empty() => Self {
                request_id: context.request_id.clone(),
                deadline: Deadline::from_lambda_ms(context.deadline),
            },
            _ => Self {
                request_id: local_request_id(),
                deadline: Deadline::NONE,
            },
        }
    }
}

/// `local-…`: unique within the process, and unlikely to repeat across runs.
fn local_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = unix_now().as_nanos() as u64;
    format!("local-{:016x}", nanos.rotate_left(17) ^ n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_takes_lambdas_request_id_and_deadline() {
        let mut context = lambda_http::lambda_runtime::Context::default();
        context.request_id = "req-1".into();
        context.deadline = u64::try_from(unix_now().as_millis()).unwrap() + 10_000;
        let invocation = Invocation::of(Some(&context));
        assert_eq!(invocation.request_id, "req-1");
        assert!(invocation.deadline.instant().is_some());
    }

    #[test]
    fn an_invocation_without_lambda_gets_a_fresh_local_id_and_no_deadline() {
        let (a, b) = (Invocation::of(None), Invocation::of(None));
        assert!(a.request_id.starts_with("local-"), "{}", a.request_id);
        assert_ne!(a.request_id, b.request_id);
        assert_eq!(a.deadline, Deadline::NONE);
        let empty = lambda_http::lambda_runtime::Context::default();
        assert!(Invocation::of(Some(&empty))
            .request_id
            .starts_with("local-"));
    }
}
