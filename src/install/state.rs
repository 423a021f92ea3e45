//! The install flow's `state`: signed and expiring, so a callback answers only an install this
//! deployment began, within 10 minutes (pure).
//!
//! `{expires}.{nonce}.{signature}`: the Unix second it expires, 16 hex digits of randomness,
//! and the URL-safe base64 HMAC-SHA256 of the first two, keyed from the app's client secret.

use aws_lc_rs::{constant_time, digest, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use base64::Engine;

use crate::redact::Redacted;

/// How long an install's `state` is good for.
pub const STATE_LIFETIME_SECS: i64 = 10 * 60;

/// Why a `state` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateProblem {
    /// Not one this deployment signed (or altered since).
    Bad,
    /// Signed, but past its 10 minutes.
    Expired,
}

/// The key states are signed with, derived from the app's client secret (never the secret
/// itself, which signs nothing else).
#[derive(Debug)]
pub struct StateKey(Redacted<hmac::Key>);

impl StateKey {
    /// The key for the app whose client secret is `client_secret`.
    pub fn of(client_secret: &str) -> Self {
        let seed = digest::digest(
            &digest::SHA256,
            format!("ghl-csv-finalize install state v1\n{client_secret}").as_bytes(),
        );
        Self(Redacted::new(hmac::Key::new(
            hmac::HMAC_SHA256,
            seed.as_ref(),
        )))
    }

    /// A state made at `now` (Unix seconds) with `nonce`.
    pub fn issue(&self, now: i64, nonce: u64) -> String {
        let signed = format!("{}.{nonce:016x}", now.saturating_add(STATE_LIFETIME_SECS));
        let tag = hmac::sign(self.0.expose(), signed.as_bytes());
        format!("{signed}.{}", BASE64URL.encode(tag.as_ref()))
    }

    /// Whether `state` is one this key signed that has not expired at `now`.
    pub fn check(&self, state: &str, now: i64) -> Result<(), StateProblem> {
        let (signed, signature) = state.rsplit_once('.').ok_or(StateProblem::Bad)?;
        let presented = BASE64URL.decode(signature).map_err(|_| StateProblem::Bad)?;
        let expected = hmac::sign(self.0.expose(), signed.as_bytes());
        constant_time::verify_slices_are_equal(expected.as_ref(), &presented)
            .map_err(|_| StateProblem::Bad)?;
        let expires: i64 = signed
            .split_once('.')
            .and_then(|(expires, _)| expires.parse().ok())
            .ok_or(StateProblem::Bad)?;
        if now > expires {
            return Err(StateProblem::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000;

    #[test]
    fn a_state_is_good_for_ten_minutes_from_the_key_that_signed_it() {
        let key = StateKey::of("client-secret-1");
        let state = key.issue(NOW, 7);
        assert_eq!(key.check(&state, NOW), Ok(()));
        assert_eq!(key.check(&state, NOW + 600), Ok(()));
        assert_eq!(key.check(&state, NOW + 601), Err(StateProblem::Expired));
        assert_eq!(
            StateKey::of("another-secret").check(&state, NOW),
            Err(StateProblem::Bad)
        );
    }

    #[test]
    fn an_altered_or_malformed_state_is_bad() {
        let key = StateKey::of("client-secret-1");
        let state = key.issue(NOW, 7);
        let later = state.replacen(&(NOW + 600).to_string(), &(NOW + 6000).to_string(), 1);
        for bad in [later.as_str(), "", "x", "1.2.3", &format!("{state}x")] {
            assert_eq!(key.check(bad, NOW), Err(StateProblem::Bad), "{bad}");
        }
        assert!(!state.contains("client-secret-1"));
    }
}
