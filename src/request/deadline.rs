//! Time limits: the Lambda invocation's deadline, and the budget for calling HighLevel.
//!
//! Lambda stops an invocation at its deadline, so the function keeps [`LAMBDA_MARGIN`] back and
//! treats what is left as its own [`Deadline`]: secret reads give up there, and the HighLevel
//! call's [`Budget`] (`UPSTREAM_TIMEOUT_MS` from the first call on) never reaches past it.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Time kept back from the Lambda deadline so the function always answers before being killed.
pub(crate) const LAMBDA_MARGIN: Duration = Duration::from_millis(500);

/// Earliest plausible Lambda deadline (2001-09-09, in Unix milliseconds). Lambda always sends an
/// absolute time; some local emulators send a duration (`cargo lambda watch` sends its timeout).
const PLAUSIBLE_DEADLINE_MS: u64 = 1_000_000_000_000;

/// Time since the Unix epoch (zero if the clock is set before it).
pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, as records, messages and metrics count time.
pub(crate) fn unix_ms() -> u64 {
    #[cfg(test)]
    if let Some(virtual_ms) = virtual_clock::now_ms() {
        return virtual_ms;
    }
    u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX)
}

/// The delivery simulation's clock (tests only): on its thread, Unix time moves with tokio's
/// (paused) clock from a fixed start, so every schedule sees the same times.
#[cfg(test)]
pub(crate) mod virtual_clock {
    use std::cell::Cell;

    use tokio::time::Instant;

    thread_local! {
        static START: Cell<Option<(u64, Instant)>> = const { Cell::new(None) };
    }

    /// From now on, on this thread, Unix time is `unix_ms` plus tokio's time since now.
    pub(crate) fn start(unix_ms: u64) {
        START.with(|start| start.set(Some((unix_ms, Instant::now()))));
    }

    /// Back to the system clock on this thread.
    pub(crate) fn stop() {
        START.with(|start| start.set(None));
    }

    pub(super) fn now_ms() -> Option<u64> {
        START.with(Cell::get).map(|(unix_ms, at)| {
            unix_ms + u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)
        })
    }
}

/// Whole seconds since the Unix epoch, as the secrets and webhook timestamps count them.
pub(crate) fn unix_seconds() -> i64 {
    i64::try_from(unix_now().as_secs()).unwrap_or(i64::MAX)
}

/// By when the function must have answered: the Lambda deadline less [`LAMBDA_MARGIN`], or no
/// limit (local runs, and emulators that send no absolute deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline: only the upstream budget applies.
    pub(crate) const NONE: Deadline = Deadline(None);

    /// From Lambda's deadline in Unix milliseconds; a value that is not an absolute time says
    /// nothing about the deadline and is ignored.
    pub(crate) fn from_lambda_ms(deadline_ms: u64) -> Self {
        match remaining_until(deadline_ms, unix_now().as_millis()) {
            Some(remaining) => Self::after(remaining),
            None => Self::NONE,
        }
    }

    /// Exactly `instant`.
    pub(crate) fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    /// `remaining` from now, less the margin (no limit if that is beyond the clock's range).
    pub(crate) fn after(remaining: Duration) -> Self {
        Deadline(Instant::now().checked_add(remaining.saturating_sub(LAMBDA_MARGIN)))
    }

    /// The instant, if there is one.
    pub(crate) fn instant(&self) -> Option<Instant> {
        self.0
    }

    /// Runs `work` until the deadline; `None` if the deadline came first.
    pub(crate) async fn bound<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        match self.0 {
            Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
            None => Some(work.await),
        }
    }
}

/// Time left until Lambda's deadline (both Unix milliseconds), when the deadline is plausible.
fn remaining_until(deadline_ms: u64, now_ms: u128) -> Option<Duration> {
    (deadline_ms >= PLAUSIBLE_DEADLINE_MS).then(|| {
        let left = u128::from(deadline_ms).saturating_sub(now_ms);
        Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX))
    })
}

/// The time allowed for calling HighLevel (token endpoint and finalize, retries included).
///
/// The clock starts at the first call to HighLevel, so reading a secret does not eat into it,
/// but it never reaches past the invocation's [`Deadline`].
#[derive(Debug)]
pub(crate) struct Budget {
    limit: Duration,
    hard: Deadline,
    started: OnceLock<Instant>,
}

impl Budget {
    /// `limit` from the first call on, and never past `hard`.
    pub(crate) fn new(limit: Duration, hard: Deadline) -> Self {
        Self {
            limit,
            hard,
            started: OnceLock::new(),
        }
    }

    /// The invocation's deadline: secret reads stop there.
    pub(crate) fn hard_deadline(&self) -> Deadline {
        self.hard
    }

    /// The instant by which every HighLevel call must be over; fixed by the first call.
    pub(crate) fn deadline(&self) -> Instant {
        let started = *self.started.get_or_init(Instant::now);
        let soft = started.checked_add(self.limit);
        match (soft, self.hard.instant()) {
            (Some(soft), Some(hard)) => soft.min(hard),
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => far_future(started),
        }
    }
}

/// An instant so far ahead it never comes: a year from `from`, or as far as the clock goes.
fn far_future(from: Instant) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    from.checked_add(YEAR).unwrap_or(from)
}

/// `2026-12-02T09:15:03.123Z` for Unix milliseconds.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60,
        unix_ms % 1000
    )
}

/// Unix milliseconds of an RFC 3339 UTC time as HighLevel writes them
/// (`2026-12-02T09:15:03.123Z`, the fraction optional, `Z` or `+00:00`); `None` for anything
/// else, or a date before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text.trim();
    let body = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = body.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<u64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut clock_parts = clock.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (
        clock_parts.next()??,
        clock_parts.next()??,
        clock_parts.next()??,
    );
    let valid = date.len() == 10
        && clock.len() == 8
        && year >= 1970
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61
        && !fraction.is_empty()
        && fraction.len() <= 9
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    let millis: u64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + millis)
}

/// A civil date to days since 1970-01-01 (the inverse of [`civil_from_days`]).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = year - u64::from(month <= 2);
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm, for dates from 1970).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_time_left_from_an_absolute_lambda_deadline() {
        let now = 1_795_957_706_000;
        assert_eq!(
            remaining_until(now + 3_000, u128::from(now)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            remaining_until(now - 5, u128::from(now)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn ignores_deadlines_that_are_not_absolute_times() {
        assert_eq!(remaining_until(0, 1_795_957_706_000), None);
        assert_eq!(
            remaining_until(600_000, 1_795_957_706_000),
            None,
            "cargo lambda watch sends its timeout"
        );
        assert_eq!(Deadline::from_lambda_ms(600_000), Deadline::NONE);
    }

    #[test]
    fn the_deadline_keeps_the_margin_back() {
        let before = Instant::now();
        let deadline = Deadline::after(Duration::from_secs(3)).instant().unwrap();
        assert!(deadline >= before + Duration::from_millis(2500));
        assert!(deadline <= Instant::now() + Duration::from_millis(2500));
        let none_left = Deadline::after(Duration::from_millis(200))
            .instant()
            .unwrap();
        assert!(none_left <= Instant::now());
    }

    #[test]
    fn the_budget_is_its_limit_when_lambda_has_time() {
        let budget = Budget::new(
            Duration::from_secs(10),
            Deadline::after(Duration::from_secs(30)),
        );
        let start = Instant::now();
        let deadline = budget.deadline();
        assert!(deadline >= start + Duration::from_secs(10));
        assert!(deadline <= Instant::now() + Duration::from_secs(10));
        assert_eq!(budget.deadline(), deadline, "fixed by the first call");
    }

    #[test]
    fn the_budget_stops_short_of_the_lambda_deadline() {
        let before = Instant::now();
        let budget = Budget::new(
            Duration::from_secs(10),
            Deadline::after(Duration::from_secs(3)),
        );
        let deadline = budget.deadline();
        assert!(deadline <= Instant::now() + Duration::from_millis(2500));
        assert!(deadline >= before + Duration::from_millis(2500));
    }

    #[test]
    fn the_budget_clock_starts_at_the_first_call() {
        let budget = Budget::new(Duration::from_millis(50), Deadline::NONE);
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            budget.deadline() > Instant::now(),
            "time before the first call does not count"
        );
    }

    #[tokio::test]
    async fn bounds_work_by_the_deadline() {
        let passed = Deadline::after(Duration::ZERO);
        assert_eq!(passed.bound(std::future::pending::<()>()).await, None);
        assert_eq!(Deadline::NONE.bound(async { 7 }).await, Some(7));
    }

    #[test]
    fn reads_back_the_times_it_shows_and_refuses_other_shapes() {
        for ms in [0, 951_782_400_000, 1_796_202_903_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            parse_rfc3339("2026-12-02T09:15:03Z"),
            Some(1_796_202_903_000)
        );
        assert_eq!(
            parse_rfc3339("2026-12-02T09:15:03.1+00:00"),
            Some(1_796_202_903_100)
        );
        for bad in [
            "",
            "2026-12-02",
            "2026-12-02T09:15:03",
            "2026-13-02T09:15:03Z",
            "2026-12-02T25:15:03Z",
            "2026-12-02T09:15:03.Z",
            "2026-12-02T09:15:03+02:00",
            "1969-12-31T23:59:59Z",
            "2026-1-02T09:15:03Z",
            "２０２６-12-02T09:15:03Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn shows_times_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_202_903_123), "2026-12-02T09:15:03.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
