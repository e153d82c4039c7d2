//! `serve --demo`: the synthetic traffic makes the live detector open, update and resolve
//! incidents within minutes, on the test's clock; a store with data is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use downradar::catalog::{Problem, ServiceId};
use downradar::clock::ManualClock;
use downradar::regions::RegionCode;
use downradar::store::redis::RedisStore;
use downradar::store::{Cell, HistoryCount, Store};

use crate::helpers::{Backend, RedisServer, TestApp, build_app, spawn_app_with_only, test_epoch};

/// Drives the demo for `minutes` of its clock, two seconds at a time.
async fn run_demo(app: &TestApp, minutes: u64) {
    // Close the first bucket, then let the detector learn from the demo's history and commit
    // (aws's status then lists its regions) before moving on: the lease lasts three ticks of
    // the test's clock, so the clock must not race ahead of a commit.
    app.clock.advance(Duration::from_secs(12));
    let mut learned = false;
    for _ in 0..1800 {
        let status = app.get("/v1/services/aws/status").await.json();
        if status["regions"].as_array().is_some_and(|r| !r.is_empty()) {
            learned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(learned, "the detector never finished its warm-up");
    for _ in 6..minutes * 30 {
        app.clock.advance(Duration::from_secs(2));
        // The detector reads no further than the demo has written, so no step outruns the
        // traffic; the pause lets both keep up.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every incident event so far, by incident, with the time (seconds from the start) of each.
async fn events_by_incident(app: &TestApp) -> BTreeMap<String, Vec<(String, i64)>> {
    let start = test_epoch().unix_timestamp();
    let list = app.get("/v1/incidents?limit=100").await;
    assert_eq!(list.status, 200, "{}", list.text);
    let mut events: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for incident in list.json()["incidents"].as_array().expect("a list") {
        let id = incident["id"].as_str().expect("an id");
        let record = app.get(&format!("/v1/incidents/{id}")).await.json();
        for event in record["events"].as_array().expect("events") {
            let at = time::OffsetDateTime::parse(
                event["at"].as_str().expect("at"),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("RFC 3339")
            .unix_timestamp();
            let kind = event["type"].as_str().expect("type").to_owned();
            events
                .entry(id.to_owned())
                .or_default()
                .push((kind, at - start));
        }
    }
    events
}

/// The built-in catalog's entries of the demo's services alone: the same traffic, with less
/// for the detector's warm-up to replay than the whole catalog.
fn demo_catalog() -> tempfile::NamedTempFile {
    let builtin = downradar::catalog::Catalog::builtin();
    let quoted = |items: Vec<&str>| {
        items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut toml = String::new();
    for id in downradar::demo::SERVICES {
        let service = builtin.get(id).expect("a built-in service");
        let problems = quoted(service.problems.iter().map(|p| p.as_str()).collect());
        let depends_on = quoted(
            service
                .depends_on
                .iter()
                .map(|d| d.as_str())
                .filter(|d| downradar::demo::SERVICES.contains(d))
                .collect(),
        );
        toml.push_str(&format!(
            "[[service]]\nid = {id:?}\nname = {:?}\nproblems = [{problems}]\n\
             depends_on = [{depends_on}]\n\n",
            service.name
        ));
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), toml).expect("write the catalog");
    file
}

async fn the_demo_opens_updates_and_resolves_incidents(backend: Backend) {
    let catalog = demo_catalog();
    let path = catalog.path().to_str().expect("a UTF-8 path");
    let flags = ["--demo", "--detector-interval", "1s", "--catalog", path];
    let app = spawn_app_with_only(backend, &flags).await;
    run_demo(&app, 30).await;
    // The detector catches up with the clock on its own task: wait for the outages of the
    // first 25 minutes to have shown (the first has resolved by then).
    let mut events = BTreeMap::new();
    for _ in 0..300 {
        events = events_by_incident(&app).await;
        let resolved = events
            .values()
            .flatten()
            .any(|(kind, _)| kind == "incident.resolved");
        let late = events.values().flatten().any(|&(_, at)| at >= 25 * 60);
        if resolved && late {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all: Vec<(&str, i64)> = events
        .values()
        .flatten()
        .map(|(kind, at)| (kind.as_str(), *at))
        .collect();
    let first = |kind: &str| {
        all.iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, at)| *at)
            .min()
    };
    // The first outage starts at once: its incident opens well within two minutes.
    let opened = first("incident.opened").unwrap_or_else(|| panic!("nothing opened: {events:?}"));
    assert!(opened <= 90, "opened only after {opened} s: {events:?}");
    assert!(first("incident.updated").is_some(), "{events:?}");
    let resolved = first("incident.resolved").unwrap_or_else(|| panic!("{events:?}"));
    // It resolves once its reports have been back to normal for --resolve-after (15m).
    assert!(
        resolved <= 30 * 60,
        "resolved only after {resolved} s: {events:?}"
    );
    // Several outages in half an hour, each one incident that opens before it resolves.
    assert!(events.len() >= 5, "{events:?}");
    for (id, kinds) in &events {
        assert_eq!(kinds[0].0, "incident.opened", "{id}: {kinds:?}");
        let resolutions = kinds
            .iter()
            .filter(|(k, _)| k == "incident.resolved")
            .count();
        assert!(resolutions <= 1, "{id}: {kinds:?}");
    }
    // Only the demo's services have incidents, and one of them cascades.
    let listed = app.get("/v1/incidents?limit=100").await.json();
    let incidents = listed["incidents"].as_array().expect("a list");
    for incident in incidents {
        let service = incident["service"].as_str().expect("a service");
        assert!(downradar::demo::SERVICES.contains(&service), "{listed}");
    }
    assert!(
        incidents
            .iter()
            .any(|i| i["caused_by"].as_array().is_some_and(|c| !c.is_empty())),
        "no cascade: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_opens_updates_and_resolves_incidents_in_memory() {
    the_demo_opens_updates_and_resolves_incidents(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_opens_updates_and_resolves_incidents_in_redis() {
    the_demo_opens_updates_and_resolves_incidents(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_refuses_a_store_that_holds_reports() {
    let redis = RedisServer::start();
    let clock = Arc::new(ManualClock::new(test_epoch()));
    let store = RedisStore::connect(&redis.url(), settings()).expect("connect to the test's Redis");
    store
        .add_history(&[HistoryCount {
            service: ServiceId::parse("tiktok").unwrap(),
            bucket: test_epoch().unix_timestamp() - 3600,
            cell: Cell {
                region: RegionCode::parse("DE").unwrap(),
                problem: Problem::parse("login").unwrap(),
            },
            count: 3,
        }])
        .await
        .expect("history");
    let Err(error) = build_app(Some(&redis.url()), &["--demo"], clock).await else {
        panic!("--demo must refuse a store with reports");
    };
    let message = format!("{error:#}");
    assert!(message.contains("reports of tiktok"), "{message}");
    assert!(message.contains("empty Redis database"), "{message}");
}

fn settings() -> downradar::store::StoreSettings {
    downradar::store::StoreSettings {
        bucket: downradar::buckets::BucketWidth::new(Duration::from_secs(10)).unwrap(),
        retention: Duration::from_secs(8 * 86_400),
        rollup_retention: Duration::from_secs(90 * 86_400),
        dedup_window: Duration::from_secs(900),
        max_reporters_per_address: None,
        event_retention: Duration::from_secs(86_400),
    }
}
