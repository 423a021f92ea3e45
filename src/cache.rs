//! Per-key state behind one async lock per key, and the TTL cache built on it.
//!
//! Lambda reuses a warm instance for many invocations, so what is read once (a secret) serves
//! every invocation for a while. [`KeyedLocks`] gives each key (a secret id) its own async
//! mutex, so work on one key is single-flight while other keys go on; [`SingleFlightCache`]
//! keeps a value per key for a TTL on top of it: concurrent requests for the same key wait for
//! one load, and failed loads are not cached, so a fixed secret is picked up on the next request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One async mutex per key, each holding a `T`, created on first use.
pub(crate) struct KeyedLocks<T> {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<T>>>>,
}

impl<T: Default> KeyedLocks<T> {
    /// No keys yet.
    pub(crate) fn new() -> Self {
        Self {
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The lock for `key` (the same one for every caller), created holding `T::default()`.
    pub(crate) fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<T>> {
        // A poisoned lock only means another thread panicked while inserting; the map is intact.
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(locks.entry(key.to_owned()).or_default())
    }
}

impl<T: Default> Default for KeyedLocks<T> {
    fn default() -> Self {
        Self::new()
    }
}

struct Entry<T> {
    value: Arc<T>,
    loaded_at: Instant,
}

/// A TTL cache keyed by string (a secret id), loading each key once however many wait.
pub(crate) struct SingleFlightCache<T> {
    ttl: Duration,
    entries: KeyedLocks<Option<Entry<T>>>,
}

impl<T> SingleFlightCache<T> {
    /// A cache whose entries stay fresh for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: KeyedLocks::new(),
        }
    }

    /// Returns the fresh cached value, or loads it (once, however many callers are waiting).
    pub(crate) async fn get<E, F, Fut>(&self, key: &str, load: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let lock = self.entries.lock_for(key);
        let mut entry = lock.lock().await;
        if let Some(current) = entry.as_ref() {
            if current.loaded_at.elapsed() < self.ttl {
                return Ok(Arc::clone(&current.value));
            }
        }
        let value = Arc::new(load().await?);
        *entry = Some(Entry {
            value: Arc::clone(&value),
            loaded_at: Instant::now(),
        });
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn hands_every_caller_the_same_lock_for_a_key_and_another_for_another_key() {
        let locks: KeyedLocks<u32> = KeyedLocks::new();
        *locks.lock_for("a").lock().await += 1;
        *locks.lock_for("a").lock().await += 1;
        assert_eq!(*locks.lock_for("a").lock().await, 2);
        assert_eq!(*locks.lock_for("b").lock().await, 0);
        let held = locks.lock_for("a");
        let _guard = held.lock().await;
        assert!(locks.lock_for("a").try_lock().is_err(), "one lock per key");
        assert!(
            locks.lock_for("b").try_lock().is_ok(),
            "keys do not block each other"
        );
    }

    #[tokio::test]
    async fn serves_a_fresh_value_without_loading_again() {
        let cache = SingleFlightCache::new(Duration::from_secs(60));
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
        let cache = SingleFlightCache::new(Duration::ZERO);
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
        let cache = Arc::new(SingleFlightCache::new(Duration::from_secs(60)));
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
    async fn does_not_cache_failures() {
        let cache = SingleFlightCache::new(Duration::from_secs(60));
        assert!(cache
            .get("k", || async { Err::<u8, _>("down") })
            .await
            .is_err());
        assert_eq!(
            *cache.get("k", || async { Ok::<_, &str>(7) }).await.unwrap(),
            7
        );
    }
}
