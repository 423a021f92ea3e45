//! The one home of randomness: jitter for retry and redelivery delays. Not for secrets: the
//! numbers come from the standard library's per-process random hash keys, which is enough to
//! spread instances' retries apart and costs no system call per number.

use std::hash::{BuildHasher, Hasher};

use crate::request::deadline::unix_now;

/// A uniformly random number for jitter.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(unix_now().as_nanos());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_numbers_differ_from_call_to_call() {
        let drawn: std::collections::HashSet<u64> = (0..64).map(|_| random_u64()).collect();
        assert!(drawn.len() > 60, "{} distinct of 64", drawn.len());
    }
}
