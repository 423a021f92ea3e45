//! The idempotency key: what makes two deliveries one finalize.
//!
//! A request's key is its `webhook-id` header when it carries one, else its `Idempotency-Key`
//! header, else its csvId itself (a CSV is finalized once). The HTTP front reads the headers;
//! the records derive a record's id from the key and the location.

/// Longest `Idempotency-Key` or `webhook-id` accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Where a key came from: part of the record id, so a webhook id and an `Idempotency-Key` with
/// the same text are different keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The Standard Webhooks `webhook-id` header.
    WebhookId,
    /// The `Idempotency-Key` header.
    IdempotencyKey,
    /// No key header: the csvId.
    CsvId,
}

impl KeyKind {
    /// The header a key of this kind comes from (none for the csvId).
    pub fn header(self) -> Option<&'static str> {
        match self {
            KeyKind::WebhookId => Some("webhook-id"),
            KeyKind::IdempotencyKey => Some("Idempotency-Key"),
            KeyKind::CsvId => None,
        }
    }

    /// As it enters a record id (fixed: changing it would orphan every stored record).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::WebhookId => "webhook",
            KeyKind::IdempotencyKey => "key",
            KeyKind::CsvId => "csv",
        }
    }
}

/// A request's idempotency key: 1–255 visible ASCII characters, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    kind: KeyKind,
    text: String,
}

impl IdempotencyKey {
    /// A key of `kind` from its header's text (trimmed); `None` unless 1–255 visible ASCII
    /// characters.
    pub fn parse(kind: KeyKind, text: &str) -> Option<Self> {
        let text = text.trim();
        let plausible =
            (1..=MAX_KEY_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic());
        plausible.then(|| Self {
            kind,
            text: text.to_owned(),
        })
    }

    /// The key of a request that sent no key header: its csvId.
    pub fn csv(csv_id: &super::ids::CsvId) -> Self {
        Self {
            kind: KeyKind::CsvId,
            text: csv_id.as_str().to_owned(),
        }
    }

    /// Where it came from.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key itself.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_one_to_255_visible_ascii_characters_trimmed() {
        let key = IdempotencyKey::parse(KeyKind::IdempotencyKey, "  order-42 ").unwrap();
        assert_eq!(
            (key.kind(), key.as_str()),
            (KeyKind::IdempotencyKey, "order-42")
        );
        assert!(IdempotencyKey::parse(KeyKind::WebhookId, &"k".repeat(255)).is_some());
        for bad in ["", "   ", "has space", "tab\there", "é", &"k".repeat(256)] {
            assert!(
                IdempotencyKey::parse(KeyKind::WebhookId, bad).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_request_without_a_key_header_is_keyed_by_its_csv_id() {
        let csv = crate::request::ids::CsvId::parse("C1").unwrap();
        let key = IdempotencyKey::csv(&csv);
        assert_eq!((key.kind(), key.as_str()), (KeyKind::CsvId, "C1"));
    }
}
