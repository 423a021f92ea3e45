//! The in-memory queue's loop: drains the queue of `serve --queue` and `demo --queue` through
//! the same [`work_batch`] as the SQS front, putting back what should come later, as SQS does
//! with a visibility timeout.

use std::sync::Arc;

use crate::app::App;
use crate::fronts::work_batch;
use crate::queue::memory::{Held, MemoryQueue};
use crate::queue::{Disposition, ReceivedMessage};
use crate::request::Invocation;

/// Messages handed over at once (SQS's default batch size).
pub const BATCH_SIZE: usize = 10;

/// Drains the in-memory queue of `app` until the task is dropped.
pub async fn run(app: Arc<App>, queue: Arc<MemoryQueue>) {
    loop {
        let batch = queue.receive(BATCH_SIZE).await;
        drain_batch(&app, &queue, batch).await;
    }
}

/// Works one batch; a message to come back later is put back with its delay.
async fn drain_batch(app: &App, queue: &MemoryQueue, batch: Vec<Held>) {
    let invocation = Invocation::of(None);
    let received: Vec<ReceivedMessage> = batch
        .iter()
        .map(|held| ReceivedMessage {
            message_id: held.id.clone(),
            body: held.body.clone(),
            receives: held.receives,
        })
        .collect();
    let (delivery, observer) = app.delivery_and_observer();
    let dispositions = work_batch(delivery, observer, &received, &invocation).await;
    for (held, disposition) in batch.into_iter().zip(dispositions) {
        if let Disposition::Later(delay) = disposition {
            queue.retry_later(held, delay);
        }
    }
}
