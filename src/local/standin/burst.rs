//! HighLevel's rate limit, played by the stand-in when switched on: a burst window per
//! location (HighLevel documents 100 requests per 10 s) and a daily count, sent back in
//! `X-RateLimit-*` headers on every finalize answer, and a 429 without `Retry-After` once a
//! location's window is spent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

/// The daily allowance the stand-in reports.
const DAILY: u64 = 200_000;

/// A burst limit per location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstLimit {
    /// Requests allowed per window.
    pub max: u64,
    /// The window.
    pub interval: Duration,
}

impl BurstLimit {
    /// HighLevel's documented limit: 100 requests per 10 seconds per location.
    pub const HIGHLEVEL: BurstLimit = BurstLimit {
        max: 100,
        interval: Duration::from_secs(10),
    };
}

/// Each location's window, and the day's count.
#[derive(Debug, Default)]
pub(super) struct Windows {
    windows: Mutex<HashMap<String, (Instant, u64)>>,
    today: AtomicU64,
}

impl Windows {
    /// Counts one finalize request for `location` against `limit`: the headers to answer with,
    /// and whether the request is over the limit (to be answered 429).
    pub(super) fn take(&self, location: &str, limit: BurstLimit) -> (HeaderMap, bool) {
        let now = Instant::now();
        let used = {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let window = windows.entry(location.to_owned()).or_insert((now, 0));
            if now.duration_since(window.0) >= limit.interval {
                *window = (now, 0);
            }
            window.1 += 1;
            window.1
        };
        let over = used > limit.max;
        let today = if over {
            self.today.load(Ordering::SeqCst)
        } else {
            self.today.fetch_add(1, Ordering::SeqCst) + 1
        };
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: u64| {
            headers.insert(name, http::HeaderValue::from(value));
        };
        put("x-ratelimit-max", limit.max);
        put("x-ratelimit-remaining", limit.max.saturating_sub(used));
        put(
            "x-ratelimit-interval-milliseconds",
            limit.interval.as_millis() as u64,
        );
        put("x-ratelimit-limit-daily", DAILY);
        put("x-ratelimit-daily-remaining", DAILY.saturating_sub(today));
        (headers, over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_each_locations_window_and_refuses_past_its_max() {
        let windows = Windows::default();
        let limit = BurstLimit {
            max: 2,
            interval: Duration::from_millis(50),
        };
        let remaining = |h: &HeaderMap| h["x-ratelimit-remaining"].to_str().unwrap().to_owned();
        let (first, over) = windows.take("A", limit);
        assert_eq!((remaining(&first), over), ("1".to_owned(), false));
        let (second, over) = windows.take("A", limit);
        assert_eq!((remaining(&second), over), ("0".to_owned(), false));
        assert!(
            windows.take("A", limit).1,
            "the third in the window is over"
        );
        assert!(
            !windows.take("B", limit).1,
            "another location has its own window"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!windows.take("A", limit).1, "a new window");
        assert_eq!(second["x-ratelimit-interval-milliseconds"], "50");
        assert_eq!(second["x-ratelimit-daily-remaining"], "199998");
    }
}
