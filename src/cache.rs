//! An in-memory TTL cache whose loads are single-flight per key.
//!
//! Lambda reuses a warm instance for many invocations, so a secret read once serves every
//! invocation for `SECRET_CACHE_TTL_SECS`. Concurrent requests for the same key wait on one
//! async mutex per key: the first loads, the rest find the fresh value. Failed loads are not
//! cached, so a fixed secret is picked up on the next request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Entry<T> {
    value: Arc<T>,
    loaded_at: Instant,
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<Entry<T>>>>;

/// A TTL cache keyed by string (a secret id).
pub struct SingleFlightCache<T> {
    ttl: Duration,
    slots: Mutex<HashMap<String, Slot<T>>>,
}

impl<T> SingleFlightCache<T> {
    /// A cache whose entries stay fresh for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &str) -> Slot<T> {
        // A poisoned lock only means another thread panicked while inserting; the map is intact.
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(slots.entry(key.to_owned()).or_default())
    }

    /// Returns the fresh cached value, or loads it (once, however many callers are waiting).
    pub async fn get<E, F, Fut>(&self, key: &str, load: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let slot = self.slot(key);
        let mut entry = slot.lock().await;
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
