//! Small encodings every layer writes the same way: hex, SHA-256 digests of bytes and of JSON, RFC 3339 times.

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The SHA-256 of a JSON value as serialised, hex: a redelivered message has the same digest. The text is hashed as
/// it is written, never held whole.
pub fn digest(message: &Json) -> String {
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    serde_json::to_writer(&mut hashing, message).expect("a JSON value always serialises");
    hex(&hashing.0.finalize())
}

/// `value` with everything but unreserved characters (RFC 3986: letters, digits, `-._~`) percent-encoded: safe in a
/// path segment, a query value and an IRI's last segment.
pub fn percent(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Milliseconds since the epoch as RFC 3339 with milliseconds, in UTC.
pub fn rfc3339_millis(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_times_read_as_expected() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(percent("did:web:a%3A1/ü x"), "did%3Aweb%3Aa%253A1%2F%C3%BC%20x");
        assert_eq!(rfc3339_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
