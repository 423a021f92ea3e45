//! The retry policy, as pure functions: what a status means, how long to wait, `Retry-After`.

use std::time::{Duration, SystemTime};

/// First backoff ceiling.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Largest backoff ceiling.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// `Retry-After` we send when HighLevel gave none.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

/// What to do with HighLevel's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: done.
    Success,
    /// 429, 502, 503, 504: try again if the budget allows.
    Retry,
    /// 401: re-read the token once and try again.
    Reauthenticate,
    /// 403: the token is not allowed; not retried.
    Forbidden,
    /// Other 4xx: HighLevel refused the request as made; not retried.
    Rejected,
    /// 500 and other unexpected answers: not retried (the import may have been touched).
    ServerError,
}

/// Classifies an upstream status.
pub(crate) fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        401 => Verdict::Reauthenticate,
        403 => Verdict::Forbidden,
        429 | 502 | 503 | 504 => Verdict::Retry,
        400..=499 => Verdict::Rejected,
        _ => Verdict::ServerError,
    }
}

/// Full-jitter exponential backoff: a uniform wait in `[0, min(cap, base·2^(retry-1))]`.
/// `retry` counts from 1; `random` is any uniformly random number.
pub(crate) fn backoff(retry: u32, random: u64) -> Duration {
    let exponent = retry.saturating_sub(1).min(16);
    let ceiling = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP);
    let ceiling_ms = ceiling.as_millis() as u64;
    Duration::from_millis(random % (ceiling_ms + 1))
}

/// Parses `Retry-After` as delay-seconds or an HTTP date (a date in the past means now). Any
/// number of seconds is read, however large: one beyond `u64` is simply as long as can be.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_as_the_contract_lists_them() {
        for s in [200, 201, 204] {
            assert_eq!(verdict(s), Verdict::Success);
        }
        for s in [429, 502, 503, 504] {
            assert_eq!(verdict(s), Verdict::Retry);
        }
        assert_eq!(verdict(401), Verdict::Reauthenticate);
        assert_eq!(verdict(403), Verdict::Forbidden);
        for s in [400, 404, 409, 422] {
            assert_eq!(verdict(s), Verdict::Rejected);
        }
        for s in [500, 501, 505, 302, 100] {
            assert_eq!(verdict(s), Verdict::ServerError);
        }
    }

    #[test]
    fn backoff_stays_within_the_growing_ceiling() {
        assert_eq!(backoff(1, u64::MAX), Duration::from_millis(u64::MAX % 101));
        for retry in 1..20 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << (retry - 1).min(16))
                .min(BACKOFF_CAP);
            for random in [0, 1, 99, 12345, u64::MAX] {
                assert!(backoff(retry, random) <= ceiling);
            }
        }
        assert_eq!(backoff(30, 2000), Duration::from_millis(2000));
        assert_eq!(backoff(1, 0), Duration::ZERO);
    }

    #[test]
    fn reads_retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn reads_absurd_retry_after_values_as_merely_long() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        for huge in [
            "18446744073709551615",
            "9223372036854775807",
            "99999999999999999999999999",
        ] {
            let delay = parse_retry_after(huge, now).unwrap();
            assert!(
                delay >= Duration::from_secs(9_223_372_036_854_775_807),
                "{huge}"
            );
        }
        let far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert!(far > Duration::from_secs(200_000_000_000));
    }
}
