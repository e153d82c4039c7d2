//! The store contract, run against both implementations: dedup, revocation in either order,
//! idempotence, the hourly roll-up and range reads; and the detector's side: the leader lease,
//! fenced commits, the event stream and incident records.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use downradar::buckets::BucketWidth;
use downradar::catalog::{Problem, ServiceId};
use downradar::clock::ManualClock;
use downradar::detector::{EventType, GapDecision, Incident, IncidentEvent, IncidentStatus, Scope};
use downradar::regions::RegionCode;
use downradar::reporter::ReporterSecret;
use downradar::store::memory::MemoryStore;
use downradar::store::redis::RedisStore;
use downradar::store::{
    Cell, CellFilter, DetectorCommit, DetectorSnapshot, Granularity, HistoryAdded, HistoryCount,
    IncidentFilter, IncidentQuery, Recorded, Report, ReportToken, SavedState, Store, StoreError,
    StoreSettings, StreamBounds, StreamRead,
};

use crate::events::event;
use crate::helpers::{Backend, RedisServer, RedisTap, test_epoch};

fn settings(max_reporters_per_address: u32) -> StoreSettings {
    StoreSettings {
        bucket: BucketWidth::ONE_MINUTE,
        retention: Duration::from_secs(8 * 86_400),
        rollup_retention: Duration::from_secs(90 * 86_400),
        dedup_window: Duration::from_secs(900),
        max_reporters_per_address: NonZeroU32::new(max_reporters_per_address),
        event_retention: Duration::from_secs(86_400),
    }
}

/// A store of the given kind (and the Redis it runs on, kept alive by the caller).
fn store(backend: Backend, settings: StoreSettings) -> (Arc<dyn Store>, Option<RedisServer>) {
    let (store, _clock, redis) = store_with_clock(backend, settings);
    (store, redis)
}

/// A store of the given kind, the clock it runs on (only the memory store follows it; Redis
/// keeps its own time), and its Redis.
fn store_with_clock(
    backend: Backend,
    settings: StoreSettings,
) -> (Arc<dyn Store>, Arc<ManualClock>, Option<RedisServer>) {
    let clock = Arc::new(ManualClock::new(test_epoch()));
    match backend {
        Backend::Memory => (
            Arc::new(MemoryStore::new(settings, clock.clone())),
            clock,
            None,
        ),
        Backend::Redis => {
            let redis = RedisServer::start();
            let store = RedisStore::connect(&redis.url(), settings).expect("connect");
            (Arc::new(store), clock, Some(redis))
        }
    }
}

/// A report from install `reporter` at one fixed address.
fn report(reporter: &str, region: &str, minute: i64) -> Report {
    let secret = ReporterSecret::from_config("k");
    let address = "192.0.2.1".parse().unwrap();
    Report {
        address: Some(secret.fingerprint(address, None)),
        service: ServiceId::parse("tiktok").unwrap(),
        cell: Cell {
            region: RegionCode::parse(region).unwrap(),
            problem: Problem::parse("login").unwrap(),
        },
        reporter: secret.fingerprint(
            "192.0.2.1".parse().unwrap(),
            Some(&downradar::reporter::ClientId::parse(reporter).unwrap()),
        ),
        bucket: test_epoch().unix_timestamp() + 60 * minute,
        token: ReportToken::next(),
    }
}

async fn total(store: &dyn Store, granularity: Granularity) -> u64 {
    let start = test_epoch().unix_timestamp() - 3600;
    store
        .counts(
            &ServiceId::parse("tiktok").unwrap(),
            granularity,
            start,
            start + 3 * 3600,
        )
        .await
        .unwrap()
        .iter()
        .flat_map(|b| b.cells.iter().map(|(_, n)| n))
        .sum()
}

async fn contract(backend: Backend) {
    let (store, _redis) = store(backend, settings(0));
    let store = store.as_ref();
    let tiktok = ServiceId::parse("tiktok").unwrap();

    // Dedup: one reporter counts once; outcomes come back in order.
    let (a, a_again, b) = (
        report("a", "DE", 0),
        report("a", "FR", 1),
        report("b", "DE", 1),
    );
    let outcomes = store
        .record(&[a.clone(), a_again.clone(), b.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [Recorded::Counted, Recorded::Duplicate, Recorded::Counted]
    );
    assert_eq!(total(store, Granularity::Fine).await, 2);
    assert_eq!(total(store, Granularity::Hourly).await, 2);

    // The same reports sent again (a batch re-sent after a lost script) answer as the first
    // time, and count nothing more.
    assert_eq!(
        store
            .record(&[a.clone(), a_again.clone(), b.clone()])
            .await
            .unwrap(),
        [Recorded::Counted, Recorded::Duplicate, Recorded::Counted]
    );
    assert_eq!(total(store, Granularity::Fine).await, 2);
    assert_eq!(total(store, Granularity::Hourly).await, 2);

    // Range reads: per bucket, sorted; an unaligned `from` starts at the next bucket.
    let epoch = test_epoch().unix_timestamp();
    let buckets = store
        .counts(&tiktok, Granularity::Fine, epoch, epoch + 120)
        .await
        .unwrap();
    assert_eq!(buckets.len(), 2);
    assert_eq!((buckets[0].start, buckets[1].start), (epoch, epoch + 60));
    assert_eq!(buckets[0].cells, vec![(a.cell.clone(), 1)]);
    let later = store
        .counts(&tiktok, Granularity::Fine, epoch + 1, epoch + 120)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);

    // Revoking a counted report undoes its count and frees its reporter; twice is harmless.
    // Undoing a count moves the service's generation; counting a report does not.
    let generation = store.generation(&tiktok).await.unwrap();
    store.revoke(std::slice::from_ref(&a)).await.unwrap();
    let undone = store.generation(&tiktok).await.unwrap();
    assert_ne!(undone, generation, "a count was undone");
    store.revoke(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(total(store, Granularity::Fine).await, 1);
    assert_eq!(total(store, Granularity::Hourly).await, 1);
    let a_retry = report("a", "DE", 1);
    assert_eq!(store.record(&[a_retry]).await.unwrap(), [Recorded::Counted]);
    assert_eq!(total(store, Granularity::Fine).await, 2);
    assert_eq!(store.generation(&tiktok).await.unwrap(), undone);

    // A write that arrives after its revocation is ignored.
    let late = report("c", "JP", 0);
    store.revoke(std::slice::from_ref(&late)).await.unwrap();
    assert_eq!(store.record(&[late]).await.unwrap(), [Recorded::Revoked]);
    assert_eq!(total(store, Granularity::Fine).await, 2);

    // Revoking a duplicate (which counted nothing) leaves the count of the report that did,
    // and the generation.
    store.revoke(&[a_again]).await.unwrap();
    assert_eq!(total(store, Granularity::Fine).await, 2);
    assert_eq!(store.generation(&tiktok).await.unwrap(), undone);
    // History added moves it.
    store
        .add_history(&[downradar::store::HistoryCount {
            service: tiktok.clone(),
            bucket: test_epoch().unix_timestamp() - 3600,
            cell: a.cell.clone(),
            count: 1,
        }])
        .await
        .unwrap();
    assert_ne!(
        store.generation(&tiktok).await.unwrap(),
        undone,
        "history added"
    );
    assert_eq!(total(store, Granularity::Fine).await, 3);
    store.ping().await.unwrap();
}

/// With a limit of two reporters per address: the third install is capped, a repeat stays a
/// duplicate, and revoking a counted report frees its place.
async fn address_limit(backend: Backend) {
    let (store, _redis) = store(backend, settings(2));
    let store = store.as_ref();
    let (a, b, c) = (
        report("a", "DE", 0),
        report("b", "DE", 0),
        report("c", "DE", 0),
    );
    let outcomes = store
        .record(&[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [Recorded::Counted, Recorded::Counted, Recorded::Capped]
    );
    assert_eq!(
        store.record(&[report("a", "DE", 0)]).await.unwrap(),
        [Recorded::Duplicate]
    );
    // Sent again, the batch answers as the first time and counts nothing more.
    assert_eq!(
        store
            .record(&[a.clone(), b.clone(), c.clone()])
            .await
            .unwrap(),
        [Recorded::Counted, Recorded::Counted, Recorded::Capped]
    );
    assert_eq!(total(store, Granularity::Fine).await, 2);

    store.revoke(std::slice::from_ref(&b)).await.unwrap();
    assert_eq!(
        store.record(&[report("c", "DE", 1)]).await.unwrap(),
        [Recorded::Counted]
    );
    assert_eq!(
        store.record(&[report("d", "DE", 1)]).await.unwrap(),
        [Recorded::Capped]
    );
    assert_eq!(total(store, Granularity::Fine).await, 2);

    // Another address has its own allowance.
    let mut elsewhere = report("d", "DE", 1);
    elsewhere.address =
        Some(ReporterSecret::from_config("k").fingerprint("198.51.100.9".parse().unwrap(), None));
    elsewhere.reporter =
        ReporterSecret::from_config("k").fingerprint("198.51.100.9".parse().unwrap(), None);
    assert_eq!(
        store.record(&[elsewhere]).await.unwrap(),
        [Recorded::Counted]
    );
}

/// History goes into the fine buckets and the roll-up, summed, without dedup; what is older
/// than a retention is skipped there.
async fn history(backend: Backend) {
    let (store, _redis) = store(backend, settings(0));
    history_on(store.as_ref()).await;
}

async fn history_on(store: &dyn Store) {
    let at = |minute: i64, count: u64| HistoryCount {
        service: ServiceId::parse("tiktok").unwrap(),
        bucket: test_epoch().unix_timestamp() + 60 * minute,
        cell: report("a", "DE", 0).cell,
        count,
    };
    let ten_days = -10 * 24 * 60;
    let added = store
        .add_history(&[at(0, 3), at(0, 2), at(1, 4), at(ten_days, 7)])
        .await
        .unwrap();
    assert_eq!(
        added,
        HistoryAdded {
            fine: 9,
            rollup_only: 7
        },
        "the 10-day-old row is past the 8-day retention, within the roll-up's 90 days"
    );
    assert_eq!(total(store, Granularity::Fine).await, 9);
    let epoch = test_epoch().unix_timestamp();
    let tiktok = ServiceId::parse("tiktok").unwrap();
    let old = store
        .counts(
            &tiktok,
            Granularity::Hourly,
            epoch - 11 * 86_400,
            epoch - 9 * 86_400,
        )
        .await
        .unwrap();
    assert_eq!(
        old.iter()
            .flat_map(|b| &b.cells)
            .map(|(_, n)| n)
            .sum::<u64>(),
        7
    );
    let fine_old = store
        .counts(
            &tiktok,
            Granularity::Fine,
            epoch - 11 * 86_400,
            epoch - 9 * 86_400,
        )
        .await
        .unwrap();
    assert!(
        fine_old.is_empty(),
        "older than the 8-day retention: {fine_old:?}"
    );
    // Far beyond every retention: nothing is added.
    assert_eq!(
        store.add_history(&[at(-200 * 24 * 60, 5)]).await.unwrap(),
        HistoryAdded::default()
    );

    // A long read (more buckets than the memory store copies per hold of its lock), whole,
    // and summed by cell: 1 to 3 DE/login, one US/login and two US/feed reports in each of
    // 1,000 buckets.
    let first = epoch - 2000 * 60;
    let long: Vec<HistoryCount> = (0..1000)
        .flat_map(|i| {
            let bucket = first + 60 * i;
            [
                HistoryCount {
                    bucket,
                    count: 1 + (i as u64 % 3),
                    ..at(0, 0)
                },
                HistoryCount {
                    bucket,
                    cell: report("b", "US", 0).cell,
                    ..at(0, 1)
                },
                HistoryCount {
                    bucket,
                    cell: Cell {
                        region: RegionCode::parse("US").unwrap(),
                        problem: Problem::parse("feed").unwrap(),
                    },
                    ..at(0, 2)
                },
            ]
        })
        .collect();
    store.add_history(&long).await.unwrap();
    let (from, until) = (first, first + 1000 * 60);
    let counts = store
        .counts(&tiktok, Granularity::Fine, from, until)
        .await
        .unwrap();
    assert_eq!(counts.len(), 1000);
    assert!(counts.windows(2).all(|w| w[0].start + 60 == w[1].start));
    // Several services at once (in more than one pipeline on Redis), in their order.
    let quiet = service("netflix");
    let many = store
        .counts_many(
            &[tiktok.clone(), quiet.clone(), tiktok.clone()],
            Granularity::Fine,
            from,
            until,
        )
        .await
        .unwrap();
    assert_eq!(many.len(), 3);
    assert!(many[0] == counts && many[1].is_empty() && many[2] == counts);
    // A service with reports in a few buckets hours apart (the first and last minute of an
    // hour, and one in another hour): a long read finds exactly those. (Redis reads only the
    // hours whose roll-up exists.)
    let sparse = service("youtube");
    let hour = downradar::buckets::align(first + 3 * 3600, 3600);
    let minutes = [hour, hour + 59 * 60, hour + 5 * 3600 + 600];
    let rows: Vec<HistoryCount> = minutes
        .iter()
        .map(|&bucket| HistoryCount {
            service: sparse.clone(),
            bucket,
            ..at(0, 4)
        })
        .collect();
    store.add_history(&rows).await.unwrap();
    let found = store
        .counts_many(
            &[sparse.clone(), tiktok.clone()],
            Granularity::Fine,
            from,
            until,
        )
        .await
        .unwrap();
    assert_eq!(
        found[0].iter().map(|b| b.start).collect::<Vec<_>>(),
        minutes,
        "{found:?}"
    );
    assert!(
        found[0].iter().all(|b| b.cells == [(at(0, 4).cell, 4)]),
        "{found:?}"
    );
    assert_eq!(found[1], counts);
    let sum_of = |of| {
        let store = &store;
        let tiktok = &tiktok;
        async move {
            let sums = store
                .sums(tiktok, Granularity::Fine, from, until, of)
                .await
                .unwrap();
            assert!(sums.windows(2).all(|w| w[0].0 < w[1].0));
            sums.iter().map(|(_, n)| n).sum::<u64>()
        }
    };
    let de_count: u64 = (0..1000).map(|i| 1 + i % 3).sum();
    assert_eq!(sum_of(CellFilter::default()).await, de_count + 3000);
    let de = RegionCode::parse("DE").unwrap();
    let us = RegionCode::parse("US").unwrap();
    assert_eq!(
        sum_of(CellFilter {
            region: Some(de),
            problem: None
        })
        .await,
        de_count
    );
    assert_eq!(
        sum_of(CellFilter {
            region: Some(us),
            problem: None
        })
        .await,
        3000
    );
    let login = CellFilter {
        region: Some(de),
        problem: Some("login"),
    };
    assert_eq!(sum_of(login).await, de_count);
    for (problem, sum) in [("login", de_count + 1000), ("feed", 2000), ("app", 0)] {
        let of = CellFilter {
            region: None,
            problem: Some(problem),
        };
        assert_eq!(sum_of(of).await, sum, "{problem}");
    }
    let us_feed = CellFilter {
        region: Some(us),
        problem: Some("feed"),
    };
    assert_eq!(sum_of(us_feed).await, 2000);
    assert_eq!(
        sum_of(CellFilter {
            region: Some(de),
            problem: Some("app")
        })
        .await,
        0
    );
}

/// Lets `by` pass for the store: the memory store's clock moves, while Redis expires keys by
/// its own wall clock, so the test waits.
async fn let_pass(backend: Backend, clock: &ManualClock, by: Duration) {
    match backend {
        Backend::Memory => clock.advance(by),
        Backend::Redis => tokio::time::sleep(by).await,
    }
}

fn service(id: &str) -> ServiceId {
    ServiceId::parse(id).unwrap()
}

/// Commits `events` as holder `holder`, keeping the states and cursor as they are (cursor 0).
pub(crate) async fn commit_events(
    store: &dyn Store,
    holder: &str,
    events: &[IncidentEvent],
) -> Result<Vec<String>, StoreError> {
    store
        .commit_detector(DetectorCommit {
            holder,
            continues_from: store.load_detector().await?.map(|s| s.cursor),
            cursor: 0,
            states: &[],
            forget: &[],
            gaps: &[],
            events,
            refreshed: &[],
        })
        .await
}

/// A stream id as (ms, seq).
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id
        .split_once('-')
        .unwrap_or_else(|| panic!("not <ms>-<seq>: {id}"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

fn ids(incidents: &[Incident]) -> Vec<String> {
    incidents.iter().map(|i| i.id.clone()).collect()
}

fn query(active_only: bool, svc: Option<&str>, until: Option<i64>, limit: usize) -> IncidentQuery {
    IncidentQuery {
        active_only,
        service: svc.map(service),
        until,
        limit,
        ..IncidentQuery::default()
    }
}

const LONG: Duration = Duration::from_secs(3600);

/// One holder at a time: renewals keep the lease, a release by anyone else changes nothing,
/// and a lease that is not renewed runs out.
async fn lease(backend: Backend) {
    let (store, clock, _redis) = store_with_clock(backend, settings(0));
    let store = store.as_ref();
    assert!(store.acquire_lease("a", LONG).await.unwrap());
    assert!(
        store.acquire_lease("a", LONG).await.unwrap(),
        "the holder renews"
    );
    assert!(
        !store.acquire_lease("b", LONG).await.unwrap(),
        "another is refused"
    );
    store.release_lease("b").await.unwrap();
    assert!(
        !store.acquire_lease("b", LONG).await.unwrap(),
        "a release by a non-holder is a no-op"
    );
    assert!(store.acquire_lease("a", LONG).await.unwrap());
    store.release_lease("a").await.unwrap();
    assert!(
        store.acquire_lease("b", LONG).await.unwrap(),
        "a released lease is free at once"
    );
    assert!(!store.acquire_lease("a", LONG).await.unwrap());

    // A renewal extends the lease from now: 1.2 s after b's first 1-second lease, the renewed
    // one still holds.
    let second = Duration::from_secs(1);
    assert!(store.acquire_lease("b", second).await.unwrap());
    let_pass(backend, &clock, Duration::from_millis(600)).await;
    assert!(store.acquire_lease("b", second).await.unwrap());
    let_pass(backend, &clock, Duration::from_millis(600)).await;
    assert!(
        !store.acquire_lease("a", LONG).await.unwrap(),
        "the renewal extended b's lease"
    );

    // Not renewed, a short lease runs out and another replica takes over.
    assert!(
        store
            .acquire_lease("b", Duration::from_millis(200))
            .await
            .unwrap()
    );
    if backend == Backend::Memory {
        let_pass(backend, &clock, Duration::from_millis(150)).await;
        assert!(!store.acquire_lease("a", LONG).await.unwrap());
        let_pass(backend, &clock, Duration::from_millis(100)).await;
    } else {
        let_pass(backend, &clock, Duration::from_millis(400)).await;
    }
    assert!(
        store.acquire_lease("a", LONG).await.unwrap(),
        "b's lease ran out"
    );
    assert!(!store.acquire_lease("b", LONG).await.unwrap());

    // The former holder's commits are refused; the new holder's are not.
    let opened = event(
        EventType::Opened,
        "tiktok",
        test_epoch().unix_timestamp(),
        &["DE"],
    );
    assert!(matches!(
        commit_events(store, "b", std::slice::from_ref(&opened)).await,
        Err(StoreError::LeaseLost)
    ));
    assert_eq!(commit_events(store, "a", &[opened]).await.unwrap().len(), 1);
    // Releasing a lease one does not hold (any more) leaves the holder's alone.
    store.release_lease("b").await.unwrap();
    assert!(!store.acquire_lease("b", LONG).await.unwrap());
}

/// Commits are fenced by the lease and written whole; the snapshot gives back the cursor and
/// every service's latest state, byte for byte.
async fn detector_commit(backend: Backend) {
    let (store, _clock, _redis) = store_with_clock(backend, settings(0));
    let store = store.as_ref();
    let epoch = test_epoch().unix_timestamp();
    let opened = event(EventType::Opened, "tiktok", epoch - 300, &["DE"]);
    let (tiktok, netflix, aws) = (
        service("tiktok"),
        service("netflix"),
        service("aws-cloudfront"),
    );
    // Zero bytes and bytes that are not UTF-8.
    let blob: Vec<u8> = vec![0, 159, 146, 150, 0, 0xff, 0xfe, b'x', 0];
    let states = vec![
        (tiktok.clone(), blob.clone()),
        (netflix.clone(), b"netflix state".to_vec()),
    ];
    let first = |holder| DetectorCommit {
        holder,
        continues_from: None,
        cursor: epoch,
        states: &states,
        forget: &[],
        gaps: &[],
        events: std::slice::from_ref(&opened),
        refreshed: &[],
    };

    assert_eq!(store.load_detector().await.unwrap(), None);
    // Nobody holds the lease, or another does: refused, and nothing written.
    assert!(matches!(
        store.commit_detector(first("a")).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(store.acquire_lease("b", LONG).await.unwrap());
    assert!(matches!(
        store.commit_detector(first("a")).await,
        Err(StoreError::LeaseLost)
    ));
    assert_eq!(store.load_detector().await.unwrap(), None);
    assert!(store.events_after("0", 10).await.unwrap().is_empty());
    assert!(
        store
            .incidents(&query(false, None, None, 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.incident(&opened.incident.id).await.unwrap().is_none());

    store.release_lease("b").await.unwrap();
    assert!(store.acquire_lease("a", LONG).await.unwrap());
    let ids = store.commit_detector(first("a")).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        store.load_detector().await.unwrap(),
        Some(DetectorSnapshot {
            cursor: epoch,
            services: vec![
                saved(&netflix, epoch, b"netflix state"),
                saved(&tiktok, epoch, &blob),
            ],
            gaps: vec![],
        }),
        "sorted by service"
    );

    // A step with no events: the cursor moves, the states it saves are replaced (an empty one
    // too) and saved at the new cursor, the others stay as and when they were saved; its gap
    // decisions are kept.
    let changed = vec![(tiktok.clone(), vec![0xff; 3]), (aws.clone(), Vec::new())];
    let gaps = [
        GapDecision {
            bucket: epoch - 120,
            missing: true,
        },
        GapDecision {
            bucket: epoch,
            missing: false,
        },
    ];
    let ids = store
        .commit_detector(DetectorCommit {
            holder: "a",
            continues_from: Some(epoch),
            cursor: epoch + 60,
            states: &changed,
            forget: &[],
            gaps: &gaps,
            events: &[],
            refreshed: &[],
        })
        .await
        .unwrap();
    assert!(ids.is_empty());
    let expected = DetectorSnapshot {
        cursor: epoch + 60,
        services: vec![
            saved(&aws, epoch + 60, &[]),
            saved(&netflix, epoch, b"netflix state"),
            saved(&tiktok, epoch + 60, &[0xff; 3]),
        ],
        gaps: gaps.to_vec(),
    };
    assert_eq!(store.load_detector().await.unwrap(), Some(expected.clone()));

    // A step that continues from another saved state than the store's (a leader whose state
    // is stale, or one that thinks nothing was saved) is refused, and writes nothing.
    for stale in [Some(epoch), None] {
        assert!(matches!(
            store
                .commit_detector(DetectorCommit {
                    holder: "a",
                    continues_from: stale,
                    cursor: epoch + 120,
                    states: &[(netflix.clone(), b"stale".to_vec())],
                    forget: std::slice::from_ref(&aws),
                    gaps: &[],
                    events: std::slice::from_ref(&opened),
                    refreshed: &[],
                })
                .await,
            Err(StoreError::LeaseLost)
        ));
    }
    assert_eq!(store.load_detector().await.unwrap(), Some(expected.clone()));
    assert_eq!(store.events_after("0", 10).await.unwrap().len(), 1);

    // Forgetting a service deletes its state; the others stay. Each commit's gap decisions
    // replace the last one's (none here).
    store
        .commit_detector(DetectorCommit {
            holder: "a",
            continues_from: Some(epoch + 60),
            cursor: epoch + 60,
            states: &[],
            forget: std::slice::from_ref(&aws),
            gaps: &[],
            events: &[],
            refreshed: &[],
        })
        .await
        .unwrap();
    assert_eq!(store.detector_state(&aws).await.unwrap(), None);
    let expected = DetectorSnapshot {
        cursor: epoch + 60,
        services: expected.services[1..].to_vec(),
        gaps: vec![],
    };
    assert_eq!(store.load_detector().await.unwrap(), Some(expected.clone()));

    // Once another replica has the lease, the old leader writes nothing more.
    store.release_lease("a").await.unwrap();
    assert!(store.acquire_lease("b", LONG).await.unwrap());
    let late = vec![(netflix.clone(), b"stale".to_vec())];
    let resolved = event(EventType::Resolved, "tiktok", epoch - 300, &["DE"]);
    assert!(matches!(
        store
            .commit_detector(DetectorCommit {
                holder: "a",
                continues_from: Some(epoch + 60),
                cursor: epoch + 120,
                states: &late,
                forget: &[],
                gaps: &[],
                events: std::slice::from_ref(&resolved),
                refreshed: &[],
            })
            .await,
        Err(StoreError::LeaseLost)
    ));
    assert_eq!(store.load_detector().await.unwrap(), Some(expected));
    assert_eq!(store.events_after("0", 10).await.unwrap().len(), 1);
    let record = store.incident(&opened.incident.id).await.unwrap().unwrap();
    assert_eq!(record.events, std::slice::from_ref(&opened));
    assert_eq!(
        ids_of_active(store).await,
        std::slice::from_ref(&opened.incident.id),
        "still open"
    );
}

/// Between events, a commit refreshes the records of open incidents whose figures moved:
/// the records and the listings show the new figures, the stream and the incident's own
/// events are as they were; a record the store does not hold open is not written.
async fn refreshed_records(backend: Backend) {
    let (store, _clock, _redis) = store_with_clock(backend, settings(0));
    let store = store.as_ref();
    let start = test_epoch().unix_timestamp() - 600;
    assert!(store.acquire_lease("a", LONG).await.unwrap());
    let opened = event(EventType::Opened, "tiktok", start, &["DE"]);
    let over = [
        event(EventType::Opened, "netflix", start, &["US"]),
        event(EventType::Resolved, "netflix", start, &["US"]),
    ];
    commit_events(store, "a", std::slice::from_ref(&opened))
        .await
        .unwrap();
    commit_events(store, "a", &over).await.unwrap();
    let moved = |event: &IncidentEvent| Incident {
        status: IncidentStatus::Open,
        resolved_at: None,
        expected_per_min: 1.75,
        observed_per_min: 61.5,
        ..event.incident.clone()
    };
    let never = moved(&event(EventType::Opened, "aws-cloudfront", start, &["JP"]));
    let refreshed = [moved(&opened), moved(&over[1]), never.clone()];
    let refresh = |holder| DetectorCommit {
        holder,
        continues_from: Some(0),
        cursor: 0,
        states: &[],
        forget: &[],
        gaps: &[],
        events: &[],
        refreshed: &refreshed,
    };
    assert!(matches!(
        store.commit_detector(refresh("b")).await,
        Err(StoreError::LeaseLost)
    ));
    assert_eq!(
        store
            .incident(&opened.incident.id)
            .await
            .unwrap()
            .unwrap()
            .incident,
        opened.incident,
        "a refused commit refreshes nothing"
    );
    assert!(
        store
            .commit_detector(refresh("a"))
            .await
            .unwrap()
            .is_empty()
    );

    let record = store.incident(&opened.incident.id).await.unwrap().unwrap();
    assert_eq!(record.incident, refreshed[0]);
    assert_eq!(record.events, std::slice::from_ref(&opened));
    let active = store.incidents(&query(true, None, None, 10)).await.unwrap();
    assert_eq!(active, std::slice::from_ref(&refreshed[0]));
    assert_eq!(store.events_after("0", 10).await.unwrap().len(), 3);
    let resolved = store.incident(&over[1].incident.id).await.unwrap().unwrap();
    assert_eq!(resolved.incident, over[1].incident, "resolved: not written");
    assert_eq!(
        store.incident(&never.id).await.unwrap(),
        None,
        "never opened"
    );
}

fn saved(service: &ServiceId, cursor: i64, state: &[u8]) -> SavedState {
    SavedState {
        service: service.clone(),
        cursor,
        state: state.to_vec(),
    }
}

/// Each of `states` as saved at `cursor`.
fn saved_all(states: &[(ServiceId, Vec<u8>)], cursor: i64) -> Vec<SavedState> {
    states
        .iter()
        .map(|(service, blob)| saved(service, cursor, blob))
        .collect()
}

async fn ids_of_active(store: &dyn Store) -> Vec<String> {
    ids(&store
        .incidents(&query(true, None, None, 100))
        .await
        .unwrap())
}

/// Events come back in order with increasing ids; reading on from any id gives exactly the
/// events after it.
async fn event_stream(backend: Backend) {
    let (store, clock, _redis) = store_with_clock(backend, settings(0));
    let store = store.as_ref();
    let start = test_epoch().unix_timestamp() - 600;
    assert!(store.acquire_lease("a", LONG).await.unwrap());
    let first = vec![
        event(EventType::Opened, "tiktok", start, &["DE"]),
        event(EventType::Opened, "netflix", start + 60, &["US"]),
        event(EventType::Updated, "tiktok", start, &["DE", "FR"]),
    ];
    let mut ids = commit_events(store, "a", &first).await.unwrap();
    // Stream ids never go back, even when the clock does (the memory store's follows it).
    clock.set(test_epoch() - Duration::from_secs(3600));
    let second = vec![
        event(EventType::Resolved, "netflix", start + 60, &["US"]),
        event(EventType::Opened, "aws-cloudfront", start + 120, &["JP"]),
    ];
    ids.extend(commit_events(store, "a", &second).await.unwrap());
    let events: Vec<IncidentEvent> = first.into_iter().chain(second).collect();
    assert_eq!(ids.len(), 5);
    for pair in ids.windows(2) {
        assert!(
            stream_id(&pair[0]) < stream_id(&pair[1]),
            "ids increase: {ids:?}"
        );
    }

    let all = store.events_after("0", 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(
        all.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        events
    );
    assert_eq!(store.events_after("0-0", 100).await.unwrap(), all);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            store.events_after(id, 100).await.unwrap(),
            all[i + 1..],
            "after {id}"
        );
    }
    // Paging two at a time from the last id seen: every event once, in order.
    let mut paged = Vec::new();
    let mut after = "0".to_owned();
    loop {
        let page = store.events_after(&after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(store.events_after(&ids[1], 2).await.unwrap(), all[2..4]);
    // An id of milliseconds alone means `<ms>-0`.
    let (first_ms, _) = stream_id(&ids[0]);
    assert_eq!(
        store
            .events_after(&(first_ms - 1).to_string(), 100)
            .await
            .unwrap(),
        all
    );
    assert!(store.events_after("0", 0).await.unwrap().is_empty());
    assert!(
        store
            .events_after("18446744073709551615-18446744073709551615", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Ids that are not stream ids give nothing (the API checks them before asking).
    for bad in ["", "abc", "1-", "-1", "1-2-3", "+1", "1.5", " 1"] {
        assert!(
            store.events_after(bad, 10).await.unwrap().is_empty(),
            "{bad:?}"
        );
    }
}

/// Each incident keeps its latest state and every event it went through; incidents older
/// than the incident retention are not kept.
async fn incident_records(backend: Backend) {
    let (store, _clock, _redis) = store_with_clock(backend, settings(0));
    let store = store.as_ref();
    let start = test_epoch().unix_timestamp() - 600;
    assert!(store.acquire_lease("a", LONG).await.unwrap());
    let opened = event(EventType::Opened, "tiktok", start, &["DE"]);
    let updated = event(EventType::Updated, "tiktok", start, &["DE", "FR"]);
    let resolved = event(EventType::Resolved, "tiktok", start, &["DE", "FR"]);
    let other = event(EventType::Opened, "netflix", start + 60, &["US"]);
    commit_events(store, "a", std::slice::from_ref(&opened))
        .await
        .unwrap();
    let id = format!("tiktok-{start}");
    let record = store.incident(&id).await.unwrap().unwrap();
    assert_eq!(record.incident, opened.incident);
    assert_eq!(record.events, std::slice::from_ref(&opened));

    commit_events(store, "a", &[updated.clone(), other.clone()])
        .await
        .unwrap();
    commit_events(store, "a", std::slice::from_ref(&resolved))
        .await
        .unwrap();
    let record = store.incident(&id).await.unwrap().unwrap();
    assert_eq!(record.incident, resolved.incident, "the latest state");
    assert_eq!(record.incident.status, IncidentStatus::Resolved);
    assert_eq!(record.events, [opened, updated, resolved]);
    let record = store
        .incident(&format!("netflix-{}", start + 60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.incident, other.incident);
    assert_eq!(record.events, [other]);

    for missing in [
        format!("tiktok-{}", start + 1),
        format!("netflix-{start}"),
        format!("myspace-{start}"),
        format!("TikTok-{start}"),
        format!("tiktok-+{start}"),
        format!("tiktok-0{start}"),
        format!("tiktok_{start}"),
        "tiktok".into(),
        "tiktok-".into(),
        format!("-{start}"),
        "tiktok-abc".into(),
        String::new(),
    ] {
        assert!(
            store.incident(&missing).await.unwrap().is_none(),
            "{missing:?}"
        );
    }

    // Incidents are kept for the roll-up retention (90 days here) after their start: one
    // that started 100 days ago goes on the stream but is not kept.
    let ancient = event(EventType::Opened, "tiktok", start - 100 * 86_400, &["DE"]);
    commit_events(store, "a", std::slice::from_ref(&ancient))
        .await
        .unwrap();
    assert!(
        store
            .incident(&ancient.incident.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !ids(&store
            .incidents(&query(false, None, None, 100))
            .await
            .unwrap())
        .contains(&ancient.incident.id)
    );
    assert!(
        !ids_of_active(store).await.contains(&ancient.incident.id),
        "nor listed as open"
    );
    let stream = store.events_after("0", 100).await.unwrap();
    assert_eq!(stream.last().unwrap().event, ancient);
}

/// Listing: newest start first (ties by id, descending), open ones only, one service's
/// (even when other services' incidents are far more numerous and newer), before a start,
/// at most a limit.
async fn incident_listing(backend: Backend) {
    let (store, _clock, _redis) = store_with_clock(backend, settings(0));
    let store = store.as_ref();
    let base = test_epoch().unix_timestamp() - 7200;
    assert!(store.acquire_lease("a", LONG).await.unwrap());
    let open = |svc: &str, at: i64| event(EventType::Opened, svc, base + at, &["DE"]);
    let resolved = |svc: &str, at: i64| event(EventType::Resolved, svc, base + at, &["DE"]);
    commit_events(
        store,
        "a",
        &[
            open("tiktok", 0),
            event(EventType::Opened, "netflix", base + 600, &["US"]),
            open("tiktok", 600),
            open("aws", 900),
            open("aws-cloudfront", 1200),
        ],
    )
    .await
    .unwrap();
    commit_events(
        store,
        "a",
        &[
            resolved("tiktok", 0),
            open("aws", 1800),
            resolved("aws", 900),
        ],
    )
    .await
    .unwrap();
    let id = |svc: &str, at: i64| format!("{svc}-{}", base + at);
    let list = |q: IncidentQuery| async move { ids(&store.incidents(&q).await.unwrap()) };

    let everything = store
        .incidents(&query(false, None, None, 100))
        .await
        .unwrap();
    assert_eq!(
        ids(&everything),
        [
            id("aws", 1800),
            id("aws-cloudfront", 1200),
            id("aws", 900),
            id("tiktok", 600),
            id("netflix", 600),
            id("tiktok", 0),
        ]
    );
    assert_eq!(
        everything[5],
        resolved("tiktok", 0).incident,
        "the latest state"
    );
    assert_eq!(everything[0], open("aws", 1800).incident);
    assert_eq!(
        list(query(true, None, None, 100)).await,
        [
            id("aws", 1800),
            id("aws-cloudfront", 1200),
            id("tiktok", 600),
            id("netflix", 600),
        ]
    );
    // One service's: `aws` is not `aws-cloudfront`.
    assert_eq!(
        list(query(false, Some("aws"), None, 100)).await,
        [id("aws", 1800), id("aws", 900)]
    );
    assert_eq!(
        list(query(true, Some("aws"), None, 100)).await,
        [id("aws", 1800)]
    );
    assert_eq!(
        list(query(false, Some("aws-cloudfront"), None, 100)).await,
        [id("aws-cloudfront", 1200)]
    );
    assert_eq!(
        list(query(false, Some("tiktok"), None, 100)).await,
        [id("tiktok", 600), id("tiktok", 0)]
    );
    assert_eq!(
        list(query(true, Some("tiktok"), None, 100)).await,
        [id("tiktok", 600)]
    );
    assert!(
        list(query(false, Some("myspace"), None, 100))
            .await
            .is_empty()
    );

    // Pages: at most `limit`, then the ones after the last seen, even within one second.
    for size in [1, 2, 3, 4] {
        let mut pages = Vec::new();
        let mut after: Option<(i64, String)> = None;
        loop {
            let page = store
                .incidents(&IncidentQuery {
                    after: after.clone(),
                    limit: size,
                    ..IncidentQuery::default()
                })
                .await
                .unwrap();
            assert!(page.len() <= size);
            let Some(last) = page.last() else { break };
            after = Some((last.started_at.unix_timestamp(), last.id.clone()));
            pages.extend(ids(&page));
        }
        assert_eq!(pages, ids(&everything), "pages of {size}");
    }
    assert_eq!(
        list(query(false, None, Some(base + 600), 100)).await,
        [id("tiktok", 0)],
        "until is exclusive"
    );
    assert_eq!(
        list(IncidentQuery {
            since: Some(base + 600),
            until: Some(base + 1200),
            limit: 100,
            ..IncidentQuery::default()
        })
        .await,
        [id("aws", 900), id("tiktok", 600), id("netflix", 600)],
        "since is inclusive"
    );
    // Conditions on the record: region and state.
    assert_eq!(
        list(IncidentQuery {
            filter: IncidentFilter {
                region: Some(RegionCode::parse("DE").unwrap()),
                ..IncidentFilter::default()
            },
            limit: 100,
            ..IncidentQuery::default()
        })
        .await,
        [
            id("aws", 1800),
            id("aws-cloudfront", 1200),
            id("aws", 900),
            id("tiktok", 600),
            id("tiktok", 0),
        ]
    );
    assert_eq!(
        list(IncidentQuery {
            filter: IncidentFilter {
                status: Some(IncidentStatus::Resolved),
                ..IncidentFilter::default()
            },
            limit: 100,
            ..IncidentQuery::default()
        })
        .await,
        [id("aws", 900), id("tiktok", 0)]
    );
    assert!(
        list(IncidentQuery {
            filter: IncidentFilter {
                scope: Some(Scope::Global),
                ..IncidentFilter::default()
            },
            limit: 100,
            ..IncidentQuery::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        list(query(true, None, Some(base + 1200), 100)).await,
        [id("tiktok", 600), id("netflix", 600)]
    );
    assert_eq!(
        list(query(false, Some("tiktok"), Some(base + 600), 100)).await,
        [id("tiktok", 0)]
    );
    assert_eq!(list(query(false, None, None, 1)).await, [id("aws", 1800)]);
    assert!(list(query(false, None, None, 0)).await.is_empty());

    // Thirty newer open incidents of other services: one service's newest is still found.
    let crowd: Vec<IncidentEvent> = (0..30)
        .map(|i| open(&format!("svc-{i}"), 3000 + i))
        .collect();
    commit_events(store, "a", &crowd).await.unwrap();
    assert_eq!(
        list(query(true, Some("tiktok"), None, 1)).await,
        [id("tiktok", 600)]
    );
    assert_eq!(
        list(query(false, Some("netflix"), None, 1)).await,
        [id("netflix", 600)]
    );
    assert_eq!(
        list(query(true, Some("aws"), None, 5)).await,
        [id("aws", 1800)]
    );
    let newest = list(query(false, None, None, 31)).await;
    assert_eq!(newest.len(), 31);
    assert_eq!(newest[0], id("svc-29", 3029));
    assert_eq!(newest[30], id("aws", 1800));
}

/// Listings that need many reads of the index: a second with more incidents than one read
/// takes (a catalog of thousands of services opening in one bucket), a filter that matches
/// few of thousands, and incidents committed while a listing runs. Every incident is listed
/// once, in order.
async fn long_listings(backend: Backend) {
    let (store, _clock, _redis) = store_with_clock(backend, settings(0));
    let base = test_epoch().unix_timestamp() - 86_400;
    assert!(store.acquire_lease("a", LONG).await.unwrap());
    // 2,500 incidents that started in the same second, one in 100 in the US; then 500 more,
    // one a minute, in DE.
    let tied: Vec<IncidentEvent> = (0..2500)
        .map(|i| {
            let region = if i % 100 == 0 { "US" } else { "DE" };
            event(EventType::Resolved, &format!("svc-{i:04}"), base, &[region])
        })
        .collect();
    let later: Vec<IncidentEvent> = (1..=500)
        .map(|i| event(EventType::Resolved, "tiktok", base + 60 * i, &["DE"]))
        .collect();
    for chunk in tied.chunks(500).chain(later.chunks(500)) {
        commit_events(store.as_ref(), "a", chunk).await.unwrap();
    }
    let all = store
        .incidents(&query(false, None, None, 10_000))
        .await
        .unwrap();
    let mut expected: Vec<(i64, String)> = tied
        .iter()
        .chain(&later)
        .map(|e| {
            (
                e.incident.started_at.unix_timestamp(),
                e.incident.id.clone(),
            )
        })
        .collect();
    expected.sort();
    expected.reverse();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids(&all), expected);
    let us = IncidentQuery {
        filter: IncidentFilter {
            region: Some(RegionCode::parse("US").unwrap()),
            ..IncidentFilter::default()
        },
        ..query(false, None, None, 100)
    };
    let found = store.incidents(&us).await.unwrap();
    assert_eq!(found.len(), 25);
    assert!(found.iter().all(|i| i.started_at.unix_timestamp() == base));

    // Incidents keep opening (newer than all) while listings page through the older ones.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 1..=300 {
                let opened = event(EventType::Opened, "netflix", base + 86_000 + i, &["DE"]);
                commit_events(store.as_ref(), "a", &[opened]).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut listings = 0;
    while !writer.is_finished() || listings == 0 {
        let page = store
            .incidents(&query(false, None, None, 4000))
            .await
            .unwrap();
        let mut unique = ids(&page);
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            page.len(),
            "listing {listings} repeats an incident"
        );
        let older: Vec<String> = ids(&page)
            .into_iter()
            .filter(|id| !id.starts_with("netflix-"))
            .collect();
        assert_eq!(older, expected, "listing {listings}");
        listings += 1;
    }
    writer.await.unwrap();
}

/// Where the stream stands, waiting for events, and one service's state.
async fn stream_waits(backend: Backend) {
    let (store, _clock, redis) = store_with_clock(backend, settings(0));
    let store: Arc<dyn Store> = store;
    assert_eq!(
        store.stream_bounds().await.unwrap(),
        StreamBounds::default()
    );
    let started = std::time::Instant::now();
    let none = store
        .wait_events("0", 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(none, StreamRead::default());
    assert!(started.elapsed() >= Duration::from_millis(150), "it waited");

    // A waiter wakes when a commit adds events, long before its wait is over.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let read = store
                .wait_events("0", 10, Duration::from_secs(20))
                .await
                .unwrap();
            (read.events, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.acquire_lease("a", LONG).await.unwrap());
    let start = test_epoch().unix_timestamp();
    let events = [
        event(EventType::Opened, "tiktok", start, &["DE"]),
        event(EventType::Updated, "tiktok", start, &["DE", "FR"]),
        event(EventType::Resolved, "tiktok", start, &["DE", "FR"]),
    ];
    let state = vec![1u8, 2, 3];
    let ids = store
        .commit_detector(DetectorCommit {
            holder: "a",
            continues_from: None,
            cursor: 60,
            states: &[(service("tiktok"), state.clone())],
            forget: &[],
            gaps: &[],
            events: &events,
            refreshed: &[],
        })
        .await
        .unwrap();
    let (woken, waited) = waiter.await.unwrap();
    assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
    assert_eq!(woken.len(), 3, "{woken:?}");
    assert_eq!(woken[0].id, ids[0]);
    // Waiting after the last event returns what comes after it, or nothing.
    let after = store
        .wait_events(&ids[1], 10, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(after.events.len(), 1);
    assert_eq!(after.events[0].id, ids[2]);
    assert_eq!(after.through, Some(stream_id(&ids[2])));
    // Nothing was trimmed, but the stream holds nothing before its first event either: an
    // id from before it comes from a stream since made anew (a store restarted without its
    // data), so its reader may have missed events.
    let (ms, seq) = stream_id(&ids[0]);
    let before_first = if seq == 0 {
        (ms - 1, u64::MAX)
    } else {
        (ms, seq - 1)
    };
    assert_eq!(
        store.stream_bounds().await.unwrap(),
        StreamBounds {
            last: stream_id(&ids[2]),
            trimmed_through: before_first,
            trimmed: false,
        }
    );
    assert_eq!(
        store.detector_state(&service("tiktok")).await.unwrap(),
        Some(state)
    );
    assert_eq!(
        store.detector_state(&service("netflix")).await.unwrap(),
        None
    );
    // Trimming is remembered.
    if let Some(redis) = &redis {
        let mut conn = redis.connection().unwrap();
        let (ms, seq) = stream_id(&ids[1]);
        let _: i64 = redis::cmd("XTRIM")
            .arg("dr:events")
            .arg("MINID")
            .arg("=")
            .arg(format!("{ms}-{}", seq + 1))
            .query(&mut conn)
            .unwrap();
        let trimmed = store.stream_bounds().await.unwrap().trimmed_through;
        assert!(
            trimmed >= stream_id(&ids[1]) && trimmed < stream_id(&ids[2]),
            "{trimmed:?}"
        );
        // Trimmed through what a reader saw last (Redis trims whole blocks after a quiet
        // spell): that is no stream made anew.
        let bounds = store.stream_bounds().await.unwrap();
        assert!(
            bounds.trimmed && !bounds.reset_since(stream_id(&ids[1])),
            "{bounds:?}"
        );

        // Entries that are not events (another version's type; no event field) are passed
        // over: the read says it went through them, so the next one starts after them.
        let mut skipped = Vec::new();
        for (field, value) in [("event", r#"{"type":"incident.merged"}"#), ("note", "x")] {
            let id: String = redis::cmd("XADD")
                .arg("dr:events")
                .arg("*")
                .arg(field)
                .arg(value)
                .query(&mut conn)
                .unwrap();
            skipped.push(id);
        }
        let read = store
            .wait_events(&ids[2], 10, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(read.events.is_empty(), "{read:?}");
        assert_eq!(read.through, Some(stream_id(&skipped[1])));
    }
}

/// The memory store trims events past the event retention when it adds new ones (Redis
/// trims too, but approximately, in whole stream nodes, so only the memory store is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_trims_old_events() {
    let mut settings = settings(0);
    settings.event_retention = Duration::from_secs(3600);
    let (store, clock, _) = store_with_clock(Backend::Memory, settings);
    let store = store.as_ref();
    let start = test_epoch().unix_timestamp();
    assert!(
        store
            .acquire_lease("a", Duration::from_secs(86_400))
            .await
            .unwrap()
    );
    let old = event(EventType::Opened, "tiktok", start, &["DE"]);
    let ids = commit_events(store, "a", std::slice::from_ref(&old))
        .await
        .unwrap();
    assert_eq!(
        ids,
        [format!("{}-0", test_epoch().unix_timestamp() * 1000)],
        "ids are the clock's milliseconds"
    );
    clock.advance(Duration::from_secs(1800));
    let newer = event(EventType::Updated, "tiktok", start, &["DE", "FR"]);
    commit_events(store, "a", std::slice::from_ref(&newer))
        .await
        .unwrap();
    assert_eq!(store.events_after("0", 10).await.unwrap().len(), 2);
    clock.advance(Duration::from_secs(2400));
    let newest = event(EventType::Resolved, "tiktok", start, &["DE", "FR"]);
    commit_events(store, "a", std::slice::from_ref(&newest))
        .await
        .unwrap();
    let left: Vec<IncidentEvent> = store
        .events_after("0", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        store.stream_bounds().await.unwrap().trimmed_through,
        stream_id(&ids[0]),
        "and the trimming is remembered"
    );
    assert_eq!(
        left,
        [newer, newest],
        "the event older than an hour is gone"
    );
    // The incident record keeps every event.
    let record = store.incident(&old.incident.id).await.unwrap().unwrap();
    assert_eq!(record.events.len(), 3);
}

/// The detector's Redis keys are a contract (other tools read them): names, types, values and
/// expiries as `store::keys` documents them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_writes_the_documented_detector_keys() {
    let (store, _clock, redis) = store_with_clock(Backend::Redis, settings(0));
    let store = store.as_ref();
    let mut conn = redis.as_ref().unwrap().connection().unwrap();
    let mut cmd = |args: &[&str]| {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query::<redis::Value>(&mut conn).unwrap()
    };
    let text = |v: redis::Value| redis::from_redis_value::<String>(v).unwrap();
    let int = |v: redis::Value| redis::from_redis_value::<i64>(v).unwrap();

    assert!(store.acquire_lease("replica-1", LONG).await.unwrap());
    assert_eq!(text(cmd(&["GET", "dr:detector:lease"])), "replica-1");
    let ttl = int(cmd(&["PTTL", "dr:detector:lease"]));
    assert!(ttl > 3_590_000 && ttl <= 3_600_000, "{ttl}");

    let start = test_epoch().unix_timestamp() - 600;
    let blob = vec![0u8, 0xff, 7];
    let events = [
        event(EventType::Opened, "tiktok", start, &["DE"]),
        event(EventType::Opened, "netflix", start + 60, &["US"]),
        event(EventType::Resolved, "netflix", start + 60, &["US"]),
    ];
    let ids = store
        .commit_detector(DetectorCommit {
            holder: "replica-1",
            continues_from: None,
            cursor: 123,
            states: &[(service("tiktok"), blob.clone())],
            forget: &[],
            gaps: &[
                GapDecision {
                    bucket: 60,
                    missing: true,
                },
                GapDecision {
                    bucket: 120,
                    missing: false,
                },
            ],
            events: &events,
            refreshed: &[],
        })
        .await
        .unwrap();

    assert_eq!(text(cmd(&["GET", "dr:detector:cursor"])), "123");
    assert_eq!(text(cmd(&["GET", "dr:detector:gaps"])), "60:1,120:0");
    assert_eq!(
        redis::from_redis_value::<Vec<String>>(cmd(&["SMEMBERS", "dr:detector:services"])).unwrap(),
        ["tiktok"]
    );
    assert_eq!(
        redis::from_redis_value::<Vec<u8>>(cmd(&["GET", "dr:{tiktok}:detector"])).unwrap(),
        blob
    );
    assert_eq!(int(cmd(&["TTL", "dr:{tiktok}:detector"])), -1);
    // The cursor the state was saved at, and the 64-bit FNV-1a of the state.
    let fnv = blob.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    assert_eq!(
        redis::from_redis_value::<Vec<(String, String)>>(cmd(&["HGETALL", "dr:detector:saved"]))
            .unwrap(),
        [("tiktok".to_owned(), format!("123:{fnv:016x}"))]
    );

    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::from_redis_value(cmd(&["XRANGE", "dr:events", "-", "+"])).unwrap();
    assert_eq!(entries.len(), 3);
    for ((entry, id), event) in entries.iter().zip(&ids).zip(&events) {
        assert_eq!(&entry.0, id);
        assert_eq!(
            entry.1,
            [("event".to_owned(), serde_json::to_string(event).unwrap())]
        );
    }

    let (tiktok_id, netflix_id) = (format!("tiktok-{start}"), format!("netflix-{}", start + 60));
    let zset = |cmd: &mut dyn FnMut(&[&str]) -> redis::Value, key: &str| {
        redis::from_redis_value::<Vec<(String, i64)>>(cmd(&[
            "ZRANGE",
            key,
            "0",
            "-1",
            "WITHSCORES",
        ]))
        .unwrap()
    };
    assert_eq!(
        zset(&mut cmd, "dr:incidents"),
        [(tiktok_id.clone(), start), (netflix_id.clone(), start + 60)]
    );
    assert_eq!(
        zset(&mut cmd, "dr:incidents:active"),
        [(tiktok_id.clone(), start)]
    );
    assert_eq!(
        zset(&mut cmd, "dr:{netflix}:incidents"),
        [(netflix_id.clone(), start + 60)]
    );
    let netflix_record = format!("dr:{{netflix}}:incident:{}", start + 60);
    assert_eq!(
        text(cmd(&["GET", &netflix_record])),
        serde_json::to_string(&events[2].incident).unwrap()
    );
    let list = format!("{netflix_record}:events");
    assert_eq!(
        redis::from_redis_value::<Vec<String>>(cmd(&["LRANGE", &list, "0", "-1"])).unwrap(),
        [
            serde_json::to_string(&events[1]).unwrap(),
            serde_json::to_string(&events[2]).unwrap()
        ]
    );
    let expires = start + 60 + 90 * 86_400;
    for key in [netflix_record.as_str(), &list, "dr:{netflix}:incidents"] {
        assert_eq!(int(cmd(&["EXPIRETIME", key])), expires, "{key}");
    }

    // A Redis that lost its scripts (a restart) gets them again.
    cmd(&["SCRIPT", "FLUSH"]);
    assert!(store.acquire_lease("replica-1", LONG).await.unwrap());
    let no_events = DetectorCommit {
        holder: "replica-1",
        continues_from: Some(123),
        cursor: 124,
        states: &[],
        forget: &[],
        gaps: &[],
        events: &[],
        refreshed: &[],
    };
    assert!(store.commit_detector(no_events).await.unwrap().is_empty());
    assert_eq!(text(cmd(&["GET", "dr:detector:cursor"])), "124");
    assert_eq!(
        int(cmd(&["EXISTS", "dr:detector:gaps"])),
        0,
        "a commit without gap decisions deletes the last one's"
    );
    let loaded = store.load_detector().await.unwrap().unwrap();
    assert_eq!(loaded.services, [saved(&service("tiktok"), 123, &blob)]);
    // A malformed value is taken as no decisions (a replay then decides anew).
    cmd(&["SET", "dr:detector:gaps", "60:1,soon"]);
    assert_eq!(store.load_detector().await.unwrap().unwrap().gaps, []);
    cmd(&["DEL", "dr:detector:gaps"]);
    // A state that a release saving every state at every step wrote has no entry, or a
    // stale one (that release leaves the hash alone): it was saved at the cursor.
    let entry = text(cmd(&["HGET", "dr:detector:saved", "tiktok"]));
    cmd(&["SET", "dr:{tiktok}:detector", "\x01newer"]);
    let loaded = store.load_detector().await.unwrap().unwrap();
    assert_eq!(
        loaded.services,
        [saved(&service("tiktok"), 124, b"\x01newer")]
    );
    cmd(&["HDEL", "dr:detector:saved", "tiktok"]);
    let loaded = store.load_detector().await.unwrap().unwrap();
    assert_eq!(loaded.services[0].cursor, 124);
    // Forgetting a service deletes its state and its entry.
    cmd(&["HSET", "dr:detector:saved", "tiktok", &entry]);
    store
        .commit_detector(DetectorCommit {
            holder: "replica-1",
            continues_from: Some(124),
            cursor: 124,
            states: &[],
            forget: &[service("tiktok")],
            gaps: &[],
            events: &[],
            refreshed: &[],
        })
        .await
        .unwrap();
    for key in [
        "dr:{tiktok}:detector",
        "dr:detector:saved",
        "dr:detector:services",
    ] {
        assert_eq!(int(cmd(&["EXISTS", key])), 0, "{key}");
    }
    cmd(&["SCRIPT", "FLUSH"]);
    store.release_lease("replica-1").await.unwrap();
    assert_eq!(int(cmd(&["EXISTS", "dr:detector:lease"])), 0);
}

/// A commit that saves many states (a warm-up's, a new leader's first) sends them ahead to
/// staged keys of its holder, in chunks, and renames them into place: the keys it leaves are
/// those of a small commit, and a commit refused leaves only staged keys that expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_sends_a_large_commits_states_ahead() {
    let (store, _clock, redis) = store_with_clock(Backend::Redis, settings(0));
    let store = store.as_ref();
    let mut conn = redis.as_ref().unwrap().connection().unwrap();
    let mut cmd = |args: &[&[u8]]| {
        let mut c = redis::cmd(std::str::from_utf8(args[0]).unwrap());
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query::<redis::Value>(&mut conn).unwrap()
    };
    let int = |v: redis::Value| redis::from_redis_value::<i64>(v).unwrap();
    let bytes = |v: redis::Value| redis::from_redis_value::<Vec<u8>>(v).unwrap();
    let keys = |cmd: &mut dyn FnMut(&[&[u8]]) -> redis::Value, pattern: &str| {
        let mut found: Vec<String> =
            redis::from_redis_value(cmd(&[b"KEYS", pattern.as_bytes()])).unwrap();
        found.sort();
        found
    };

    // 120 states of 8 KiB (960 KiB: two chunks and a bit), each distinct.
    let states: Vec<(ServiceId, Vec<u8>)> = (0..120)
        .map(|i| {
            let blob = (0..8192).map(|j| ((i * 31 + j) % 251) as u8).collect();
            (service(&format!("svc-{i:03}")), blob)
        })
        .collect();
    // Another (dead) leader's staged state is never taken for this one's.
    cmd(&[b"SET", b"dr:{svc-007}:detector:staged:replica-0", b"stale"]);
    let start = test_epoch().unix_timestamp() - 600;
    let events = [event(EventType::Opened, "svc-007", start, &["DE"])];
    assert!(store.acquire_lease("replica-1", LONG).await.unwrap());
    let ids = store
        .commit_detector(DetectorCommit {
            holder: "replica-1",
            continues_from: None,
            cursor: 600,
            states: &states,
            forget: &[],
            gaps: &[],
            events: &events,
            refreshed: &[],
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    for (service, blob) in &states {
        let key = format!("dr:{{{service}}}:detector");
        assert_eq!(&bytes(cmd(&[b"GET", key.as_bytes()])), blob, "{key}");
        assert_eq!(
            int(cmd(&[b"TTL", key.as_bytes()])),
            -1,
            "{key} keeps no expiry"
        );
    }
    assert_eq!(
        keys(&mut cmd, "*staged*"),
        ["dr:{svc-007}:detector:staged:replica-0"],
        "every staged state was renamed; the other leader's is untouched"
    );
    assert_eq!(int(cmd(&[b"SCARD", b"dr:detector:services"])), 120);
    let loaded = store.load_detector().await.unwrap().unwrap();
    assert_eq!(loaded.cursor, 600);
    assert_eq!(loaded.services, saved_all(&states, 600));
    assert_eq!(
        store
            .incident(&events[0].incident.id)
            .await
            .unwrap()
            .unwrap()
            .events
            .len(),
        1
    );

    // A staged step with everything else a step carries (a service forgotten, gap
    // decisions, events of two incidents), after Redis lost its scripts: the first 100
    // states are replaced, the last is deleted, the others stay as saved.
    let next: Vec<(ServiceId, Vec<u8>)> = states[..100]
        .iter()
        .map(|(service, blob)| (service.clone(), blob.iter().rev().copied().collect()))
        .collect();
    let gaps = [GapDecision {
        bucket: 540,
        missing: true,
    }];
    let events = [
        event(EventType::Resolved, "svc-007", start, &["DE"]),
        event(EventType::Opened, "svc-008", start + 60, &["US"]),
    ];
    cmd(&[b"SCRIPT", b"FLUSH"]);
    let ids = store
        .commit_detector(DetectorCommit {
            holder: "replica-1",
            continues_from: Some(600),
            cursor: 660,
            states: &next,
            forget: &[service("svc-119")],
            gaps: &gaps,
            events: &events,
            refreshed: &[],
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let loaded = store.load_detector().await.unwrap().unwrap();
    assert_eq!((loaded.cursor, loaded.gaps.as_slice()), (660, &gaps[..]));
    let expected = [saved_all(&next, 660), saved_all(&states[100..119], 600)].concat();
    assert_eq!(loaded.services, expected);
    assert_eq!(int(cmd(&[b"EXISTS", b"dr:{svc-119}:detector"])), 0);
    assert_eq!(int(cmd(&[b"HEXISTS", b"dr:detector:saved", b"svc-119"])), 0);
    assert_eq!(int(cmd(&[b"SCARD", b"dr:detector:services"])), 119);
    assert_eq!(
        keys(&mut cmd, "*staged*"),
        ["dr:{svc-007}:detector:staged:replica-0"]
    );
    let open: Vec<String> = store
        .incidents(&query(true, None, None, 10))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(open, [events[1].incident.id.clone()]);

    // A leader that lost the lease stages, is refused, and changes nothing else.
    cmd(&[b"SET", b"dr:detector:lease", b"replica-2"]);
    let newer: Vec<(ServiceId, Vec<u8>)> = states
        .iter()
        .map(|(service, _)| (service.clone(), vec![1; 4096]))
        .collect();
    let refused = store
        .commit_detector(DetectorCommit {
            holder: "replica-1",
            continues_from: Some(660),
            cursor: 720,
            states: &newer,
            forget: &[],
            gaps: &[],
            events: &[],
            refreshed: &[],
        })
        .await;
    assert!(matches!(refused, Err(StoreError::LeaseLost)), "{refused:?}");
    assert_eq!(
        store.load_detector().await.unwrap().unwrap().services,
        expected
    );
    let left = keys(&mut cmd, "*:staged:replica-1");
    assert_eq!(left.len(), 120);
    for key in &left {
        let ttl = int(cmd(&[b"PTTL", key.as_bytes()]));
        assert!(ttl > 0 && ttl <= 300_000, "{key} expires: {ttl}");
    }
}

/// A staged state that is gone when the commit script runs (expired, or evicted) fails the
/// commit, which then writes nothing at all; the same commit, made again, goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_refuses_a_commit_whose_staged_state_is_gone() {
    let redis = RedisServer::start();
    // Between the staging pipelines and the commit script, while armed, the tap deletes
    // one staged state.
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let victim = b"dr:{svc-005}:detector:staged:replica-1".to_vec();
    let tap = {
        let (armed, victim, conn) = (armed.clone(), victim.clone(), redis.connection().unwrap());
        let conn = std::sync::Mutex::new(conn);
        RedisTap::start(redis.port, move |command: &[Vec<u8>]| {
            let script = command[0].eq_ignore_ascii_case(b"EVALSHA")
                || command[0].eq_ignore_ascii_case(b"EVAL");
            if script
                && command.contains(&victim)
                && armed.swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                let gone: i64 = redis::cmd("DEL")
                    .arg(&victim)
                    .query(&mut *conn.lock().unwrap())
                    .unwrap();
                assert_eq!(gone, 1, "the staged state was there to delete");
            }
        })
    };
    let store = RedisStore::connect(&tap.url(), settings(0)).unwrap();
    let mut conn = redis.connection().unwrap();
    let states = |fill: u8| -> Vec<(ServiceId, Vec<u8>)> {
        (0..40)
            .map(|i| (service(&format!("svc-{i:03}")), vec![fill; 8192]))
            .collect()
    };
    let (first, next) = (states(1), states(2));
    let start = test_epoch().unix_timestamp() - 600;
    assert!(store.acquire_lease("replica-1", LONG).await.unwrap());
    let commit = |cursor, continues_from, states, events| DetectorCommit {
        holder: "replica-1",
        continues_from,
        cursor,
        states,
        forget: &[],
        gaps: &[],
        events,
        refreshed: &[],
    };
    store
        .commit_detector(commit(600, None, &first, &[]))
        .await
        .unwrap();
    let before = store.load_detector().await.unwrap().unwrap();
    let events = [event(EventType::Opened, "svc-005", start, &["DE"])];

    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = store
        .commit_detector(commit(660, Some(600), &next, &events))
        .await;
    assert!(
        !armed.load(std::sync::atomic::Ordering::SeqCst),
        "the tap saw the commit"
    );
    match refused {
        Err(StoreError::Backend(message)) => {
            assert!(
                message.contains("staged detector state is missing"),
                "{message}"
            );
        }
        other => panic!("a commit missing a staged state must fail: {other:?}"),
    }
    assert_eq!(store.load_detector().await.unwrap().unwrap(), before);
    let stream: i64 = redis::cmd("XLEN")
        .arg("dr:events")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stream, 0, "no event was appended");
    assert!(
        store
            .incident(&events[0].incident.id)
            .await
            .unwrap()
            .is_none()
    );

    let ids = store
        .commit_detector(commit(660, Some(600), &next, &events))
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    let after = store.load_detector().await.unwrap().unwrap();
    assert_eq!(after.cursor, 660);
    assert_eq!(after.services, saved_all(&next, 660));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_leases_the_detector() {
    lease(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_leases_the_detector() {
    lease(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_commits_detector_steps() {
    detector_commit(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_commits_detector_steps() {
    detector_commit(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_refreshes_open_records_between_events() {
    refreshed_records(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_refreshes_open_records_between_events() {
    refreshed_records(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_lists_long_listings_once_each() {
    long_listings(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_lists_long_listings_once_each() {
    long_listings(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_streams_events() {
    event_stream(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_streams_events() {
    event_stream(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_incident_records() {
    incident_records(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keeps_incident_records() {
    incident_records(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_waits_for_events() {
    stream_waits(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_waits_for_events() {
    stream_waits(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_lists_incidents() {
    incident_listing(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_lists_incidents() {
    incident_listing(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_takes_history() {
    history(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_takes_history() {
    history(Backend::Redis).await;
}

/// Over RESP3 some replies change shape (`HGETALL` answers a map): the series sums too must
/// read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_takes_history_over_resp3() {
    let redis = RedisServer::start();
    let url = format!("{}?protocol=resp3", redis.url());
    let store = RedisStore::connect(&url, settings(0)).expect("connect");
    history_on(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_limits_reporters_per_address() {
    address_limit(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_limits_reporters_per_address() {
    address_limit(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_the_contract() {
    contract(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keeps_the_contract() {
    contract(Backend::Redis).await;
}

/// `downradar import` loads a counts file into a deployment's Redis, where the API sees it,
/// and says how much of it only the hourly roll-up keeps; a bad row stops it with the file
/// and line before anything is written, even the good rows before it; with no Redis at
/// the URL, it says why it could not connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_loads_a_counts_file_into_redis() {
    let app = crate::helpers::spawn_app(Backend::Redis).await;
    let url = app.redis.as_ref().unwrap().url();
    let dir = tempfile::tempdir().unwrap();
    let minute = |m: i64| {
        time::OffsetDateTime::from_unix_timestamp(test_epoch().unix_timestamp() - 60 * m)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let good = dir.path().join("counts.csv");
    std::fs::write(
        &good,
        format!(
            "timestamp,service,region,problem,count\n\
             {old},tiktok,US,login,6\n\
             {a},tiktok,US,login,3\n{a},tiktok,DE,feed,2\n{b},tiktok,US,login,4\n{b},netflix,FR,app,1\n",
            old = minute(10 * 24 * 60),
            a = minute(10),
            b = minute(5)
        ),
    )
    .unwrap();
    let import = |input: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
            .args(["import", "--redis-url", &url, "--input"])
            .arg(input)
            .output()
            .expect("run downradar import")
    };
    let out = import(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "5 rows, 16 reports, 10 added, 6 to the hourly roll-up only (older than \
             --retention), 0 skipped"
        ),
        "{stderr}"
    );
    let series = app
        .get("/v1/services/tiktok/reports?region=US")
        .await
        .json();
    assert_eq!(series["total"], 7, "{series}");
    assert_eq!(
        app.get("/v1/services/netflix/reports").await.json()["total"],
        1
    );

    // An import given a shorter retention adds its rows but never cuts a bucket's expiry.
    let bucket_a = test_epoch().unix_timestamp() - 600;
    let key = format!("dr:{{tiktok}}:b:60:{}", bucket_a - bucket_a.rem_euclid(60));
    let ttl = |key: &str| -> i64 {
        let mut redis = app.redis.as_ref().unwrap().connection().unwrap();
        redis::cmd("TTL").arg(key).query(&mut redis).unwrap()
    };
    let before = ttl(&key);
    assert!(before > 2 * 86_400, "{key}: {before}");
    let shorter = dir.path().join("shorter.csv");
    std::fs::write(
        &shorter,
        format!(
            "timestamp,service,region,problem,count\n{},tiktok,US,login,1\n",
            minute(10)
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
        .args([
            "import",
            "--retention",
            "1d",
            "--redis-url",
            &url,
            "--input",
        ])
        .arg(&shorter)
        .output()
        .expect("run downradar import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ttl(&key) > before - 60,
        "{key}: {} after {before}",
        ttl(&key)
    );
    let series = app
        .get("/v1/services/tiktok/reports?region=US")
        .await
        .json();
    assert_eq!(series["total"], 8, "{series}");

    // Each refused file: its name, its rows after the header, and what its error says.
    let refused = |name: &str, rows: String, says: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("timestamp,service,region,problem,count\n{rows}"),
        )
        .unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_downradar"));
        command
            .args(["import", "--redis-url", &url, "--input"])
            .arg(&path);
        let stderr = crate::helpers::failure_of(&mut command, name);
        assert!(stderr.contains(says), "{name}: {stderr}");
    };
    let m = minute(3);
    refused(
        "bad.csv",
        format!("{m},tiktok,US,login,5\n{m},myspace,US,login,3\n"),
        "bad.csv:3: unknown service \"myspace\"",
    );
    // A mistyped year: a row years ahead of Redis's clock is refused, nothing written.
    refused(
        "ahead.csv",
        format!("{m},tiktok,US,login,5\n2062-01-01T00:00:00Z,tiktok,US,login,3\n"),
        "ahead.csv:3: the bucket 2062-01-01T00:00:00Z is more than a day ahead",
    );
    assert_eq!(
        app.get("/v1/services/tiktok/reports?region=US")
            .await
            .json()["total"],
        8,
        "the good row before the bad one is not written either"
    );

    // No Redis there: it says why, not only that Redis did not answer in time.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_downradar"));
    command
        .args([
            "import",
            "--redis-url",
            &format!("redis://127.0.0.1:{closed}"),
        ])
        .arg("--input")
        .arg(&good);
    let stderr = crate::helpers::failure_of(&mut command, "import with no Redis");
    assert!(
        stderr.contains("cannot use this Redis; check --redis-url")
            && stderr.contains("Connection refused"),
        "{stderr}"
    );
}

/// A Redis that refuses the URL's credentials stops `serve` and `import` at once, saying so
/// (waiting would never mend it): a wrong password, no password where one is required, and a
/// database number the server does not have.
#[test]
fn a_redis_refusing_the_credentials_stops_serve_and_import() {
    let redis = crate::helpers::RedisServer::start();
    let mut conn = redis.connection().unwrap();
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "sesame"])
        .query(&mut conn)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts.csv");
    std::fs::write(
        &counts,
        "timestamp,service,region,problem,count\n2026-10-01T00:00:00Z,tiktok,US,login,1\n",
    )
    .unwrap();
    let wrong = format!("redis://:open@127.0.0.1:{}/", redis.port);
    let none = redis.url();
    let no_such_database = format!("redis://:sesame@127.0.0.1:{}/99", redis.port);
    let port = crate::helpers::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    for (url, expected) in [
        (&wrong, "Redis refused the user or password of --redis-url"),
        (
            &none,
            "Redis requires a password and --redis-url gives none",
        ),
        (
            &no_such_database,
            "Redis has no database of the number --redis-url gives after its port",
        ),
    ] {
        let commands: [&[&str]; 2] = [
            &["serve", "--listen", &listen, "--redis-url", url],
            &["import", "--redis-url", url, "--input"],
        ];
        for args in commands {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_downradar"));
            command.args(args).env_remove("DOWNRADAR_REDIS_URL");
            if args[0] == "import" {
                command.arg(&counts);
            }
            let stderr = crate::helpers::failure_of(&mut command, &format!("{args:?}"));
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
            assert!(
                !stderr.contains("sesame") && !stderr.contains(":open@"),
                "{stderr}"
            );
            assert!(!stderr.contains("no answer within"), "{args:?}: {stderr}");
        }
    }
}

/// Roll-ups kept for less time than their buckets are refused by `serve` and `import` at
/// once, naming both flags and their values, given as flags or in the environment: reads at
/// `resolution=1h` would show zeros where the buckets hold reports.
#[test]
fn roll_ups_kept_shorter_than_their_buckets_stop_serve_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts.csv");
    std::fs::write(&counts, "timestamp,service,region,problem,count\n").unwrap();
    let listen = format!("127.0.0.1:{}", crate::helpers::free_port());
    let flags = ["--retention", "30d", "--rollup-retention", "7d"];
    // Each command line, and whether the retentions are in the environment instead.
    let runs = [
        (
            [&["serve", "--listen", &listen][..], &flags].concat(),
            false,
        ),
        (vec!["--listen", &listen], true),
        // No Redis there: the settings are refused before it is asked.
        (
            [
                &["import", "--redis-url", "redis://127.0.0.1:1"][..],
                &flags,
            ]
            .concat(),
            false,
        ),
    ];
    for (args, in_environment) in runs {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_downradar"));
        command.args(&args).env_remove("DOWNRADAR_REDIS_URL");
        if in_environment {
            command
                .env("DOWNRADAR_RETENTION", "30d")
                .env("DOWNRADAR_ROLLUP_RETENTION", "7d");
        }
        if args[0] == "import" {
            command.arg("--input").arg(&counts);
        }
        let stderr = crate::helpers::failure_of(&mut command, &format!("{args:?}"));
        assert!(
            stderr.contains("--rollup-retention 7d is shorter than --retention 30d"),
            "{args:?}: {stderr}"
        );
    }
}

/// A replica whose `--bucket` is not the detector leader's wrote reports the detector never
/// reads, and answered them 202. It now refuses them (503) and is not ready while the leader's
/// width differs, and takes them again once no leader of another width holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_bucket_width_refuses_reports() {
    use crate::helpers::start_binary;
    let redis = RedisServer::start();
    let (mut leader, _) =
        start_binary(&redis, &["--bucket", "10s", "--detector-interval", "1s"]).await;
    let mut conn = redis.connection().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let width: Option<String> = redis::cmd("GET")
            .arg("dr:detector:bucket")
            .query(&mut conn)
            .unwrap();
        if width.as_deref() == Some("10") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the leader did not write its width: {width:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = reqwest::Client::new();
    let report = |base: String, id: &'static str| {
        let client = client.clone();
        async move {
            client
                .post(format!("{base}/v1/services/tiktok/reports"))
                .json(&serde_json::json!({"problem": "login", "region": "DE", "client_id": id}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let ready = |base: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };

    let (mut other, other_base) = start_binary(&redis, &["--no-detector"]).await;
    assert_eq!(report(other_base.clone(), "a").await, 503);
    assert_eq!(ready(other_base.clone()).await, 503);
    let (mut same, same_base) = start_binary(&redis, &["--no-detector", "--bucket", "10s"]).await;
    assert_eq!(report(same_base.clone(), "b").await, 202);
    assert_eq!(ready(same_base).await, 200);
    // Nor does an import of history into buckets of another width go ahead.
    let counts = tempfile::NamedTempFile::new().unwrap();
    let hour = time::OffsetDateTime::now_utc().unix_timestamp() / 3600 * 3600 - 3600;
    let row = time::OffsetDateTime::from_unix_timestamp(hour)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::fs::write(
        counts.path(),
        format!("timestamp,service,region,problem,count\n{row},tiktok,DE,login,3\n"),
    )
    .unwrap();
    let refused = crate::helpers::failure_of(
        std::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
            .args(["import", "--redis-url", &redis.url(), "--input"])
            .arg(counts.path())
            .env_remove("DOWNRADAR_BUCKET"),
        "import with another --bucket",
    );
    assert!(
        refused.contains("--bucket is 60s here, but the detector's leader reads buckets of 10s"),
        "{refused}"
    );

    // The leader gone, its width expires with its lease (3 s): the other replica takes
    // reports again.
    leader.kill().unwrap();
    let _ = leader.wait();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ready(other_base.clone()).await != 200 {
        assert!(std::time::Instant::now() < deadline, "still refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(report(other_base, "c").await, 202);
    for child in [&mut other, &mut same] {
        child.kill().unwrap();
        let _ = child.wait();
    }
}
