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

/// A message from a parser (serde's, say) that quotes client input in its own way, made safe
/// to send back: each part in backticks or in double quotes cut after its first `max_chars`
/// characters (`…` after the closing mark), control characters escaped, and the whole cut
/// after [`MAX_MESSAGE_CHARS`] characters in case its marks do not pair up.
pub fn tamed(message: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS));
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            '`' | '"' => {
                // The quoted part, up to its closing mark (in double quotes, `\"` is part of
                // it: Rust's debug quoting).
                let mut inner = String::new();
                let mut closed = false;
                let mut escaped = false;
                for d in chars.by_ref() {
                    if d == c && !escaped {
                        closed = true;
                        break;
                    }
                    escaped = c == '"' && d == '\\' && !escaped;
                    inner.push(d);
                }
                let cut = inner.char_indices().nth(max_chars).map(|(end, _)| end);
                out.push(c);
                push_escaped(&mut out, &inner[..cut.unwrap_or(inner.len())]);
                if closed || cut.is_some() {
                    out.push(c);
                }
                if cut.is_some() {
                    out.push('…');
                }
            }
            c => push_escaped(&mut out, c.encode_utf8(&mut [0; 4])),
        }
    }
    match out.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &out[..end]),
        None => out,
    }
}

/// The longest message [`tamed`] gives, in characters (before its `…`).
pub const MAX_MESSAGE_CHARS: usize = 400;

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_MESSAGE_CHARS, quoted, tamed};

    #[test]
    fn parser_messages_are_cut_where_they_quote_input() {
        let long = "k".repeat(3900);
        let unknown = format!(
            "unknown field `{long}`, expected one of `problem`, `region` at line 1 column 3905"
        );
        assert_eq!(
            tamed(&unknown, 8),
            "unknown field `kkkkkkkk`…, expected one of `problem`, `region` at line 1 column 3905"
        );
        let wrong = format!(
            "invalid type: string {:?}, expected a location",
            format!("a\"{long}")
        );
        assert_eq!(
            tamed(&wrong, 8),
            "invalid type: string \"a\\\"kkkkk\"…, expected a location"
        );
        // Control characters are escaped; short parts are left as they are.
        assert_eq!(
            tamed("unknown field `a\u{1b}[31mred\u{0}`, expected `x`", 64),
            "unknown field `a\\u{1b}[31mred\\0`, expected `x`"
        );
        // A mark that never closes still cuts what follows it, and the whole is bounded.
        assert_eq!(tamed(&format!("bad `{long}"), 8), "bad `kkkkkkkk`…");
        let many = "`a` ".repeat(1000);
        assert_eq!(tamed(&many, 8).chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn quotes_escapes_and_cuts_by_characters() {
        assert_eq!(quoted("tiktok", 8), r#""tiktok""#);
        assert_eq!(quoted("ab\"c\nd", 8), r#""ab\"c\nd""#);
        // Eight characters, not eight bytes: a multi-byte character is never split.
        assert_eq!(quoted("ééééééééé", 8), "\"éééééééé\"…");
        assert_eq!(quoted("", 8), r#""""#);
    }
}
