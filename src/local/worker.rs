//! The local tools' queue worker: drains the in-memory queue of `serve --queue` and
//! `demo --queue` through the same [`Delivery::work`] as the Lambda worker, putting back what
//! should come later, as SQS does with a visibility timeout.

use std::sync::Arc;

use crate::app::App;
use crate::deadline::Deadline;
use crate::delivery::worker::{Received, Settled};
use crate::delivery::Delivery;
use crate::queue::memory::{Held, MemoryQueue};
use crate::service::Invocation;

/// Messages handed to the worker at once (SQS's default batch size).
pub const BATCH_SIZE: usize = 10;

/// Works the in-memory queue of `app` until the task is dropped.
pub async fn run(app: Arc<App>, queue: Arc<MemoryQueue>) {
    loop {
        let batch = queue.receive(BATCH_SIZE).await;
        work_batch(app.delivery(), &queue, batch).await;
    }
}

/// Works one batch; a message to come back later is put back with its delay.
async fn work_batch(delivery: &Delivery, queue: &MemoryQueue, batch: Vec<Held>) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let invocation = Invocation {
        request_id: format!("local-worker-{n}"),
        deadline: Deadline::NONE,
    };
    let received: Vec<Received> = batch
        .iter()
        .map(|held| Received {
            message_id: held.id.clone(),
            body: held.body.clone(),
            receives: held.receives,
        })
        .collect();
    let settled = delivery.work(&received, &invocation).await;
    for (held, settled) in batch.into_iter().zip(settled) {
        if let Settled::Later(delay) = settled {
            queue.retry_later(held, delay);
        }
    }
}
