//! The store contract, run against both implementations: dedup, revocation in either order,
//! idempotence, the hourly roll-up and range reads.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use downradar::buckets::BucketWidth;
use downradar::catalog::{Problem, ServiceId};
use downradar::clock::ManualClock;
use downradar::regions::RegionCode;
use downradar::reporter::ReporterSecret;
use downradar::store::memory::MemoryStore;
use downradar::store::redis::RedisStore;
use downradar::store::{
    Cell, Granularity, HistoryCount, Recorded, Report, ReportToken, Store, StoreSettings,
};

use crate::helpers::{Backend, RedisServer, test_epoch};

fn settings(max_reporters_per_address: u32) -> StoreSettings {
    StoreSettings {
        bucket: BucketWidth::ONE_MINUTE,
        retention: Duration::from_secs(8 * 86_400),
        rollup_retention: Duration::from_secs(90 * 86_400),
        dedup_window: Duration::from_secs(900),
        max_reporters_per_address: NonZeroU32::new(max_reporters_per_address),
    }
}

/// A store of the given kind (and the Redis it runs on, kept alive by the caller).
fn store(backend: Backend, settings: StoreSettings) -> (Arc<dyn Store>, Option<RedisServer>) {
    match backend {
        Backend::Memory => {
            let clock = Arc::new(ManualClock::new(test_epoch()));
            (Arc::new(MemoryStore::new(settings, clock)), None)
        }
        Backend::Redis => {
            let redis = RedisServer::start();
            let store = RedisStore::connect(&redis.url(), settings).expect("connect");
            (Arc::new(store), Some(redis))
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
    store.revoke(std::slice::from_ref(&a)).await.unwrap();
    store.revoke(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(total(store, Granularity::Fine).await, 1);
    assert_eq!(total(store, Granularity::Hourly).await, 1);
    let a_retry = report("a", "DE", 1);
    assert_eq!(store.record(&[a_retry]).await.unwrap(), [Recorded::Counted]);
    assert_eq!(total(store, Granularity::Fine).await, 2);

    // A write that arrives after its revocation is ignored.
    let late = report("c", "JP", 0);
    store.revoke(std::slice::from_ref(&late)).await.unwrap();
    assert_eq!(store.record(&[late]).await.unwrap(), [Recorded::Revoked]);
    assert_eq!(total(store, Granularity::Fine).await, 2);

    // Revoking a duplicate (which counted nothing) leaves the count of the report that did.
    store.revoke(&[a_again]).await.unwrap();
    assert_eq!(total(store, Granularity::Fine).await, 2);
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
    let store = store.as_ref();
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
        added, 16,
        "the 10-day-old row is still within the roll-up's 90 days"
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
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_takes_history() {
    history(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_takes_history() {
    history(Backend::Redis).await;
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

/// `downradar import` loads a counts file into a deployment's Redis, where the API sees it;
/// a bad row stops it with the file and line.
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
             {a},tiktok,US,login,3\n{a},tiktok,DE,feed,2\n{b},tiktok,US,login,4\n{b},netflix,FR,app,1\n",
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 rows, 10 reports, 10 added"));
    let series = app
        .get("/v1/services/tiktok/reports?region=US")
        .await
        .json();
    assert_eq!(series["total"], 7, "{series}");
    assert_eq!(
        app.get("/v1/services/netflix/reports").await.json()["total"],
        1
    );

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "timestamp,service,region,problem,count\n{},myspace,US,login,3\n",
            minute(3)
        ),
    )
    .unwrap();
    let out = import(&bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.csv:2: unknown service \"myspace\""),
        "{stderr}"
    );
}
