//! SIGTERM: the real binary stops accepting, flushes what is queued and exits 0.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{RedisServer, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_acknowledged_report_and_exits_zero() {
    let redis = RedisServer::start();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_downradar"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis-url",
            &redis.url(),
        ])
        .env("DOWNRADAR_REPORTER_SECRET", "s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start downradar");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

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
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
    let acked = *acked.lock().unwrap();
    assert!(acked > 50, "load was running: {acked} acknowledged");
    assert_eq!(redis.sum_of_counts(60), acked);
}
