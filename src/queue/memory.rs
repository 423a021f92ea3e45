//! A queue in this process's memory, for `serve --queue` and `demo --queue`: messages wait
//! until they are visible, come back after the delay the worker asks for, and go to a
//! dead-letter list after `max_receives` receives — as SQS with a redrive policy does.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// One message as the queue holds it.
#[derive(Debug, Clone)]
pub struct Held {
    /// Its id (`m-1`, `m-2`, …).
    pub id: String,
    /// The body.
    pub body: String,
    /// Receives so far, this one included once handed out.
    pub receives: u32,
    visible_at: Instant,
}

/// Messages in memory.
#[derive(Debug)]
pub struct MemoryQueue {
    waiting: Mutex<VecDeque<Held>>,
    dead: Mutex<Vec<Held>>,
    arrived: Notify,
    next_id: Mutex<u64>,
    max_receives: u32,
    /// Batches and messages handed over so far: what a worker's invocations would be.
    handed_over: Mutex<(u64, u64)>,
}

impl MemoryQueue {
    /// An empty queue whose messages go to the dead-letter list after `max_receives` receives.
    pub fn new(max_receives: u32) -> Self {
        Self {
            waiting: Mutex::new(VecDeque::new()),
            dead: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            next_id: Mutex::new(0),
            max_receives: max_receives.max(1),
            handed_over: Mutex::new((0, 0)),
        }
    }

    /// Adds a message, visible at once.
    pub fn send(&self, body: String) {
        self.send_delayed(body, Duration::ZERO);
    }

    /// Adds a message visible only after `delay`.
    pub fn send_delayed(&self, body: String, delay: Duration) {
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            format!("m-{next}")
        };
        lock(&self.waiting).push_back(Held {
            id,
            body,
            receives: 0,
            visible_at: Instant::now()
                .checked_add(delay)
                .unwrap_or_else(Instant::now),
        });
        self.arrived.notify_one();
    }

    /// Up to `max` visible messages, waiting until there is one. Their receive counts go up;
    /// one received more than `max_receives` times is moved to the dead-letter list instead.
    pub async fn receive(&self, max: usize) -> Vec<Held> {
        loop {
            let next_visible = {
                let mut waiting = lock(&self.waiting);
                let now = Instant::now();
                let mut batch = Vec::new();
                let mut kept = VecDeque::new();
                while let Some(mut held) = waiting.pop_front() {
                    if batch.len() < max && held.visible_at <= now {
                        held.receives += 1;
                        if held.receives > self.max_receives {
                            lock(&self.dead).push(held);
                        } else {
                            batch.push(held);
                        }
                    } else {
                        kept.push_back(held);
                    }
                }
                *waiting = kept;
                if !batch.is_empty() {
                    let mut handed_over = lock(&self.handed_over);
                    handed_over.0 += 1;
                    handed_over.1 += batch.len() as u64;
                    return batch;
                }
                waiting.iter().map(|h| h.visible_at).min()
            };
            let wake = next_visible.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = self.arrived.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Batches and messages received so far (each batch is what one worker invocation
    /// would be handed).
    pub fn handed_over(&self) -> (u64, u64) {
        *lock(&self.handed_over)
    }

    /// Puts a received message back, visible after `delay`.
    pub fn retry_later(&self, held: Held, delay: Duration) {
        let visible_at = Instant::now()
            .checked_add(delay.min(super::MAX_VISIBILITY))
            .unwrap_or_else(Instant::now);
        lock(&self.waiting).push_back(Held { visible_at, ..held });
        self.arrived.notify_one();
    }

    /// Messages waiting (visible or not).
    pub fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }

    /// Messages moved to the dead-letter list.
    pub fn dead_letters(&self) -> Vec<Held> {
        lock(&self.dead).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_out_messages_and_brings_them_back_after_the_delay() {
        let queue = MemoryQueue::new(2);
        queue.send("a".into());
        let first = queue.receive(10).await;
        assert_eq!((first.len(), first[0].receives), (1, 1));
        queue.retry_later(first[0].clone(), Duration::from_millis(50));
        let started = Instant::now();
        let again = queue.receive(10).await;
        assert!(started.elapsed() >= Duration::from_millis(45));
        assert_eq!(again[0].receives, 2);
        queue.retry_later(again[0].clone(), Duration::ZERO);
        queue.send("b".into());
        let last = queue.receive(10).await;
        assert_eq!(
            last.iter().map(|h| h.body.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(
            queue.dead_letters().len(),
            1,
            "a received more than twice is dead"
        );
    }
}
