//! Per-key state behind one async lock per key, and the TTL cache built on it.
//!
//! Lambda reuses a warm instance for many invocations, so what is read once (a secret) serves
//! every invocation for a while. [`KeyedLocks`] gives each key (a secret id) its own async
//! mutex, so work on one key is single-flight while other keys go on, and keeps at most a
//! bounded number of keys, forgetting the least recently used one that nobody holds and that
//! may be forgotten. [`SingleFlightCache`] keeps a value per key for a TTL on top of it:
//! concurrent requests for the same key wait for one load, and a failed load is remembered only
//! briefly, so a fixed secret is picked up soon and a failing one is not read on every request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys kept by default: enough for every location of a large agency, small for memory.
pub(crate) const DEFAULT_CAPACITY: usize = 4096;

/// Whether a key's state may be dropped to make room (nothing in it that must outlive it).
pub(crate) trait Forgettable {
    /// True when dropping this state loses nothing that matters.
    fn forgettable(&self) -> bool;
}

struct Slot<T> {
    lock: Arc<tokio::sync::Mutex<T>>,
    last_used: u64,
}

struct Slots<T> {
    map: HashMap<String, Slot<T>>,
    clock: u64,
}

/// One async mutex per key, each holding a `T`, created on first use; at most `capacity` keys
/// while any of them can be forgotten.
pub(crate) struct KeyedLocks<T> {
    slots: Mutex<Slots<T>>,
    capacity: usize,
}

impl<T: Default + Forgettable> KeyedLocks<T> {
    /// No keys yet, room for [`DEFAULT_CAPACITY`].
    pub(crate) fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// No keys yet, room for `capacity`.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            slots: Mutex::new(Slots {
                map: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    /// The lock for `key` (the same one for every caller while it is kept), created holding
    /// `T::default()`.
    pub(crate) fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<T>> {
        // A poisoned lock only means another thread panicked while inserting; the map is intact.
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.clock += 1;
        let now = slots.clock;
        if let Some(slot) = slots.map.get_mut(key) {
            slot.last_used = now;
            return Arc::clone(&slot.lock);
        }
        if slots.map.len() >= self.capacity {
            forget_least_recently_used(&mut slots.map);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(T::default()));
        slots.map.insert(
            key.to_owned(),
            Slot {
                lock: Arc::clone(&lock),
                last_used: now,
            },
        );
        lock
    }

    /// Keys kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.lock().map(|s| s.map.len()).unwrap_or(0)
    }
}

/// Drops the least recently used key that nobody holds and whose state may be forgotten; keeps
/// them all if none may go (a refreshed OAuth pair not yet written is never dropped).
fn forget_least_recently_used<T: Forgettable>(map: &mut HashMap<String, Slot<T>>) {
    let victim = map
        .iter()
        .filter(|(_, slot)| Arc::strong_count(&slot.lock) == 1)
        .filter(|(_, slot)| slot.lock.try_lock().is_ok_and(|state| state.forgettable()))
        .min_by_key(|(_, slot)| slot.last_used)
        .map(|(key, _)| key.clone());
    if let Some(key) = victim {
        map.remove(&key);
    }
}

impl<T: Default + Forgettable> Default for KeyedLocks<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a key of the cache holds: nothing yet, a value, or a recent failure.
#[derive(Default)]
enum Entry<T, E> {
    #[default]
    Empty,
    Loaded {
        value: Arc<T>,
        at: Instant,
    },
    Failed {
        error: E,
        at: Instant,
    },
}

impl<T, E> Forgettable for Entry<T, E> {
    fn forgettable(&self) -> bool {
        true
    }
}

/// A TTL cache keyed by string (a secret id), loading each key once however many wait.
pub(crate) struct SingleFlightCache<T, E> {
    ttl: Duration,
    failure_ttl: Duration,
    entries: KeyedLocks<Entry<T, E>>,
}

impl<T, E: Clone> SingleFlightCache<T, E> {
    /// A cache whose values stay fresh for `ttl`, and whose failures are answered again for
    /// `failure_ttl` without loading.
    pub(crate) fn new(ttl: Duration, failure_ttl: Duration) -> Self {
        Self {
            ttl,
            failure_ttl,
            entries: KeyedLocks::new(),
        }
    }

    /// Returns the fresh cached value (or the recent failure), or loads it: once, however many
    /// callers are waiting.
    pub(crate) async fn get<F, Fut>(&self, key: &str, load: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let lock = self.entries.lock_for(key);
        let mut entry = lock.lock().await;
        match &*entry {
            Entry::Loaded { value, at } if at.elapsed() < self.ttl => return Ok(Arc::clone(value)),
            Entry::Failed { error, at } if at.elapsed() < self.failure_ttl => {
                return Err(error.clone())
            }
            _ => {}
        }
        match load().await {
            Ok(value) => {
                let value = Arc::new(value);
                *entry = Entry::Loaded {
                    value: Arc::clone(&value),
                    at: Instant::now(),
                };
                Ok(value)
            }
            Err(error) => {
                *entry = Entry::Failed {
                    error: error.clone(),
                    at: Instant::now(),
                };
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A counter that may be forgotten while `keep` is false.
    #[derive(Default)]
    struct Counter {
        n: u32,
        keep: bool,
    }

    impl Forgettable for Counter {
        fn forgettable(&self) -> bool {
            !self.keep
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn hands_every_caller_the_same_lock_for_a_key_and_another_for_another_key() {
        let locks: KeyedLocks<Counter> = KeyedLocks::new();
        locks.lock_for("a").lock().await.n += 1;
        locks.lock_for("a").lock().await.n += 1;
        assert_eq!(locks.lock_for("a").lock().await.n, 2);
        assert_eq!(locks.lock_for("b").lock().await.n, 0);
        let held = locks.lock_for("a");
        let _guard = held.lock().await;
        assert!(locks.lock_for("a").try_lock().is_err(), "one lock per key");
        assert!(
            locks.lock_for("b").try_lock().is_ok(),
            "keys do not block each other"
        );
    }

    #[tokio::test]
    async fn keeps_at_most_its_capacity_forgetting_the_least_recently_used() {
        let locks: KeyedLocks<Counter> = KeyedLocks::with_capacity(3);
        for key in ["a", "b", "c"] {
            locks.lock_for(key).lock().await.n = 1;
        }
        locks.lock_for("a"); // a is now more recent than b
        locks.lock_for("d");
        assert_eq!(locks.len(), 3);
        assert_eq!(locks.lock_for("a").lock().await.n, 1, "a was kept");
        assert_eq!(locks.lock_for("b").lock().await.n, 0, "b was forgotten");
        for i in 0..1000 {
            locks.lock_for(&format!("k{i}"));
        }
        assert_eq!(locks.len(), 3);
    }

    #[tokio::test]
    async fn never_forgets_a_key_in_use_or_one_that_must_be_kept() {
        let locks: KeyedLocks<Counter> = KeyedLocks::with_capacity(2);
        locks.lock_for("unwritten").lock().await.keep = true;
        let held = locks.lock_for("held");
        for i in 0..10 {
            locks.lock_for(&format!("k{i}"));
        }
        assert!(locks.lock_for("unwritten").lock().await.keep, "kept");
        assert!(
            Arc::ptr_eq(&held, &locks.lock_for("held")),
            "the held lock is the same"
        );
    }

    #[tokio::test]
    async fn serves_a_fresh_value_without_loading_again() {
        let cache = SingleFlightCache::new(HOUR, HOUR);
        let loads = AtomicUsize::new(0);
        for _ in 0..3 {
            let got = cache
                .get("k", || async {
                    Ok::<_, ()>(loads.fetch_add(1, Ordering::SeqCst))
                })
                .await
                .unwrap();
            assert_eq!(*got, 0);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn loads_again_after_the_ttl() {
        let cache = SingleFlightCache::new(Duration::ZERO, Duration::ZERO);
        let loads = AtomicUsize::new(0);
        for _ in 0..2 {
            cache
                .get("k", || async {
                    Ok::<_, ()>(loads.fetch_add(1, Ordering::SeqCst))
                })
                .await
                .unwrap();
        }
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_load() {
        let cache = Arc::new(SingleFlightCache::new(HOUR, HOUR));
        let loads = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, loads) = (Arc::clone(&cache), Arc::clone(&loads));
                tokio::spawn(async move {
                    cache
                        .get("k", || async {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok::<_, ()>(loads.fetch_add(1, Ordering::SeqCst))
                        })
                        .await
                        .map(|c| *c)
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(0));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn remembers_a_failure_only_briefly() {
        let cache = SingleFlightCache::new(HOUR, Duration::from_millis(50));
        let loads = AtomicUsize::new(0);
        let failing = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Err::<u8, _>("down")
        };
        assert_eq!(cache.get("k", failing).await, Err("down"));
        assert_eq!(cache.get("k", failing).await, Err("down"));
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "the failure was remembered"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            *cache.get("k", || async { Ok::<_, &str>(7) }).await.unwrap(),
            7,
            "a fixed secret is picked up once the failure is old"
        );
    }
}
