//! Group commit: many concurrent report requests, one store round trip per batch.
//!
//! Handlers [`submit`](Ingestor::submit) a report to a bounded queue and wait for their own
//! outcome. A writer task takes whatever is queued (up to [`MAX_BATCH`]) as soon as it is free,
//! writes it in one store call, and answers each waiting request. Under load a batch holds
//! everything that arrived during the previous flush; when idle a report is written at once,
//! so no report waits for a timer. Up to [`MAX_IN_FLIGHT`] batches are on the wire at a time.
//! A full queue is answered at once with [`IngestError::Overloaded`] (backpressure, never
//! unbounded memory); a request whose outcome is not known within [`ANSWER_TIMEOUT`] gets
//! [`IngestError::Unavailable`].
//!
//! There is one queue and one writer per HTTP worker thread, running on that thread: handing a
//! report to a writer on another thread, and its answer back, costs two cross-thread wake-ups
//! (an `eventfd` write and a context switch each), which measured at about a quarter of the
//! server's CPU per report. Same-thread hand-offs cost neither; batches still share the one
//! store connection.
//!
//! Whenever a request was told "not counted" for a report that the store may have applied
//! (store error, timeout, or the handler gave up waiting), the writer revokes that report
//! (see [`crate::store`]) and keeps retrying the revocation until the store takes it. So the
//! stored counts equal the reports acknowledged as counted.
//!
//! On shutdown the HTTP server lets in-flight requests finish; each of them waits for its own
//! report to be written, so nothing queued is left behind. When the last handle is dropped the
//! writer drains its queue and stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Recorded, Report, Store, StoreError};

/// Most reports in one batch.
pub const MAX_BATCH: usize = 512;

/// Most batches written at once. While the store works on one batch the next is already on
/// the wire, so a round trip's latency does not cap throughput.
pub const MAX_IN_FLIGHT: usize = 2;

/// Longest a request waits for its outcome before it is answered 503. With the store call
/// timeout of one second, a request never waits much more than this.
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(1500);

/// How often unconfirmed revocations are retried while the writer is idle.
const REVOKE_RETRY: Duration = Duration::from_millis(250);

/// Why a report was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The queue is full: the store cannot keep up.
    #[error("too many reports are waiting to be written")]
    Overloaded,
    /// The store failed or did not answer in time.
    #[error("the store is unavailable")]
    Unavailable,
}

struct Pending {
    report: Report,
    reply: oneshot::Sender<Result<Recorded, IngestError>>,
}

/// The handle handlers submit reports through. Cloning is cheap; the writer stops once every
/// clone is dropped and the queue is drained.
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Pending>,
}

impl Ingestor {
    /// Starts a writer task on the current runtime (call it on the thread whose handlers will
    /// submit), with a queue of `capacity` reports.
    pub fn start(store: Arc<dyn Store>, capacity: usize) -> Self {
        let (queue, rx) = mpsc::channel(capacity);
        let writer = Writer {
            store,
            queue: rx,
            unconfirmed: Vec::new(),
            published: 0,
        };
        tokio::spawn(writer.run());
        Self { queue }
    }

    /// Queues `report` and waits for its outcome.
    pub async fn submit(&self, report: Report) -> Result<Recorded, IngestError> {
        let (reply, mut outcome) = oneshot::channel();
        self.queue
            .try_send(Pending { report, reply })
            .map_err(|_| IngestError::Overloaded)?;
        metrics::gauge!("downradar_ingest_queue_depth").increment(1.0);
        match tokio::time::timeout(ANSWER_TIMEOUT, &mut outcome).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(IngestError::Unavailable),
            Err(_) => {
                // Close first, then look once more: an outcome sent in the meantime is used;
                // otherwise the writer sees the closed channel and revokes the report.
                outcome.close();
                outcome.try_recv().unwrap_or(Err(IngestError::Unavailable))
            }
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    queue: mpsc::Receiver<Pending>,
    /// Reports told "not counted" whose revocation the store has not yet confirmed.
    unconfirmed: Vec<Report>,
    /// This writer's share of the process-wide unconfirmed-revocations gauge.
    published: usize,
}

impl Writer {
    async fn run(mut self) {
        let mut in_flight = FuturesUnordered::new();
        let mut open = true;
        while open || !in_flight.is_empty() {
            let mut batch = Vec::new();
            tokio::select! {
                biased;
                Some(flushed) = in_flight.next(), if !in_flight.is_empty() => {
                    let Flushed { store_ok, revoke } = flushed;
                    self.unconfirmed.extend(revoke);
                    if store_ok {
                        self.retry_revocations().await;
                    } else {
                        self.publish_unconfirmed();
                    }
                }
                received = self.queue.recv_many(&mut batch, MAX_BATCH),
                    if open && in_flight.len() < MAX_IN_FLIGHT =>
                {
                    if received == 0 {
                        open = false;
                    } else {
                        metrics::gauge!("downradar_ingest_queue_depth").decrement(received as f64);
                        in_flight.push(flush(self.store.clone(), batch));
                    }
                }
                () = tokio::time::sleep(REVOKE_RETRY), if !self.unconfirmed.is_empty() => {
                    self.retry_revocations().await;
                }
            }
        }
        // The queue is closed and drained, nothing is in flight: one last attempt at revocations.
        self.retry_revocations().await;
        if !self.unconfirmed.is_empty() {
            tracing::error!(
                reports = self.unconfirmed.len(),
                "shutting down with revocations the store never confirmed; \
                 these reports may be counted although their clients got 503"
            );
        }
    }

    /// Revokes what is unconfirmed, a bounded chunk per store call, until done or the store
    /// fails (the rest is retried later).
    async fn retry_revocations(&mut self) {
        while !self.unconfirmed.is_empty() {
            let chunk = self.unconfirmed.len().min(MAX_BATCH);
            match self.store.revoke(&self.unconfirmed[..chunk]).await {
                Ok(()) => {
                    metrics::counter!("downradar_reports_revoked_total").increment(chunk as u64);
                    self.unconfirmed.drain(..chunk);
                }
                Err(error) => {
                    store_error("revoke", &error);
                    break;
                }
            }
        }
        self.publish_unconfirmed();
    }

    fn publish_unconfirmed(&mut self) {
        let now = self.unconfirmed.len();
        metrics::gauge!("downradar_ingest_unconfirmed_revocations")
            .increment(now as f64 - self.published as f64);
        self.published = now;
    }
}

/// What a flush leaves for the writer.
struct Flushed {
    /// Whether the store call succeeded (so revocations are worth trying now).
    store_ok: bool,
    /// Reports answered "not counted" that the store may have applied.
    revoke: Vec<Report>,
}

/// Writes one batch and answers its requests.
async fn flush(store: Arc<dyn Store>, mut batch: Vec<Pending>) -> Flushed {
    // Requests that gave up while queued were already answered 503: don't write them.
    batch.retain(|p| !p.reply.is_closed());
    if batch.is_empty() {
        return Flushed {
            store_ok: true,
            revoke: Vec::new(),
        };
    }
    let reports: Vec<Report> = batch.iter().map(|p| p.report.clone()).collect();
    metrics::histogram!("downradar_ingest_batch_size").record(reports.len() as f64);
    let started = Instant::now();
    let result = store.record(&reports).await;
    metrics::histogram!("downradar_store_flush_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(outcomes) => {
            let revoke = batch
                .into_iter()
                .zip(outcomes)
                .filter_map(|(pending, outcome)| {
                    let delivered = pending.reply.send(Ok(outcome)).is_ok();
                    (!delivered && outcome == Recorded::Counted).then_some(pending.report)
                })
                .collect();
            Flushed {
                store_ok: true,
                revoke,
            }
        }
        Err(error) => {
            store_error("record", &error);
            for pending in batch {
                let _ = pending.reply.send(Err(IngestError::Unavailable));
            }
            Flushed {
                store_ok: false,
                revoke: reports,
            }
        }
    }
}

/// Logs and counts a store failure.
pub(crate) fn store_error(operation: &'static str, error: &StoreError) {
    metrics::counter!("downradar_store_errors_total", "operation" => operation).increment(1);
    tracing::warn!(operation, %error, "store call failed");
}
