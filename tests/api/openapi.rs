//! The committed spec matches the code, and the served spec and docs are there.

use crate::helpers::{Backend, TestApp, spawn_app};

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn committed_spec_matches_the_code() {
    let generated = downradar::api::openapi()
        .to_pretty_json()
        .expect("spec serialises");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"),
            format!("{generated}\n"),
        )
        .expect("write openapi/openapi.json");
        return;
    }
    assert!(
        COMMITTED.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date; regenerate it with\n    \
         cargo run -- openapi > openapi/openapi.json\n(or UPDATE_OPENAPI=1 cargo test --test api openapi)"
    );
}

#[test]
fn every_operation_documents_summary_description_and_errors() {
    let spec: serde_json::Value =
        serde_json::from_str(&downradar::api::openapi().to_json().unwrap()).unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().unwrap();
    for expected in [
        "/v1/services/{id}/reports",
        "/v1/services",
        "/v1/services/{id}",
        "/v1/regions",
        "/v1/services/{id}/status",
        "/v1/services/{id}/problems",
        "/v1/services/{id}/map",
        "/v1/incidents",
        "/v1/incidents/{id}",
        "/v1/outages/now",
        "/v1/events",
        "/v1/incidents.atom",
        "/v1/services/{id}/incidents.atom",
        "/v1/services/{id}/badge.svg",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: no summary"
            );
            assert!(
                op["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: no description"
            );
            // Swagger UI fills a parameter's example into "Try it out": an optional filter
            // with one (a past date, a made-up cursor) made the first try answer nothing.
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["required"] != true {
                    let name = &param["name"];
                    assert!(
                        param["example"].is_null()
                            && param["examples"].is_null()
                            && param["schema"]["example"].is_null()
                            && param["schema"]["examples"].is_null(),
                        "{what}: optional parameter {name} has an example: {param}"
                    );
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                if status == "304" {
                    // Not Modified has no body by definition (RFC 9110 §15.4.5).
                    assert!(response["content"].is_null(), "{what} 304 has content");
                    continue;
                }
                let content = response["content"].as_object();
                assert!(
                    content.is_some_and(|c| !c.is_empty()),
                    "{what} {status}: no content"
                );
                for (media, body) in content.unwrap() {
                    assert!(
                        !body["example"].is_null() || !body["examples"].is_null(),
                        "{what} {status} {media}: no example"
                    );
                }
            }
        }
    }
    let sse = &paths["/v1/events"]["get"]["responses"]["200"]["content"];
    assert!(
        sse["text/event-stream"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/IncidentEvent")),
        "the SSE feed documents its event schema: {sse}"
    );
    let post = &paths["/v1/services/{id}/reports"]["post"]["responses"];
    for status in ["202", "400", "404", "413", "415", "422", "503"] {
        assert!(
            post.get(status).is_some(),
            "POST reports does not document {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_and_swagger_ui_are_served() {
    let app = spawn_app(Backend::Memory).await;
    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.status, 200);
    assert_eq!(spec.json()["info"]["title"], "downradar");
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status, 200, "{}", docs.text);
    assert!(docs.text.contains("swagger"), "{}", docs.text);
    // Its pages, and their scripts, may not be framed by another site (clickjacking of the
    // filled-in "Try it out" forms), however the path is spelled.
    for path in ["/docs/", "/docs/swagger-ui.css", "/%64ocs/"] {
        let answer = app.client.get(app.url(path)).send().await.unwrap();
        let header = |name| crate::helpers::header(&answer, name);
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{path}");
        assert_eq!(
            header("content-security-policy").as_deref(),
            Some("frame-ancestors 'none'"),
            "{path}"
        );
    }
    // Nowhere else.
    let spec = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(crate::helpers::header(&spec, "x-frame-options"), None);
    // No answer is sniffed for another type than it says: pages, the spec, errors, reports.
    let report = app
        .client
        .post(app.url("/v1/services/tiktok/reports"))
        .json(&serde_json::json!({"problem": "login", "region": "DE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 202);
    for answer in [spec, report] {
        assert_eq!(
            crate::helpers::header(&answer, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
    }
    for path in [
        "/docs/",
        "/docs/swagger-ui.css",
        "/docs/nothing.js",
        "/nowhere",
        "/healthz",
    ] {
        let answer = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            crate::helpers::header(&answer, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
    }
}

/// A property the server writes as `null` is `required` in the spec: a client generated
/// from it must expect the key to be there. Walks real answers (an open incident and its
/// evidence, a status without an incident, an unfiltered series) through their schemas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_answered_as_null_are_required() {
    use downradar::detector::EventType;

    let app = crate::helpers::spawn_app_with(Backend::Memory, &["--no-detector"]).await;
    let start = crate::helpers::test_epoch().unix_timestamp() - 1800;
    let opened = crate::events::event(EventType::Opened, "tiktok", start, &["US"]);
    crate::events::commit(app.store.as_ref(), &[opened]).await;
    let spec: serde_json::Value =
        serde_json::from_str(&downradar::api::openapi().to_json().unwrap()).unwrap();
    let id = format!("tiktok-{start}");
    for (path, schema) in [
        (format!("/v1/incidents/{id}"), "IncidentDetail"),
        ("/v1/incidents?active=true".to_owned(), "IncidentList"),
        ("/v1/services/tiktok/status".to_owned(), "ServiceStatus"),
        ("/v1/services/github/status".to_owned(), "ServiceStatus"),
        ("/v1/services/tiktok/reports".to_owned(), "Series"),
    ] {
        let answer = app.get(&path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        let schema = serde_json::json!({"$ref": format!("#/components/schemas/{schema}")});
        let mut nulls = 0;
        nulls_are_required(&spec, &schema, &answer.json(), &path, &mut nulls);
        assert!(
            nulls > 0,
            "{path} answered no null to check: {}",
            answer.text
        );
    }
}

/// Checks that each `null` in `value` is a required property of its object's schema, and
/// counts them.
fn nulls_are_required(
    spec: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    at: &str,
    nulls: &mut usize,
) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        let resolved = &spec["components"]["schemas"][name];
        assert!(!resolved.is_null(), "{at}: no schema {name}");
        return nulls_are_required(spec, resolved, value, at, nulls);
    }
    if let Some(variants) = schema["oneOf"].as_array() {
        // `Option<T>` of a schema: T, or null.
        for variant in variants.iter().filter(|v| v["type"] != "null") {
            nulls_are_required(spec, variant, value, at, nulls);
        }
        return;
    }
    match value {
        serde_json::Value::Object(fields) => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(|n| n.as_str()).collect())
                .unwrap_or_default();
            for (key, field) in fields {
                let at = format!("{at}.{key}");
                if field.is_null() {
                    *nulls += 1;
                    assert!(
                        required.contains(&key.as_str()),
                        "{at} is null but not required"
                    );
                } else if let Some(property) = schema["properties"].get(key) {
                    nulls_are_required(spec, property, field, &at, nulls);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nulls_are_required(spec, &schema["items"], item, &format!("{at}[{i}]"), nulls);
            }
        }
        _ => {}
    }
}

/// The Swagger UI's files are revalidated rather than fetched again (`ETag`, `no-cache`,
/// `304`), and text goes gzip-compressed to a client that accepts it, as its own
/// representation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_files_are_compressed_and_revalidated() {
    use std::io::Read;

    let app = spawn_app(Backend::Memory).await;
    type Head = (
        u16,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    async fn fetch(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (Head, Vec<u8>) {
        let mut request = app.client.get(app.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = request.send().await.unwrap();
        let header = |name| crate::helpers::header(&answer, name);
        let head = (
            answer.status().as_u16(),
            header("etag"),
            header("content-encoding"),
            header("cache-control"),
            header("vary"),
        );
        (head, answer.bytes().await.unwrap().to_vec())
    }
    let bundle = "/docs/swagger-ui-bundle.js";
    let ((status, etag, coding, cache, _), plain) = fetch(&app, bundle, &[]).await;
    assert_eq!(
        (status, coding, cache.as_deref()),
        (200, None, Some("no-cache"))
    );
    let etag = etag.expect("an ETag");
    assert!(plain.len() > 1_000_000, "{}", plain.len());

    let ((status, gzip_etag, coding, _, vary), gzipped) =
        fetch(&app, bundle, &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!((status, coding.as_deref()), (200, Some("gzip")));
    assert_eq!(vary.as_deref(), Some("Accept-Encoding"));
    let gzip_etag = gzip_etag.expect("an ETag");
    assert_ne!(gzip_etag, etag, "each coding is its own representation");
    assert!(
        gzipped.len() < plain.len() / 3,
        "{} of {}",
        gzipped.len(),
        plain.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);
    // Refused gzip gets the file as it is.
    let ((_, _, coding, _, _), _) = fetch(&app, bundle, &[("accept-encoding", "gzip;q=0")]).await;
    assert_eq!(coding, None);

    // Revalidation: each representation by its own tag.
    let (etag, gzip_etag) = (etag.as_str(), gzip_etag.as_str());
    let ((status, again, coding, _, _), body) =
        fetch(&app, bundle, &[("if-none-match", etag)]).await;
    assert_eq!((status, again.as_deref(), coding), (304, Some(etag), None));
    assert!(body.is_empty());
    let ((status, ..), _) = fetch(
        &app,
        bundle,
        &[("if-none-match", gzip_etag), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 304);
    let ((status, ..), _) = fetch(
        &app,
        bundle,
        &[("if-none-match", etag), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 200, "the other coding's tag does not match");

    // An image is not compressed, but revalidated all the same.
    let ((status, etag, coding, cache, _), _) = fetch(
        &app,
        "/docs/favicon-32x32.png",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(
        (status, coding, cache.as_deref()),
        (200, None, Some("no-cache"))
    );
    assert!(etag.is_some());
    // The page itself too, and a file it lacks stays the JSON 404.
    let ((status, _, coding, ..), _) = fetch(&app, "/docs/", &[("accept-encoding", "gzip")]).await;
    assert_eq!((status, coding.as_deref()), (200, Some("gzip")));
    let ((status, etag, ..), _) =
        fetch(&app, "/docs/nothing.js", &[("accept-encoding", "gzip")]).await;
    assert_eq!((status, etag), (404, None));
}
