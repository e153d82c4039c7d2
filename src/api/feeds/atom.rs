//! An Atom 1.0 document (RFC 4287), written by hand: the few elements downradar's feeds use,
//! every text and attribute escaped.

use time::OffsetDateTime;

use super::xml::{escape, rfc3339};

/// The Atom namespace.
pub const NAMESPACE: &str = "http://www.w3.org/2005/Atom";

/// A feed: its metadata and its entries, in the order given (newest first).
#[derive(Debug, Clone)]
pub struct Feed {
    /// A permanent, universally unique IRI that names the feed whatever URL serves it.
    pub id: String,
    pub title: String,
    pub subtitle: Option<String>,
    /// The absolute URL of this document (`rel="self"`).
    pub self_href: String,
    /// The same data as JSON (`rel="alternate"`, `type="application/json"`).
    pub json_href: String,
    /// The next (older) page, if there is one (`rel="next"`, RFC 5005).
    pub next_href: Option<String>,
    pub updated: OffsetDateTime,
    pub author: String,
    /// The software that wrote the feed, and its home page.
    pub generator: (String, String),
    pub entries: Vec<Entry>,
}

/// One entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// A permanent, universally unique IRI naming the entry.
    pub id: String,
    pub title: String,
    pub updated: OffsetDateTime,
    pub published: OffsetDateTime,
    /// The entry's own resource, as JSON (`rel="alternate"`).
    pub json_href: String,
    /// `term`s of `<category>` elements.
    pub categories: Vec<String>,
    /// Plain text.
    pub summary: String,
}

impl Feed {
    /// The document, as UTF-8 XML.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024 + 1024 * self.entries.len());
        out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        out.push_str(&format!("<feed xmlns=\"{NAMESPACE}\">\n"));
        element(&mut out, 1, "id", &self.id);
        element(&mut out, 1, "title", &self.title);
        if let Some(subtitle) = &self.subtitle {
            element(&mut out, 1, "subtitle", subtitle);
        }
        element(&mut out, 1, "updated", &rfc3339(self.updated));
        link(&mut out, 1, "self", "application/atom+xml", &self.self_href);
        link(
            &mut out,
            1,
            "alternate",
            "application/json",
            &self.json_href,
        );
        if let Some(next) = &self.next_href {
            link(&mut out, 1, "next", "application/atom+xml", next);
        }
        out.push_str("  <author>\n");
        element(&mut out, 2, "name", &self.author);
        out.push_str("  </author>\n");
        let (name, uri) = &self.generator;
        out.push_str(&format!(
            "  <generator uri=\"{}\">{}</generator>\n",
            escape(uri),
            escape(name)
        ));
        for entry in &self.entries {
            entry.render_into(&mut out);
        }
        out.push_str("</feed>\n");
        out
    }
}

impl Entry {
    fn render_into(&self, out: &mut String) {
        out.push_str("  <entry>\n");
        element(out, 2, "id", &self.id);
        element(out, 2, "title", &self.title);
        element(out, 2, "updated", &rfc3339(self.updated));
        element(out, 2, "published", &rfc3339(self.published));
        link(out, 2, "alternate", "application/json", &self.json_href);
        for term in &self.categories {
            out.push_str(&format!("    <category term=\"{}\"/>\n", escape(term)));
        }
        out.push_str(&format!(
            "    <summary type=\"text\">{}</summary>\n",
            escape(&self.summary)
        ));
        out.push_str("  </entry>\n");
    }
}

/// `<name>text</name>` on its own line, indented `depth` levels.
fn element(out: &mut String, depth: usize, name: &str, text: &str) {
    out.push_str(&"  ".repeat(depth));
    out.push_str(&format!("<{name}>{}</{name}>\n", escape(text)));
}

/// `<link rel=".." type=".." href=".."/>` on its own line.
fn link(out: &mut String, depth: usize, rel: &str, media_type: &str, href: &str) {
    out.push_str(&"  ".repeat(depth));
    out.push_str(&format!(
        "<link rel=\"{rel}\" type=\"{media_type}\" href=\"{}\"/>\n",
        escape(href)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn feed() -> Feed {
        Feed {
            id: "urn:downradar:feed:incidents".into(),
            title: "Tom & Jerry <3".into(),
            subtitle: None,
            self_href: "http://h/v1/incidents.atom?active=true&region=US".into(),
            json_href: "http://h/v1/incidents?active=true&region=US".into(),
            next_href: None,
            updated: datetime!(2026-11-21 12:40 UTC),
            author: "downradar".into(),
            generator: ("downradar".into(), "https://example.org/".into()),
            entries: vec![Entry {
                id: "urn:downradar:incident:tiktok-1".into(),
                title: "TikTok: outage in US".into(),
                updated: datetime!(2026-11-21 12:40 UTC),
                published: datetime!(2026-11-21 12:01 UTC),
                json_href: "http://h/v1/incidents/tiktok-1".into(),
                categories: vec!["open".into()],
                summary: "\"quoted\" & <b>".into(),
            }],
        }
    }

    #[test]
    fn renders_well_formed_atom_with_everything_escaped() {
        let xml = feed().render();
        let doc = roxmltree::Document::parse(&xml).expect("well formed");
        let root = doc.root_element();
        assert_eq!(root.tag_name().namespace(), Some(NAMESPACE));
        let text = |name: &str| {
            root.children()
                .find(|n| n.has_tag_name((NAMESPACE, name)))
                .and_then(|n| n.text())
        };
        assert_eq!(text("title"), Some("Tom & Jerry <3"));
        assert_eq!(text("updated"), Some("2026-11-21T12:40:00Z"));
        let self_link = root
            .children()
            .find(|n| n.has_tag_name((NAMESPACE, "link")) && n.attribute("rel") == Some("self"))
            .expect("self link");
        assert_eq!(
            self_link.attribute("href"),
            Some("http://h/v1/incidents.atom?active=true&region=US")
        );
        let summary = doc
            .descendants()
            .find(|n| n.has_tag_name((NAMESPACE, "summary")))
            .and_then(|n| n.text());
        assert_eq!(summary, Some("\"quoted\" & <b>"));
    }
}
