//! Identifiers that are safe to place in a URL.
//!
//! A [`LocationId`], [`CsvId`] or [`UserId`] can only be made by parsing, and parsing accepts
//! exactly `^[A-Za-z0-9_-]{1,64}$`. Anything that reaches the HighLevel URL has therefore been
//! checked: no slashes, dots, percent signs, spaces or unicode can smuggle in a different path.
//!
//! ```
//! use ghl_csv_finalize::request::ids::{CsvId, IdError, LocationId};
//!
//! assert_eq!(LocationId::parse("ve9EPM428h8vShlRW1KT").unwrap().as_str(), "ve9EPM428h8vShlRW1KT");
//! assert_eq!(CsvId::parse("../../oauth/token"), Err(IdError::BadCharacter));
//! assert_eq!(CsvId::parse(""), Err(IdError::Empty));
//! ```

use std::fmt;

/// Longest id accepted. HighLevel ids are 20–24 characters; 64 leaves room without inviting abuse.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id. Holds no part of the rejected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    /// The string is empty.
    Empty,
    /// The string is longer than [`MAX_ID_LEN`].
    TooLong,
    /// The string holds a character outside `A-Z a-z 0-9 _ -`.
    BadCharacter,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdError::Empty => "must not be empty",
            IdError::TooLong => "must be at most 64 characters",
            IdError::BadCharacter => "may only contain letters, digits, '_' and '-'",
        })
    }
}

/// Checks a candidate id against `^[A-Za-z0-9_-]{1,64}$`.
pub fn check_id(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdError::BadCharacter)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The field name callers use for this id, as it appears in errors.
            pub const FIELD: &'static str = $field;

            /// Parses an id, accepting exactly `^[A-Za-z0-9_-]{1,64}$`.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check_id(value).map(|()| Self(value.to_owned()))
            }

            /// The id as a string slice (safe to place in a URL path segment).
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

id_type!(
    /// A HighLevel sub-account (location) id.
    LocationId,
    "locationId"
);
id_type!(
    /// A Social Planner CSV import id.
    CsvId,
    "csvId"
);
id_type!(
    /// A HighLevel user id, sent as `userId` in the finalize body.
    UserId,
    "userId"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_highlevel_ids() {
        for id in ["ve9EPM428h8vShlRW1KT", "a", "A-b_9", &"x".repeat(64)] {
            assert!(LocationId::parse(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_an_empty_id() {
        assert_eq!(CsvId::parse(""), Err(IdError::Empty));
    }

    #[test]
    fn rejects_an_id_longer_than_64_characters() {
        assert_eq!(CsvId::parse(&"x".repeat(65)), Err(IdError::TooLong));
    }

    #[test]
    fn rejects_ids_that_could_change_the_url() {
        for id in [
            "a/b", "..", "a.b", "a%2Fb", "a b", "a?b", "a#b", "é", "a\n", "a\0", "\u{200b}",
        ] {
            assert_eq!(CsvId::parse(id), Err(IdError::BadCharacter), "{id:?}");
        }
    }

    #[test]
    fn errors_name_the_rule_not_the_value() {
        let message = IdError::BadCharacter.to_string();
        assert!(message.contains("letters, digits"));
    }
}
