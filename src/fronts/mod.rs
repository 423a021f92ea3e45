//! The fronts: where requests and messages come in, each thin, each handing delivery one parsed
//! thing and writing one audit line per request or message through the [`Observer`] that the
//! app builds for them.
//!
//! - [`http`]: the HTTP front (Lambda HTTP events and the local server): the contract's checks
//!   in order, delivery, one response.
//! - [`sqs_batch`]: queue mode's worker front: an SQS batch to delivery, the batch answer back.
//!
//! The Lambda runtime loop (`app::lambda`) picks the front for each event; the local server
//! calls the HTTP front too, and the local tools' in-memory queue loop (`local::drain`) works
//! its batches through [`work_batch`], as the SQS front does.

pub mod http;
pub mod sqs_batch;

use crate::delivery::Delivery;
use crate::observe::Observer;
use crate::queue::{Disposition, ReceivedMessage};
use crate::request::Invocation;

/// Works a batch of queued messages and writes each one's audit line and metrics; what to do
/// with each message, in order.
pub(crate) async fn work_batch(
    delivery: &Delivery,
    observer: &Observer,
    batch: &[ReceivedMessage],
    invocation: &Invocation,
) -> Vec<Disposition> {
    delivery
        .work(batch, invocation)
        .await
        .into_iter()
        .map(|worked| {
            observer.record(&worked.audit, worked.measures);
            worked.disposition
        })
        .collect()
}
