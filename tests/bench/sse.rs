//! SSE fan-out benchmark: thousands of concurrent `GET /v1/events` subscribers on one server
//! process, events appended to the Redis stream, and the time from the append to each
//! subscriber's receipt.
//!
//! ```sh
//! cargo bench --bench sse                       # 5,000 subscribers, 200 events
//! cargo bench --bench sse -- 2000 100           # subscribers, events
//! ```
//!
//! It starts a private `redis-server` on a free loopback port and the release binary on it
//! (`--no-detector`, so the server does nothing but fan out), connects the subscribers from
//! this process over plain sockets, then appends events with `XADD` at 10 per second. A stream
//! id is the millisecond Redis appended the event at, so each subscriber measures
//! `receipt − id` on the same machine clock. Memory per subscriber is the growth of the
//! server's resident memory (`VmRSS`) from before the subscribers connected to after the
//! events were delivered, divided by their number. Everything is on 127.0.0.1 and stops by
//! itself.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

const EVENTS_PER_SECOND: u64 = 10;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kills the child when dropped, so a failing run leaves nothing behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One subscriber: connects, then records the latency of every `id:` line it reads.
async fn subscribe(
    port: u16,
    connected: Arc<AtomicUsize>,
    latencies: Arc<Mutex<Vec<u32>>>,
    expected: usize,
) -> usize {
    let mut socket = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    socket
        .write_all(
            b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .expect("request");
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut seen = 0;
    let mut mine = Vec::with_capacity(expected);
    let mut headers_done = false;
    while seen < expected {
        let n = socket.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed a stream");
        let at = now_ms();
        buffer.extend_from_slice(&chunk[..n]);
        if !headers_done {
            let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            assert!(buffer.starts_with(b"HTTP/1.1 200"), "not a 200");
            buffer.drain(..end + 4);
            headers_done = true;
            connected.fetch_add(1, Ordering::Relaxed);
        }
        // Complete lines only; the rest waits for the next read.
        let Some(last_newline) = buffer.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        for line in buffer[..last_newline].split(|&b| b == b'\n') {
            if let Some(id) = line.strip_prefix(b"id: ") {
                let ms: u64 = std::str::from_utf8(id)
                    .ok()
                    .and_then(|id| id.split('-').next())
                    .and_then(|ms| ms.parse().ok())
                    .expect("stream id");
                mine.push(at.saturating_sub(ms) as u32);
                seen += 1;
            }
        }
        buffer.drain(..=last_newline);
    }
    latencies.lock().await.extend(mine);
    seen
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let subscribers = args.first().copied().unwrap_or(5000);
    let events = args.get(1).copied().unwrap_or(200);

    let dir = tempfile::tempdir().expect("temp dir");
    let redis_port = free_port();
    let _redis = Guard(
        Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install -y redis-server)"),
    );
    wait_for_port(redis_port, "redis-server");
    let redis_url = format!("redis://127.0.0.1:{redis_port}/");
    let port = free_port();
    let server = Guard(
        Command::new(env!("CARGO_BIN_EXE_downradar"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--redis-url", &redis_url, "--no-detector"])
            .args(["--max-subscribers", &(subscribers + 10).to_string()])
            // Every subscriber connects from this one address.
            .args([
                "--max-subscribers-per-address",
                &(subscribers + 10).to_string(),
            ])
            .env("DOWNRADAR_REPORTER_SECRET", "bench")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("downradar"),
    );
    wait_for_port(port, "downradar");
    let pid = server.0.id();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        // Warm the server's allocator and fan-out with one subscriber and one event.
        let redis = redis::Client::open(redis_url.as_str()).expect("redis url");
        let mut conn = redis
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let event = sample_event();
        let xadd = || {
            let mut cmd = redis::cmd("XADD");
            cmd.arg("dr:events").arg("*").arg("event").arg(&event);
            cmd
        };
        {
            let warm = tokio::spawn(subscribe(port, Arc::default(), Arc::default(), 1));
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _: String = xadd().query_async(&mut conn).await.expect("XADD");
            warm.await.expect("warm-up subscriber");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;

        // The reference, measured in the same run: one subscriber, so the latency of the
        // pipeline itself (Redis, the reader, one socket) on the machine as it is now.
        let reference = {
            let latencies = Arc::new(Mutex::new(Vec::new()));
            let one = tokio::spawn(subscribe(port, Arc::default(), latencies.clone(), 50));
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / EVENTS_PER_SECOND));
            for _ in 0..50 {
                tick.tick().await;
                let _: String = xadd().query_async(&mut conn).await.expect("XADD");
            }
            one.await.expect("reference subscriber");
            let mut latencies = std::mem::take(&mut *latencies.lock().await);
            latencies.sort_unstable();
            latencies
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = rss_kib(pid);

        let connected = Arc::new(AtomicUsize::new(0));
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(subscribers * events)));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            tasks.push(tokio::spawn(subscribe(
                port,
                connected.clone(),
                latencies.clone(),
                events,
            )));
            // Do not overflow the listen backlog.
            if tasks.len() % 200 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        while connected.load(Ordering::Relaxed) < subscribers {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "only {} of {subscribers} subscribers connected",
                connected.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let connect_time = started.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_connected = rss_kib(pid);
        eprintln!(
            "{subscribers} subscribers connected in {:.1} s; appending {events} events at {EVENTS_PER_SECOND}/s",
            connect_time.as_secs_f64()
        );

        let mut tick = tokio::time::interval(Duration::from_millis(1000 / EVENTS_PER_SECOND));
        for _ in 0..events {
            tick.tick().await;
            let _: String = xadd().query_async(&mut conn).await.expect("XADD");
        }
        let mut received = 0;
        for task in tasks {
            received += tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("every subscriber gets every event within a minute")
                .expect("subscriber");
        }
        let rss_after = rss_kib(pid);
        let mut latencies = std::mem::take(&mut *latencies.lock().await);
        latencies.sort_unstable();
        assert_eq!(received, subscribers * events, "events lost");
        let per_subscriber = |rss: u64| (rss.saturating_sub(rss_before)) as f64 / subscribers as f64;
        println!(
            "sse fan-out: {subscribers} subscribers × {events} events = {} deliveries, none lost",
            latencies.len()
        );
        println!(
            "  append → receipt: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(0)
        );
        println!(
            "  reference, 1 subscriber × 50 events in the same run: p50 {} ms, p99 {} ms",
            percentile(&reference, 0.5),
            percentile(&reference, 0.99),
        );
        println!(
            "  server memory: {:.1} MiB before, {:.1} MiB connected, {:.1} MiB after the events; \
             {:.1} KiB per subscriber connected, {:.1} KiB after the events",
            rss_before as f64 / 1024.0,
            rss_connected as f64 / 1024.0,
            rss_after as f64 / 1024.0,
            per_subscriber(rss_connected),
            per_subscriber(rss_after),
        );
    });
    drop(server);
}

/// A realistic event JSON (a regional, partial outage in two countries).
fn sample_event() -> String {
    serde_json::json!({
        "type": "incident.opened",
        "at": "2026-11-21T12:03:00Z",
        "incident": {
            "id": "tiktok-1795262460", "service": "tiktok", "status": "open",
            "scope": "regional", "regions": ["CA", "US"], "partial": true,
            "problems": ["login", "video-upload"], "caused_by": [],
            "started_at": "2026-11-21T12:01:00Z", "resolved_at": null,
            "expected_per_min": 4.2, "observed_per_min": 61.0
        }
    })
    .to_string()
}
