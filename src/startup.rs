//! Wiring: builds the store, the ingest writer and the HTTP server from the configuration, and
//! runs them until a shutdown signal.
//!
//! [`Application::build`] binds the listener itself (port 0 in tests) so callers can read the
//! port before serving; `main` and the tests use the same function.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::api::budget::ReadBudget;
use crate::api::{self, AppState};
use crate::catalog::Catalog;
use crate::clock::{Clock, StoreClock, SystemClock};
use crate::config::ServeArgs;
use crate::demo::Demo;
use crate::detector::live::LiveDetector;
use crate::fanout::Fanout;
use crate::ingest::{Doubts, Ingestor};
use crate::reporter::ReporterSecret;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How far (in events) an event-stream subscriber may fall behind before it is disconnected.
const FANOUT_RING: usize = 1024;

/// How often a replica on Redis measures its clock against Redis's; and how often it checks
/// whether a measurement is due sooner (none has succeeded yet, or the host's clock was set).
const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(60);
const CLOCK_SYNC_CHECK: Duration = Duration::from_secs(1);
/// How long a starting server waits for its first measurement.
const CLOCK_SYNC_AT_START: Duration = Duration::from_millis(500);
/// How long a starting server waits for Redis to say its version (see
/// `RedisStore::unsupported`): one that does not say in time is checked by `/readyz` instead.
const VERSION_CHECK_AT_START: Duration = Duration::from_millis(500);
/// How long a starting server waits to learn where the event stream ends (see
/// `Fanout::locate`): the fan-out keeps trying once running.
const LOCATE_AT_START: Duration = Duration::from_millis(500);
/// Readings of Redis's clock per measurement; the quickest counts.
const CLOCK_SYNC_SAMPLES: usize = 5;
/// An offset from Redis's clock (or a change of it) this large is logged as a warning: the
/// host's clock is off, and other programs on it are off too.
const CLOCK_WARN: time::Duration = time::Duration::SECOND;

/// Stops a running [`Application`] gracefully.
#[derive(Clone)]
pub struct StopHandle {
    server: ServerHandle,
    fanout: Arc<Fanout>,
}

impl StopHandle {
    /// Ends the event streams (they never end by themselves), stops accepting connections and
    /// lets in-flight requests finish (up to 10 s); returns when the server has stopped.
    pub async fn stop(&self) {
        self.fanout.close();
        self.server.stop(true).await;
    }
}

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    store: Arc<dyn Store>,
    doubts: Arc<Doubts>,
    detector: Option<(LiveDetector, Duration)>,
    fanout: Arc<Fanout>,
    demo: Option<Demo>,
    clock_sync: Option<ClockSync>,
    reads: Arc<ReadBudget>,
}

impl Application {
    /// Builds the application on the system clock, set to Redis's when the store is Redis.
    pub async fn build(args: ServeArgs) -> anyhow::Result<Self> {
        Self::build_following_store(args, Arc::new(SystemClock)).await
    }

    /// Builds the application on `local`, set to Redis's clock when the store is Redis (see
    /// [`StoreClock`]): measured before serving and every minute after.
    pub async fn build_following_store(
        args: ServeArgs,
        local: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        Self::build_inner(args, local, true).await
    }

    /// Builds the application on `clock` as it is: the store, the HTTP server bound to
    /// `--listen`, (on each worker thread, once the server runs) an ingest writer, and the
    /// detector task that [`Application::run_until_stopped`] runs beside the server.
    pub async fn build_with_clock(args: ServeArgs, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::build_inner(args, clock, false).await
    }

    async fn build_inner(
        args: ServeArgs,
        mut clock: Arc<dyn Clock>,
        follow_store: bool,
    ) -> anyhow::Result<Self> {
        let catalog = Catalog::load_or_builtin(args.catalog.as_deref())?;
        let settings = args.buckets.store_settings(
            args.dedup_window,
            std::num::NonZeroU32::new(args.max_reporters_per_address),
            args.event_retention,
        )?;
        // Before anything records a metric.
        crate::telemetry::prometheus();
        // The fan-out learns where the event stream ends below, with the store, before the
        // first subscriber can connect (if the store does not answer then, it keeps trying
        // once running, and subscribers are asked to retry until it has).
        let fanout = Fanout::new(
            FANOUT_RING,
            subscriber_places(args.max_subscribers as usize, open_files_limit()),
            args.max_subscribers_per_address as usize,
            args.sse_heartbeat,
        );
        let mut clock_sync = None;
        let store: Arc<dyn Store> = match &args.redis_url {
            Some(url) => {
                let store = Arc::new(RedisStore::connect(url, settings)?);
                tracing::info!(redis = %redact_url(url), "using the Redis store");
                // A Redis too old to run the scripts, or a Cluster node or a Sentinel, stops
                // the start, when it answers at once; otherwise the replica reports not
                // ready (and logs why) until it is replaced (see `RedisStore::ping`). Its
                // clock is read, and the event stream located, at the same time: one after
                // the other, a Redis that does not answer held the start up for each (2.1 s).
                // A Redis that refuses the URL's credentials fails the start: waiting never
                // mends that (see `RedisStore::refusal`).
                let refusal = store.refusal(VERSION_CHECK_AT_START);
                let version = tokio::time::timeout(VERSION_CHECK_AT_START, store.unsupported());
                let locate = tokio::time::timeout(LOCATE_AT_START, fanout.locate(store.as_ref()));
                let (refusal, version) = if follow_store {
                    let mut sync = ClockSync::new(clock, store.clone());
                    // Before serving, when Redis answers at once; otherwise the task keeps
                    // trying every second, and until it succeeds the replica is not ready and
                    // does not run the detector.
                    let measure = tokio::time::timeout(CLOCK_SYNC_AT_START, sync.measure());
                    let (refusal, version, measured, _) =
                        tokio::join!(refusal, version, measure, locate);
                    if refusal.is_none() && measured.is_err() {
                        match sync.clock.offset() {
                            Some(offset) => sync.note(offset),
                            None => sync.failed(&"no answer within 0.5 s"),
                        }
                    }
                    clock = sync.clock.clone();
                    clock_sync = Some(sync);
                    (refusal, version)
                } else {
                    let (refusal, version, _) = tokio::join!(refusal, version, locate);
                    (refusal, version)
                };
                let unsupported = version.ok().and_then(Result::ok).flatten();
                if let Some(why) = refusal.or(unsupported) {
                    anyhow::bail!("{}: {why}", redact_url(url));
                }
                store
            }
            None => {
                tracing::info!(
                    "using the embedded in-memory store: single process, reports are lost on \
                     restart; pass --redis-url for a durable store"
                );
                let store: Arc<dyn Store> = Arc::new(MemoryStore::new(settings, clock.clone()));
                let _ = fanout.locate(store.as_ref()).await;
                store
            }
        };
        let secret = match &args.reporter_secret {
            Some(secret) => {
                if secret.len() < 16 {
                    tracing::warn!(
                        bytes = secret.len(),
                        "the --reporter-secret is short: with a guessable key, stored reporter \
                         fingerprints could be traced back to addresses; use 32 random bytes \
                         (e.g. openssl rand -hex 32)"
                    );
                }
                ReporterSecret::from_config(secret)
            }
            None => {
                tracing::warn!(
                    "no --reporter-secret given: using a random key, so reporters may be counted \
                     again after a restart and replicas will not agree; set DOWNRADAR_REPORTER_SECRET"
                );
                ReporterSecret::random().context("cannot generate a random reporter secret")?
            }
        };
        // Decode the region polygons now rather than in the first report's request.
        let regions = crate::regions::Regions::builtin().countries().len();
        tracing::debug!(regions, "region index ready");
        // At most 512, the most actix takes (it panics beyond).
        let workers = args.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get().min(512)),
            usize::from,
        );
        let queue_per_worker = (args.queue_capacity as usize).div_ceil(workers);
        let doubts = Arc::new(Doubts::default());
        let demo = match args.demo {
            true => Some(
                Demo::prepare(
                    store.clone(),
                    clock.clone(),
                    &catalog,
                    settings,
                    args.detector.resolve_after,
                )
                .await?,
            ),
            false => None,
        };
        let detector = LiveDetector::new(
            store.clone(),
            demo.as_ref().map_or_else(|| clock.clone(), Demo::clock),
            catalog.clone(),
            args.detector.config(args.buckets.bucket),
            args.detector_interval * 3,
            args.detector_warmup.min(args.buckets.retention),
        );
        let reads = Arc::new(ReadBudget::new());
        let state = web::Data::new(AppState {
            catalog,
            store: store.clone(),
            clock,
            secret,
            trusted_proxies: args.trusted_proxies.clone(),
            allowed_origins: args.allowed_origins.clone(),
            ipv6_limit_prefix: args.ipv6_limit_prefix,
            settings,
            fanout: fanout.clone(),
            reads: reads.clone(),
            series_cache: crate::api::cache::SeriesCache::new(),
        });

        let listener = TcpListener::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let port = listener.local_addr()?.port();
        // The factory runs on each worker thread, so each worker gets its own writer there.
        let worker_doubts = doubts.clone();
        let stall_timeout = args.client_stall_timeout;
        let server = HttpServer::new(move || {
            let ingestor =
                Ingestor::start(state.store.clone(), worker_doubts.clone(), queue_per_worker);
            App::new()
                // Inside the request tracking, which labels a HEAD as such.
                .wrap(from_fn(api::browser_headers))
                .wrap(from_fn(api::close_after_unread_chunked_body))
                .wrap(from_fn(api::head_as_get))
                .wrap(from_fn(api::cors))
                .wrap(from_fn(crate::telemetry::track_requests))
                .configure(api::configure(state.clone(), ingestor))
        })
        .workers(workers)
        .on_connect(move |connection, _| limit_stalls(connection, stall_timeout))
        // Signals are ours (see `stop_on_signals`): actix would stop at once on Ctrl-C.
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        .listen(listener)?;
        tracing::info!(listen = %args.listen, port, workers, "serving HTTP");
        if args.no_detector {
            tracing::info!("--no-detector: another replica must run the detector");
            // Exported as 0, so that a sum over the replicas is 0, not absent, when only such
            // replicas are left.
            metrics::gauge!("downradar_detector_leader").set(0.0);
        }
        Ok(Self {
            port,
            server: server.run(),
            store,
            doubts,
            detector: (!args.no_detector).then_some((detector, args.detector_interval)),
            fanout,
            demo,
            clock_sync,
            reads,
        })
    }

    /// The store it serves from.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The budget of bucket reads its requests take from (see [`crate::api::budget`]).
    pub fn reads(&self) -> Arc<ReadBudget> {
        self.reads.clone()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully (what SIGTERM does).
    pub fn handle(&self) -> StopHandle {
        StopHandle {
            server: self.server.handle(),
            fanout: self.fanout.clone(),
        }
    }

    /// Stops the server gracefully on SIGTERM or SIGINT (Ctrl-C) alike: both drain. Call it
    /// once, from the process that owns the signals.
    pub fn stop_on_signals(&self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let handle = self.handle();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(
                signal = name,
                "stopping: no new connections, draining the rest"
            );
            handle.stop().await;
        });
        Ok(())
    }

    /// Serves until [`StopHandle::stop`] (or a signal, see [`Application::stop_on_signals`]);
    /// then stops accepting and lets in-flight requests finish (up to 10 s). A report request
    /// finishes only once its report
    /// is written, so every accepted report is flushed; reports answered 503 that the store
    /// may still apply are revoked before this returns (retrying for up to 10 s).
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let demo = self
            .demo
            .take()
            .map(|demo| tokio::spawn(demo.run(stopped.clone())));
        let detector = self
            .detector
            .take()
            .map(|(detector, interval)| tokio::spawn(detector.run(interval, stopped.clone())));
        let clock_sync = self
            .clock_sync
            .take()
            .map(|sync| tokio::spawn(sync.run(stopped.clone())));
        let fanout = tokio::spawn(self.fanout.clone().run(self.store.clone(), stopped));
        self.server.await.context("HTTP server failed")?;
        self.fanout.close();
        let _ = stop.send(true);
        if let Err(e) = fanout.await {
            tracing::error!(error = %e, "the event fan-out task failed");
        }
        if let Some(task) = detector
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the detector task failed");
        }
        if let Some(task) = demo
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the demo task failed");
        }
        if let Some(task) = clock_sync
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the clock task failed");
        }
        let left = self
            .doubts
            .settle(self.store.as_ref(), SHUTDOWN_GRACE)
            .await;
        if left > 0 {
            tracing::error!(
                reports = left,
                "stopping with revocations the store never confirmed; these reports may be \
                 counted although their clients were answered 503"
            );
        } else {
            tracing::info!("stopped; every accepted report was written");
        }
        Ok(())
    }
}

/// Keeps a replica's clock set to Redis's.
struct ClockSync {
    clock: Arc<StoreClock>,
    redis: Arc<RedisStore>,
    /// The offset last logged; `None` until a measurement succeeds.
    logged: Option<time::Duration>,
    /// Whether a failure to measure has been logged since the last success (once is enough).
    failure_logged: bool,
    /// Whether this replica's reports are refused for another `--bucket` than the detector
    /// leader's (logged when it starts and when it ends).
    width_refused: bool,
}

impl ClockSync {
    fn new(local: Arc<dyn Clock>, redis: Arc<RedisStore>) -> Self {
        Self {
            clock: Arc::new(StoreClock::new(local)),
            redis,
            logged: None,
            failure_logged: false,
            width_refused: false,
        }
    }

    /// Measures the offset once; true when it succeeded.
    async fn measure(&mut self) -> bool {
        let found = self
            .clock
            .sync(
                CLOCK_SYNC_SAMPLES,
                || self.redis.server_time(),
                || {
                    crate::store::StoreError::Backend(format!(
                        "every reading of Redis's clock took over {:?}",
                        StoreClock::MAX_ROUND_TRIP
                    ))
                },
            )
            .await;
        match found {
            Ok(found) => {
                self.note(found.offset);
                self.check_width().await;
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    /// Whether the detector's leader reads the buckets this replica writes (see
    /// [`RedisStore::check_bucket_width`]), logged when that changes.
    async fn check_width(&mut self) {
        match self.redis.check_bucket_width().await {
            Err(crate::store::StoreError::Misconfigured(why))
                if !std::mem::replace(&mut self.width_refused, true) =>
            {
                tracing::error!("refusing reports: {why}");
            }
            Ok(()) if std::mem::replace(&mut self.width_refused, false) => {
                tracing::info!(
                    "the detector's leader reads this replica's buckets now: taking reports"
                );
            }
            // Redis did not answer: the next measurement checks again.
            _ => {}
        }
    }

    /// A measurement failed: said once until the next success.
    fn failed(&mut self, error: &dyn std::fmt::Display) {
        if std::mem::replace(&mut self.failure_logged, true) {
            return;
        }
        if self.clock.settled() {
            tracing::warn!(%error, "cannot read Redis's clock: keeping the last offset");
        } else {
            tracing::warn!(
                %error,
                "cannot read Redis's clock yet: not ready, and not running the detector, until \
                 it can"
            );
        }
    }

    /// A measurement succeeded: the metric, and a log line when it is the first or has moved
    /// by [`CLOCK_WARN`] since the one last logged.
    fn note(&mut self, offset: time::Duration) {
        self.failure_logged = false;
        metrics::gauge!("downradar_clock_offset_seconds").set(offset.as_seconds_f64());
        let offset_ms = offset.whole_milliseconds();
        match self.logged {
            None if offset.abs() >= CLOCK_WARN => tracing::warn!(
                offset_ms,
                "this host's clock is off Redis's (is NTP running?): following Redis's clock"
            ),
            None => tracing::info!(offset_ms, "following Redis's clock"),
            Some(before) if (offset - before).abs() >= CLOCK_WARN => tracing::warn!(
                offset_ms,
                before_ms = before.whole_milliseconds(),
                "this host's clock has moved against Redis's: following Redis's clock"
            ),
            Some(_) => return,
        }
        self.logged = Some(offset);
    }

    /// Measures every [`CLOCK_SYNC_EVERY`], and within [`CLOCK_SYNC_CHECK`] when one is due
    /// sooner ([`StoreClock::needs_sync`]), until `stopped`.
    async fn run(mut self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut last = tokio::time::Instant::now();
        loop {
            if self.clock.needs_sync() || last.elapsed() >= CLOCK_SYNC_EVERY {
                // A measurement sets the offset only as it goes, so cutting it short loses
                // nothing.
                tokio::select! {
                    ok = self.measure() => if ok {
                        last = tokio::time::Instant::now();
                    },
                    _ = stopped.changed() => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(CLOCK_SYNC_CHECK) => {}
                _ = stopped.changed() => return,
            }
        }
    }
}

/// Sets how long data sent on a new connection may wait unread or unacknowledged before the
/// kernel closes it (`TCP_USER_TIMEOUT`, which Linux also applies while the client's receive
/// window is closed). A stream's body is not polled while its client does not read, so
/// without it a stalled `GET /v1/events` client would hold its subscriber place until
/// shutdown, and one whose network vanished until TCP's retransmissions give up (about 15
/// minutes). The streams' heartbeats make sure a connection whose network vanished always has
/// data waiting; a client that stops reading acknowledges them into its receive buffer until
/// that is full, which heartbeats alone take hours to do (events, much less).
fn limit_stalls(connection: &dyn std::any::Any, timeout: Duration) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Err(error) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout))
    {
        tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT on a connection");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (connection, timeout);
}

/// The most files the process may have open (`ulimit -n`), after raising its soft limit to
/// the hard one, as a server holding a descriptor per connection should (systemd starts
/// services with a soft limit of 1,024, and its hard limit is usually far higher). `None`
/// where there is no limit.
fn open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum,
            Err(error) => {
                tracing::debug!(%error, "cannot raise the soft limit on open files");
            }
        }
    }
    limit.current
}

/// How many event-stream subscribers to take at most: `configured` (`--max-subscribers`),
/// or fewer when the open-file limit would not leave room beside them for report clients,
/// the store's connections and the listener. Each subscriber holds a descriptor; with a
/// limit of 256 and 250 subscribers, the listener failed to accept ("Too many open
/// files"), so reports and `/healthz` went unanswered until the subscribers left. Half the
/// descriptors, up to 1,024 of them, are kept for the rest.
fn subscriber_places(configured: usize, open_files: Option<u64>) -> usize {
    let Some(files) = open_files else {
        return configured;
    };
    let room = usize::try_from(files - (files / 2).min(1024)).unwrap_or(usize::MAX);
    if configured > room {
        tracing::warn!(
            max_subscribers = configured,
            open_files = files,
            taken = room,
            "--max-subscribers is more than the open-file limit leaves room for; taking fewer \
             (raise the limit, e.g. LimitNOFILE= in a systemd unit or ulimit -n)"
        );
    }
    configured.min(room)
}

/// A Redis URL without its password, for logs.
/// (The user and password before the host; and a socket URL's `pass=` parameter,
/// `redis+unix:///run/redis.sock?pass=…`.)
pub(crate) fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, Some(query)),
        None => (url, None),
    };
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key == "pass" => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn subscribers_leave_half_the_descriptors_up_to_1024() {
        use super::subscriber_places;
        assert_eq!(subscriber_places(10_000, None), 10_000);
        assert_eq!(subscriber_places(10_000, Some(256)), 128);
        assert_eq!(subscriber_places(10_000, Some(1024)), 512);
        assert_eq!(subscriber_places(10_000, Some(4096)), 3072);
        assert_eq!(subscriber_places(10_000, Some(524_288)), 10_000);
        assert_eq!(subscriber_places(100, Some(256)), 100);
        assert_eq!(subscriber_places(10_000, Some(1)), 1);
        assert_eq!(subscriber_places(10_000, Some(0)), 0);
    }

    #[test]
    fn passwords_are_not_logged() {
        for (url, shown) in [
            ("redis://:hunter2@db:6379/0", "redis://***@db:6379/0"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=hunter2&user=dr",
                "redis+unix:///run/redis.sock?db=1&pass=***&user=dr",
            ),
            (
                "redis://u:p@db:6379/0?protocol=resp3",
                "redis://***@db:6379/0?protocol=resp3",
            ),
        ] {
            assert_eq!(super::redact_url(url), shown);
        }
    }
}
