//! SIGTERM: the real binary stops accepting, flushes what is queued and exits 0.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{RedisServer, start_binary};

fn send(signal: &str, child: &Child) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

async fn exit_code(mut child: crate::helpers::Process) -> Option<i32> {
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap()
        .code()
}

/// Under load, `signal` stops the server: it stops accepting, every report it acknowledged is
/// stored, and it exits 0.
async fn drains_on(signal: &str) {
    let redis = RedisServer::start();
    let (child, base) = start_binary(&redis, &[]).await;
    let client = reqwest::Client::new();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(0u64));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (stop, acked, client, base) =
                (stop.clone(), acked.clone(), client.clone(), base.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body =
                        json!({"problem": "app", "region": "FR", "client_id": format!("{w}-{n}")});
                    let response = client
                        .post(format!("{base}/v1/services/netflix/reports"))
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 202 => {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            if v["counted"] == true {
                                *acked.lock().unwrap() += 1;
                            }
                        }
                        Ok(_) => {}
                        // The server stopped accepting: that is the point.
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            })
        })
        .collect();
    // The signal comes once the load is running (50 reports acknowledged), however slow the
    // machine: after a fixed 800 ms, a loaded one had acknowledged only 46.
    let deadline = Instant::now() + Duration::from_secs(30);
    while *acked.lock().unwrap() <= 50 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send(signal, &child);
    let exit = exit_code(child).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(exit, Some(0), "exit status {exit:?}");
    let acked = *acked.lock().unwrap();
    assert!(acked > 50, "load was running: {acked} acknowledged");
    assert_eq!(redis.sum_of_counts(60), acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_acknowledged_report_and_exits_zero() {
    drains_on("-TERM").await;
}

/// Open event streams never end by themselves; SIGTERM ends them at once (well within the
/// 10-second grace period the server would otherwise wait for them), and the server exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_event_streams() {
    use futures_util::StreamExt;
    let redis = RedisServer::start();
    let (child, base) = start_binary(&redis, &[]).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let response = reqwest::get(format!("{base}/v1/events")).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        // The head (retry hint) arrives at once.
        assert!(body.next().await.is_some());
        streams.push(body);
    }
    send("-TERM", &child);
    for mut body in streams {
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(chunk) = body.next().await {
                if chunk.is_err() {
                    break;
                }
            }
        })
        .await;
        assert!(end.is_ok(), "an event stream outlived the shutdown");
    }
    assert_eq!(exit_code(child).await, Some(0));
}

/// A first leader learning weeks of history gives way to SIGTERM: the process exits 0
/// promptly (well within a 30-second grace period), leaves no detector state half-written
/// and hands the lease back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_the_detector_warm_up_short() {
    let redis = RedisServer::start();
    let (child, _base) = start_binary(&redis, &["--detector-warmup", "8d"]).await;
    let mut conn = redis.connection().unwrap();
    let exists = |conn: &mut redis::Connection, key: &str| -> bool {
        redis::cmd("EXISTS").arg(key).query(conn).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exists(&mut conn, "dr:detector:lease") {
        assert!(
            Instant::now() < deadline,
            "the detector never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !exists(&mut conn, "dr:detector:cursor"),
        "the warm-up (8 days of buckets of every service) was to be still running"
    );
    let signalled = Instant::now();
    send("-TERM", &child);
    assert_eq!(exit_code(child).await, Some(0));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    assert!(!exists(&mut conn, "dr:detector:cursor"));
    assert!(
        !exists(&mut conn, "dr:detector:lease"),
        "the lease was released"
    );
}

/// After Redis restarted, the write connection is made again by whatever first uses it, a
/// report on an HTTP worker's thread; its task stops with that worker at shutdown, and the
/// leader's lease release, which comes after, must still get through (it had failed with
/// "broken pipe", and the next leader waited the lease out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_released_at_shutdown_after_a_redis_restart() {
    let mut redis = RedisServer::start();
    let (child, base) = start_binary(&redis, &[]).await;
    let mut conn = redis.connection().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !redis::cmd("EXISTS")
        .arg("dr:detector:lease")
        .query::<bool>(&mut conn)
        .unwrap()
    {
        assert!(
            Instant::now() < deadline,
            "the detector never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.kill();
    redis.restart();
    // Reports until one is counted: the write connection is made again from a worker.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let body = json!({"problem": "login", "region": "DE", "client_id": format!("r{n}")});
        let answer = client
            .post(format!("{base}/v1/services/tiktok/reports"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if answer.status() == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reports were never counted again"
        );
    }
    send("-TERM", &child);
    assert_eq!(exit_code(child).await, Some(0));
    let mut conn = redis.connection().unwrap();
    let lease: Option<String> = redis::cmd("GET")
        .arg("dr:detector:lease")
        .query(&mut conn)
        .unwrap();
    assert_eq!(lease, None, "the lease was released");
}

/// A report in flight when the signal comes is still written and answered: SIGINT (Ctrl-C)
/// drains like SIGTERM instead of dropping connections.
async fn answers_the_request_in_flight_on(signal: &str) {
    let redis = RedisServer::start();
    let (child, base) = start_binary(&redis, &[]).await;
    redis.freeze();
    let in_flight = tokio::spawn(async move {
        let body = json!({"problem": "login", "region": "DE", "client_id": "in-flight"});
        reqwest::Client::new()
            .post(format!("{base}/v1/services/tiktok/reports"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(signal, &child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.thaw();
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.ok(), Some(202), "the request in flight was answered");
    assert_eq!(exit_code(child).await, Some(0));
    assert_eq!(redis.sum_of_counts(60), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_drains_the_request_in_flight() {
    answers_the_request_in_flight_on("-INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_request_in_flight() {
    answers_the_request_in_flight_on("-TERM").await;
}

/// Reports answered 503 while Redis was frozen reach Redis once it thaws; the server, told to
/// stop in between, revokes them before it exits, so they do not stay counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_settles_reports_answered_503_before_exiting() {
    let redis = RedisServer::start();
    let (child, base) = start_binary(&redis, &[]).await;
    let client = reqwest::Client::new();
    let post = |id: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let body = json!({"problem": "login", "region": "DE", "client_id": id});
            let response = client
                .post(format!("{base}/v1/services/discord/reports"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
    };
    assert_eq!(post("first".into()).await, 202);
    redis.freeze();
    let statuses =
        futures_util::future::join_all((0..5).map(|i| post(format!("frozen-{i}")))).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    send("-TERM", &child);
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.thaw();
    assert_eq!(exit_code(child).await, Some(0));
    assert_eq!(
        redis.sum_of_counts(60),
        1,
        "only the acknowledged report stays counted"
    );
}

/// With its log pipe gone (a log collector that died), the server goes on serving, and a
/// SIGTERM still stops it cleanly: a log line that cannot be written is dropped. (The log
/// subscriber's report of a failed write went to the same closed stderr and panicked: the
/// server died at its next log line, or hung on SIGTERM when that line was another thread's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_pipe_neither_kills_nor_hangs_the_server() {
    use std::io::BufRead;
    let port = crate::helpers::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_downradar"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("DOWNRADAR_REDIS_URL")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start downradar");
    let stderr = child.stderr.take().unwrap();
    let serving = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        lines.any(|line| line.is_ok_and(|l| l.contains("serving HTTP")))
    });
    let serving = tokio::time::timeout(Duration::from_secs(20), serving).await;
    // The reader, and with it the pipe's only reading end, is gone now.
    assert!(
        matches!(serving, Ok(Ok(true))),
        "the server never said it serves"
    );

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let answer = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = json!({"problem": "app", "region": "FR"});
    let answer = client
        .post(format!("{base}/v1/services/netflix/reports"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);

    send("-TERM", &child);
    let status = tokio::task::spawn_blocking(move || {
        crate::helpers::exit_within(
            &mut child,
            Duration::from_secs(20),
            "the server did not stop on SIGTERM",
        )
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}
