//! Health, readiness and metrics.

use serde_json::json;

use crate::helpers::{Backend, RedisServer, spawn_app, spawn_app_at, start_binary};
use crate::on_both_stores;

on_both_stores! {
    async fn health_and_readiness(app) {
        let health = app.get("/healthz").await;
        assert_eq!(health.status, 200);
        let store = if app.backend == Backend::Redis { "redis" } else { "memory" };
        assert_eq!(health.json(), json!({"status": "ok", "store": store}));
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status, 200);
        assert_eq!(ready.json()["status"], "ready");
    }

    async fn metrics_cover_requests_batches_and_queue(app) {
        app.report("tiktok", &json!({"problem": "login", "region": "DE"})).await;
        let metrics = app.get("/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.content_type.as_deref().unwrap().starts_with("text/plain"));
        for needle in [
            "downradar_http_requests_total{route=\"/v1/services/{id}/reports\",method=\"POST\",status=\"202\"}",
            "downradar_reports_total{outcome=\"counted\"}",
            "downradar_ingest_batch_size_bucket",
            "downradar_store_flush_seconds_bucket",
            "downradar_ingest_queue_depth",
            "downradar_http_request_duration_seconds_bucket",
        ] {
            assert!(metrics.text.contains(needle), "missing {needle} in:\n{}", metrics.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis() {
    let mut app = spawn_app(Backend::Redis).await;
    assert_eq!(app.get("/readyz").await.status, 200);
    app.redis.as_mut().unwrap().kill();
    let down = app.get("/readyz").await;
    assert_eq!(down.status, 503);
    assert_eq!(down.error_code(), "unavailable");
    assert_eq!(down.retry_after.as_deref(), Some("1"));
    assert_eq!(
        app.get("/healthz").await.status,
        200,
        "liveness does not depend on the store"
    );
    app.redis.as_mut().unwrap().restart();
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again within 5 s of Redis coming back");
}

/// The `/metrics` text of the server at `base`.
async fn metrics(client: &reqwest::Client, base: &str) -> String {
    let answer = client.get(format!("{base}/metrics")).send().await.unwrap();
    answer.text().await.unwrap()
}

/// The detector's metrics, from a server process of its own: the metrics recorder is one per
/// process, and `cargo test` runs every app of this binary in one, their detectors included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_detector_leading() {
    let redis = RedisServer::start();
    let (mut server, base) = start_binary(
        &redis,
        &["--detector-warmup", "1h", "--detector-interval", "1s"],
    )
    .await;
    let client = reqwest::Client::new();
    let mut text = String::new();
    for _ in 0..100 {
        text = metrics(&client, &base).await;
        if text.contains("downradar_detector_leader 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert_eq!(value("downradar_detector_leader"), 1.0, "{text}");
    assert!(value("downradar_detector_ticks_total{outcome=\"leader\"}") >= 1.0);
    assert!(value("downradar_detector_tick_seconds_count") >= 1.0);
    // Caught up: behind by the settle time at least, and by less than a bucket (60 s) plus
    // the settle time.
    let lag = value("downradar_detector_lag_seconds");
    assert!((2.0..62.0).contains(&lag), "lag {lag}");
    assert_eq!(value("downradar_incidents_open"), 0.0);
    // Counters of events that may never happen are there from the start.
    assert_eq!(value("downradar_detector_missing_buckets_total"), 0.0);
    assert_eq!(value("downradar_reports_revoked_total"), 0.0);
    // A replica that never runs the detector says so: a sum over the replicas is then 0,
    // not absent, when only such replicas are left.
    let (mut follower, base) = start_binary(&redis, &["--no-detector"]).await;
    let text = metrics(&client, &base).await;
    assert!(
        text.lines()
            .any(|line| line == "downradar_detector_leader 0"),
        "{text}"
    );
    for child in [&mut server, &mut follower] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A server that speaks enough of Redis's protocol to say it is Redis `version`: `PING`,
/// `INFO` and `OK` to anything else. Lives as long as the test process.
fn old_redis(version: &'static str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut out = stream;
                let mut line = String::new();
                let mut read_line = |line: &mut String| {
                    line.clear();
                    reader
                        .read_line(line)
                        .ok()
                        .filter(|&n| n > 0)
                        .map(|_| line.trim_end().to_owned())
                };
                // Each command is an array of bulk strings: `*N`, then N × (`$len`, bytes).
                while let Some(header) = read_line(&mut line) {
                    let n: usize = header.trim_start_matches('*').parse().unwrap_or(0);
                    let mut words = Vec::new();
                    for _ in 0..n {
                        let _length = read_line(&mut line);
                        words.push(read_line(&mut line).unwrap_or_default());
                    }
                    let reply = match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
                        Some("PING") => "+PONG\r\n".to_owned(),
                        Some("INFO") => {
                            let info = format!("# Server\r\nredis_version:{version}\r\n");
                            format!("${}\r\n{info}\r\n", info.len())
                        }
                        _ => "+OK\r\n".to_owned(),
                    };
                    if out.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("redis://127.0.0.1:{port}/")
}

/// A Redis too old for downradar's scripts (`EXPIREAT … NX` is 7.0's) stops the start with
/// a message that says so, rather than a detector that fails every commit.
#[tokio::test]
async fn a_redis_too_old_for_the_scripts_stops_the_start() {
    let clock = std::sync::Arc::new(downradar::clock::ManualClock::new(
        crate::helpers::test_epoch(),
    ));
    let url = old_redis("6.2.14");
    let Err(error) = crate::helpers::build_app(Some(&url), &[], clock.clone()).await else {
        panic!("started on Redis 6.2");
    };
    assert!(
        error
            .to_string()
            .ends_with("Redis 6.2.14 is too old: downradar needs Redis 7.0 or later"),
        "{error:#}"
    );
    assert!(
        crate::helpers::build_app(Some(&old_redis("7.0.0")), &[], clock)
            .await
            .is_ok(),
        "7.0 is enough"
    );
}

/// A Redis Cluster node stops the start, saying that downradar needs a standalone Redis:
/// it answered `/readyz`, then `MOVED` to most reports and every detector tick.
#[tokio::test]
async fn a_redis_cluster_node_stops_the_start() {
    // Its cluster bus port too from the servers' range: by default it is the port plus
    // 10,000, among the ports the system hands out to outgoing connections, and one in use
    // there kept the node from starting (a CI run).
    let bus = crate::helpers::server_port().to_string();
    let redis = RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-port", &bus]);
    let clock = std::sync::Arc::new(downradar::clock::ManualClock::new(
        crate::helpers::test_epoch(),
    ));
    let Err(error) = crate::helpers::build_app(Some(&redis.url()), &[], clock).await else {
        panic!("started on a Redis Cluster node");
    };
    assert!(
        error
            .to_string()
            .contains("Redis runs as a Cluster node (redis_mode:cluster)"),
        "{error:#}"
    );
}

/// A least-privilege Redis user, denied the `@dangerous` commands (`INFO`, `KEYS`, `FLUSHALL`,
/// `CONFIG`…), runs everything downradar needs: the replica is ready, counts reports and
/// commits its detector's steps.
#[tokio::test]
async fn a_redis_user_without_dangerous_commands_is_enough() {
    let redis = RedisServer::start();
    let mut admin = redis.connection().expect("connect");
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "dr",
                "on",
                ">pw",
                "+@all",
                "-@dangerous",
                "~*",
                "&*",
            ][..],
        )
        .query(&mut admin)
        .expect("ACL SETUSER");
    let url = format!("redis://dr:pw@127.0.0.1:{}/", redis.port);
    let info: redis::RedisResult<String> = redis::cmd("INFO").query(
        &mut redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap(),
    );
    assert!(info.is_err(), "the user may not run INFO");

    // A short warm-up: the default week of steps over an empty store, which tests nothing
    // here, outlasted the 20 s allowed for the first commit on a loaded machine.
    let app = spawn_app_at(
        Backend::Redis,
        Some(redis),
        Some(&url),
        &["--detector-interval", "1s", "--detector-warmup", "1h"],
    )
    .await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let report = app
        .report("tiktok", &json!({"problem": "login", "region": "DE"}))
        .await;
    assert_eq!(report.status, 202, "{}", report.text);
    // The detector leads and commits (its first step, at once).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.store.load_detector().await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "no detector commit");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A switch set in the environment takes the spellings people use (`1`, `yes`, `on`), not
/// only `true`: `DOWNRADAR_NO_DETECTOR=1` was refused with "invalid value '1'".
#[test]
fn a_switch_in_the_environment_takes_the_usual_spellings() {
    use std::io::BufRead;
    let serve = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_downradar"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("DOWNRADAR_REPORTER_SECRET", "s")
            .env_remove("DOWNRADAR_DEMO")
            .env_remove("DOWNRADAR_NO_DETECTOR");
        command
    };
    let refused = crate::helpers::failure_of(
        serve().env("DOWNRADAR_DEMO", "maybe"),
        "DOWNRADAR_DEMO=maybe",
    );
    assert!(
        refused.contains("invalid value 'maybe' for '--demo'"),
        "{refused}"
    );

    let mut child = serve()
        .env("DOWNRADAR_NO_DETECTOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match read.recv_timeout(left) {
            Ok(line) if line.contains("--no-detector: another replica") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        found,
        "DOWNRADAR_NO_DETECTOR=1 did not apply:\n{}",
        seen.join("\n")
    );
}
