//! Replicas on Redis follow Redis's clock, whatever their hosts' clocks say.

use std::sync::Arc;
use std::time::{Duration, Instant};

use downradar::clock::Clock;
use downradar::startup::Application;
use serde_json::json;
use time::OffsetDateTime;

use crate::helpers::{RedisServer, serve_args};

/// This host's clock (which the private Redis also runs on), five minutes ahead.
struct Ahead;

impl Clock for Ahead {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::from_secs(300)
    }
}

/// Sends one report to the server at `address`; the start (Unix seconds) of the bucket it was
/// stamped with, between the starts of this host's minutes before and after.
async fn stamp(address: &str) -> (i64, i64, i64) {
    let before = OffsetDateTime::now_utc().unix_timestamp();
    let answer = reqwest::Client::new()
        .post(format!("{address}/v1/services/tiktok/reports"))
        .json(&json!({"problem": "login", "region": "DE", "client_id": format!("{before}-{address}")}))
        .send()
        .await
        .unwrap();
    let after = OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(answer.status(), 202);
    let body: serde_json::Value = answer.json().await.unwrap();
    let bucket = OffsetDateTime::parse(
        body["bucket"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    (before - before % 60, bucket, after - after % 60)
}

/// Waits (up to 10 s) until the server at `address` is ready.
async fn wait_ready(address: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "not ready: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `app`, stamps one report once it is ready, stops it.
async fn stamp_with(app: Application) -> (i64, i64, i64) {
    let address = format!("http://127.0.0.1:{}", app.port());
    let stop = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    wait_ready(&address).await;
    let stamped = stamp(&address).await;
    stop.stop().await;
    server.await.unwrap().unwrap();
    stamped
}

/// A replica whose own clock is five minutes ahead still stamps reports with the bucket of
/// Redis's clock, the one its peers and the detector's leader follow. On its own clock it
/// would write five minutes into the future, into a bucket the detector reads long after the
/// others' (or, behind, one it has already read: those reports never reach detection).
#[tokio::test]
async fn a_replica_with_a_wrong_clock_stamps_buckets_on_redis_clock() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = || serve_args(Some(&url), &["--no-detector"]);
    let following = Application::build_following_store(args(), Arc::new(Ahead))
        .await
        .unwrap();
    let (first, bucket, last) = stamp_with(following).await;
    assert!(
        (first..=last).contains(&bucket),
        "{first} <= {bucket} <= {last}"
    );

    // What it guards against: on its own clock the replica is five minutes off.
    let own = Application::build_with_clock(args(), Arc::new(Ahead))
        .await
        .unwrap();
    let (first, bucket, last) = stamp_with(own).await;
    assert!((first + 300..=last + 300).contains(&bucket), "{bucket}");
}

/// A replica five minutes ahead that starts while Redis is down is not ready, refuses
/// reports, and leaves the detector alone, until it has read Redis's clock: on its own clock
/// it would stamp reports five minutes ahead, and the detector would read five minutes of
/// buckets not yet begun and save a cursor that far ahead (both found in review).
#[tokio::test]
async fn a_replica_that_cannot_read_redis_clock_is_not_ready_and_does_not_detect() {
    let mut redis = RedisServer::start();
    redis.kill();
    let url = redis.url();
    let args = serve_args(
        Some(&url),
        &["--detector-interval", "1s", "--detector-warmup", "1h"],
    );
    let app = Application::build_following_store(args, Arc::new(Ahead))
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let stop = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    // Reports are refused at once, not stamped by the host's clock and queued.
    let refused = client
        .post(format!("{address}/v1/services/tiktok/reports"))
        .json(&json!({"problem": "login", "region": "DE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "unavailable");
    assert!(
        body["message"].as_str().unwrap().contains("clock"),
        "{body}"
    );

    redis.restart();
    wait_ready(&address).await;
    let (first, bucket, last) = stamp(&address).await;
    assert!(
        (first..=last).contains(&bucket),
        "{first} <= {bucket} <= {last}"
    );

    // The detector leads once the clock is read, and its cursor is on Redis's time.
    let mut conn = redis.connection().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let cursor = loop {
        let cursor: Option<i64> = redis::cmd("GET")
            .arg("dr:detector:cursor")
            .query(&mut conn)
            .unwrap();
        if let Some(cursor) = cursor {
            break cursor;
        }
        assert!(Instant::now() < deadline, "the detector never committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (now, _): (i64, i64) = redis::cmd("TIME").query(&mut conn).unwrap();
    assert!(
        cursor <= now,
        "cursor {cursor} is ahead of Redis's time {now}"
    );
    stop.stop().await;
    server.await.unwrap().unwrap();
}
