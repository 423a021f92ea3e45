//! Finalization records in this process's memory, for the local tools (`serve`, `demo`): the
//! same conditional primitives as the table, each atomic under one lock.

use std::collections::HashMap;
use std::sync::Mutex;

use super::record::{FinalizationId, Record};

/// Records kept in memory.
#[derive(Default)]
pub struct MemoryRecords {
    records: Mutex<HashMap<FinalizationId, Record>>,
}

impl MemoryRecords {
    /// No records yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, work: impl FnOnce(&mut HashMap<FinalizationId, Record>) -> T) -> T {
        // A poisoned lock only means a thread panicked while holding it; the map is intact.
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut records)
    }

    pub(super) fn get(&self, id: &FinalizationId) -> Option<Record> {
        self.with(|records| records.get(id).cloned())
    }

    pub(super) fn create(&self, record: &Record, now_ms: u64) -> Option<Record> {
        self.with(|records| match records.get(&record.id) {
            Some(existing) if existing.expires_at.saturating_mul(1000) > now_ms => {
                Some(existing.clone())
            }
            _ => {
                records.insert(record.id.clone(), record.clone());
                None
            }
        })
    }

    pub(super) fn replace(&self, record: &Record, seen: u64) -> bool {
        self.with(|records| match records.get(&record.id) {
            Some(existing) if existing.version == seen => {
                records.insert(record.id.clone(), record.clone());
                true
            }
            _ => false,
        })
    }

    pub(super) fn write_owned(&self, record: &Record) -> bool {
        self.with(|records| match records.get(&record.id) {
            Some(existing) if existing.owner == record.owner => {
                records.insert(record.id.clone(), record.clone());
                true
            }
            _ => false,
        })
    }
}
