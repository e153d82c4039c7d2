//! Writing XML by hand, safely: every piece of text and every attribute value goes through
//! [`escape`], and times through [`rfc3339`].

use std::fmt::Write;

use time::{OffsetDateTime, UtcOffset};

/// `text` as XML character data or a (double- or single-quoted) attribute value: the five
/// markup characters become entities, and characters XML 1.0 does not allow at all, even as
/// references (control characters other than tab, line feed and carriage return, U+FFFE and
/// U+FFFF), become U+FFFD, so whatever a client or the catalog put in, the document stays
/// well formed.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `t` as an RFC 3339 UTC timestamp with whole seconds, e.g. `2026-11-21T12:01:00Z` (the
/// form Atom's date constructs require). Infallible, unlike a general formatter: the
/// incident times it is given lie well within years 0 to 9999.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let mut out = String::with_capacity(20);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn markup_characters_become_entities() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &apos;Jerry&apos;&lt;/a&gt;"
        );
        assert_eq!(escape("Café 東京 ✓"), "Café 東京 ✓");
    }

    #[test]
    fn characters_xml_forbids_are_replaced() {
        assert_eq!(
            escape("a\u{0}b\u{1b}c\u{FFFF}"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}"
        );
        assert_eq!(escape("tab\tnl\ncr\r"), "tab\tnl\ncr\r");
    }

    #[test]
    fn times_are_utc_with_whole_seconds() {
        assert_eq!(
            rfc3339(datetime!(2026-11-21 13:01:02.5 +01:00)),
            "2026-11-21T12:01:02Z"
        );
    }
}
