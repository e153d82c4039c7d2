//! The embedded store: the same semantics as Redis, in this process's memory.
//!
//! It is the default so that `cargo run` works on a fresh machine; it keeps nothing across
//! restarts and serves one process only. Expiry follows the injected [`Clock`], so tests can
//! move time instead of waiting for it; expired entries are ignored at once and swept out
//! once a minute of clock time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    BucketCounts, Cell, Granularity, HistoryCount, Recorded, Report, ReportToken, Store,
    StoreError, StoreSettings,
};
use crate::catalog::ServiceId;
use crate::clock::Clock;
use crate::reporter::Fingerprint;

/// How often (in clock milliseconds) expired entries are swept out.
const SWEEP_EVERY_MS: i64 = 60_000;

/// The embedded in-memory store.
pub struct MemoryStore {
    settings: StoreSettings,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per service, buckets keyed by (width in seconds, start).
    buckets: HashMap<ServiceId, BTreeMap<(i64, i64), Bucket>>,
    /// Dedup markers: the token that counted the reporter, and when the marker expires (ms).
    seen: HashMap<(ServiceId, Fingerprint), (ReportToken, i64)>,
    /// Revoked report tokens and when they are forgotten (ms).
    revoked: HashMap<ReportToken, i64>,
    /// Reporters counted per address, and when the count expires (ms): a dedup window after
    /// the first of them, as in Redis.
    addresses: HashMap<(ServiceId, Fingerprint), (u32, i64)>,
    next_sweep_ms: i64,
}

struct Bucket {
    /// Unix second at which the bucket expires.
    expires_at: i64,
    cells: HashMap<Cell, u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(settings: StoreSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn now_ms(&self) -> i64 {
        (self.clock.now().unix_timestamp_nanos() / 1_000_000) as i64
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the store, so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The buckets a count in the fine bucket `start` adds to: (width, start, expires-at) of
    /// that bucket and, when different, of its hourly roll-up.
    fn targets(&self, start: i64) -> Vec<(i64, i64, i64)> {
        let fine_width = self.settings.width(Granularity::Fine);
        let hour_width = self.settings.width(Granularity::Hourly);
        let hour = crate::buckets::align(start, hour_width);
        let mut targets = vec![(
            fine_width,
            start,
            self.settings.expires_at(Granularity::Fine, start),
        )];
        if hour_width != fine_width {
            targets.push((
                hour_width,
                hour,
                self.settings.expires_at(Granularity::Hourly, hour),
            ));
        }
        targets
    }

    /// Adds `delta` to `cell` of `service` in the fine bucket `start` and its roll-up; buckets
    /// already expired at `now_s` are left alone. Returns whether anything was added.
    fn add(
        &self,
        inner: &mut Inner,
        service: &ServiceId,
        start: i64,
        cell: &Cell,
        delta: i64,
        now_s: i64,
    ) -> bool {
        let series = inner.buckets.entry(service.clone()).or_default();
        let mut added = false;
        for (width, start, expires_at) in self.targets(start) {
            if expires_at <= now_s {
                continue;
            }
            added = true;
            let bucket = series.entry((width, start)).or_insert_with(|| Bucket {
                expires_at,
                cells: HashMap::new(),
            });
            bucket.expires_at = expires_at;
            let count = bucket.cells.entry(cell.clone()).or_insert(0);
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                bucket.cells.remove(cell);
            }
        }
        added
    }

    fn sweep(inner: &mut Inner, now_ms: i64) {
        if now_ms < inner.next_sweep_ms {
            return;
        }
        inner.next_sweep_ms = now_ms + SWEEP_EVERY_MS;
        let now_s = now_ms.div_euclid(1000);
        inner.seen.retain(|_, &mut (_, expires)| expires > now_ms);
        inner.revoked.retain(|_, &mut expires| expires > now_ms);
        inner
            .addresses
            .retain(|_, &mut (_, expires)| expires > now_ms);
        inner.buckets.retain(|_, series| {
            series.retain(|_, b| b.expires_at > now_s && !b.cells.is_empty());
            !series.is_empty()
        });
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn record(&self, batch: &[Report]) -> Result<Vec<Recorded>, StoreError> {
        let now = self.now_ms();
        let window = self.settings.dedup_window.as_millis() as i64;
        let mut inner = self.lock();
        Self::sweep(&mut inner, now);
        let outcomes = batch
            .iter()
            .map(|report| {
                if inner
                    .revoked
                    .get(&report.token)
                    .is_some_and(|&exp| exp > now)
                {
                    return Recorded::Revoked;
                }
                let key = (report.service.clone(), report.reporter);
                if inner.seen.get(&key).is_some_and(|&(_, exp)| exp > now) {
                    return Recorded::Duplicate;
                }
                if let Some(cap) = self.settings.max_reporters_per_address {
                    let address = (
                        report.service.clone(),
                        report.address.unwrap_or(report.reporter),
                    );
                    let entry = inner.addresses.entry(address).or_insert((0, now + window));
                    if entry.1 <= now {
                        *entry = (0, now + window);
                    }
                    if entry.0 >= cap.get() {
                        return Recorded::Capped;
                    }
                    entry.0 += 1;
                }
                inner.seen.insert(key, (report.token, now + window));
                self.add(
                    &mut inner,
                    &report.service,
                    report.bucket,
                    &report.cell,
                    1,
                    now.div_euclid(1000),
                );
                Recorded::Counted
            })
            .collect();
        Ok(outcomes)
    }

    async fn revoke(&self, reports: &[Report]) -> Result<(), StoreError> {
        let now = self.now_ms();
        let remember = StoreSettings::REVOCATION_TTL.as_millis() as i64;
        let mut inner = self.lock();
        for report in reports {
            inner.revoked.insert(report.token, now + remember);
            let key = (report.service.clone(), report.reporter);
            if inner
                .seen
                .get(&key)
                .is_some_and(|&(token, exp)| token == report.token && exp > now)
            {
                inner.seen.remove(&key);
                if self.settings.max_reporters_per_address.is_some() {
                    let address = (
                        report.service.clone(),
                        report.address.unwrap_or(report.reporter),
                    );
                    if let Some(entry) = inner.addresses.get_mut(&address) {
                        entry.0 = entry.0.saturating_sub(1);
                    }
                }
                self.add(
                    &mut inner,
                    &report.service,
                    report.bucket,
                    &report.cell,
                    -1,
                    now.div_euclid(1000),
                );
            }
        }
        Ok(())
    }

    async fn add_history(&self, counts: &[HistoryCount]) -> Result<u64, StoreError> {
        let now_s = self.now_ms().div_euclid(1000);
        let mut inner = self.lock();
        let mut added = 0;
        for c in counts {
            let delta = i64::try_from(c.count).unwrap_or(i64::MAX);
            if self.add(&mut inner, &c.service, c.bucket, &c.cell, delta, now_s) {
                added += c.count;
            }
        }
        Ok(added)
    }

    async fn counts(
        &self,
        service: &ServiceId,
        granularity: Granularity,
        from: i64,
        until: i64,
    ) -> Result<Vec<BucketCounts>, StoreError> {
        if from >= until {
            return Ok(Vec::new());
        }
        let now_s = self.now_ms().div_euclid(1000);
        let width = self.settings.width(granularity);
        let inner = self.lock();
        let Some(series) = inner.buckets.get(service) else {
            return Ok(Vec::new());
        };
        Ok(series
            .range((width, from)..(width, until))
            .filter(|(_, b)| b.expires_at > now_s && !b.cells.is_empty())
            .map(|(&(_, start), b)| {
                let mut cells: Vec<(Cell, u64)> =
                    b.cells.iter().map(|(c, &n)| (c.clone(), n)).collect();
                cells.sort();
                BucketCounts { start, cells }
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
