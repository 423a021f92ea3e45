//! The delivery simulation's faults (tests only): one seeded source of faults shared by the
//! simulated record store, queue and HighLevel, so one seed is one reproducible schedule.
//!
//! At every I/O point an operation first yields a seeded number of times — so operations run
//! side by side on one thread interleave differently per seed — and then learns what happens:
//! the call goes through, fails (nothing done), loses its answer (done, but the caller sees a
//! failure), or the caller's process dies there (its future never resumes; the driver drops it).

use std::sync::Mutex;

/// What happens at an I/O point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The call goes through and its answer arrives.
    None,
    /// The call fails; nothing was done.
    Fail,
    /// The call was done, but its answer is lost: the caller sees a failure.
    LoseAnswer,
    /// The caller dies here (before the call, or after it was done).
    Crash,
}

/// The seeded source of every decision of one schedule.
pub(crate) struct Io {
    state: Mutex<State>,
}

struct State {
    rng: u64,
    faults: bool,
    /// Writes to the record store so far, and the one from which it is down (an outage).
    store_writes: u64,
    store_down_from: Option<u64>,
    /// Percent of I/O points that fault while faults are on.
    fault_percent: u64,
}

impl Io {
    /// A schedule from `seed`, faults on at `fault_percent` of I/O points.
    pub(crate) fn new(seed: u64, fault_percent: u64) -> Self {
        Self {
            state: Mutex::new(State {
                // splitmix64 of the seed, so nearby seeds start far apart.
                rng: splitmix(seed.wrapping_add(0x9E37_79B9_7F4A_7C15)) | 1,
                faults: true,
                store_writes: 0,
                store_down_from: None,
                fault_percent,
            }),
        }
    }

    fn with<T>(&self, work: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        work(&mut state)
    }

    /// Faults on or off (a schedule ends with them off, to see everything settle).
    pub(crate) fn set_faults(&self, on: bool) {
        self.with(|state| state.faults = on);
    }

    /// Whether faults are on.
    pub(crate) fn faulty(&self) -> bool {
        self.with(|state| state.faults)
    }

    /// The record store goes down after `writes` more writes, until [`Io::store_up`] (an
    /// outage that can begin between a PATCH and its result's write).
    pub(crate) fn store_down_after(&self, writes: u64) {
        self.with(|state| state.store_down_from = Some(state.store_writes + writes));
    }

    /// The record store is up again.
    pub(crate) fn store_up(&self) {
        self.with(|state| state.store_down_from = None);
    }

    /// Counts one write to the record store; false while it is down.
    pub(crate) fn store_write(&self) -> bool {
        self.with(|state| {
            state.store_writes += 1;
            state
                .store_down_from
                .is_none_or(|from| state.store_writes <= from)
        })
    }

    /// A seeded number below `bound` (at least 1).
    pub(crate) fn below(&self, bound: u64) -> u64 {
        self.with(|state| state.next()) % bound.max(1)
    }

    /// True `percent` of the time.
    pub(crate) fn chance(&self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An I/O point before the call `what`: yields, then says whether the call fails or the
    /// caller dies.
    pub(crate) async fn before(&self, what: &str) -> Fault {
        self.interleave().await;
        let fault = self.pick(&[Fault::Fail, Fault::Crash]);
        tracing::debug!(what, ?fault, "sim: before");
        fault
    }

    /// An I/O point after the call `what` was done: its answer lost, or the caller dead.
    pub(crate) async fn after(&self, what: &str) -> Fault {
        self.interleave().await;
        let fault = self.pick(&[Fault::LoseAnswer, Fault::Crash]);
        tracing::debug!(what, ?fault, "sim: after");
        fault
    }

    /// Yields 0–2 times, as the seed says.
    pub(crate) async fn interleave(&self) {
        for _ in 0..self.below(3) {
            tokio::task::yield_now().await;
        }
    }

    fn pick(&self, faults: &[Fault]) -> Fault {
        self.with(|state| {
            if !state.faults || state.next() % 100 >= state.fault_percent {
                return Fault::None;
            }
            faults[(state.next() % faults.len() as u64) as usize]
        })
    }
}

impl State {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Where a caller that died at an I/O point stays: its future never resumes.
pub(crate) async fn die<T>() -> T {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_is_one_sequence_of_decisions() {
        let decisions = |seed| {
            let io = Io::new(seed, 30);
            (0..64).map(|_| io.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(decisions(7), decisions(7));
        assert_ne!(decisions(7), decisions(8));
    }
}
