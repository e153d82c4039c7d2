//! Atom feeds of incidents and SVG status badges, parsed as a feed reader and a browser would.

use std::time::Duration;

use roxmltree::{Document, Node};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{Answer, TestApp, poll};
use crate::on_both_stores;

const ATOM: &str = "http://www.w3.org/2005/Atom";
const SVG: &str = "http://www.w3.org/2000/svg";

on_both_stores! {
    async fn feeds_are_atom_with_the_incidents_newest_first(app, "--detector-interval", "1s") {
        // GitHub has an outage that ends; then Slack has one that goes on.
        let github = outage(&app, "github", "US", "login").await;
        // The resolution time, half as long again on so sparse a series.
        app.clock.advance(Duration::from_secs(25 * 60));
        poll(&app, &format!("/v1/incidents/{github}"), |v| v["incident"]["status"] == "resolved").await;
        // A feed reader polling an unchanged feed gets 304 Not Modified without a body.
        let first = conditional_get(&app, "/v1/incidents.atom", None).await;
        assert_eq!(first.status(), 200);
        let etag = header(&first, "etag");
        assert!(etag.starts_with('"') && etag.len() > 2, "a strong ETag: {etag}");
        // No date: a feed's newest date can go back, and would then make a changed feed
        // look unchanged to If-Modified-Since.
        assert_eq!(crate::helpers::header(&first, "last-modified"), None);
        // The links come from these headers: a shared cache keeps a copy per value.
        let vary = "Host, Forwarded, X-Forwarded-Host, X-Forwarded-Proto";
        assert_eq!(header(&first, "vary"), vary);
        let again = conditional_get(&app, "/v1/incidents.atom", Some(("if-none-match", etag.as_str()))).await;
        assert_eq!(again.status(), 304);
        assert_eq!(header(&again, "etag"), etag);
        assert_eq!(header(&again, "vary"), vary);
        assert!(again.bytes().await.unwrap().is_empty());
        let dated = conditional_get(&app, "/v1/incidents.atom", Some(("if-modified-since", "Fri, 31 Dec 9999 23:59:59 GMT"))).await;
        assert_eq!(dated.status(), 200, "a date proves nothing about a feed");
        let other = conditional_get(&app, "/v1/incidents.atom", Some(("if-none-match", "\"other\""))).await;
        assert_eq!(other.status(), 200);
        let slack = outage(&app, "slack", "DE", "messaging").await;
        // Once it has changed, the old validators no longer hold.
        let changed = conditional_get(&app, "/v1/incidents.atom", Some(("if-none-match", etag.as_str()))).await;
        assert_eq!(changed.status(), 200);
        assert_ne!(header(&changed, "etag"), etag);

        let answer = app.get("/v1/incidents.atom").await;
        let feed = Feed::parse(&answer);
        assert_eq!(feed.entry_ids(), [urn(&slack), urn(&github)], "newest first");
        let self_href = feed.link("self").expect("a self link");
        assert_eq!(self_href, app.url("/v1/incidents.atom"));

        let open = feed.entry(&slack);
        assert!(open.title.starts_with("Slack: "), "{}", open.title);
        assert!(!open.title.contains("resolved"), "{}", open.title);
        assert_eq!(open.updated, time_of(&feed.text("updated")), "the feed is as new as its newest entry");
        assert!(open.updated >= open.published, "opened after it started");
        assert_eq!(open.link, app.url(&format!("/v1/incidents/{slack}")));
        assert!(open.summary.contains("still open"), "{}", open.summary);
        assert!(open.summary.contains("observed"), "{}", open.summary);

        let resolved = feed.entry(&github);
        assert!(resolved.title.starts_with("GitHub: "), "{}", resolved.title);
        assert!(resolved.title.ends_with(", resolved"), "{}", resolved.title);
        assert!(resolved.updated > resolved.published, "updated when it resolved");
        assert!(resolved.summary.contains("in US"), "{}", resolved.summary);
        assert!(resolved.summary.contains("resolved"), "{}", resolved.summary);

        // The filters of GET /v1/incidents apply, and the links keep them.
        let active = Feed::parse(&app.get("/v1/incidents.atom?region=DE&active=true").await);
        assert_eq!(active.entry_ids(), [urn(&slack)]);
        assert_eq!(active.link("self").unwrap(), app.url("/v1/incidents.atom?active=true&region=DE"));
        assert_ne!(active.text("id"), feed.text("id"), "another feed, another id");
        let page = Feed::parse(&app.get("/v1/incidents.atom?limit=1").await);
        assert_eq!(page.entry_ids(), [urn(&slack)]);
        assert_eq!(
            page.link("next").unwrap(),
            app.url(&format!("/v1/incidents.atom?limit=1&cursor={slack}"))
        );

        // A service's feed has only its incidents.
        let of_github = Feed::parse(&app.get("/v1/services/github/incidents.atom").await);
        assert_eq!(of_github.entry_ids(), [urn(&github)]);
        assert!(of_github.text("title").contains("GitHub"));
        assert_eq!(of_github.link("self").unwrap(), app.url("/v1/services/github/incidents.atom"));
        let of_netflix = Feed::parse(&app.get("/v1/services/netflix/incidents.atom").await);
        assert!(of_netflix.entry_ids().is_empty());
        assert_eq!(of_github.text("id"), Feed::parse(&app.get("/v1/incidents.atom?service=github").await).text("id"));

        // Errors are the API's JSON errors.
        for (path, code) in [
            ("/v1/services/myspace/incidents.atom", "unknown_service"),
            ("/v1/incidents.atom?service=myspace", "unknown_service"),
            ("/v1/incidents.atom?limit=0", "invalid_query"),
            ("/v1/incidents.atom?since=yesterday", "invalid_query"),
            // Times a feed's id and links could not write in UTC.
            ("/v1/incidents.atom?since=9999-12-31T23:00:00-05:00", "invalid_query"),
            ("/v1/incidents.atom?until=0000-01-01T00:00:00%2B01:00", "invalid_query"),
            ("/v1/incidents?until=0000-01-01T00:00:00%2B01:00", "invalid_query"),
            ("/v1/services/github/incidents.atom?service=slack", "invalid_query"),
        ] {
            assert_eq!(app.get(path).await.error_code(), code, "{path}");
        }
    }

    async fn badges_show_the_status_in_shields_style(app, "--detector-interval", "1s") {
        outage(&app, "slack", "DE", "messaging").await;

        let answer = app.get("/v1/services/slack/badge.svg").await;
        let badge = Badge::parse(&answer);
        assert_eq!(badge.texts, ["Slack", "outage"]);
        assert!(badge.fills.contains(&"#e05d44".to_owned()), "{:?}", badge.fills);
        assert_eq!(badge.title, "Slack: outage");

        let quiet = Badge::parse(&app.get("/v1/services/netflix/badge.svg").await);
        assert_eq!(quiet.texts, ["Netflix", "operational"]);
        assert!(quiet.fills.contains(&"#4c1".to_owned()), "{:?}", quiet.fills);
        assert!(quiet.width > badge.width, "wider text, wider badge");

        // An image proxy revalidating an unchanged badge gets 304 Not Modified.
        let first = conditional_get(&app, "/v1/services/slack/badge.svg", None).await;
        let etag = header(&first, "etag");
        let again = conditional_get(&app, "/v1/services/slack/badge.svg", Some(("if-none-match", etag.as_str()))).await;
        assert_eq!(again.status(), 304);
        let netflix = conditional_get(&app, "/v1/services/netflix/badge.svg", Some(("if-none-match", etag.as_str()))).await;
        assert_eq!(netflix.status(), 200, "another badge, another ETag");

        // A label of the client's own, escaped.
        let labelled = Badge::parse(&app.get("/v1/services/netflix/badge.svg?label=%3Cb%3E%20%26%20%22co%22").await);
        assert_eq!(labelled.texts, ["<b> & \"co\"", "operational"]);

        for (path, code) in [
            ("/v1/services/myspace/badge.svg", "unknown_service"),
            ("/v1/services/netflix/badge.svg?label=", "invalid_query"),
            ("/v1/services/netflix/badge.svg?label=a%0Ab", "invalid_query"),
            // Not a character XML allows.
            ("/v1/services/netflix/badge.svg?label=a%EF%BF%BEb", "invalid_query"),
            // Not UTF-8 (it decodes to U+FFFD, which the badge drew).
            ("/v1/services/netflix/badge.svg?label=a%FFb", "invalid_query"),
        ] {
            assert_eq!(app.get(path).await.error_code(), code, "{path}");
        }
        let long = format!("/v1/services/netflix/badge.svg?label={}", "x".repeat(65));
        assert_eq!(app.get(&long).await.error_code(), "invalid_query");
    }
}

#[tokio::test]
async fn self_links_do_not_trust_a_forged_host() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Memory).await;
    for (name, value) in [
        ("host", "evil.example\"><script>"),
        ("x-forwarded-host", "evil.example"),
    ] {
        let response = app
            .client
            .get(app.url("/v1/incidents.atom"))
            .header(name, value)
            .send()
            .await
            .expect("GET");
        let feed = Feed::parse(&Answer::from(response).await);
        let href = feed.link("self").unwrap();
        assert!(!href.contains("evil"), "{name}: {href}");
        assert!(href.ends_with("/v1/incidents.atom"), "{href}");
    }
}

/// Behind a trusted proxy, links follow what it forwarded: RFC 7239 `Forwarded` as well as
/// `X-Forwarded-Host`/`-Proto`, whose scheme is compared without regard to case.
#[tokio::test]
async fn self_links_follow_a_trusted_proxy() {
    let app = crate::helpers::spawn_app_with(
        crate::helpers::Backend::Memory,
        &["--trusted-proxies", "127.0.0.1,::1"],
    )
    .await;
    for headers in [
        &[("forwarded", "host=status.example;proto=https")][..],
        &[
            ("x-forwarded-host", "status.example"),
            ("x-forwarded-proto", "HTTPS"),
        ][..],
    ] {
        let mut request = app.client.get(app.url("/v1/incidents.atom"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let feed = Feed::parse(&Answer::from(request.send().await.expect("GET")).await);
        assert_eq!(
            feed.link("self").unwrap(),
            "https://status.example/v1/incidents.atom",
            "{headers:?}"
        );
    }
}

/// GET `path`, with one conditional request header if given.
async fn conditional_get(
    app: &TestApp,
    path: &str,
    condition: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some((name, value)) = condition {
        request = request.header(name, value);
    }
    request.send().await.expect("GET")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    crate::helpers::header(response, name).unwrap_or_else(|| panic!("no {name} header"))
}

/// Floods `service` with reports until the detector opens an incident; its id.
async fn outage(app: &TestApp, service: &str, region: &str, problem: &str) -> String {
    for i in 0..60 {
        let body = serde_json::json!({"problem": problem, "region": region, "client_id": format!("{service}{i}")});
        assert_eq!(app.report(service, &body).await.status, 202);
    }
    // The detector ticks every (real) second on the test's clock: close the bucket.
    app.clock.advance(Duration::from_secs(2 * 60));
    let path = format!("/v1/incidents?active=true&service={service}");
    let list = poll(app, &path, |v| {
        v["incidents"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    list["incidents"][0]["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}

fn urn(incident: &str) -> String {
    format!("urn:downradar:incident:{incident}")
}

fn time_of(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
}

/// The child of `node` named `name` in the Atom namespace.
fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name((ATOM, name)))
}

fn text_of(node: Node<'_, '_>, name: &str) -> String {
    child(node, name)
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("<{name}> missing or empty"))
        .to_owned()
}

/// An Atom feed, checked against RFC 4287's requirements as it is read.
struct Feed {
    xml: String,
}

struct Entry {
    title: String,
    updated: OffsetDateTime,
    published: OffsetDateTime,
    link: String,
    summary: String,
}

impl Feed {
    fn parse(answer: &Answer) -> Self {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/atom+xml; charset=utf-8")
        );
        let feed = Self {
            xml: answer.text.clone(),
        };
        let doc = feed.doc();
        let root = doc.root_element();
        assert!(root.has_tag_name((ATOM, "feed")), "{}", feed.xml);
        for required in ["id", "title", "updated"] {
            assert_eq!(
                root.children()
                    .filter(|n| n.has_tag_name((ATOM, required)))
                    .count(),
                1,
                "one <{required}>"
            );
        }
        time_of(&text_of(root, "updated"));
        assert!(
            child(root, "author")
                .and_then(|a| child(a, "name"))
                .is_some(),
            "an author"
        );
        for entry in root.children().filter(|n| n.has_tag_name((ATOM, "entry"))) {
            for required in ["id", "title", "updated", "published", "summary"] {
                assert!(
                    child(entry, required).is_some(),
                    "an entry without <{required}>"
                );
            }
            time_of(&text_of(entry, "updated"));
            time_of(&text_of(entry, "published"));
        }
        feed
    }

    fn doc(&self) -> Document<'_> {
        Document::parse(&self.xml).unwrap_or_else(|e| panic!("not XML ({e}): {}", self.xml))
    }

    fn text(&self, name: &str) -> String {
        text_of(self.doc().root_element(), name)
    }

    fn link(&self, rel: &str) -> Option<String> {
        let doc = self.doc();
        let link = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name((ATOM, "link")) && n.attribute("rel") == Some(rel))?;
        link.attribute("href").map(str::to_owned)
    }

    fn entry_ids(&self) -> Vec<String> {
        let doc = self.doc();
        doc.root_element()
            .children()
            .filter(|n| n.has_tag_name((ATOM, "entry")))
            .map(|e| text_of(e, "id"))
            .collect()
    }

    fn entry(&self, incident: &str) -> Entry {
        let doc = self.doc();
        let entry = doc
            .root_element()
            .children()
            .filter(|n| n.has_tag_name((ATOM, "entry")))
            .find(|e| text_of(*e, "id") == urn(incident))
            .unwrap_or_else(|| panic!("no entry for {incident}"));
        Entry {
            title: text_of(entry, "title"),
            updated: time_of(&text_of(entry, "updated")),
            published: time_of(&text_of(entry, "published")),
            link: child(entry, "link")
                .and_then(|l| l.attribute("href"))
                .expect("a link")
                .to_owned(),
            summary: text_of(entry, "summary"),
        }
    }
}

/// What a badge shows.
struct Badge {
    title: String,
    /// The visible texts (not the shadows), left to right.
    texts: Vec<String>,
    fills: Vec<String>,
    width: u32,
}

impl Badge {
    fn parse(answer: &Answer) -> Self {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(
            answer.content_type.as_deref(),
            Some("image/svg+xml; charset=utf-8")
        );
        let doc = Document::parse(&answer.text)
            .unwrap_or_else(|e| panic!("not XML ({e}): {}", answer.text));
        let root = doc.root_element();
        assert!(root.has_tag_name((SVG, "svg")), "{}", answer.text);
        let title = doc
            .descendants()
            .find(|n| n.has_tag_name((SVG, "title")))
            .and_then(|n| n.text())
            .expect("a <title>")
            .to_owned();
        assert_eq!(root.attribute("aria-label"), Some(title.as_str()));
        assert_eq!(root.attribute("role"), Some("img"));
        let texts = doc
            .descendants()
            .filter(|n| n.has_tag_name((SVG, "text")) && n.attribute("aria-hidden").is_none())
            .map(|n| n.text().unwrap_or_default().to_owned())
            .collect();
        let fills = doc
            .descendants()
            .filter(|n| n.has_tag_name((SVG, "rect")))
            .filter_map(|n| n.attribute("fill").map(str::to_owned))
            .collect();
        let width = root
            .attribute("width")
            .and_then(|w| w.parse().ok())
            .expect("a width");
        Self {
            title,
            texts,
            fills,
            width,
        }
    }
}
