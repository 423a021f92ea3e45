//! The token secret's accepted forms, parsed into [`TokenSecret`].
//!
//! A SecretString may be a bare token, `{"access_token": …}` / `{"token": …}` (with a
//! `refresh_token`, an OAuth entry that [`super::store`] refreshes), or a map from locationId
//! to either form. Parsing is pure; errors describe the shape, never the content.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::oauth::OAuthEntry;
use super::token::{Token, TokenShapeError};
use crate::request::ids::LocationId;

/// One usable entry: the access token, and the OAuth details when it can be refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// The bearer token.
    pub token: Token,
    /// Present for OAuth entries (those with a `refresh_token`).
    pub oauth: Option<OAuthEntry>,
}

impl TokenEntry {
    fn plain(token: Token) -> Self {
        Self { token, oauth: None }
    }
}

/// Where an entry sits in the secret's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPath {
    /// The whole secret is the entry.
    Root,
    /// The entry under this locationId in the map form.
    Location(String),
}

/// A token secret as read: its entries, and the JSON object itself when it is one (kept so a
/// refreshed pair can be written back with every other field).
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The usable entries.
    pub secret: TokenSecret,
    /// The secret's JSON object; `None` for a bare token.
    pub json: Option<Map<String, Value>>,
}

/// A parsed token secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSecret {
    /// One token, for whichever location the secret was read for.
    Single(TokenEntry),
    /// One token per location.
    Map(HashMap<String, TokenEntry>),
}

impl TokenSecret {
    /// Parses a SecretString, reading its JSON (if any) once. The error text is safe to log.
    pub fn parse(secret: &str) -> Result<Parsed, String> {
        let trimmed = secret.trim();
        if trimmed.starts_with('{') {
            let value: Value = serde_json::from_str(trimmed).map_err(|e| {
                format!(
                    "token secret looks like JSON but does not parse (line {}, column {})",
                    e.line(),
                    e.column()
                )
            })?;
            let Value::Object(object) = value else {
                return Err("token secret must be a JSON object".into());
            };
            return Ok(Parsed {
                secret: Self::from_object(&object)?,
                json: Some(object),
            });
        }
        if trimmed.starts_with('[') {
            return Err("token secret must be a token or a JSON object, not a JSON array".into());
        }
        let text = if trimmed.starts_with('"') {
            serde_json::from_str::<String>(trimmed)
                .map_err(|_| "token secret is a malformed JSON string".to_string())?
        } else {
            trimmed.to_owned()
        };
        Ok(Parsed {
            secret: TokenSecret::Single(TokenEntry::plain(single_token(&text, "token secret")?)),
            json: None,
        })
    }

    /// Reads the forms of a secret that is a JSON object.
    pub fn from_object(object: &Map<String, Value>) -> Result<Self, String> {
        if let Some(token) = token_in_entry(object, "token secret")? {
            return Ok(TokenSecret::Single(token));
        }
        if object.is_empty() {
            return Err("token secret is an empty JSON object".into());
        }
        if object.contains_key(UNINSTALLED_AT) {
            // The app was uninstalled where this secret (or the last entry of its map) was
            // used: it names no location.
            return Ok(TokenSecret::Map(HashMap::new()));
        }
        let mut map = HashMap::with_capacity(object.len());
        for (location, entry) in object {
            let what = "an entry of the token map";
            let token = match entry {
                Value::String(text) => TokenEntry::plain(single_token(text, what)?),
                Value::Object(inner) => token_in_entry(inner, what)?
                    .ok_or_else(|| format!("{what} has neither access_token nor token"))?,
                _ => return Err(format!("{what} must be a token string or an object")),
            };
            map.insert(location.clone(), token);
        }
        Ok(TokenSecret::Map(map))
    }

    /// The entry for `location` and where it sits, or `None` when a map does not list it.
    pub fn entry_for(&self, location: &LocationId) -> Option<(&TokenEntry, EntryPath)> {
        match self {
            TokenSecret::Single(entry) => Some((entry, EntryPath::Root)),
            TokenSecret::Map(map) => map
                .get(location.as_str())
                .map(|entry| (entry, EntryPath::Location(location.as_str().to_owned()))),
        }
    }
}

/// What an uninstalled location's secret holds instead of its token (`{"uninstalledAt": …}`).
pub const UNINSTALLED_AT: &str = "uninstalledAt";

/// Reads `access_token` (preferred) or `token` from an object, if either key is present, with
/// the OAuth details when the object has a `refresh_token`.
fn token_in_entry(object: &Map<String, Value>, what: &str) -> Result<Option<TokenEntry>, String> {
    for key in ["access_token", "token"] {
        match object.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(text)) => {
                let token = single_token(text, what)?;
                let oauth = OAuthEntry::from_object(object)
                    .map_err(|problem| format!("{what}: {problem}"))?;
                return Ok(Some(TokenEntry { token, oauth }));
            }
            Some(_) => return Err(format!("{what}: {key} must be a string")),
        }
    }
    Ok(None)
}

fn single_token(text: &str, what: &str) -> Result<Token, String> {
    Token::parse(text).map_err(|problem| match problem {
        TokenShapeError::Empty => format!("{what} holds an empty token"),
        TokenShapeError::NotVisibleAscii => {
            format!("{what} holds a token with spaces or non-ASCII characters")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(id: &str) -> LocationId {
        LocationId::parse(id).unwrap()
    }

    fn token(parsed: &Parsed, location: &str) -> Option<String> {
        parsed
            .secret
            .entry_for(&loc(location))
            .map(|(entry, _)| entry.token.expose().to_owned())
    }

    #[test]
    fn an_uninstalled_secret_names_no_location() {
        let parsed =
            TokenSecret::parse(r#"{"uninstalledAt": "2026-12-03T10:00:00.000Z"}"#).unwrap();
        assert_eq!(token(&parsed, "L1"), None);
    }

    #[test]
    fn reads_a_bare_token() {
        let secret = TokenSecret::parse("  pit-123-abc\n").unwrap();
        assert_eq!(token(&secret, "any"), Some("pit-123-abc".into()));
    }

    #[test]
    fn reads_a_json_string_token() {
        assert_eq!(
            token(&TokenSecret::parse("\"pit-1\"").unwrap(), "L"),
            Some("pit-1".into())
        );
    }

    #[test]
    fn reads_access_token_or_token_fields() {
        assert_eq!(
            token(
                &TokenSecret::parse(r#"{"access_token":"a1","token":"t1"}"#).unwrap(),
                "L"
            ),
            Some("a1".into())
        );
        assert_eq!(
            token(&TokenSecret::parse(r#"{"token":"t1"}"#).unwrap(), "L"),
            Some("t1".into())
        );
    }

    #[test]
    fn reads_an_oauth_object_for_its_access_token() {
        let secret = TokenSecret::parse(
            r#"{"access_token":"a1","refresh_token":"r1","expires_at":1,"client_id":"c"}"#,
        )
        .unwrap();
        assert_eq!(token(&secret, "L"), Some("a1".into()));
    }

    #[test]
    fn reads_a_map_of_locations_in_both_entry_forms() {
        let secret =
            TokenSecret::parse(r#"{"L1":"t1","L2":{"access_token":"t2"},"L3":{"token":"t3"}}"#)
                .unwrap();
        assert_eq!(token(&secret, "L1"), Some("t1".into()));
        assert_eq!(token(&secret, "L2"), Some("t2".into()));
        assert_eq!(token(&secret, "L3"), Some("t3".into()));
        assert_eq!(token(&secret, "L4"), None);
    }

    #[test]
    fn keeps_the_json_object_to_write_refreshed_pairs_back() {
        let parsed = TokenSecret::parse(r#"{"L1":"t1","note":{"token":"t2"}}"#).unwrap();
        assert_eq!(
            parsed.json.unwrap()["note"],
            serde_json::json!({"token": "t2"})
        );
        assert!(TokenSecret::parse("pit-bare").unwrap().json.is_none());
    }

    #[test]
    fn rejects_shapes_it_cannot_read_without_quoting_them() {
        for bad in [
            "",
            "  ",
            "{",
            "[\"topsecret\"]",
            "{}",
            r#"{"L1":5}"#,
            r#"{"L1":{"other":"topsecret"}}"#,
            r#"{"access_token":7}"#,
            "top secret",
            r#"{"L1":"top secret"}"#,
        ] {
            let error = TokenSecret::parse(bad).unwrap_err();
            assert!(
                !error.contains("topsecret") && !error.contains("top secret"),
                "{bad}: {error}"
            );
        }
    }
}
