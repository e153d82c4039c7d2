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
//! stored counts equal the reports acknowledged as counted. A batch the store provably never
//! received (the connection was refused) needs no revocation. The reports in doubt, batches
//! on the wire and unconfirmed revocations, are kept in one [`Doubts`] registry per process;
//! it is bounded: past [`MAX_UNCONFIRMED`] unconfirmed revocations new reports are refused
//! with [`IngestError::Overloaded`] until the store is back.
//!
//! A report in doubt still holds its reporter's dedup marker until it is revoked, so a client
//! retrying after its 503 could be told "already counted" by it, just before the revocation
//! undoes it. So a batch with a report from a reporter (or address) in doubt is written only
//! after the pending revocations, and a "duplicate" or "capped" outcome that may still come
//! from a report in doubt is answered 503 instead.
//!
//! On shutdown the HTTP server lets in-flight requests finish; each of them waits for its own
//! report to be written, so nothing queued is left behind. Whatever is still in doubt then is
//! revoked once more by [`Doubts::settle`] before the process exits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Recorded, Report, ReportToken, Store, StoreError};

/// Most reports in one batch.
pub const MAX_BATCH: usize = 512;

/// Most batches a writer has on the wire at once. While the store works on one batch the next
/// is already sent, so a round trip's latency does not cap throughput.
pub const MAX_IN_FLIGHT: usize = 2;

/// Longest a request waits for its outcome before it is answered 503. With the store call
/// timeout of one second, a request never waits much more than this.
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(1500);

/// Most unconfirmed revocations kept (about 200 bytes each); past it, reports are refused.
pub const MAX_UNCONFIRMED: usize = 100_000;

/// How often unconfirmed revocations are retried while a writer is idle.
const REVOKE_RETRY: Duration = Duration::from_millis(250);

/// Why a report was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The queue is full, or too many revocations wait for the store: it cannot keep up.
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

/// Reports the store may have counted although their clients were not told so: batches on
/// the wire, and revocations the store has not confirmed. One per process, shared by every
/// writer, so that shutdown can settle all of them.
#[derive(Default)]
pub struct Doubts {
    inner: Mutex<DoubtsInner>,
    /// `inner.unconfirmed.len()`, readable on the hot path without the lock.
    unconfirmed: AtomicUsize,
}

#[derive(Default)]
struct DoubtsInner {
    next_batch: u64,
    in_flight: HashMap<u64, Arc<[Report]>>,
    unconfirmed: Vec<Report>,
}

impl Doubts {
    fn lock(&self) -> MutexGuard<'_, DoubtsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether so many revocations wait that new reports must be refused.
    fn saturated(&self) -> bool {
        self.unconfirmed.load(Ordering::Relaxed) >= MAX_UNCONFIRMED
    }

    /// Whether any revocation waits for the store.
    fn any_unconfirmed(&self) -> bool {
        self.unconfirmed.load(Ordering::Relaxed) > 0
    }

    /// Publishes the number of unconfirmed revocations (call with the lock held).
    fn publish(&self, inner: &DoubtsInner) {
        let n = inner.unconfirmed.len();
        self.unconfirmed.store(n, Ordering::Relaxed);
        metrics::gauge!("downradar_ingest_unconfirmed_revocations").set(n as f64);
    }

    /// Registers a batch about to be sent; returns its id for [`Doubts::sent`].
    fn sending(&self, batch: Arc<[Report]>) -> u64 {
        let mut inner = self.lock();
        inner.next_batch += 1;
        let id = inner.next_batch;
        inner.in_flight.insert(id, batch);
        id
    }

    /// The store has answered for batch `id` (or failed); its doubtful reports, if any, are
    /// now `unconfirmed`.
    fn sent(&self, id: u64, unconfirmed: impl IntoIterator<Item = Report>) {
        let mut inner = self.lock();
        inner.in_flight.remove(&id);
        inner.unconfirmed.extend(unconfirmed);
        self.publish(&inner);
    }

    /// A copy of the oldest `most` unconfirmed reports. They stay listed until
    /// [`Doubts::confirm`]: a writer cancelled mid-revocation (at shutdown) loses nothing.
    fn peek_unconfirmed(&self, most: usize) -> Vec<Report> {
        self.lock().unconfirmed.iter().take(most).cloned().collect()
    }

    /// Which of `reports` share a reporter, or (under a per-address limit) an address, with
    /// a report whose revocation the store has not confirmed: their "already counted" or
    /// "address limit reached" may come from that report, which is about to be undone.
    /// `None` (none of them) when no revocation waits, as almost always.
    fn entangled(&self, reports: &[Report]) -> Option<Vec<bool>> {
        if !self.any_unconfirmed() {
            return None;
        }
        let inner = self.lock();
        let mut keys = HashSet::new();
        for r in &inner.unconfirmed {
            keys.insert((&r.service, r.reporter));
            if let Some(address) = r.address {
                keys.insert((&r.service, address));
            }
        }
        let entangled: Vec<bool> = reports
            .iter()
            .map(|r| {
                keys.contains(&(&r.service, r.reporter))
                    || r.address.is_some_and(|a| keys.contains(&(&r.service, a)))
            })
            .collect();
        entangled.contains(&true).then_some(entangled)
    }

    /// The store has taken these revocations; returns how many of them were still waiting
    /// (another writer may have confirmed some meanwhile).
    fn confirm(&self, revoked: &[Report]) -> usize {
        let tokens: HashSet<ReportToken> = revoked.iter().map(|r| r.token).collect();
        let mut inner = self.lock();
        let before = inner.unconfirmed.len();
        inner.unconfirmed.retain(|r| !tokens.contains(&r.token));
        let confirmed = before - inner.unconfirmed.len();
        self.publish(&inner);
        confirmed
    }

    /// Revokes unconfirmed reports, a bounded chunk per store call, until none is left or the
    /// store fails (the rest waits for the next attempt). Writers may do this concurrently:
    /// revoking a report twice is harmless.
    async fn revoke_unconfirmed(&self, store: &dyn Store) -> Result<(), StoreError> {
        loop {
            let chunk = self.peek_unconfirmed(MAX_BATCH);
            if chunk.is_empty() {
                return Ok(());
            }
            store.revoke(&chunk).await?;
            // Counted once, by the writer that confirms it: writers revoking concurrently
            // take the same chunk, and each counted it all.
            let confirmed = self.confirm(&chunk);
            metrics::counter!("downradar_reports_revoked_total").increment(confirmed as u64);
        }
    }

    /// At shutdown, once every writer has stopped: revokes everything still in doubt (batches
    /// whose answer never came included), retrying until `within` has passed. Returns how many
    /// reports stay in doubt (0 unless the store stayed unavailable).
    pub async fn settle(&self, store: &dyn Store, within: Duration) -> usize {
        {
            let mut inner = self.lock();
            let batches: Vec<Arc<[Report]>> = inner.in_flight.drain().map(|(_, b)| b).collect();
            for batch in batches {
                inner.unconfirmed.extend(batch.iter().cloned());
            }
            self.publish(&inner);
        }
        let deadline = Instant::now() + within;
        loop {
            // The last attempt is cut at the deadline too: a store that hangs would otherwise
            // stretch the shutdown by a whole call's timeout past `within`.
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(left, self.revoke_unconfirmed(store))
                .await
                .unwrap_or(Err(StoreError::Timeout(left)));
            match attempt {
                Ok(()) => return 0,
                Err(error) if Instant::now() >= deadline => {
                    store_error("revoke", &error);
                    return self.lock().unconfirmed.len();
                }
                Err(_) => tokio::time::sleep(REVOKE_RETRY.min(left)).await,
            }
        }
    }
}

/// The handle handlers submit reports through. Cloning is cheap; the writer stops once every
/// clone is dropped and the queue is drained.
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Pending>,
    doubts: Arc<Doubts>,
    /// `downradar_ingest_queue_depth`, looked up once rather than per report.
    queue_depth: metrics::Gauge,
}

impl Ingestor {
    /// Starts a writer task on the current runtime (call it on the thread whose handlers will
    /// submit), with a queue of `capacity` reports.
    pub fn start(store: Arc<dyn Store>, doubts: Arc<Doubts>, capacity: usize) -> Self {
        let (queue, rx) = mpsc::channel(capacity);
        let queue_depth = metrics::gauge!("downradar_ingest_queue_depth");
        let writer = Writer {
            store,
            queue: rx,
            doubts: doubts.clone(),
            queue_depth: queue_depth.clone(),
        };
        tokio::spawn(writer.run());
        Self {
            queue,
            doubts,
            queue_depth,
        }
    }

    /// Queues `report` and waits for its outcome.
    pub async fn submit(&self, report: Report) -> Result<Recorded, IngestError> {
        if self.doubts.saturated() {
            return Err(IngestError::Overloaded);
        }
        let (reply, mut outcome) = oneshot::channel();
        self.queue
            .try_send(Pending { report, reply })
            .map_err(|_| IngestError::Overloaded)?;
        self.queue_depth.increment(1.0);
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
    doubts: Arc<Doubts>,
    queue_depth: metrics::Gauge,
}

impl Writer {
    async fn run(mut self) {
        let mut in_flight = FuturesUnordered::new();
        let mut open = true;
        let mut revocations_due = false;
        while open || !in_flight.is_empty() {
            let mut batch = Vec::new();
            tokio::select! {
                biased;
                Some(store_ok) = in_flight.next(), if !in_flight.is_empty() => {
                    // After a success the store is likely back: try revocations now.
                    revocations_due = store_ok;
                }
                received = self.queue.recv_many(&mut batch, MAX_BATCH),
                    if open && in_flight.len() < MAX_IN_FLIGHT =>
                {
                    if received == 0 {
                        open = false;
                    } else {
                        self.queue_depth.decrement(received as f64);
                        in_flight.push(flush(self.store.clone(), self.doubts.clone(), batch));
                    }
                }
                () = tokio::time::sleep(REVOKE_RETRY), if self.doubts.any_unconfirmed() => {
                    revocations_due = true;
                }
            }
            if revocations_due && self.doubts.any_unconfirmed() {
                revocations_due = false;
                if let Err(error) = self.doubts.revoke_unconfirmed(self.store.as_ref()).await {
                    store_error("revoke", &error);
                }
            }
        }
    }
}

/// Writes one batch and answers its requests; returns whether the store call succeeded.
async fn flush(store: Arc<dyn Store>, doubts: Arc<Doubts>, batch: Vec<Pending>) -> bool {
    // Requests that gave up while queued were already answered 503: don't write them.
    let (reports, replies): (Vec<Report>, Vec<_>) = batch
        .into_iter()
        .filter(|p| !p.reply.is_closed())
        .map(|p| (p.report, p.reply))
        .unzip();
    if reports.is_empty() {
        return true;
    }
    let reports: Arc<[Report]> = reports.into();
    // A reporter retrying after a 503 must not find the dedup marker of the report that was
    // answered 503 (it may have been applied) and be told "already counted" just before its
    // revocation takes marker and count away: such revocations go first.
    if doubts.entangled(&reports).is_some()
        && let Err(error) = doubts.revoke_unconfirmed(store.as_ref()).await
    {
        store_error("revoke", &error);
    }
    metrics::histogram!("downradar_ingest_batch_size").record(reports.len() as f64);
    let id = doubts.sending(reports.clone());
    let started = Instant::now();
    let result = store.record(&reports).await;
    metrics::histogram!("downradar_store_flush_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(outcomes) => {
            // Still entangled (its doubtful twin failed while this batch was on the wire): a
            // "duplicate" or "capped" may be the twin's doing, so it is no answer yet. Nothing
            // of such a report was applied, so it needs no revocation either.
            let entangled = doubts.entangled(&reports);
            let mut undelivered = Vec::new();
            for (i, ((reply, outcome), report)) in replies
                .into_iter()
                .zip(outcomes)
                .zip(reports.iter())
                .enumerate()
            {
                let answer = match outcome {
                    Recorded::Duplicate | Recorded::Capped
                        if entangled.as_ref().is_some_and(|e| e[i]) =>
                    {
                        Err(IngestError::Unavailable)
                    }
                    outcome => Ok(outcome),
                };
                if reply.send(answer).is_err() && outcome == Recorded::Counted {
                    undelivered.push(report.clone());
                }
            }
            doubts.sent(id, undelivered);
            true
        }
        Err(error) => {
            store_error("record", &error);
            for reply in replies {
                let _ = reply.send(Err(IngestError::Unavailable));
            }
            // A refused connection proves nothing was sent; anything else may have been applied.
            let maybe_applied = !matches!(
                error,
                StoreError::Unreachable(_) | StoreError::Misconfigured(_)
            );
            doubts.sent(id, reports.iter().filter(|_| maybe_applied).cloned());
            false
        }
    }
}

/// Counts a store failure, and logs it (at most once a second, see
/// [`Throttle`](crate::telemetry::Throttle): while the store is down every batch and every
/// read fails).
pub(crate) fn store_error(operation: &'static str, error: &StoreError) {
    static LOGGED: crate::telemetry::Throttle = crate::telemetry::Throttle::new();
    metrics::counter!("downradar_store_errors_total", "operation" => operation).increment(1);
    if let Some(skipped) = LOGGED.admit(Instant::now()) {
        tracing::warn!(
            operation,
            %error,
            also_failed = skipped,
            "store call failed (also_failed: other failed calls since the last such line)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Problem;
    use crate::reporter::ReporterSecret;

    fn report(secret: &ReporterSecret, n: u8) -> Report {
        Report {
            service: crate::catalog::ServiceId::parse("tiktok").unwrap(),
            cell: crate::store::Cell {
                region: crate::regions::RegionCode::parse("DE").unwrap(),
                problem: Problem::parse("login").unwrap(),
            },
            reporter: secret.fingerprint(std::net::IpAddr::from([10, 0, 0, n]), None),
            address: None,
            bucket: 0,
            token: ReportToken::next(),
        }
    }

    /// Writers revoking at once take the same reports; each is confirmed, and so counted in
    /// `downradar_reports_revoked_total`, once.
    #[test]
    fn a_revocation_is_confirmed_once() {
        let secret = ReporterSecret::random().unwrap();
        let doubts = Doubts::default();
        let reports: Vec<Report> = (0..3).map(|n| report(&secret, n)).collect();
        let id = doubts.sending(reports.clone().into());
        doubts.sent(id, reports.clone());
        let first = doubts.peek_unconfirmed(MAX_BATCH);
        let second = doubts.peek_unconfirmed(MAX_BATCH);
        assert_eq!(doubts.confirm(&first), 3);
        assert_eq!(doubts.confirm(&second), 0);
        assert!(!doubts.any_unconfirmed());
    }
}
