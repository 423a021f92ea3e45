//! Records in memory behind the simulation's faults (tests only): every conditional write can
//! fail, lose its answer after it was done, or see its caller die before or after it.

use std::sync::Arc;

use super::memory::MemoryRecords;
use super::record::{FinalizationId, Record};
use super::StoreError;
use crate::faults::{die, Fault, Io};

/// The simulation's record store.
pub struct SimRecords {
    memory: MemoryRecords,
    io: Arc<Io>,
}

impl SimRecords {
    pub(crate) fn new(io: Arc<Io>) -> Self {
        Self {
            memory: MemoryRecords::new(),
            io,
        }
    }

    /// The record as stored, read without faults (for the simulation's checks).
    pub(crate) fn stored(&self, id: &FinalizationId) -> Option<Record> {
        self.memory.get(id)
    }

    /// One write through the faults: `write` runs unless the call fails or its caller dies
    /// first; its answer is then lost, or its caller dies, as the seed says.
    async fn write<T>(
        &self,
        what: &str,
        write: impl FnOnce(&MemoryRecords) -> T,
    ) -> Result<T, StoreError> {
        if !self.io.store_write() {
            return Err(unavailable("the store is down"));
        }
        match self.io.before(what).await {
            Fault::Fail => return Err(unavailable("the write failed")),
            Fault::Crash => return die().await,
            Fault::None | Fault::LoseAnswer => {}
        }
        let done = write(&self.memory);
        match self.io.after(what).await {
            Fault::LoseAnswer => Err(unavailable("the write was done but its answer was lost")),
            Fault::Crash => die().await,
            Fault::None | Fault::Fail => Ok(done),
        }
    }

    pub(super) async fn get(&self, id: &FinalizationId) -> Result<Option<Record>, StoreError> {
        match self.io.before("get").await {
            Fault::Fail => Err(unavailable("the read failed")),
            Fault::Crash => die().await,
            Fault::None | Fault::LoseAnswer => Ok(self.memory.get(id)),
        }
    }

    pub(super) async fn create(
        &self,
        record: &Record,
        now_ms: u64,
    ) -> Result<Option<Record>, StoreError> {
        self.write("create", |memory| memory.create(record, now_ms))
            .await
    }

    pub(super) async fn replace(&self, record: &Record, seen: u64) -> Result<bool, StoreError> {
        self.write("replace", |memory| memory.replace(record, seen))
            .await
    }

    pub(super) async fn write_owned(&self, record: &Record) -> Result<bool, StoreError> {
        self.write("write_owned", |memory| memory.write_owned(record))
            .await
    }
}

fn unavailable(what: &str) -> StoreError {
    StoreError::Unavailable(what.to_owned().into())
}
