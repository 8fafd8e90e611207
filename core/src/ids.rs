//! What an identifier an operator gives (an asset's, a policy's, a contract definition's `@id`) may hold: it is shown
//! to peers, logged, matched and put in URLs, so it must read as what it is. No control or invisible formatting
//! characters (bidirectional overrides, zero-width characters), one Unicode form (NFC, and no compatibility variants
//! such as fullwidth letters that look like others), and a bounded length.

use unicode_normalization::UnicodeNormalization;

/// The longest identifier, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 512;

/// Characters that change how text around them is shown without being seen: bidirectional controls and isolates,
/// zero-width characters, the soft hyphen, the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Why `id` is not an acceptable identifier, if it is not.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_ID_BYTES {
        return Err(format!("must be at most {MAX_ID_BYTES} bytes, not {}", id.len()));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(format!("must not hold control characters (U+{:04X})", c as u32));
    }
    if let Some(c) = id.chars().find(|&c| invisible(c)) {
        return Err(format!("must not hold invisible formatting characters (U+{:04X})", c as u32));
    }
    if !unicode_normalization::is_nfc(id) {
        return Err(format!("must be in Unicode NFC: send \"{}\"", id.nfc().collect::<String>()));
    }
    let folded: String = id.nfkc().collect();
    if folded != id {
        return Err(format!("must not use compatibility variants of characters (it reads as \"{folded}\")"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_that_read_as_something_else_are_refused() {
        for fine in ["cohort-1", "urn:uuid:3f1c", "Kohorte-Müller", "Διαβήτης", "https://hospital.example/d/1"]
        {
            assert_eq!(check_id(fine), Ok(()), "{fine}");
        }
        assert!(check_id("a\u{0}b").unwrap_err().contains("control"));
        assert!(check_id("cohort\u{202E}1-txt").unwrap_err().contains("U+202E"));
        assert!(check_id("co\u{200B}hort").unwrap_err().contains("invisible"));
        assert!(check_id("Mu\u{0308}ller").unwrap_err().contains("NFC"));
        assert!(check_id("ｃｏｈｏｒｔ").unwrap_err().contains("\"cohort\""));
        assert!(check_id(&"x".repeat(513)).unwrap_err().contains("512"));
    }
}
