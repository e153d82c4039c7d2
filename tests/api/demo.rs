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
use serde_json::Value;

use crate::helpers::{Backend, RedisServer, TestApp, build_app, spawn_app_with_only, test_epoch};

/// Drives the demo for `minutes` of its clock, ten seconds at a time, and returns every
/// incident event it led to, by incident, with the time (seconds from the start) of each.
async fn run_demo(app: &TestApp, minutes: u64) -> BTreeMap<String, Vec<(String, i64)>> {
    let start = test_epoch().unix_timestamp();
    for _ in 0..minutes * 6 {
        app.clock.advance(Duration::from_secs(10));
        // The detector reads no further than the demo has written, so no step outruns the
        // traffic; the pause only lets both tasks keep up.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Wait until the detector has caught up with the clock (its bucket before the last).
    let until = start + minutes as i64 * 60 - 30;
    let mut last = Value::Null;
    for _ in 0..300 {
        let list = app.get("/v1/incidents?limit=100").await;
        assert_eq!(list.status, 200, "{}", list.text);
        last = list.json();
        let mut events: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        let mut latest = 0;
        for incident in last["incidents"].as_array().expect("a list") {
            let id = incident["id"].as_str().expect("an id");
            let record = app.get(&format!("/v1/incidents/{id}")).await.json();
            for event in record["events"].as_array().expect("events") {
                let at = time::OffsetDateTime::parse(
                    event["at"].as_str().expect("at"),
                    &time::format_description::well_known::Rfc3339,
                )
                .expect("RFC 3339")
                .unix_timestamp();
                latest = latest.max(at);
                events
                    .entry(id.to_owned())
                    .or_default()
                    .push((event["type"].as_str().expect("type").to_owned(), at - start));
            }
        }
        if latest >= until {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the detector never caught up with the demo: {last}");
}

async fn the_demo_opens_updates_and_resolves_incidents(backend: Backend) {
    let app = spawn_app_with_only(backend, &["--demo", "--detector-interval", "1s"]).await;
    let events = run_demo(&app, 12).await;
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
    assert!(resolved <= 10 * 60, "resolved only after {resolved} s: {events:?}");
    // Several outages in twelve minutes, each one incident that opens before it resolves.
    assert!(events.len() >= 3, "{events:?}");
    for (id, kinds) in &events {
        assert_eq!(kinds[0].0, "incident.opened", "{id}: {kinds:?}");
        let resolutions = kinds.iter().filter(|(k, _)| k == "incident.resolved").count();
        assert!(resolutions <= 1, "{id}: {kinds:?}");
    }
    // Only the demo's services have incidents, and one of them cascades.
    let cascading = app.get("/v1/incidents?limit=100").await.json();
    let services: Vec<&str> = cascading["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["service"].as_str().unwrap())
        .collect();
    assert!(
        services
            .iter()
            .all(|s| downradar::demo::SERVICES.contains(s)),
        "{services:?}"
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
    let store =
        RedisStore::connect(&redis.url(), settings()).expect("connect to the test's Redis");
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
