//! The detector end to end: the live path and the backtest agree, leadership moves without
//! duplicates, incidents reach the API, and accuracy holds on simulated traffic of several
//! seeds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use downradar::backtest::{CountsFeed, replay, score};
use downradar::buckets::BucketWidth;
use downradar::catalog::Catalog;
use downradar::catalog::{Problem, ServiceId};
use downradar::clock::{Clock, ManualClock};
use downradar::detector::live::{LiveDetector, TickOutcome};
use downradar::detector::{
    Detector, DetectorConfig, EventType, Incident, IncidentEvent, IncidentStatus, Scope,
};
use downradar::regions::RegionCode;
use downradar::simulate::{Params, Scenario};
use downradar::store::memory::MemoryStore;
use downradar::store::{Cell, DetectorCommit, HistoryCount, IncidentQuery, Store, StoreSettings};
use time::OffsetDateTime;
use time::macros::datetime;

const START: OffsetDateTime = datetime!(2026-10-01 00:00 UTC);

/// Simulated counts of the first `services` catalog services over `days`, as a file.
fn simulate(services: usize, days: u32, seed: u64) -> (Scenario, tempfile::NamedTempFile) {
    let catalog = Catalog::builtin();
    let scenario = Scenario::generate(
        &catalog.services()[..services],
        Params {
            start: START,
            days,
            bucket: BucketWidth::ONE_MINUTE,
            seed,
            outages_per_week: 3.0,
        },
    )
    .expect("scenario");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    scenario
        .write_counts(std::fs::File::create(file.path()).expect("create"), |_| {})
        .expect("write counts");
    (scenario, file)
}

fn recorded(catalog: &Catalog, file: &tempfile::NamedTempFile) -> CountsFeed {
    CountsFeed::open(file.path(), catalog, BucketWidth::ONE_MINUTE)
}

async fn backtest(catalog: &Catalog, file: &tempfile::NamedTempFile) -> Vec<IncidentEvent> {
    let mut events = Vec::new();
    replay(
        catalog,
        DetectorConfig::default(),
        recorded(catalog, file),
        |e| {
            events.push(e.clone());
            Ok(())
        },
    )
    .await
    .expect("replay");
    events
}

fn store_settings() -> StoreSettings {
    StoreSettings {
        bucket: BucketWidth::ONE_MINUTE,
        retention: Duration::from_secs(30 * 86_400),
        rollup_retention: Duration::from_secs(90 * 86_400),
        dedup_window: Duration::from_secs(900),
        max_reporters_per_address: None,
        event_retention: Duration::from_secs(30 * 86_400),
    }
}

/// A memory store holding the file as history, on a clock at the file's start.
async fn store_with(
    catalog: &Catalog,
    file: &tempfile::NamedTempFile,
) -> (Arc<MemoryStore>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START));
    let store = Arc::new(MemoryStore::new(store_settings(), clock.clone()));
    downradar::import::load(
        store.as_ref(),
        catalog,
        BucketWidth::ONE_MINUTE,
        file.path(),
        None,
    )
    .await
    .expect("import");
    (store, clock)
}

fn live(store: Arc<MemoryStore>, clock: Arc<ManualClock>, catalog: &Catalog) -> LiveDetector {
    warming(store, clock, catalog, Duration::ZERO)
}

/// A live detector that, with no saved state, learns from `warmup` of stored history.
fn warming(
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    catalog: &Catalog,
    warmup: Duration,
) -> LiveDetector {
    LiveDetector::new(
        store,
        clock,
        catalog.clone(),
        DetectorConfig::default(),
        Duration::from_secs(30),
        warmup,
    )
}

/// Every event on the store's stream, oldest first.
async fn streamed(store: &MemoryStore) -> Vec<IncidentEvent> {
    store
        .events_after("0", 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

/// Makes `detector` continue from a cursor at the file's start (as if it had led before).
async fn start_at_the_beginning(store: &MemoryStore, detector: &LiveDetector) {
    commit_start(store, detector.holder()).await;
}

/// Commits a cursor at START as `holder`, which keeps the lease.
async fn commit_start(store: &MemoryStore, holder: &str) {
    assert!(
        store
            .acquire_lease(holder, Duration::from_secs(30))
            .await
            .unwrap()
    );
    store
        .commit_detector(DetectorCommit {
            holder,
            continues_from: store.load_detector().await.unwrap().map(|s| s.cursor),
            cursor: START.unix_timestamp(),
            states: &[],
            forget: &[],
            gaps: &[],
            events: &[],
            refreshed: &[],
        })
        .await
        .expect("commit");
}

#[tokio::test]
async fn the_live_detector_and_the_backtest_decide_the_same_incidents() {
    let (_, file) = simulate(6, 2, 11);
    let catalog = Catalog::builtin();
    let expected = backtest(&catalog, &file).await;
    assert!(
        expected
            .iter()
            .filter(|e| e.kind == EventType::Opened)
            .count()
            >= 3,
        "the scenario must hold incidents to compare: {expected:?}"
    );

    let (store, clock) = store_with(&catalog, &file).await;
    let mut detector = live(store.clone(), clock.clone(), &catalog);
    start_at_the_beginning(&store, &detector).await;
    let mut got = Vec::new();
    // Tick every ten seconds of the clock, as the server does, through both days.
    let end = START + time::Duration::days(2) + time::Duration::minutes(1);
    while clock.now() < end {
        clock.advance(Duration::from_secs(10));
        match detector.tick().await.expect("tick") {
            TickOutcome::Leader(events) => got.extend(events),
            TickOutcome::Follower => panic!("the only replica must lead"),
        }
    }
    assert_eq!(got, expected);
    // And every event is on the stream, in order.
    assert_eq!(streamed(&store).await, expected);
}

#[tokio::test]
async fn a_new_leader_continues_without_duplicates() {
    let (_, file) = simulate(6, 2, 11);
    let catalog = Catalog::builtin();
    let expected = backtest(&catalog, &file).await;

    let (store, clock) = store_with(&catalog, &file).await;
    let mut first = live(store.clone(), clock.clone(), &catalog);
    let mut second = live(store.clone(), clock.clone(), &catalog);
    start_at_the_beginning(&store, &first).await;
    let mut got = Vec::new();
    let end = START + time::Duration::days(2) + time::Duration::minutes(1);
    let handover = START + time::Duration::hours(30);
    let mut leaders = Vec::new();
    while clock.now() < end {
        clock.advance(Duration::from_secs(10));
        // The first replica dies (stops ticking, never releases) at the handover.
        let alive: Vec<&mut LiveDetector> = if clock.now() < handover {
            vec![&mut first, &mut second]
        } else {
            vec![&mut second]
        };
        for (i, detector) in alive.into_iter().enumerate() {
            if let TickOutcome::Leader(events) = detector.tick().await.expect("tick") {
                got.extend(events);
                if leaders.last() != Some(&(clock.now() >= handover, i)) {
                    leaders.push((clock.now() >= handover, i));
                }
            }
        }
    }
    // The second took over after the lease ran out: within two lease periods.
    let taken = streamed(&store).await;
    assert_eq!(got, expected, "leaders: {leaders:?}");
    assert_eq!(taken, expected);
    assert!(
        leaders.len() >= 2,
        "leadership must have moved: {leaders:?}"
    );
}

/// Hours in which the store was down (reports refused, so no bucket of any service holds a
/// report) are missing data, not silence: learned as silence, they made the ordinary traffic
/// after them look like an outage of every busy service (three hours gave 5 false
/// incidents, each open for a day). The same quiet week without the gap opens none either.
#[tokio::test]
async fn hours_without_any_report_are_missing_data_not_silence() {
    let catalog = Catalog::builtin();
    let scenario = Scenario::generate(
        &catalog.services()[..12],
        Params {
            start: START,
            days: 6,
            bucket: BucketWidth::ONE_MINUTE,
            seed: 4,
            outages_per_week: 0.0,
        },
    )
    .expect("scenario");
    let full = tempfile::NamedTempFile::new().unwrap();
    scenario
        .write_counts(std::fs::File::create(full.path()).unwrap(), |_| {})
        .unwrap();
    let text = std::fs::read_to_string(full.path()).unwrap();
    let gap = tempfile::NamedTempFile::new().unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|row| !("2026-10-05T06:00" <= *row && *row < "2026-10-05T09:00"))
        .collect();
    assert!(kept.len() < text.lines().count());
    std::fs::write(gap.path(), kept.join("\n") + "\n").unwrap();
    for (file, label) in [(&full, "no gap"), (&gap, "a three-hour gap")] {
        let opened: Vec<String> = backtest(&catalog, file)
            .await
            .into_iter()
            .filter(|e| e.kind == EventType::Opened && e.at > START + time::Duration::days(1))
            .map(|e| e.incident.id)
            .collect();
        assert_eq!(opened, Vec::<String>::new(), "{label}");
    }
}

/// A catalog of `(id, problems)` services, e.g. `("web", "\"login\", \"app\"")`.
fn catalog_of(services: &[(&str, &str)]) -> Catalog {
    let mut toml = String::new();
    for (id, problems) in services {
        toml.push_str(&format!(
            "[[service]]\nid = \"{id}\"\nname = \"{id}\"\nproblems = [{problems}]\n"
        ));
    }
    Catalog::parse("test.toml", &toml).unwrap()
}

/// An empty memory store whose detector continues from START, as if one had led before.
async fn seeded_store() -> (Arc<MemoryStore>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START));
    let store = Arc::new(MemoryStore::new(store_settings(), clock.clone()));
    commit_start(&store, "seed").await;
    store.release_lease("seed").await.unwrap();
    (store, clock)
}

/// Ten distinct US `login` reporters a minute on `service`, in minutes `from..to` after START.
async fn flood(store: &MemoryStore, service: &str, minutes: std::ops::Range<i64>) {
    flood_with(store, service, minutes, 10).await;
}

/// `count` distinct US `login` reporters a minute on `service`, in minutes `from..to` after
/// START.
async fn flood_with(store: &MemoryStore, service: &str, minutes: std::ops::Range<i64>, count: u64) {
    let counts: Vec<HistoryCount> = minutes
        .map(|m| HistoryCount {
            service: ServiceId::parse(service).unwrap(),
            bucket: START.unix_timestamp() + m * 60,
            cell: Cell {
                region: RegionCode::parse("US").unwrap(),
                problem: Problem::parse("login").unwrap(),
            },
            count,
        })
        .collect();
    store.add_history(&counts).await.unwrap();
}

/// Ticks `detector` every 10 s of the clock for `secs`; the events it committed.
async fn run_for(
    clock: &ManualClock,
    detector: &mut LiveDetector,
    secs: u64,
) -> Vec<IncidentEvent> {
    let mut got = Vec::new();
    for _ in 0..secs / 10 {
        clock.advance(Duration::from_secs(10));
        if let Ok(TickOutcome::Leader(events)) = detector.tick().await {
            got.extend(events);
        }
    }
    got
}

async fn active_incidents(store: &MemoryStore) -> Vec<String> {
    let query = IncidentQuery {
        active_only: true,
        limit: 10,
        ..IncidentQuery::default()
    };
    store
        .incidents(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// An open incident's record follows its figures between events: a flood that grows after
/// the opening shows in the record (and so in `GET /v1/incidents/{id}` and the outages
/// ranked by `GET /v1/outages/now`), with no event announcing it.
#[tokio::test]
async fn an_open_incidents_record_follows_its_figures_between_events() {
    let (store, clock) = seeded_store().await;
    let catalog = catalog_of(&[("web", "\"login\", \"app\"")]);
    let mut detector = live(store.clone(), clock.clone(), &catalog);
    assert!(run_for(&clock, &mut detector, 30 * 60).await.is_empty());
    flood(&store, "web", 30..35).await;
    flood_with(&store, "web", 35..50, 40).await;
    let events = run_for(&clock, &mut detector, 20 * 60).await;
    let opened = events
        .iter()
        .find(|e| e.kind == EventType::Opened)
        .unwrap_or_else(|| panic!("the flood opened an incident: {events:?}"));
    assert!(
        opened.incident.observed_per_min < 15.0,
        "opened on the first minutes: {opened:?}"
    );
    let record = store.incident(&opened.incident.id).await.unwrap().unwrap();
    let (observed, expected) = (
        record.incident.observed_per_min,
        record.incident.expected_per_min,
    );
    assert_eq!(record.incident.status, IncidentStatus::Open, "{record:?}");
    assert!(
        observed > 25.0 && expected < 1.0,
        "the record follows the flood: {record:?}"
    );
    let announced: Vec<&IncidentEvent> = events
        .iter()
        .filter(|e| e.incident.id == opened.incident.id)
        .collect();
    assert_eq!(
        record.events.iter().collect::<Vec<_>>(),
        announced,
        "the events are the ones decided"
    );
    assert!(
        announced
            .iter()
            .all(|e| e.incident.observed_per_min < observed),
        "no event carried the figures: {announced:?}"
    );
}

/// A leader paused for longer than its lease (a stopped process, a suspended VM) while
/// another led, committed an incident and shut down, takes the lease again as if it had
/// renewed it: it must continue from what the other committed, not from its own stale state
/// (which would open the incident a second time).
#[tokio::test]
async fn a_leader_back_from_a_pause_does_not_replay_what_another_committed() {
    let (store, clock) = seeded_store().await;
    let catalog = catalog_of(&[("web", "\"login\", \"app\"")]);
    let mut a = live(store.clone(), clock.clone(), &catalog);
    let mut b = live(store.clone(), clock.clone(), &catalog);
    assert!(run_for(&clock, &mut a, 30 * 60).await.is_empty());
    flood(&store, "web", 30..35).await;
    let by_b = run_for(&clock, &mut b, 10 * 60).await;
    assert!(
        by_b.iter().any(|e| e.kind == EventType::Opened),
        "B took over and opened it"
    );
    b.release().await;
    let by_a = run_for(&clock, &mut a, 60).await;
    let streamed: Vec<(EventType, String)> = store
        .events_after("0", 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event.kind, e.event.incident.id))
        .collect();
    let opened = streamed
        .iter()
        .filter(|(kind, _)| *kind == EventType::Opened)
        .count();
    assert_eq!(opened, 1, "A committed {by_a:?}; the stream: {streamed:?}");
    assert!(
        store.load_detector().await.unwrap().unwrap().cursor >= START.unix_timestamp() + 40 * 60
    );
}

/// The catalog is edited during an incident and the server restarted: an incident whose
/// service's state no longer fits (a problem added) or whose service is gone is resolved,
/// not left open for good; and a removed service's saved state is deleted.
#[tokio::test]
async fn an_incident_whose_state_is_not_kept_across_a_restart_is_resolved() {
    for (after, label) in [
        (catalog_of(&[("web", "\"login\", \"app\"")]), "unchanged"),
        (
            catalog_of(&[("web", "\"login\", \"app\", \"video\"")]),
            "a problem added",
        ),
        (catalog_of(&[("other", "\"login\"")]), "the service removed"),
    ] {
        let (store, clock) = seeded_store().await;
        let before = catalog_of(&[("web", "\"login\", \"app\"")]);
        flood(&store, "web", 30..35).await;
        let mut first = live(store.clone(), clock.clone(), &before);
        let events = run_for(&clock, &mut first, 40 * 60).await;
        assert_eq!(
            events.first().map(|e| e.kind),
            Some(EventType::Opened),
            "{label}"
        );
        assert_eq!(active_incidents(&store).await.len(), 1, "{label}");
        first.release().await;
        let mut second = live(store.clone(), clock.clone(), &after);
        let later = run_for(&clock, &mut second, 3 * 3600).await;
        assert_eq!(
            active_incidents(&store).await,
            Vec::<String>::new(),
            "{label}: {later:?}"
        );
        let resolutions = later
            .iter()
            .filter(|e| e.kind == EventType::Resolved)
            .count();
        assert_eq!(resolutions, 1, "{label}: {later:?}");
        assert!(
            !later.iter().any(|e| e.kind == EventType::Opened),
            "{label}: {later:?}"
        );
        let saved: Vec<String> = store
            .load_detector()
            .await
            .unwrap()
            .unwrap()
            .services
            .iter()
            .map(|saved| saved.service.to_string())
            .collect();
        let expected: Vec<String> = after.services().iter().map(|s| s.id.to_string()).collect();
        assert_eq!(
            saved, expected,
            "{label}: only the catalog's services are kept"
        );
    }
}

#[tokio::test]
async fn incidents_are_served_by_the_api() {
    use crate::helpers::{Backend, poll, spawn_app_with};
    let app = spawn_app_with(Backend::Memory, &["--detector-interval", "1s"]).await;
    // A flood of reports from nothing on one service.
    for i in 0..60 {
        let body =
            serde_json::json!({"problem": "login", "region": "US", "client_id": format!("c{i}")});
        assert_eq!(app.report("github", &body).await.status, 202);
    }
    // The detector task ticks every (real) second on the test's clock: close the bucket and
    // wait for a tick to see it.
    app.clock.advance(Duration::from_secs(2 * 60));
    let incidents = poll(&app, "/v1/incidents?active=true", |v| {
        v["incidents"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let list = incidents["incidents"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{incidents}");
    assert_eq!(list[0]["service"], "github");
    let id = list[0]["id"].as_str().unwrap();

    let detail = app.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(detail.status, 200);
    assert_eq!(detail.json()["events"][0]["type"], "incident.opened");

    let status = app.get("/v1/services/github/status").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["level"], "outage");
    assert_eq!(status.json()["active_incident"]["id"], id);
    assert_eq!(status.json()["reports_24h"], 60);

    // The evidence: reports per minute against the baseline, per region and problem.
    let evidence = &detail.json()["evidence"];
    assert_eq!(evidence["resolution"], "1m", "{evidence}");
    let series = evidence["series"].as_array().unwrap();
    assert!(series.len() >= 30, "from half an hour before: {evidence}");
    let peak = series
        .iter()
        .max_by(|a, b| {
            a["observed_per_min"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["observed_per_min"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(peak["observed_per_min"], 60.0, "{evidence}");
    assert!(
        peak["expected_per_min"].as_f64().unwrap() < 10.0,
        "{evidence}"
    );
    assert_eq!(evidence["regions"][0]["region"], "US", "{evidence}");
    let us = &evidence["regions"][0];
    assert!(
        us["observed_per_min"].as_f64().unwrap() > us["expected_per_min"].as_f64().unwrap(),
        "{evidence}"
    );
    assert_eq!(evidence["problems"][0]["problem"], "login", "{evidence}");

    // What is down now, the problems, the map, the series with its band.
    let now = app.get("/v1/outages/now").await.json();
    assert_eq!(now["outages"][0]["incident"]["id"], id, "{now}");
    assert!(now["outages"][0]["excess_per_min"].as_f64().unwrap() > 0.0);
    let problems = app
        .get("/v1/services/github/problems?window=1h")
        .await
        .json();
    assert_eq!(problems["total"], 60, "{problems}");
    assert_eq!(problems["problems"][0]["problem"], "login");
    assert_eq!(problems["problems"][0]["share"], 1.0);
    assert_eq!(
        problems["problems"].as_array().unwrap().len(),
        Catalog::builtin().get("github").unwrap().problems.len()
    );
    let map = app.get("/v1/services/github/map").await.json();
    let us = &map["countries"][0];
    assert_eq!(
        (&us["region"], &us["reports"]),
        (&"US".into(), &60.into()),
        "{map}"
    );
    assert!(us["ratio"].as_f64().unwrap() > 3.0, "{map}");
    let (lat, lon) = (us["lat"].as_f64().unwrap(), us["lon"].as_f64().unwrap());
    assert!(
        (25.0..50.0).contains(&lat) && (-125.0..-65.0).contains(&lon),
        "{map}"
    );
    let reports = app
        .get("/v1/services/github/reports?resolution=1m&region=US")
        .await
        .json();
    let flood = reports["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["count"] == 60)
        .unwrap_or_else(|| panic!("{reports}"));
    assert!(
        flood["upper"].as_u64().unwrap() < 60,
        "the flood is above the band: {flood}"
    );
    assert!(flood["expected"].as_f64().unwrap() < 10.0, "{flood}");
    // Filters of the list.
    let count = |path: &str| {
        let path = path.to_owned();
        let app = &app;
        async move {
            app.get(&path).await.json()["incidents"]
                .as_array()
                .map_or(usize::MAX, Vec::len)
        }
    };
    assert_eq!(count("/v1/incidents?region=US&service=github").await, 1);
    assert_eq!(count("/v1/incidents?region=DE").await, 0);
    assert_eq!(count("/v1/incidents?active=false").await, 0);
    assert_eq!(count("/v1/incidents?since=2100-01-01T00:00:00Z").await, 0);
    assert_eq!(count("/v1/incidents?until=2000-01-01T00:00:00Z").await, 0);
    // A range that holds nothing lists nothing (it is a filter, not an error).
    assert_eq!(
        count("/v1/incidents?since=2026-11-22T00:00:00Z&until=2026-11-21T00:00:00Z").await,
        0
    );
    // An exclusive end with a fraction of a second takes in that whole second.
    let started = app.get("/v1/incidents").await.json()["incidents"][0]["started_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let just_after = format!("{}.5Z", started.trim_end_matches('Z'));
    assert_eq!(
        count(&format!("/v1/incidents?since={started}&until={just_after}")).await,
        1
    );
    for bad in [
        "/v1/incidents?cursor=nope",
        "/v1/incidents?scope=planetary",
        "/v1/incidents?since=yesterday",
        "/v1/services/github/map?window=9d",
        "/v1/services/github/problems?window=0s",
    ] {
        assert_eq!(app.get(bad).await.error_code(), "invalid_query", "{bad}");
    }
    // A bad value is refused naming its parameter, the value and what it takes.
    for (bad, message) in [
        (
            "/v1/incidents?limit=-1",
            r#"limit must be a whole number from 1 to 200, not "-1""#,
        ),
        (
            "/v1/incidents?limit=201",
            r#"limit must be a whole number from 1 to 200, not "201""#,
        ),
        (
            "/v1/incidents?active=yes",
            r#"active must be true or false, not "yes""#,
        ),
        (
            "/v1/incidents?partial=1",
            r#"partial must be true or false, not "1""#,
        ),
        (
            "/v1/incidents?scope=planetary",
            r#"scope must be global or regional, not "planetary""#,
        ),
        (
            "/v1/incidents?limit=1&limit=2",
            "limit is given more than once; give it once",
        ),
    ] {
        let answer = app.get(bad).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.json()["message"], message, "{bad}");
    }

    // Quiet for the resolution time (half as long again on so sparse a series): resolved,
    // and listed as such.
    app.clock.advance(Duration::from_secs(25 * 60));
    let resolved = poll(&app, &format!("/v1/incidents/{id}"), |v| {
        v["incident"]["status"] == "resolved"
    })
    .await;
    assert_eq!(
        resolved["events"].as_array().unwrap().len(),
        2,
        "{resolved}"
    );
    assert_eq!(resolved["events"][1]["type"], "incident.resolved");
    let active = app.get("/v1/incidents?active=true").await.json();
    assert_eq!(active["incidents"].as_array().unwrap().len(), 0, "{active}");

    let quiet = app.get("/v1/services/slack/status").await.json();
    assert_eq!(quiet["level"], "operational");
    assert_eq!(
        app.get("/v1/incidents/github-1").await.error_code(),
        "unknown_incident"
    );
    // What a client sent is echoed only as far as anyone needs to recognise it.
    let long = app
        .get(&format!("/v1/incidents/{}", "x".repeat(2000)))
        .await
        .json();
    assert_eq!(long["code"], "unknown_incident");
    let echoed = long["message"].as_str().unwrap();
    assert!(
        echoed.contains(&format!("\"{}\"…", "x".repeat(64))) && echoed.len() < 120,
        "{echoed}"
    );
    assert_eq!(
        app.get("/v1/incidents?limit=0").await.error_code(),
        "invalid_query"
    );
    assert_eq!(
        app.get("/v1/services/myspace/status").await.error_code(),
        "unknown_service"
    );
}

/// Accuracy on simulated traffic, on several seeds: the thresholds asserted here hold on
/// each of them with a margin (the README reports the full benchmark).
#[tokio::test]
async fn accuracy_holds_on_every_seed() {
    let catalog = Catalog::builtin();
    for seed in [1, 2, 3] {
        let (scenario, file) = simulate(12, 14, seed);
        let events = backtest(&catalog, &file).await;
        every_update_says_something_new(&events);
        let causes = score::Causes::new(&catalog, DetectorConfig::default().cascade_window);
        let report = score::score(
            &scenario.truth(),
            &events,
            Duration::from_secs(86_400),
            &causes,
        );
        let headline = &report.headline;
        assert!(
            headline.outages >= 10,
            "seed {seed}: too few outages to judge\n{report}"
        );
        assert!(headline.recall() >= 0.95, "seed {seed}\n{report}");
        assert!(
            headline.delay_min(0.5).unwrap() <= 2.0,
            "seed {seed}\n{report}"
        );
        assert!(headline.exact_share() >= 0.88, "seed {seed}\n{report}");
        assert!(report.all.recall() >= 0.85, "seed {seed}\n{report}");
        // The budget is 1 per service per 30 days; allow noise on a small sample.
        assert!(
            report.false_per_service_week() * 30.0 / 7.0 <= 1.5,
            "seed {seed}\n{report}"
        );
        // Incidents end with their outages (23 to 29 minutes after at most, on these seeds),
        // and no false one stays open for hours.
        assert!(
            report.overstays.last().is_some_and(|&s| s <= 3600),
            "seed {seed}\n{report}"
        );
        assert!(report.longest_false <= 3 * 3600, "seed {seed}\n{report}");
    }
}

/// The event contract: an `incident.updated` announces a change of scope, regions, partial,
/// problems or cause, never of figures alone.
fn every_update_says_something_new(events: &[IncidentEvent]) {
    let mut last: HashMap<&str, &IncidentEvent> = HashMap::new();
    for event in events {
        let incident = &event.incident;
        if event.kind == EventType::Updated {
            let before = &last[incident.id.as_str()].incident;
            assert!(
                (
                    &before.scope,
                    &before.regions,
                    before.partial,
                    &before.problems,
                    &before.caused_by
                ) != (
                    &incident.scope,
                    &incident.regions,
                    incident.partial,
                    &incident.problems,
                    &incident.caused_by
                ),
                "an update of {} at {} changes nothing but figures",
                incident.id,
                event.at
            );
        }
        last.insert(&incident.id, event);
    }
}

/// A first leader makes what its warm-up learned durable at once, not only when the next
/// bucket closes, so a restart in between does not learn it all again.
#[tokio::test]
async fn a_first_leader_commits_its_warm_up_at_once() {
    let (_, file) = simulate(3, 2, 5);
    let catalog = Catalog::builtin();
    let (store, clock) = store_with(&catalog, &file).await;
    // Two days of history; the detector first starts right after them.
    clock.advance(Duration::from_secs(2 * 86_400 + 20));
    let mut detector = warming(
        store.clone(),
        clock.clone(),
        &catalog,
        Duration::from_secs(2 * 86_400),
    );
    assert!(matches!(
        detector.tick().await.expect("tick"),
        TickOutcome::Leader(_)
    ));
    // No time has passed, so no bucket has closed since the warm-up ended.
    let saved = store
        .load_detector()
        .await
        .unwrap()
        .expect("a committed state");
    let end = START.unix_timestamp() + 2 * 86_400;
    assert!(
        saved.cursor >= end - 60,
        "cursor {} before the end of the history {end}",
        saved.cursor
    );
    assert_eq!(saved.services.len(), catalog.services().len());
}

/// A warm-up announces the incidents open at its end as decided at the end of the last
/// bucket it learned, so the events of the buckets after it never come before the
/// announcement on the stream (a warm-up of minutes ends after some of those buckets). The
/// exact `at` pins it: a manual clock does not move during the warm-up, so the order
/// check alone would pass with the wall clock too.
#[tokio::test]
async fn a_warm_ups_announcement_comes_before_the_next_events() {
    let clock = Arc::new(ManualClock::new(START));
    let store = Arc::new(MemoryStore::new(store_settings(), clock.clone()));
    let catalog = catalog_of(&[("web", "\"login\", \"app\"")]);
    // An outage from minute 100 on; the first leader starts 25 s into minute 104.
    flood(&store, "web", 100..140).await;
    clock.set(START + Duration::from_secs(104 * 60 + 25));
    let mut detector = warming(
        store.clone(),
        clock.clone(),
        &catalog,
        Duration::from_secs(3 * 3600),
    );
    assert!(matches!(
        detector.tick().await.expect("tick"),
        TickOutcome::Leader(_)
    ));
    run_for(&clock, &mut detector, 70 * 60).await;
    let streamed = streamed(&store).await;
    let kinds: Vec<EventType> = streamed.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&EventType::Opened), "{streamed:?}");
    assert!(kinds.contains(&EventType::Resolved), "{streamed:?}");
    assert_eq!(
        streamed[0].at,
        START + Duration::from_secs(104 * 60),
        "announced as of the end of minute 103, the last bucket learned"
    );
    assert!(
        streamed.windows(2).all(|w| w[0].at <= w[1].at),
        "{:?}",
        streamed.iter().map(|e| (e.kind, e.at)).collect::<Vec<_>>()
    );
}

/// A warm-up that finds an incident the store holds open, but attributes it otherwise (it
/// relearned the service), announces the difference with an `incident.updated` instead of
/// a second opening, and the record says what the event says.
#[tokio::test]
async fn a_warm_up_announces_how_its_view_of_an_open_incident_differs() {
    let catalog = catalog_of(&[("web", "\"login\", \"app\"")]);
    let at = START + Duration::from_secs(104 * 60 + 25);
    let warm_up = |store: Arc<MemoryStore>, clock: Arc<ManualClock>| {
        warming(store, clock, &catalog, Duration::from_secs(3 * 3600))
    };
    // What a warm-up makes of an outage from minute 100 on.
    let clock = Arc::new(ManualClock::new(at));
    let store = Arc::new(MemoryStore::new(store_settings(), clock.clone()));
    flood(&store, "web", 100..140).await;
    warm_up(store.clone(), clock.clone())
        .tick()
        .await
        .expect("tick");
    let fresh = streamed(&store).await;
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    let seen = fresh[0].incident.clone();

    // The same outage, which a leader on 10-second buckets had opened as a regional outage in
    // France of `app` alone (its cursor is no one-minute bucket start: a warm-up follows).
    let clock = Arc::new(ManualClock::new(at));
    let store = Arc::new(MemoryStore::new(store_settings(), clock.clone()));
    flood(&store, "web", 100..140).await;
    let before = Incident {
        scope: Scope::Regional,
        regions: vec![RegionCode::parse("FR").unwrap()],
        partial: true,
        problems: vec![Problem::parse("app").unwrap()],
        ..seen.clone()
    };
    let opened = IncidentEvent {
        kind: EventType::Opened,
        at: START + Duration::from_secs(101 * 60),
        incident: before,
    };
    assert!(
        store
            .acquire_lease("old", Duration::from_secs(30))
            .await
            .unwrap()
    );
    store
        .commit_detector(DetectorCommit {
            holder: "old",
            continues_from: None,
            cursor: START.unix_timestamp() + 104 * 60 + 10,
            states: &[],
            forget: &[],
            gaps: &[],
            events: std::slice::from_ref(&opened),
            refreshed: &[],
        })
        .await
        .expect("commit");
    store.release_lease("old").await.unwrap();
    warm_up(store.clone(), clock.clone())
        .tick()
        .await
        .expect("tick");
    let events = streamed(&store).await;
    let kinds: Vec<EventType> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventType::Opened, EventType::Updated], "{events:?}");
    assert_eq!(events[1].incident, seen, "the warm-up's view");
    let record = store.incident(&seen.id).await.unwrap().unwrap();
    assert_eq!(record.incident, seen);
}

/// A restart with another `--bucket` starts the detector afresh: the saved cursor would
/// never meet a bucket start of the new width again, and the detector would read nothing.
#[tokio::test]
async fn a_new_bucket_width_starts_the_detector_afresh() {
    let catalog = Catalog::builtin();
    let clock = Arc::new(ManualClock::new(START));
    let minutes = Arc::new(MemoryStore::new(store_settings(), clock.clone()));
    let mut before = live(minutes.clone(), clock.clone(), &catalog);
    start_at_the_beginning(&minutes, &before).await;
    // Seven minutes on: the saved cursor is not on a 5-minute boundary.
    clock.advance(Duration::from_secs(7 * 60 + 3));
    before.tick().await.expect("tick");
    let saved = minutes.load_detector().await.unwrap().expect("saved");
    assert_eq!(saved.cursor, START.unix_timestamp() + 7 * 60);

    // The same state in a store of 5-minute buckets (as after a restart with --bucket 5m).
    let five = BucketWidth::new(Duration::from_secs(300)).unwrap();
    let settings = StoreSettings {
        bucket: five,
        ..store_settings()
    };
    let store = Arc::new(MemoryStore::new(settings, clock.clone()));
    let config = DetectorConfig {
        bucket: five,
        ..DetectorConfig::default()
    };
    let mut after = LiveDetector::new(
        store.clone(),
        clock.clone(),
        catalog.clone(),
        config,
        Duration::from_secs(30),
        Duration::from_secs(3600),
    );
    assert!(
        store
            .acquire_lease("old", Duration::from_secs(1))
            .await
            .unwrap()
    );
    let states: Vec<_> = saved
        .services
        .into_iter()
        .map(|s| (s.service, s.state))
        .collect();
    // The old leader's last step opened an incident, which the new one does not track.
    let started_at = START + Duration::from_secs(6 * 60);
    let opened = IncidentEvent {
        kind: EventType::Opened,
        at: START + Duration::from_secs(7 * 60),
        incident: Incident {
            id: Incident::id_for(
                &ServiceId::parse("slack").unwrap(),
                started_at.unix_timestamp(),
            ),
            service: ServiceId::parse("slack").unwrap(),
            status: IncidentStatus::Open,
            scope: Scope::Global,
            regions: vec![RegionCode::parse("US").unwrap()],
            partial: false,
            problems: vec![Problem::parse("login").unwrap()],
            caused_by: vec![],
            started_at,
            resolved_at: None,
            expected_per_min: 1.0,
            observed_per_min: 40.0,
        },
    };
    store
        .commit_detector(DetectorCommit {
            holder: "old",
            continues_from: None,
            cursor: saved.cursor,
            states: &states,
            forget: &[],
            gaps: &[],
            events: std::slice::from_ref(&opened),
            refreshed: &[],
        })
        .await
        .unwrap();
    store.release_lease("old").await.unwrap();
    assert!(matches!(
        after.tick().await.expect("tick"),
        TickOutcome::Leader(_)
    ));
    // The warm-up on 5-minute buckets ends at minute 5, before the old leader's last step:
    // the incident is resolved as of the saved cursor, not before its own opening.
    let streamed = streamed(&store).await;
    assert_eq!(streamed.len(), 2, "{streamed:?}");
    assert_eq!(streamed[1].kind, EventType::Resolved);
    assert_eq!(streamed[1].at, opened.at, "{streamed:?}");
    assert_eq!(streamed[1].incident.resolved_at, Some(opened.at));
    let resumed = store.load_detector().await.unwrap().expect("saved");
    assert_eq!(resumed.cursor % 300, 0, "cursor {}", resumed.cursor);
    assert_eq!(resumed.cursor, START.unix_timestamp() + 5 * 60);
    assert_eq!(
        Detector::saved_width(&resumed.services),
        Some(300),
        "learned afresh on 5-minute buckets"
    );
}

/// `downradar backtest` prints the events the detector decides, and a bad row anywhere in
/// the file, even after hours of counts already detected, fails the run with nothing on
/// stdout (the file is streamed, the events are not).
#[tokio::test]
async fn the_backtest_command_prints_all_its_events_or_none() {
    let (_, file) = simulate(4, 4, 7);
    let catalog = Catalog::builtin();
    let expected: Vec<String> = backtest(&catalog, &file)
        .await
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert!(!expected.is_empty(), "the scenario has outages");
    let run = |input: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
            .args(["backtest", "--input"])
            .arg(input)
            .env_remove("DOWNRADAR_CATALOG")
            // A server's settings in the environment, even invalid ones, are not backtest's.
            .env("DOWNRADAR_BUCKET", "7s")
            .env("DOWNRADAR_WORKERS", "0")
            .output()
            .expect("run downradar backtest")
    };
    let out = run(file.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        expected
    );
    assert!(
        stderr.contains(&format!(
            "{} incidents opened",
            expected
                .iter()
                .filter(|e| e.contains("incident.opened"))
                .count()
        )),
        "{stderr}"
    );

    let mut text = std::fs::read_to_string(file.path()).unwrap();
    let lines = text.lines().count();
    text.push_str("2026-10-05T00:00:00Z,tiktok,US,wifi,3\n");
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), text).unwrap();
    let out = run(bad.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(&format!(":{}: unknown problem \"wifi\"", lines + 1)),
        "{stderr}"
    );

    // A truth file is scored only on the buckets its outages were simulated on.
    let (scenario, file) = simulate(2, 1, 7);
    let truth = tempfile::NamedTempFile::new().unwrap();
    serde_json::to_writer(
        std::fs::File::create(truth.path()).unwrap(),
        &scenario.truth(),
    )
    .unwrap();
    // Each refused, with what is wrong on stderr and nothing on stdout.
    let refused_with = |truth: &std::path::Path, flags: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
            .arg("backtest")
            .args(flags)
            .arg("--input")
            .arg(file.path())
            .arg("--truth")
            .arg(truth)
            .env_remove("DOWNRADAR_CATALOG")
            .output()
            .expect("run downradar backtest");
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let refused = |flags: [&str; 2]| refused_with(truth.path(), &flags);
    // The truth of another run is no score of this one: another period, another catalog.
    let another = |change: &dyn Fn(&mut downradar::simulate::Truth)| {
        let mut other = scenario.truth();
        change(&mut other);
        let path = tempfile::NamedTempFile::new().unwrap();
        serde_json::to_writer(std::fs::File::create(path.path()).unwrap(), &other).unwrap();
        path
    };
    let later = another(&|t| {
        t.start += time::Duration::days(2);
        t.end += time::Duration::days(2);
    });
    let stderr = refused_with(later.path(), &["--warmup", "1h"]);
    assert!(
        stderr.contains("its outages were simulated from 2026-10-03T00:00:00Z to 2026-10-04T00:00:00Z, and the counts of"),
        "{stderr}"
    );
    assert!(
        stderr.contains("it is the truth of another run"),
        "{stderr}"
    );
    let elsewhere = another(&|t| t.services[0].id = ServiceId::parse("myspace").unwrap());
    let stderr = refused_with(elsewhere.path(), &["--warmup", "1h"]);
    assert!(
        stderr.contains("simulated on service \"myspace\", which the catalog does not have"),
        "{stderr}"
    );
    let stderr = refused(["--bucket", "5m"]);
    assert!(
        stderr.contains("its outages were simulated on 60 s buckets, and --bucket is 300 s"),
        "{stderr}"
    );
    // Nor is a warmup that leaves nothing to score taken for a score of nothing.
    let stderr = refused(["--warmup", "2d"]);
    assert!(
        stderr.contains("it covers 1day, and --warmup 2days leaves none of it to score"),
        "{stderr}"
    );
}

/// `backtest --truth` refuses counts cut short, before any event is printed, rather than
/// scoring the truth's outages past them as missed: a file with no rows, its first day alone
/// against the two days of its truth, its last or its first hours cut off.
#[test]
fn a_truth_is_not_scored_on_counts_cut_short() {
    let (scenario, file) = simulate(2, 2, 7);
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.json");
    serde_json::to_writer(std::fs::File::create(&truth).unwrap(), &scenario.truth()).unwrap();
    let text = std::fs::read_to_string(file.path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first_day = lines
        .iter()
        .position(|l| l.starts_with("2026-10-02"))
        .unwrap();
    let tenth = lines.len() / 10;
    let cut: [(&str, Vec<&str>, &str); 4] = [
        ("empty.csv", lines[..1].to_vec(), "the file has no rows"),
        (
            "day-one.csv",
            lines[..first_day].to_vec(),
            "its rows end at 2026-10-02T00:00:00Z, 1day before the end of the period of",
        ),
        (
            "head.csv",
            lines[..lines.len() - tenth].to_vec(),
            "before the end of the period of",
        ),
        (
            "tail.csv",
            [&lines[..1], &lines[tenth..]].concat(),
            "after the start of the period of",
        ),
    ];
    for (name, rows, expected) in cut {
        let input = dir.path().join(name);
        std::fs::write(&input, rows.join("\n") + "\n").unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
            .args(["backtest", "--input"])
            .arg(&input)
            .arg("--truth")
            .arg(&truth)
            .env_remove("DOWNRADAR_CATALOG")
            .output()
            .expect("run downradar backtest");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(
            stderr.contains("2026-10-01T00:00:00Z to 2026-10-03T00:00:00Z"),
            "{name}: {stderr}"
        );
    }
}

/// The offline commands tell their progress and warnings on standard error; when nobody reads
/// it any more (a closed pipe: a log shipper gone, `2>&1 | head`), they carry on and finish
/// their work. (`eprintln!` panicked: exit code 101, half a file written.)
#[test]
fn offline_commands_carry_on_when_standard_error_is_closed() {
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_downradar");
    let dir = tempfile::tempdir().unwrap();
    // Runs `args` with standard error a pipe closed at once; its status and standard output.
    let closed_stderr = |args: &[&std::ffi::OsStr]| {
        let mut child = Command::new(bin)
            .args(args)
            .env_remove("DOWNRADAR_CATALOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stderr.take());
        let output = child.wait_with_output().unwrap();
        (output.status, output.stdout)
    };
    let (counts, truth) = (dir.path().join("c.csv"), dir.path().join("t.json"));
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let (status, _) = closed_stderr(&[
        os("simulate"),
        os("--services"),
        os("4"),
        os("--days"),
        os("2"),
        os("--output"),
        counts.as_os_str(),
        os("--truth"),
        truth.as_os_str(),
    ]);
    assert!(status.success(), "simulate: {status}");
    let normal = Command::new(bin)
        .args(["backtest", "--input"])
        .arg(&counts)
        .env_remove("DOWNRADAR_CATALOG")
        .output()
        .unwrap();
    assert!(normal.status.success());
    assert!(!normal.stdout.is_empty(), "the scenario has outages");
    let (status, stdout) = closed_stderr(&[
        os("backtest"),
        os("--input"),
        counts.as_os_str(),
        os("--truth"),
        truth.as_os_str(),
    ]);
    assert!(status.success(), "backtest: {status}");
    assert_eq!(stdout, normal.stdout);
}

/// Ctrl-C stops `simulate --output` at once and leaves no half-written counts, nor the truth
/// it had written aside (it left both).
#[test]
fn an_interrupted_simulation_leaves_no_files() {
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_downradar");
    let dir = tempfile::tempdir().unwrap();
    let (counts, truth) = (dir.path().join("c.csv"), dir.path().join("t.json"));
    let mut child = crate::helpers::Process(
        Command::new(bin)
            .args(["simulate", "--days", "3000", "--output"])
            .arg(&counts)
            .arg("--truth")
            .arg(&truth)
            .env_remove("DOWNRADAR_CATALOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Once counts are being written.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&counts).map_or(0, |m| m.len()) < 1 << 20 {
        assert!(std::time::Instant::now() < deadline, "no counts written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = crate::helpers::exit_within(&mut child, Duration::from_secs(10), "simulate");
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("interrupted (Ctrl-C)"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A file of wider buckets than `--bucket` is told of as soon as it shows, before the
/// detector's warnings of missing buckets it causes (some 300 a day), and again at the end.
#[test]
fn a_backtest_of_wider_buckets_says_so_first() {
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_downradar");
    let dir = tempfile::tempdir().unwrap();
    let (counts, truth) = (dir.path().join("c.csv"), dir.path().join("t.json"));
    let simulated = Command::new(bin)
        .args(["simulate", "--days", "2", "--bucket", "5m"])
        .arg("--output")
        .arg(&counts)
        .arg("--truth")
        .arg(&truth)
        .env_remove("DOWNRADAR_CATALOG")
        .output()
        .unwrap();
    assert!(simulated.status.success());
    let backtest = Command::new(bin)
        .args(["backtest", "--input"])
        .arg(&counts)
        .env_remove("DOWNRADAR_CATALOG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(backtest.status.success());
    let stderr = String::from_utf8_lossy(&backtest.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("warning") || l.contains("WARN"))
        .collect();
    let hint = "pass --bucket 5m";
    assert!(warnings.len() > 2, "{stderr}");
    assert!(warnings[0].contains(hint), "{stderr}");
    assert!(warnings.last().unwrap().contains(hint), "{stderr}");
}

/// `simulate --output -` writes its counts to stdout and `backtest --input -` reads stdin, so
/// the two pipe into each other: the backtest waits to read the truth until the counts
/// begin (the simulation writes its truth first), and prints what it prints for the same
/// counts in a file.
#[test]
fn a_simulation_pipes_into_a_backtest() {
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_downradar");
    let dir = tempfile::tempdir().unwrap();
    let (file, file_truth, truth) = (
        dir.path().join("counts.csv"),
        dir.path().join("file-truth.json"),
        dir.path().join("truth.json"),
    );
    let scenario = ["simulate", "--services", "6", "--days", "3", "--seed", "7"];
    let written = Command::new(bin)
        .args(scenario)
        .arg("--output")
        .arg(&file)
        .arg("--truth")
        .arg(&file_truth)
        .env_remove("DOWNRADAR_CATALOG")
        .output()
        .unwrap();
    assert!(written.status.success());
    let backtest = |input: &std::path::Path| {
        let mut command = Command::new(bin);
        command
            .args(["backtest", "--input"])
            .arg(input)
            .env_remove("DOWNRADAR_CATALOG");
        command
    };
    let from_file = backtest(&file).output().unwrap();
    assert!(from_file.status.success());
    assert!(!from_file.stdout.is_empty(), "the scenario has outages");

    let mut simulate = simulate_to_pipe(&scenario, &truth);
    let piped = backtest(std::path::Path::new("-"))
        .arg("--truth")
        .arg(&truth)
        .stdin(simulate.stdout.take().unwrap())
        .output()
        .unwrap();
    let simulated = simulate.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{stderr}");
    assert!(simulated.status.success());
    assert!(
        String::from_utf8_lossy(&simulated.stderr).contains("-> standard output,"),
        "{}",
        String::from_utf8_lossy(&simulated.stderr)
    );
    assert_eq!(piped.stdout, from_file.stdout);
    assert!(stderr.contains("score against"), "{stderr}");
    assert_eq!(
        std::fs::read(&truth).unwrap(),
        std::fs::read(&file_truth).unwrap()
    );
}

/// A command that fails on the user's input says why, with its causes, and no stack
/// backtrace, even where `RUST_BACKTRACE` is set (anyhow printed one then).
#[test]
fn a_failed_command_says_why_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.csv");
    let stderr = crate::helpers::failure_of(
        std::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
            .args(["backtest", "--input"])
            .arg(&missing)
            .env_remove("DOWNRADAR_CATALOG")
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1"),
        "backtest of a missing file",
    );
    assert!(
        stderr.starts_with(&format!("Error: {}: cannot open", missing.display())),
        "{stderr}"
    );
    assert!(stderr.contains("Caused by:\n    No such file"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}

/// `downradar simulate` with the flags of `scenario`, its counts on a pipe and its truth in
/// `truth`.
fn simulate_to_pipe(scenario: &[&str], truth: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
        .args(scenario)
        .args(["--output", "-", "--truth"])
        .arg(truth)
        .env_remove("DOWNRADAR_CATALOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A reader that stops early (`| head`) ends `simulate --output -` as it ends `backtest`:
/// no error, and the truth file complete, the same as a whole run's.
#[test]
fn a_simulation_whose_reader_stops_early_ends_normally() {
    use std::io::Read;
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_downradar");
    let dir = tempfile::tempdir().unwrap();
    let (whole, truth) = (dir.path().join("whole.json"), dir.path().join("truth.json"));
    // Megabytes of counts: more than the pipe and the writer's buffer hold.
    let scenario = ["simulate", "--services", "3", "--days", "2", "--seed", "7"];
    let written = Command::new(bin)
        .args(scenario)
        .arg("--output")
        .arg(dir.path().join("counts.csv"))
        .arg("--truth")
        .arg(&whole)
        .env_remove("DOWNRADAR_CATALOG")
        .output()
        .unwrap();
    assert!(written.status.success());

    let mut simulate = simulate_to_pipe(&scenario, &truth);
    let mut stdout = simulate.stdout.take().unwrap();
    let mut header = [0; 39];
    stdout.read_exact(&mut header).unwrap();
    assert_eq!(&header, b"timestamp,service,region,problem,count\n");
    drop(stdout);
    let stopped = simulate.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(stopped.status.success(), "{stderr}");
    assert!(!stderr.contains("Error"), "{stderr}");
    assert!(
        stderr.contains("the reader of standard output closed it before the end"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&truth).unwrap(),
        std::fs::read(&whole).unwrap()
    );
}

/// A detector state saved by an earlier build (`fixtures/detector-state.bin`, see
/// `fixtures/README.md`): seven quiet days of the first built-in service, as a commit on
/// 2026-12-06 saved it. A later build must take it up where it was left (a state it cannot
/// decode is learned afresh, silently losing the service's baseline at an upgrade), so a
/// change to the state's encoding that breaks this test needs a migration, not a new
/// fixture.
mod saved_state {
    use super::*;
    use downradar::detector::service::{self, SeriesFilter};
    use downradar::store::SavedState;

    const FIXTURE: &[u8] = include_bytes!("fixtures/detector-state.bin");
    /// When the fixture was saved: the start of the eighth day.
    const DAYS: u32 = 7;
    /// What the saved state expected of its next bucket, as it said when saved.
    const EXPECTED: (f64, f64) = (18.084_578_330_994_404, 128.397_446_191_668_05);

    fn scenario(catalog: &Catalog) -> Scenario {
        Scenario::generate(
            &catalog.services()[..1],
            Params {
                start: START,
                days: DAYS + 1,
                bucket: BucketWidth::ONE_MINUTE,
                seed: 7,
                outages_per_week: 0.0,
            },
        )
        .expect("scenario")
    }

    /// The cells of `bucket` of the scenario, each count times `factor`.
    fn cells_of(
        scenario: &Scenario,
        sampler: &mut downradar::simulate::CountSampler,
        bucket: u64,
        factor: u64,
    ) -> Vec<(Cell, u64)> {
        let mut cells = Vec::new();
        sampler.bucket(scenario, bucket, |s, cell, count| {
            let (_, region, problem) = scenario.cell(s, cell);
            let cell = Cell {
                region,
                problem: problem.clone(),
            };
            cells.push((cell, count * factor));
        });
        cells
    }

    fn saved_at() -> i64 {
        START.unix_timestamp() + i64::from(DAYS) * 86_400
    }

    /// Writes the fixture: `cargo test --test api -- --ignored write_the_saved_state_fixture`.
    /// Only for a new fixture beside the old one, never to make the test below pass.
    #[test]
    #[ignore = "writes the fixture"]
    fn write_the_saved_state_fixture() {
        let catalog = Catalog::builtin();
        let scenario = scenario(&catalog);
        let mut sampler = scenario.sampler();
        let mut detector = Detector::new(&catalog, DetectorConfig::default());
        for bucket in 0..u64::from(DAYS) * 1440 {
            let cells = cells_of(&scenario, &mut sampler, bucket, 1);
            let t = START.unix_timestamp() + bucket as i64 * 60;
            let events = detector.step(t, &[&cells]);
            assert!(events.is_empty(), "a quiet week: {events:?}");
        }
        let states = detector.checkpoint(saved_at(), &[]);
        let (id, bytes) = &states[0];
        assert_eq!(id, &catalog.services()[0].id);
        let state = service::decode(bytes).unwrap();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/api/fixtures/detector-state.bin"
        );
        std::fs::write(path, bytes).unwrap();
        eprintln!(
            "{} bytes; EXPECTED = {:?}",
            bytes.len(),
            state.expectation(saved_at(), SeriesFilter::default())
        );
    }

    #[test]
    fn a_state_saved_by_an_earlier_build_is_taken_up_where_it_was_left() {
        let catalog = Catalog::builtin();
        let service = catalog.services()[0].id.clone();
        let state = service::decode(FIXTURE).expect("the saved state decodes");
        let (mean, k) = state.expectation(saved_at(), SeriesFilter::default());
        assert!(
            (mean / EXPECTED.0 - 1.0).abs() < 1e-9 && (k / EXPECTED.1 - 1.0).abs() < 1e-9,
            "expects ({mean}, {k}) of its next bucket, not {EXPECTED:?} as when it was saved"
        );
        let saved = [SavedState {
            service: service.clone(),
            cursor: saved_at(),
            state: FIXTURE.to_vec(),
        }];
        let (mut detector, errors) =
            Detector::restore(&catalog, DetectorConfig::default(), &saved, &[]);
        assert!(errors.is_empty(), "{errors:?}");
        // Kept, not learned afresh: a state that no longer fits (other test windows, another
        // bucket width) is dropped with no more than a warning.
        assert_eq!(
            detector.oldest_saved(),
            Some(saved_at()),
            "the saved state was dropped"
        );

        // The eighth day, quiet, then its traffic ten times over for ten minutes.
        let scenario = scenario(&catalog);
        let mut sampler = scenario.sampler();
        for bucket in 0..u64::from(DAYS) * 1440 {
            cells_of(&scenario, &mut sampler, bucket, 1);
        }
        let mut events = Vec::new();
        for minute in 0..1440 {
            let flood = if (600..610).contains(&minute) { 10 } else { 1 };
            let bucket = u64::from(DAYS) * 1440 + minute;
            let cells = cells_of(&scenario, &mut sampler, bucket, flood);
            let mut counts: Vec<&[(Cell, u64)]> = vec![&[]; catalog.services().len()];
            counts[0] = &cells;
            events.extend(detector.step(saved_at() + minute as i64 * 60, &counts));
        }
        let opened: Vec<&IncidentEvent> = events
            .iter()
            .filter(|e| e.kind == EventType::Opened)
            .collect();
        assert_eq!(opened.len(), 1, "{events:?}");
        let incident = &opened[0].incident;
        assert_eq!(incident.service, service);
        let delay = opened[0].at.unix_timestamp() - (saved_at() + 600 * 60);
        assert!(delay <= 120, "found {delay} s after the flood began");
    }
}
