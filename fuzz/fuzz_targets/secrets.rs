//! Secret parsing on arbitrary SecretStrings: never panics, never quotes the secret in errors.
#![no_main]

use ghl_csv_finalize::auth::InboundKeys;
use ghl_csv_finalize::tokens::TokenSecret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = TokenSecret::parse(text);
    let _ = InboundKeys::parse(text);
});
