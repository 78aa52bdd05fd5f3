//! HMAC-SHA256 signatures for chat robots that take a signing secret
//! (DingTalk, Feishu). Built only with the `sign` feature.
//!
//! The crates are pure Rust and `no_std` (`hmac`, `sha2`, `base64`): they use
//! no randomness and no clock, so a component linking them imports nothing
//! more from the host than one that does not.
//!
//! Plugins have no clock (the sandbox links WASI clocks as traps), so callers
//! sign with a time taken from the alert (its last-seen time).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// `base64(HMAC-SHA256(key, message))`, standard alphabet with padding.
pub fn hmac_sha256_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Percent-encode `text` for a URL query value: everything but RFC 3986's
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so a base64
/// signature's `+`, `/` and `=` survive the trip.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        // RFC 4231, test case 2 ("Jefe"), whose hex digest is
        // 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843.
        assert_eq!(
            hmac_sha256_base64(b"Jefe", b"what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn escapes_base64_punctuation() {
        assert_eq!(query_escape("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(query_escape("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(query_escape("é"), "%C3%A9");
    }
}
