//! A status badge in the shields.io "flat" style: a grey label on the left, a coloured
//! message on the right, each as wide as its text in 11 px Verdana.
//!
//! The widths come from Verdana's advance widths (font units of a 2048-unit em) for printable
//! ASCII, as shields' own width table does; other characters get an estimate. `textLength`
//! makes renderers fit the text into the computed width exactly, so an estimate that is a
//! little off only squeezes or stretches a glyph or two, and the badge does not depend on the
//! fonts of the machine showing it.

use super::xml::escape;

/// Grey of the label part.
pub const LABEL_COLOR: &str = "#555";
/// Colour of "operational".
pub const GREEN: &str = "#4c1";
/// Colour of "possible problems".
pub const YELLOW: &str = "#dfb317";
/// Colour of "outage".
pub const RED: &str = "#e05d44";

/// Pixels of padding on either side of each text.
const PADDING: u32 = 5;
/// Font size the advance widths are scaled to, in pixels.
const FONT_PX: f64 = 11.0;
/// Font units per em of Verdana.
const UNITS_PER_EM: f64 = 2048.0;

/// Advance widths of Verdana for `' '` (0x20) to `'~'` (0x7E), in font units.
#[rustfmt::skip]
const ASCII_ADVANCE: [u16; 95] = [
    // space ! " # $ % & ' ( ) * + , - . /
    720, 823, 1055, 1823, 1303, 2215, 1484, 556, 909, 909, 1303, 1823, 745, 909, 745, 909,
    // 0-9
    1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303,
    // : ; < = > ? @
    909, 909, 1823, 1823, 1823, 1118, 2048,
    // A-Z
    1401, 1405, 1430, 1577, 1294, 1178, 1587, 1540, 862, 925, 1423, 1165, 1726,
    1532, 1626, 1241, 1626, 1426, 1398, 1237, 1501, 1401, 2025, 1403, 1237, 1398,
    // [ \ ] ^ _ `
    909, 909, 909, 1823, 1303, 1303,
    // a-z
    1229, 1270, 1066, 1270, 1208, 720, 1270, 1294, 562, 677, 1198, 562, 1993,
    1294, 1239, 1270, 1270, 868, 1065, 807, 1294, 1198, 1675, 1198, 1198, 1067,
    // { | } ~
    1300, 909, 1300, 1823,
];

/// Width in pixels of `c` in 11 px Verdana: exact for printable ASCII; for the rest an
/// estimate (nothing for combining marks, a full em for East Asian wide characters, the
/// width of a typical capital otherwise).
fn char_width(c: char) -> f64 {
    let units = match c {
        ' '..='~' => f64::from(ASCII_ADVANCE[c as usize - 0x20]),
        '\u{0300}'..='\u{036F}' | '\u{200B}'..='\u{200F}' => 0.0,
        '\u{1100}'..='\u{115F}'
        | '\u{2E80}'..='\u{A4CF}'
        | '\u{AC00}'..='\u{D7A3}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FE30}'..='\u{FE4F}'
        | '\u{FF00}'..='\u{FF60}'
        | '\u{FFE0}'..='\u{FFE6}'
        | '\u{1F300}'..='\u{1FAFF}'
        | '\u{20000}'..='\u{3FFFD}' => UNITS_PER_EM,
        _ => 1401.0,
    };
    units * FONT_PX / UNITS_PER_EM
}

/// Width in pixels of `text` in 11 px Verdana, rounded up to an odd number of pixels so that
/// the text's centre falls on a pixel boundary with the padding (as shields does).
pub fn text_width(text: &str) -> u32 {
    let width = text.chars().map(char_width).sum::<f64>().ceil() as u32;
    width | 1
}

/// The SVG of a badge saying `label` (grey) and `message` (on `color`).
pub fn render(label: &str, message: &str, color: &str) -> String {
    let label_text = text_width(label);
    let message_text = text_width(message);
    let left = label_text + 2 * PADDING;
    let right = message_text + 2 * PADDING;
    let total = left + right;
    // Texts are drawn at ten times the size and scaled by 0.1, for sub-pixel placement.
    let label_x = left * 5;
    let message_x = left * 10 + right * 5;
    let title = escape(&format!("{label}: {message}"));
    let label = escape(label);
    let message = escape(message);
    let color = escape(color);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{title}"><title>{title}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{left}" height="20" fill="{LABEL_COLOR}"/><rect x="{left}" width="{right}" height="20" fill="{color}"/><rect width="{total}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110"><text aria-hidden="true" x="{label_x}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{label_length}">{label}</text><text x="{label_x}" y="140" transform="scale(.1)" fill="#fff" textLength="{label_length}">{label}</text><text aria-hidden="true" x="{message_x}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{message_length}">{message}</text><text x="{message_x}" y="140" transform="scale(.1)" fill="#fff" textLength="{message_length}">{message}</text></g></svg>"##,
        label_length = label_text * 10,
        message_length = message_text * 10,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_glyphs() {
        // Narrow and wide letters of the same count differ, and widths add up.
        assert!(text_width("iiii") < text_width("WWWW"));
        assert!(text_width("operational") > text_width("outage"));
        // "operational" is about 62 px wide in 11 px Verdana (shields: 61.8).
        assert_eq!(text_width("operational"), 63);
        assert_eq!(text_width("") % 2, 1);
        assert!(text_width("東京") >= 22);
        assert_eq!(text_width("e\u{301}"), text_width("e"));
    }

    #[test]
    fn badge_is_well_formed_svg_with_escaped_text() {
        let svg = render("Tom & <Jerry>", "outage", RED);
        let doc = roxmltree::Document::parse(&svg).expect("well formed");
        let root = doc.root_element();
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        assert_eq!(root.attribute("aria-label"), Some("Tom & <Jerry>: outage"));
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(
            texts,
            ["Tom & <Jerry>", "Tom & <Jerry>", "outage", "outage"]
        );
        let width: u32 = root.attribute("width").unwrap().parse().unwrap();
        assert_eq!(
            width,
            text_width("Tom & <Jerry>") + text_width("outage") + 4 * PADDING
        );
        assert!(
            doc.descendants()
                .any(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(RED))
        );
    }
}
