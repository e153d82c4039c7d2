//! Test fixtures: the app on a free port against either store, and private `redis-server`s.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use downradar::clock::ManualClock;
use downradar::config::{Cli, ServeArgs};
use downradar::startup::Application;
use serde_json::Value;
use time::OffsetDateTime;

/// Waits for `child` to exit, at most `limit`; past it, kills the child and fails with
/// `what` (a process that should have stopped by itself and did not).
pub fn exit_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `command` (its standard output discarded), which must stop by itself within 20 s
/// and fail; returns its standard error.
pub fn failure_of(command: &mut std::process::Command, what: &str) -> String {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    exit_within(
        &mut child,
        Duration::from_secs(20),
        &format!("{what} kept running"),
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: {stderr}");
    stderr
}

/// Which store an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// A private `redis-server` on a free loopback port, persisting every write (AOF, fsync
/// always) into its own directory, so a `kill -9` loses nothing it acknowledged.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Further `redis-server` arguments (see [`start_with`](Self::start_with)).
    args: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with further `redis-server` arguments, such as `--cluster-enabled yes`.
    pub fn start_with(args: &[&str]) -> Self {
        let port = server_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self {
            port,
            dir,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port and directory, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let dir: PathBuf = self.dir.path().into();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install -y redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let pong = self
                .connection()
                .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
            if pong.is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(Duration::from_secs(1))
    }

    /// Sum of every count in the fine buckets of `width` seconds, over all services.
    pub fn sum_of_counts(&self, width: i64) -> u64 {
        let mut conn = self.connection().expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("dr:{{*}}:b:{width}:*"))
            .query(&mut conn)
            .expect("KEYS");
        keys.iter()
            .map(|k| {
                let values: Vec<u64> = redis::cmd("HVALS").arg(k).query(&mut conn).expect("HVALS");
                values.iter().sum::<u64>()
            })
            .sum()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback proxy in front of a Redis that shows a test each command before passing it on,
/// in the order each client connection sent them, so a test can change what Redis holds at an
/// exact point of a client's conversation (between a pipeline and the script call after it,
/// say). Replies go back untouched. It lives as long as the test process, like its threads.
pub struct RedisTap {
    pub port: u16,
}

impl RedisTap {
    /// Proxies to the Redis on `upstream`, calling `before` with every command first.
    pub fn start(upstream: u16, before: impl Fn(&[Vec<u8>]) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tap");
        let port = listener.local_addr().expect("tap address").port();
        let before = Arc::new(before);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut from_server, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                // When either side is done, both are closed, so the other thread ends too and
                // a client sees its server go (and the reverse).
                let close = |a: &std::net::TcpStream, b: &std::net::TcpStream| {
                    let _ = a.shutdown(std::net::Shutdown::Both);
                    let _ = b.shutdown(std::net::Shutdown::Both);
                };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    close(&from_server, &to_client);
                });
                let before = before.clone();
                std::thread::spawn(move || {
                    let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    // A panic in `before` (a failed assertion) closes the connection too.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        Self::pass_commands(client, server, before.as_ref())
                    }));
                    close(&c, &s);
                });
            }
        });
        Self { port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Reads each command (a RESP array of bulk strings, as clients send them), shows it to
    /// `before`, then sends its bytes on, until either side closes.
    fn pass_commands(
        client: std::net::TcpStream,
        mut server: std::net::TcpStream,
        before: &(dyn Fn(&[Vec<u8>]) + Send + Sync),
    ) -> std::io::Result<()> {
        use std::io::{BufRead, Read, Write};
        let mut client = std::io::BufReader::new(client);
        let line = |raw: &mut Vec<u8>, client: &mut std::io::BufReader<_>| {
            let start = raw.len();
            client.read_until(b'\n', raw)?;
            let text = std::str::from_utf8(&raw[start..])
                .unwrap_or("")
                .trim_end()
                .to_owned();
            if text.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok::<_, std::io::Error>(text)
        };
        loop {
            let mut raw = Vec::new();
            let header = line(&mut raw, &mut client)?;
            let count: usize = header
                .strip_prefix('*')
                .and_then(|n| n.parse().ok())
                .expect("a client sends each command as an array");
            let mut args = Vec::with_capacity(count);
            for _ in 0..count {
                let len: usize = line(&mut raw, &mut client)?
                    .strip_prefix('$')
                    .and_then(|n| n.parse().ok())
                    .expect("a command's arguments are bulk strings");
                let start = raw.len();
                raw.resize(start + len + 2, 0);
                client.read_exact(&mut raw[start..])?;
                args.push(raw[start..start + len].to_vec());
            }
            before(&args);
            server.write_all(&raw)?;
        }
    }
}

/// A loopback port below Linux's ephemeral range (32768–60999) that nobody listens on, for
/// a server the test restarts on the same port. A port from the ephemeral range can be taken
/// while the server is down: by any connection's local end, and by a client retrying the
/// port itself, which the kernel may hand that very port as its own so that it connects to
/// itself (TCP simultaneous open) and holds it. Both made a restart fail to bind, rarely.
pub fn server_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test processes run one after another, but start each from its own place.
    let offset = std::process::id() * 97;
    loop {
        let candidate = FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = u16::try_from(candidate).expect("below 32,000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running app and what a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub redis: Option<RedisServer>,
    pub clock: Arc<ManualClock>,
    /// The app's store, for tests that write what the detector would.
    pub store: Arc<dyn downradar::store::Store>,
    /// The app's budget of bucket reads, for tests that use it up.
    pub reads: Arc<downradar::api::budget::ReadBudget>,
}

/// The moment test apps start at: 30 minutes into the current hour, so a test's reports stay
/// inside one hourly roll-up and Redis does not expire buckets that lie in its past.
pub fn test_epoch() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    OffsetDateTime::from_unix_timestamp(now - now.rem_euclid(3600) + 1800).expect("valid time")
}

/// A child process that is killed when dropped, so a test that fails half-way does not leave
/// servers running after it (a failed run left two for 40 minutes).
pub struct Process(pub std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Harmless when it has exited already, and waited on or not.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary on `redis` with extra flags; returns the process and its base URL
/// once it answers.
pub async fn start_binary(redis: &RedisServer, flags: &[&str]) -> (Process, String) {
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_downradar"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis-url",
            &redis.url(),
        ])
        .args(flags)
        .env("DOWNRADAR_REPORTER_SECRET", "s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start downradar");
    let child = Process(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

/// Starts the app on a free port with the given store and extra command-line flags.
pub async fn spawn_app_with(backend: Backend, flags: &[&str]) -> TestApp {
    // A fresh store has no history to learn from: skip the week-long warm-up replay.
    let flags: Vec<&str> = ["--detector-warmup", "1h"]
        .iter()
        .chain(flags)
        .copied()
        .collect();
    spawn_app_with_only(backend, &flags).await
}

/// Like [`spawn_app_with`], without its default `--detector-warmup 1h`.
pub async fn spawn_app_with_only(backend: Backend, flags: &[&str]) -> TestApp {
    let redis = (backend == Backend::Redis).then(RedisServer::start);
    let url = redis.as_ref().map(RedisServer::url);
    spawn_app_at(backend, redis, url.as_deref(), flags).await
}

/// Starts the app with exactly `flags` on the Redis at `url` (served by `redis`, which the
/// app keeps alive; a URL of its own may name a user, say), or on the embedded store.
pub async fn spawn_app_at(
    backend: Backend,
    redis: Option<RedisServer>,
    url: Option<&str>,
    flags: &[&str],
) -> TestApp {
    let clock = Arc::new(ManualClock::new(test_epoch()));
    let app = build_app(url, flags, clock.clone())
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store();
    let reads = app.reads();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        backend,
        redis,
        clock,
        store,
        reads,
    }
}

/// Builds (without running) the app on `clock`, on the Redis at `redis_url` or the embedded
/// store, with the given flags.
pub async fn build_app(
    redis_url: Option<&str>,
    flags: &[&str],
    clock: Arc<ManualClock>,
) -> anyhow::Result<Application> {
    Application::build_with_clock(serve_args(redis_url, flags), clock).await
}

/// The test configuration: a free port, a fixed reporter secret, the Redis at `redis_url` or
/// the embedded store, and `flags`.
pub fn serve_args(redis_url: Option<&str>, flags: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "downradar",
        "--listen",
        "127.0.0.1:0",
        "--reporter-secret",
        "test-secret",
    ];
    if let Some(url) = redis_url {
        argv.extend(["--redis-url", url]);
    }
    argv.extend_from_slice(flags);
    <Cli as clap::Parser>::try_parse_from(argv)
        .expect("valid flags")
        .serve
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// GETs `path` until `done` holds for its JSON (the detector runs on its own task), for up
/// to about 10 seconds.
pub async fn poll(
    app: &TestApp,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    poll_for(app, path, Duration::from_secs(10), done).await
}

/// Like [`poll`], for at most `limit`.
pub async fn poll_for(
    app: &TestApp,
    path: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        let answer = app.get(path).await;
        assert_eq!(answer.status, 200, "{path}");
        last = answer.json();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never became as expected: {last}");
}

/// The value of a response header, if it is there and text.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub content_type: Option<String>,
    pub text: String,
}

impl Answer {
    pub async fn from(response: reqwest::Response) -> Self {
        let retry_after = header(&response, "retry-after");
        let content_type = header(&response, "content-type");
        Self {
            status: response.status().as_u16(),
            retry_after,
            content_type,
            text: response.text().await.expect("body"),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts the one error shape and returns the code.
    pub fn error_code(&self) -> String {
        let body = self.json();
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message: {body}"
        );
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/json"),
            "{body}"
        );
        body["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {body}"))
            .to_owned()
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Answer {
        Answer::from(self.client.get(self.url(path)).send().await.expect("GET")).await
    }

    /// POSTs a JSON report for `service`.
    pub async fn report(&self, service: &str, body: &Value) -> Answer {
        self.report_with(service, body, &[]).await
    }

    /// POSTs a JSON report with extra headers.
    pub async fn report_with(
        &self,
        service: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .post(self.url(&format!("/v1/services/{service}/reports")))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::from(request.send().await.expect("POST")).await
    }

    /// POSTs raw bytes with a content type (or none).
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        Answer::from(request.send().await.expect("POST")).await
    }
}

/// Runs one async test body against both stores, as two tests named `memory` and `redis`.
/// Extra command-line flags for the app may follow the app's name:
/// `async fn name(app, "--dedup-window", "1h") { ... }`.
#[macro_export]
macro_rules! on_both_stores {
    ($($(#[doc = $doc:literal])* async fn $name:ident($app:ident $(, $($flag:literal),+)?) $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let flags: &[&str] = &[$($($flag),+)?];
                let $app = $crate::helpers::spawn_app_with($crate::helpers::Backend::Memory, flags).await;
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let flags: &[&str] = &[$($($flag),+)?];
                let $app = $crate::helpers::spawn_app_with($crate::helpers::Backend::Redis, flags).await;
                $body
            }
        }
    )*};
}
