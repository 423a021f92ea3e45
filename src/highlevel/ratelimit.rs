//! HighLevel's rate-limit headers, read from every answer, and the pause they call for.
//!
//! HighLevel sends `X-RateLimit-Max` and `X-RateLimit-Remaining` for its burst window of
//! `X-RateLimit-Interval-Milliseconds` (100 requests per 10 s per location), and
//! `X-RateLimit-Limit-Daily` / `X-RateLimit-Daily-Remaining` for the day. When the window is
//! spent and HighLevel gave no `Retry-After`, the next attempt for that location waits out the
//! interval ([`Pauses`]) instead of spending an attempt on a certain 429.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

use crate::request::ids::LocationId;

/// Locations remembered as paused at most; past it, pauses that have ended are dropped first,
/// then the ones ending soonest.
const MAX_PAUSED: usize = 4096;

/// The rate-limit headers of one answer (each absent when not sent or not a number).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// `X-RateLimit-Max`: requests allowed per interval.
    pub max: Option<u64>,
    /// `X-RateLimit-Remaining`: requests left in this interval.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Interval-Milliseconds`: the interval.
    pub interval: Option<Duration>,
    /// `X-RateLimit-Limit-Daily`.
    pub daily_max: Option<u64>,
    /// `X-RateLimit-Daily-Remaining`.
    pub daily_remaining: Option<u64>,
}

impl RateLimit {
    /// Reads the headers; a value that is not a whole number is ignored.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Self {
            max: number("x-ratelimit-max"),
            remaining: number("x-ratelimit-remaining"),
            interval: number("x-ratelimit-interval-milliseconds").map(Duration::from_millis),
            daily_max: number("x-ratelimit-limit-daily"),
            daily_remaining: number("x-ratelimit-daily-remaining"),
        }
    }

    /// How long the next request for this location should wait: the interval, when this
    /// answer spent the last request of it.
    pub fn pause(&self) -> Option<Duration> {
        match (self.remaining, self.interval) {
            (Some(0), Some(interval)) => Some(interval),
            _ => None,
        }
    }
}

/// Until when each location's rate-limit window is spent, shared by every request of the
/// instance.
#[derive(Debug, Clone, Default)]
pub struct Pauses(Arc<Mutex<HashMap<LocationId, Instant>>>);

impl Pauses {
    /// Remembers that `location` may not be called again before `until`.
    pub fn pause(&self, location: &LocationId, until: Instant) {
        let mut paused = self.lock();
        if paused.len() >= MAX_PAUSED && !paused.contains_key(location) {
            let now = Instant::now();
            paused.retain(|_, ends| *ends > now);
            if paused.len() >= MAX_PAUSED {
                if let Some(soonest) = paused
                    .iter()
                    .min_by_key(|(_, ends)| **ends)
                    .map(|(l, _)| l.clone())
                {
                    paused.remove(&soonest);
                }
            }
        }
        let entry = paused.entry(location.clone()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// How long `location` must still wait, if at all.
    pub fn remaining(&self, location: &LocationId) -> Option<Duration> {
        let mut paused = self.lock();
        let until = *paused.get(location)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            paused.remove(location);
            None
        } else {
            Some(left)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LocationId, Instant>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn reads_highlevels_rate_limit_headers_and_ignores_garbage() {
        let limit = RateLimit::from_headers(&headers(&[
            ("x-ratelimit-max", "100"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-interval-milliseconds", "10000"),
            ("x-ratelimit-limit-daily", "200000"),
            ("x-ratelimit-daily-remaining", "not a number"),
        ]));
        assert_eq!(limit.max, Some(100));
        assert_eq!(limit.remaining, Some(0));
        assert_eq!(limit.daily_max, Some(200_000));
        assert_eq!(limit.daily_remaining, None);
        assert_eq!(limit.pause(), Some(Duration::from_secs(10)));
        let huge = RateLimit::from_headers(&headers(&[
            ("x-ratelimit-interval-milliseconds", "18446744073709551615"),
            ("x-ratelimit-remaining", "0"),
        ]));
        assert_eq!(
            huge.pause(),
            Some(Duration::from_millis(u64::MAX)),
            "any size reads; the budget decides"
        );
    }

    #[test]
    fn pauses_only_when_the_window_is_spent_and_its_length_known() {
        let some_left = RateLimit {
            remaining: Some(3),
            interval: Some(Duration::from_secs(10)),
            ..RateLimit::default()
        };
        assert_eq!(some_left.pause(), None);
        let no_interval = RateLimit {
            remaining: Some(0),
            ..RateLimit::default()
        };
        assert_eq!(no_interval.pause(), None);
    }

    #[tokio::test]
    async fn remembers_a_pause_per_location_until_it_ends() {
        let pauses = Pauses::default();
        let (a, b) = (
            LocationId::parse("A").unwrap(),
            LocationId::parse("B").unwrap(),
        );
        pauses.pause(&a, Instant::now() + Duration::from_millis(40));
        assert!(pauses
            .remaining(&a)
            .is_some_and(|left| left <= Duration::from_millis(40)));
        assert_eq!(pauses.remaining(&b), None);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pauses.remaining(&a), None, "over");
    }

    #[test]
    fn holds_a_bounded_number_of_paused_locations() {
        let pauses = Pauses::default();
        let later = Instant::now() + Duration::from_secs(60);
        for n in 0..(MAX_PAUSED + 10) {
            pauses.pause(
                &LocationId::parse(&format!("L{n}")).unwrap(),
                later + Duration::from_millis(n as u64),
            );
        }
        assert_eq!(pauses.lock().len(), MAX_PAUSED);
        assert!(
            pauses
                .remaining(&LocationId::parse(&format!("L{}", MAX_PAUSED + 9)).unwrap())
                .is_some(),
            "the newest stays"
        );
    }
}
