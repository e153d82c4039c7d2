//! The committed spec matches the code, and the served spec and docs are there.

use crate::helpers::{Backend, spawn_app};

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
}
