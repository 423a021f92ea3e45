//! An in-memory TTL cache whose loads are single-flight per key.
//!
//! Lambda reuses a warm instance for many invocations, so a secret read once serves every
//! invocation for `SECRET_CACHE_TTL_SECS`. Concurrent requests for the same key wait on one
//! async mutex per key: the first loads, the rest find the fresh value. Failed loads are not
//! cached, so a fixed secret is picked up on the next request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A cached value with the generation it was loaded in.
#[derive(Debug)]
pub struct Cached<T> {
    /// The value.
    pub value: Arc<T>,
    /// Changes on every load; lets a caller ask to reload only what it actually saw.
    pub generation: u64,
}

impl<T> Clone for Cached<T> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            generation: self.generation,
        }
    }
}

struct Entry<T> {
    cached: Cached<T>,
    loaded_at: Instant,
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<Entry<T>>>>;

/// A TTL cache keyed by string (a secret id).
pub struct SingleFlightCache<T> {
    ttl: Duration,
    slots: Mutex<HashMap<String, Slot<T>>>,
    generations: AtomicU64,
}

impl<T> SingleFlightCache<T> {
    /// A cache whose entries stay fresh for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(1),
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
    pub async fn get<E, F, Fut>(&self, key: &str, load: F) -> Result<Cached<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_unless(key, None, load).await
    }

    /// Reloads the value unless it was already reloaded since the caller saw `seen_generation`
    /// (then the newer value is returned without another load).
    pub async fn reload<E, F, Fut>(
        &self,
        key: &str,
        seen_generation: u64,
        load: F,
    ) -> Result<Cached<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_unless(key, Some(seen_generation), load).await
    }

    async fn get_unless<E, F, Fut>(
        &self,
        key: &str,
        stale: Option<u64>,
        load: F,
    ) -> Result<Cached<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let slot = self.slot(key);
        let mut entry = slot.lock().await;
        if let Some(current) = entry.as_ref() {
            let fresh = current.loaded_at.elapsed() < self.ttl;
            let reusable = match stale {
                Some(seen) => current.cached.generation != seen,
                None => fresh,
            };
            if reusable {
                return Ok(current.cached.clone());
            }
        }
        let value = load().await?;
        let cached = Cached {
            value: Arc::new(value),
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
        };
        *entry = Some(Entry {
            cached: cached.clone(),
            loaded_at: Instant::now(),
        });
        Ok(cached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

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
            assert_eq!(*got.value, 0);
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
                        .map(|c| *c.value)
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(0));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn reload_skips_the_load_when_someone_already_reloaded() {
        let cache = SingleFlightCache::new(Duration::from_secs(60));
        let first = cache
            .get("k", || async { Ok::<_, ()>("old") })
            .await
            .unwrap();
        let second = cache
            .reload("k", first.generation, || async { Ok::<_, ()>("new") })
            .await
            .unwrap();
        assert_eq!(*second.value, "new");
        let third = cache
            .reload("k", first.generation, || async { Ok::<_, ()>("newer") })
            .await
            .unwrap();
        assert_eq!(*third.value, "new");
    }

    #[tokio::test]
    async fn does_not_cache_failures() {
        let cache = SingleFlightCache::new(Duration::from_secs(60));
        assert!(cache
            .get("k", || async { Err::<u8, _>("down") })
            .await
            .is_err());
        assert_eq!(
            *cache
                .get("k", || async { Ok::<_, &str>(7) })
                .await
                .unwrap()
                .value,
            7
        );
    }
}
