//! Logs and metrics: the tracing subscriber, the Prometheus recorder, and the middleware that
//! counts and logs every request.
//!
//! Request logs and metrics carry the route pattern (`/v1/services/{id}/reports`), the method
//! and the status, never the client address: downradar does not log who reported.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The default log filter: `info`, but not the HTTP layer's own logging of requests it
/// could not parse (at ERROR, once per request: any client could flood the log with them).
const DEFAULT_LOG_FILTER: &str = "info,actix_http::h1::dispatcher=off";

/// Installs the global log subscriber. `RUST_LOG` overrides [`DEFAULT_LOG_FILTER`].
pub fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Colours only on a terminal: a log file or a collector would get escape codes.
    // A log line that cannot be written is dropped: the subscriber's own report of that
    // goes to the same closed stderr, where it panicked (`failed printing to stderr`). A
    // server whose log pipe went away died at its next line, or, when that line came from
    // another thread, hung on SIGTERM with that thread gone.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    // A second call (tests start many apps in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use. The recorder is global, so
/// every app in a process (tests start many) shares it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let latency = [
            0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
            1.0, 2.5,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("downradar_ingest_batch_size".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                )
            })
            .expect("bucket lists are non-empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        // Histograms are kept as buckets that need periodic housekeeping.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .expect("can spawn the metrics upkeep thread");
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "downradar_http_requests_total",
        "HTTP requests by route, method and status."
    );
    describe_histogram!(
        "downradar_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route."
    );
    describe_counter!("downradar_reports_total", "Reports by outcome.");
    describe_counter!(
        "downradar_reports_revoked_total",
        "Reports undone because their client was answered 503 while the store may have applied them."
    );
    describe_histogram!("downradar_ingest_batch_size", "Reports per store flush.");
    describe_histogram!(
        "downradar_store_flush_seconds",
        Unit::Seconds,
        "Latency of one batch write to the store."
    );
    describe_gauge!(
        "downradar_ingest_queue_depth",
        "Reports waiting to be written."
    );
    describe_gauge!(
        "downradar_ingest_unconfirmed_revocations",
        "Reports answered 503 whose revocation the store has not yet confirmed."
    );
    describe_counter!(
        "downradar_store_errors_total",
        "Failed store calls by operation."
    );
    describe_counter!(
        "downradar_detector_ticks_total",
        "Detector ticks by outcome: leader (this replica ran the detector), follower (another holds the lease) or error."
    );
    describe_histogram!(
        "downradar_detector_tick_seconds",
        Unit::Seconds,
        "Duration of one detector tick (a first leader's warm-up included)."
    );
    describe_gauge!(
        "downradar_detector_leader",
        "1 while this replica holds the detector lease, else 0."
    );
    describe_gauge!(
        "downradar_detector_lag_seconds",
        Unit::Seconds,
        "Seconds from the end of the last bucket the detector processed to now, on the leader (0 elsewhere); normally under a bucket plus the settle time."
    );
    describe_gauge!(
        "downradar_incidents_open",
        "Services with an incident open, on the leader (0 elsewhere)."
    );
    describe_gauge!(
        "downradar_clock_offset_seconds",
        Unit::Seconds,
        "Redis's clock minus this host's, as last measured (every minute); the replica stamps buckets and runs the detector on Redis's clock."
    );
    describe_counter!(
        "downradar_incident_events_total",
        "Incident events committed by this replica, by type."
    );
    describe_counter!(
        "downradar_detector_missing_buckets_total",
        "Buckets the detector took as missing data (no report anywhere where many were expected), not as silence."
    );
    describe_counter!(
        "downradar_reads_refused_total",
        "Requests answered 503 overloaded because this replica was already reading as many stored buckets as it allows at once."
    );
    // Counters without labels exist from the start, at 0: a rule like `increase(...)` sees a
    // series before the first event instead of none.
    for name in [
        "downradar_reports_revoked_total",
        "downradar_detector_missing_buckets_total",
        "downradar_reads_refused_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// The method as a metric label: the standard ones by name, anything else (clients may send
/// any token as a method) as `other`, so labels cannot grow without bound.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |&(_, label)| label)
}

/// A warning that may come with every request or every batch (a store that fails, a replica
/// shedding load) is written at most once a second, saying how many it stands for: a line
/// per answer would flood the log, and slow the replica, exactly when it is overloaded or
/// its store is down (the metrics count every one).
pub struct Throttle {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    const EVERY: Duration = Duration::from_secs(1);

    pub const fn new() -> Self {
        Self {
            state: Mutex::new((None, 0)),
        }
    }

    /// Whether a line may be written at `now`; if so, how many were left out since the last
    /// one written.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, skipped) = &mut *state;
        if last.is_some_and(|last| now.saturating_duration_since(last) < Self::EVERY) {
            *skipped += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(skipped))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every request by route pattern and status, and logs it at
/// debug level (server errors at warn; `503 Service Unavailable`, load shed or a store
/// down, at most once a second, see [`Throttle`]).
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.call(req).await?;
    let status = response.status();
    let elapsed = started.elapsed();
    metrics::counter!(
        "downradar_http_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    metrics::histogram!("downradar_http_request_duration_seconds", "route" => route.clone())
        .record(elapsed.as_secs_f64());
    static UNAVAILABLE: Throttle = Throttle::new();
    if status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        if let Some(skipped) = UNAVAILABLE.admit(Instant::now()) {
            tracing::warn!(
                %method,
                %route,
                status = status.as_u16(),
                ?elapsed,
                also_unavailable = skipped,
                "request failed (also_unavailable: other 503 answers since the last such line)"
            );
        }
    } else if status.is_server_error() {
        tracing::warn!(%method, %route, status = status.as_u16(), ?elapsed, "request failed");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), ?elapsed, "request");
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_writes_a_line_a_second_and_counts_the_rest() {
        let throttle = Throttle::new();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(throttle.admit(at(0)), Some(0));
        assert_eq!(throttle.admit(at(1)), None);
        assert_eq!(throttle.admit(at(999)), None);
        assert_eq!(throttle.admit(at(1000)), Some(2));
        assert_eq!(throttle.admit(at(1500)), None);
        assert_eq!(throttle.admit(at(5000)), Some(1));
        assert_eq!(throttle.admit(at(6000)), Some(0));
    }
}
