//! Client input echoed back in messages.

/// `text` quoted and escaped for a message (a quote or a line break in it cannot pass for the
/// message's own), cut after its first `max_chars` characters with `…` past the closing
/// quote: whatever a client sends is echoed back only as far as anyone needs to recognise it.
pub fn quoted(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn quotes_escapes_and_cuts_by_characters() {
        assert_eq!(quoted("tiktok", 8), r#""tiktok""#);
        assert_eq!(quoted("ab\"c\nd", 8), r#""ab\"c\nd""#);
        // Eight characters, not eight bytes: a multi-byte character is never split.
        assert_eq!(quoted("ééééééééé", 8), "\"éééééééé\"…");
        assert_eq!(quoted("", 8), r#""""#);
    }
}
