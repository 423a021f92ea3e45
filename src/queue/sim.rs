//! A queue behind the simulation's faults (tests only): a send can fail, be done with its
//! answer lost, or see its caller die before or after it. The simulation's driver takes what
//! was sent and plays SQS: visibility, receive counts, the dead-letter queue.

use std::sync::{Arc, Mutex};

use super::{Message, QueueError};
use crate::faults::{die, Fault, Io};

/// The simulation's queue.
pub struct SimQueue {
    sent: Mutex<Vec<String>>,
    io: Arc<Io>,
}

impl SimQueue {
    pub(crate) fn new(io: Arc<Io>) -> Self {
        Self {
            sent: Mutex::new(Vec::new()),
            io,
        }
    }

    pub(super) async fn send(&self, message: &Message) -> Result<(), QueueError> {
        self.send_body(message.to_json()).await
    }

    pub(super) async fn send_body(&self, body: String) -> Result<(), QueueError> {
        match self.io.before("send").await {
            Fault::Fail => return Err(QueueError::Unavailable("the send failed".into())),
            Fault::Crash => return die().await,
            Fault::None | Fault::LoseAnswer => {}
        }
        self.lock().push(body);
        match self.io.after("send").await {
            Fault::LoseAnswer => Err(QueueError::Unavailable(
                "the message was sent but the answer was lost".into(),
            )),
            Fault::Crash => die().await,
            Fault::None | Fault::Fail => Ok(()),
        }
    }

    /// The bodies sent since the last call.
    pub(crate) fn take_sent(&self) -> Vec<String> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }
}
