//! [`Token`]: a HighLevel bearer token that owns its shape check and never prints.

use std::fmt;

use reqwest::header::HeaderValue;

use crate::redact::Redacted;

/// A bearer token for HighLevel (a Private Integration Token or an OAuth access token): one
/// run of visible ASCII, so it always fits an `Authorization` header. `Debug` prints
/// `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Redacted<String>);

/// Why a string cannot be a token. Holds no part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenShapeError {
    /// Nothing but white space.
    #[error("is empty")]
    Empty,
    /// Spaces inside, control characters or non-ASCII.
    #[error("holds spaces or non-ASCII characters")]
    NotVisibleAscii,
}

impl Token {
    /// Takes `text` without its surrounding white space, if what is left is a single run of
    /// visible ASCII.
    pub fn parse(text: &str) -> Result<Self, TokenShapeError> {
        let text = text.trim();
        if text.is_empty() {
            Err(TokenShapeError::Empty)
        } else if text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(Redacted::new(text.to_owned())))
        } else {
            Err(TokenShapeError::NotVisibleAscii)
        }
    }

    /// The token itself. Call sites are the places a token can leak: keep them few.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// `Authorization: Bearer <token>`, marked sensitive so no HTTP log shows it.
    pub fn bearer(&self) -> HeaderValue {
        // Visible ASCII always makes a valid header value; the fallback is never taken.
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        value.set_sensitive(true);
        value
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_trimmed_run_of_visible_ascii() {
        assert_eq!(Token::parse("  pit-1\n").unwrap().expose(), "pit-1");
        assert_eq!(Token::parse(" "), Err(TokenShapeError::Empty));
        assert_eq!(Token::parse("a b"), Err(TokenShapeError::NotVisibleAscii));
        assert_eq!(Token::parse("tökén"), Err(TokenShapeError::NotVisibleAscii));
    }

    #[test]
    fn makes_a_sensitive_bearer_header_and_never_prints_itself() {
        let token = Token::parse("pit-secret").unwrap();
        let bearer = token.bearer();
        assert_eq!(bearer, "Bearer pit-secret");
        assert!(bearer.is_sensitive());
        assert_eq!(format!("{token:?}"), "[redacted]");
        assert!(!format!("{bearer:?}").contains("pit-secret"));
    }
}
