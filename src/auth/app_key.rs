//! HighLevel's app webhooks are signed with Ed25519: the raw body, signed with HighLevel's
//! private key, the signature base64 in `X-GHL-Signature`. [`AppWebhookKey`] holds the public
//! key HighLevel publishes (`GHL_WEBHOOK_PUBLIC_KEY`, PEM) and checks a signature with the
//! crypto library the project already links (AWS-LC), never a hand-written one.

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// HighLevel's public key for its app webhooks.
#[derive(Debug, Clone)]
pub struct AppWebhookKey(UnparsedPublicKey<[u8; 32]>);

impl AppWebhookKey {
    /// Reads a PEM `PUBLIC KEY` (an Ed25519 `SubjectPublicKeyInfo`); the `\n` escapes an
    /// environment variable may carry are read as line breaks.
    pub fn from_pem(pem: &str) -> Result<Self, &'static str> {
        let text = pem.replace("\\n", "\n");
        let body: String = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("-----"))
            .collect();
        if !text.contains("-----BEGIN PUBLIC KEY-----") {
            return Err("must be a PEM public key (-----BEGIN PUBLIC KEY-----)");
        }
        let der = BASE64
            .decode(body)
            .map_err(|_| "is not valid PEM (the base64 does not decode)")?;
        let key = der
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .and_then(|key| <[u8; 32]>::try_from(key).ok())
            .ok_or("must be an Ed25519 public key")?;
        Ok(Self(UnparsedPublicKey::new(&ED25519, key)))
    }

    /// Whether `signature` (base64, as `X-GHL-Signature` carries it) signs `body`.
    pub fn verifies(&self, body: &[u8], signature: &str) -> bool {
        BASE64
            .decode(signature.trim())
            .is_ok_and(|signature| self.0.verify(body, &signature).is_ok())
    }
}

/// The PEM of a raw Ed25519 public key (the stand-in publishes its own this way).
pub fn public_key_pem(key: &[u8; 32]) -> String {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(key);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        BASE64.encode(der)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    fn pair() -> Ed25519KeyPair {
        Ed25519KeyPair::generate().unwrap()
    }

    fn key_of(pair: &Ed25519KeyPair) -> AppWebhookKey {
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        AppWebhookKey::from_pem(&public_key_pem(&public)).unwrap()
    }

    #[test]
    fn verifies_the_signature_over_the_exact_body_only() {
        let pair = pair();
        let key = key_of(&pair);
        let body = br#"{"type":"UNINSTALL","locationId":"L1"}"#;
        let signature = BASE64.encode(pair.sign(body).as_ref());
        assert!(key.verifies(body, &signature));
        assert!(!key.verifies(br#"{"type":"UNINSTALL","locationId":"L2"}"#, &signature));
        assert!(!key.verifies(body, "not base64!"));
        assert!(!key.verifies(body, ""));
        let other = BASE64.encode(self::pair().sign(body).as_ref());
        assert!(!key.verifies(body, &other), "another key's signature");
    }

    #[test]
    fn reads_a_pem_with_escaped_line_breaks_and_refuses_anything_else() {
        let public: [u8; 32] = pair().public_key().as_ref().try_into().unwrap();
        let pem = public_key_pem(&public);
        assert!(AppWebhookKey::from_pem(&pem.replace('\n', "\\n")).is_ok());
        assert!(AppWebhookKey::from_pem("not a key").is_err());
        assert!(AppWebhookKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
        )
        .is_err());
        // An RSA or P-256 key is not HighLevel's Ed25519 key.
        let p256 = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyJ7ePp2nqj6F8o8Bx7x1O+3TmkJh\nuFZ0Ux6d1D7F1YJhv7Gw3p9Zxo7H1bq4Tb7Yv8p1Qqk7fIhJk7F0Qe3g3w==\n-----END PUBLIC KEY-----";
        assert!(AppWebhookKey::from_pem(p256).is_err());
    }
}
