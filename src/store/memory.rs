//! The embedded store: the same semantics as Redis, in this process's memory.
//!
//! It is the default so that `cargo run` works on a fresh machine; it keeps nothing across
//! restarts and serves one process only. Expiry follows the injected [`Clock`], so tests can
//! move time instead of waiting for it; expired entries are ignored at once and swept out
//! within a minute of clock time (the dedup markers a shard at a time, see [`Markers`]). The
//! detector's lease, stream ids (`<ms>-<seq>`, made as Redis makes them) and incident
//! retention follow the same clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    BucketCounts, Cell, CellFilter, DetectorCommit, DetectorSnapshot, Granularity, HistoryAdded,
    HistoryCount, IncidentQuery, IncidentRecord, Recorded, Report, ReportToken, SavedState, Store,
    StoreError, StoreSettings, StreamBounds, StreamEvent, StreamId, StreamRead, encode_json,
    incident_service, lease_millis, parse_incident_id, parse_json, parse_stream_id, to_json,
    whole_secs,
};
use crate::catalog::ServiceId;
use crate::clock::Clock;
use crate::detector::{GapDecision, Incident, IncidentStatus};
use crate::reporter::Fingerprint;

/// How often (in clock milliseconds) expired entries are swept out.
const SWEEP_EVERY_MS: i64 = 60_000;

/// Shards of the dedup markers (see [`Markers`]).
const MARKER_SHARDS: usize = 256;

/// The embedded in-memory store.
pub struct MemoryStore {
    settings: StoreSettings,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    /// Signalled after events are added to the stream (wakes [`Store::wait_events`]).
    added: tokio::sync::watch::Sender<()>,
}

/// Most buckets a series read copies per hold of the store's lock.
const READ_SLICE: usize = 256;

#[derive(Default)]
struct Inner {
    /// Per service, buckets keyed by (width in seconds, start).
    buckets: HashMap<ServiceId, BTreeMap<(i64, i64), Bucket>>,
    /// Dedup markers: the token that counted the reporter.
    seen: Markers<ReportToken>,
    /// Revoked report tokens and when they are forgotten (ms).
    revoked: HashMap<ReportToken, i64>,
    /// Reporters counted per address, expiring a dedup window after the first of them, as in
    /// Redis.
    addresses: Markers<u32>,
    next_sweep_ms: i64,
    detector: Detector,
    /// Per service, how often its written counts changed (see [`Store::generation`]).
    generations: HashMap<ServiceId, u64>,
}

/// The detector's lease, state, event stream and incidents, kept as the Redis store keeps
/// them (see `keys`): events and incidents are stored as their JSON, like there.
#[derive(Default)]
struct Detector {
    /// The holder and when the lease expires (ms).
    lease: Option<(String, i64)>,
    cursor: Option<i64>,
    /// Per service, the cursor it was saved at and its state.
    states: BTreeMap<ServiceId, (i64, Vec<u8>)>,
    /// The last commit's decisions on buckets without any report.
    gaps: Vec<GapDecision>,
    /// Event JSON by stream id (ms, seq), oldest first.
    stream: VecDeque<((u64, u64), String)>,
    /// The last stream id handed out: ids never go back, whatever the clock does.
    last_id: (u64, u64),
    /// The newest id trimmed off the stream.
    trimmed_through: (u64, u64),
    /// Incident records by id.
    incidents: HashMap<String, IncidentEntry>,
    /// Every incident, as (start, id): newest first is `.rev()`, ties by id descending.
    all: BTreeSet<(i64, String)>,
    /// The open incidents, as (start, id).
    active: BTreeSet<(i64, String)>,
}

struct IncidentEntry {
    /// The latest incident JSON.
    incident: String,
    /// The JSON of its events, oldest first.
    events: Vec<String>,
    /// Unix second at which the record expires.
    expires_at: i64,
}

impl Detector {
    /// Whether `holder` holds the lease at `now_ms`.
    fn holds(&self, holder: &str, now_ms: i64) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|(h, expires)| h == holder && *expires > now_ms)
    }

    /// The next stream id, made as Redis makes `XADD *` ids: the clock's milliseconds, or
    /// the last id's sequence plus one when the clock has not moved past the last id.
    fn next_stream_id(&mut self, now_ms: i64) -> (u64, u64) {
        let now = u64::try_from(now_ms).unwrap_or(0);
        let (last_ms, last_seq) = self.last_id;
        self.last_id = if now > last_ms {
            (now, 0)
        } else if last_seq < u64::MAX {
            (last_ms, last_seq + 1)
        } else {
            (last_ms + 1, 0)
        };
        self.last_id
    }

    /// Up to `limit` events after the stream id `after`, oldest first.
    fn events_after(&self, after: (u64, u64), limit: usize) -> Vec<StreamEvent> {
        self.read_after(after, limit).events
    }

    /// Up to `limit` events after the stream id `after`, and the last entry looked at.
    fn read_after(&self, after: (u64, u64), limit: usize) -> StreamRead {
        let first = self.stream.partition_point(|(id, _)| *id <= after);
        let mut read = StreamRead::default();
        for ((ms, seq), json) in self.stream.range(first..) {
            if read.events.len() == limit {
                break;
            }
            read.through = Some((*ms, *seq));
            let id = format!("{ms}-{seq}");
            if let Some(event) = parse_json(json, &id) {
                read.events.push(StreamEvent { id, event });
            }
        }
        read
    }

    /// The record of `id` unless it has expired at `now_s`.
    fn record(&self, id: &str, now_s: i64) -> Option<&IncidentEntry> {
        self.incidents.get(id).filter(|r| r.expires_at > now_s)
    }
}

/// Per service and reporter (or address) fingerprint, a value and when it expires (ms): one
/// per reporter counted in the dedup window, so millions under load. They are split into
/// [`MARKER_SHARDS`] shards by the fingerprint (an HMAC, so evenly): a growing table rehashes
/// one small shard at a time, and expired markers are swept one shard per write, every
/// shard once per [`SWEEP_EVERY_MS`], instead of in one pass that would stop every writer
/// for as long as it takes.
struct Markers<V> {
    services: HashMap<ServiceId, Vec<Shard<V>>>,
    /// The shard the next sweep takes, and when (ms).
    sweep_shard: usize,
    next_sweep_ms: i64,
}

/// Markers of one shard: value and expiry (ms) by fingerprint.
type Shard<V> = HashMap<Fingerprint, (V, i64)>;

impl<V> Default for Markers<V> {
    fn default() -> Self {
        Self {
            services: HashMap::new(),
            sweep_shard: 0,
            next_sweep_ms: 0,
        }
    }
}

impl<V: Copy> Markers<V> {
    fn shard(fingerprint: Fingerprint) -> usize {
        usize::from(fingerprint.spread()) % MARKER_SHARDS
    }

    /// The value of an unexpired marker.
    fn get(&self, service: &ServiceId, fingerprint: Fingerprint, now_ms: i64) -> Option<V> {
        let shard = self.services.get(service)?.get(Self::shard(fingerprint))?;
        shard
            .get(&fingerprint)
            .filter(|&&(_, expires)| expires > now_ms)
            .map(|&(value, _)| value)
    }

    /// The marker's entry, created (or renewed, if expired) as `fresh` until `expires`.
    fn entry(
        &mut self,
        service: &ServiceId,
        fingerprint: Fingerprint,
        fresh: V,
        expires: i64,
        now_ms: i64,
    ) -> &mut (V, i64) {
        if !self.services.contains_key(service) {
            let shards = (0..MARKER_SHARDS).map(|_| HashMap::new()).collect();
            self.services.insert(service.clone(), shards);
        }
        let shards = self.services.get_mut(service).expect("inserted above");
        let entry = shards[Self::shard(fingerprint)]
            .entry(fingerprint)
            .or_insert((fresh, expires));
        if entry.1 <= now_ms {
            *entry = (fresh, expires);
        }
        entry
    }

    /// The value of a marker, expired or not.
    fn get_mut(&mut self, service: &ServiceId, fingerprint: Fingerprint) -> Option<&mut V> {
        let shard = self
            .services
            .get_mut(service)?
            .get_mut(Self::shard(fingerprint))?;
        shard.get_mut(&fingerprint).map(|(value, _)| value)
    }

    fn remove(&mut self, service: &ServiceId, fingerprint: Fingerprint) {
        if let Some(shards) = self.services.get_mut(service) {
            shards[Self::shard(fingerprint)].remove(&fingerprint);
        }
    }

    /// Sweeps the expired markers out of the next shard, if its turn has come.
    fn sweep_step(&mut self, now_ms: i64) {
        if now_ms < self.next_sweep_ms {
            return;
        }
        // On schedule rather than from now, so that a whole round takes at most the period;
        // one that fell far behind (a jump of the clock) catches up one shard per write.
        let step = SWEEP_EVERY_MS / MARKER_SHARDS as i64;
        self.next_sweep_ms = (self.next_sweep_ms + step).max(now_ms - SWEEP_EVERY_MS);
        let shard = self.sweep_shard;
        self.sweep_shard = (shard + 1) % MARKER_SHARDS;
        for shards in self.services.values_mut() {
            let markers = &mut shards[shard];
            markers.retain(|_, &mut (_, expires)| expires > now_ms);
            // Give back what a flood of reporters took once it has expired.
            if markers.capacity() > 4 * markers.len() + 64 {
                markers.shrink_to_fit();
            }
        }
    }
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
            added: tokio::sync::watch::channel(()).0,
        }
    }

    fn now_ms(&self) -> i64 {
        (self.clock.now().unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// Calls `visit` with the start and cells of each live, non-empty bucket of `service`
    /// and `granularity` whose start is in `[from, until)`, in time order. A few hundred
    /// buckets per hold of the lock, yielding in between: a long series read (a month of
    /// one-minute buckets) holds up report writes and the detector only that long, and lets
    /// this worker thread serve its other requests. As on Redis, which reads buckets in
    /// chunks too, the read is not one snapshot.
    async fn scan(
        &self,
        service: &ServiceId,
        granularity: Granularity,
        from: i64,
        until: i64,
        mut visit: impl FnMut(i64, &HashMap<Cell, u64>),
    ) {
        let now_s = self.now_ms().div_euclid(1000);
        let width = self.settings.width(granularity);
        let mut next = from;
        while next < until {
            let mut resume = None;
            {
                let inner = self.lock();
                let Some(series) = inner.buckets.get(service) else {
                    return;
                };
                for (i, (&(_, start), bucket)) in
                    series.range((width, next)..(width, until)).enumerate()
                {
                    if i == READ_SLICE {
                        resume = Some(start);
                        break;
                    }
                    if bucket.expires_at > now_s && !bucket.cells.is_empty() {
                        visit(start, &bucket.cells);
                    }
                }
            }
            let Some(start) = resume else {
                return;
            };
            next = start;
            tokio::task::yield_now().await;
        }
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
    /// already expired at `now_s` are left alone. Returns whether it was added to the fine
    /// bucket, and whether to anything.
    fn add(
        &self,
        inner: &mut Inner,
        service: &ServiceId,
        start: i64,
        cell: &Cell,
        delta: i64,
        now_s: i64,
    ) -> (bool, bool) {
        let series = inner.buckets.entry(service.clone()).or_default();
        let (mut fine, mut added) = (false, false);
        for (i, (width, start, expires_at)) in self.targets(start).into_iter().enumerate() {
            if expires_at <= now_s {
                continue;
            }
            fine |= i == 0;
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
        (fine, added)
    }

    fn sweep(inner: &mut Inner, now_ms: i64) {
        if now_ms < inner.next_sweep_ms {
            return;
        }
        inner.next_sweep_ms = now_ms + SWEEP_EVERY_MS;
        let now_s = now_ms.div_euclid(1000);
        inner.revoked.retain(|_, &mut expires| expires > now_ms);
        inner.buckets.retain(|_, series| {
            series.retain(|_, b| b.expires_at > now_s && !b.cells.is_empty());
            !series.is_empty()
        });
    }

    /// Forgets incidents past their retention at `now_s`, as the Redis store's commit trims
    /// its indexes and Redis expires the records.
    fn trim_incidents(&self, detector: &mut Detector, now_s: i64) {
        let oldest = now_s.saturating_sub(whole_secs(self.settings.rollup_retention));
        detector.all.retain(|(start, _)| *start > oldest);
        detector.active.retain(|(start, _)| *start > oldest);
        detector.incidents.retain(|_, r| r.expires_at > now_s);
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
        inner.seen.sweep_step(now);
        inner.addresses.sweep_step(now);
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
                let service = &report.service;
                match inner.seen.get(service, report.reporter, now) {
                    // This very report, recorded again: it counted the first time.
                    Some(token) if token == report.token => return Recorded::Counted,
                    Some(_) => return Recorded::Duplicate,
                    None => {}
                }
                if let Some(cap) = self.settings.max_reporters_per_address {
                    let address = report.address.unwrap_or(report.reporter);
                    let entry = inner
                        .addresses
                        .entry(service, address, 0, now + window, now);
                    if entry.0 >= cap.get() {
                        return Recorded::Capped;
                    }
                    entry.0 += 1;
                }
                inner
                    .seen
                    .entry(service, report.reporter, report.token, now + window, now);
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
            if inner.seen.get(&report.service, report.reporter, now) == Some(report.token) {
                inner.seen.remove(&report.service, report.reporter);
                if self.settings.max_reporters_per_address.is_some() {
                    let address = report.address.unwrap_or(report.reporter);
                    if let Some(count) = inner.addresses.get_mut(&report.service, address) {
                        *count = count.saturating_sub(1);
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
                *inner.generations.entry(report.service.clone()).or_default() += 1;
            }
        }
        Ok(())
    }

    async fn add_history(&self, counts: &[HistoryCount]) -> Result<HistoryAdded, StoreError> {
        let now_s = self.now_ms().div_euclid(1000);
        let mut inner = self.lock();
        let mut added = HistoryAdded::default();
        for c in counts {
            let delta = i64::try_from(c.count).unwrap_or(i64::MAX);
            let (to_fine, to_any) =
                self.add(&mut inner, &c.service, c.bucket, &c.cell, delta, now_s);
            added.count(c.count, to_fine, to_any);
            *inner.generations.entry(c.service.clone()).or_default() += 1;
        }
        Ok(added)
    }

    async fn generation(&self, service: &ServiceId) -> Result<u64, StoreError> {
        Ok(self.lock().generations.get(service).copied().unwrap_or(0))
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
        let mut out = Vec::new();
        self.scan(service, granularity, from, until, |start, cells| {
            let mut cells: Vec<(Cell, u64)> = cells.iter().map(|(c, &n)| (c.clone(), n)).collect();
            cells.sort();
            out.push(BucketCounts { start, cells });
        })
        .await;
        Ok(out)
    }

    async fn sums(
        &self,
        service: &ServiceId,
        granularity: Granularity,
        from: i64,
        until: i64,
        of: CellFilter<'_>,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut out = Vec::new();
        self.scan(service, granularity, from, until, |start, cells| {
            out.push((start, of.sum(cells)));
        })
        .await;
        Ok(out)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut inner = self.lock();
        let lease = &mut inner.detector.lease;
        if lease
            .as_ref()
            .is_some_and(|(h, expires)| h != holder && *expires > now)
        {
            return Ok(false);
        }
        *lease = Some((holder.to_owned(), now.saturating_add(lease_millis(ttl))));
        Ok(true)
    }

    async fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let lease = &mut inner.detector.lease;
        if lease.as_ref().is_some_and(|(h, _)| h == holder) {
            *lease = None;
        }
        Ok(())
    }

    async fn detector_state(&self, service: &ServiceId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .detector
            .states
            .get(service)
            .map(|(_, state)| state.clone()))
    }

    async fn load_detector(&self) -> Result<Option<DetectorSnapshot>, StoreError> {
        let inner = self.lock();
        let detector = &inner.detector;
        Ok(detector.cursor.map(|cursor| DetectorSnapshot {
            cursor,
            services: detector
                .states
                .iter()
                .map(|(service, (cursor, state))| SavedState {
                    service: service.clone(),
                    cursor: *cursor,
                    state: state.clone(),
                })
                .collect(),
            gaps: detector.gaps.clone(),
        }))
    }

    async fn commit_detector(&self, commit: DetectorCommit<'_>) -> Result<Vec<String>, StoreError> {
        let now_ms = self.now_ms();
        let now_s = now_ms.div_euclid(1000);
        let encoded = commit
            .events
            .iter()
            .map(to_json)
            .collect::<Result<Vec<_>, _>>()?;
        let refreshed = commit
            .refreshed
            .iter()
            .map(encode_json)
            .collect::<Result<Vec<_>, _>>()?;
        let keep_events_ms =
            i64::try_from(self.settings.event_retention.as_millis()).unwrap_or(i64::MAX / 4);
        let min_ms = u64::try_from(now_ms.saturating_sub(keep_events_ms)).unwrap_or(0);
        let keep_incidents = whole_secs(self.settings.rollup_retention);

        let mut inner = self.lock();
        let detector = &mut inner.detector;
        if !detector.holds(commit.holder, now_ms) || detector.cursor != commit.continues_from {
            return Err(StoreError::LeaseLost);
        }
        detector.cursor = Some(commit.cursor);
        detector.gaps = commit.gaps.to_vec();
        for (service, state) in commit.states {
            detector
                .states
                .insert(service.clone(), (commit.cursor, state.clone()));
        }
        for service in commit.forget {
            detector.states.remove(service);
        }
        let mut ids = Vec::with_capacity(commit.events.len());
        for (event, (event_json, incident_json)) in commit.events.iter().zip(encoded) {
            let id = detector.next_stream_id(now_ms);
            detector.stream.push_back((id, event_json.clone()));
            while detector.stream.front().is_some_and(|(id, _)| id.0 < min_ms) {
                if let Some((trimmed, _)) = detector.stream.pop_front() {
                    detector.trimmed_through = trimmed;
                }
            }
            ids.push(format!("{}-{}", id.0, id.1));

            let incident = &event.incident;
            let start = incident.started_at.unix_timestamp();
            let incident_id = Incident::id_for(&incident.service, start);
            let expires_at = start.saturating_add(keep_incidents);
            let record = detector
                .incidents
                .entry(incident_id.clone())
                .or_insert_with(|| IncidentEntry {
                    incident: String::new(),
                    events: Vec::new(),
                    expires_at,
                });
            if record.expires_at <= now_s {
                // Expired: Redis would have deleted the event list too.
                record.events.clear();
            }
            record.incident = incident_json;
            record.events.push(event_json);
            record.expires_at = expires_at;
            detector.all.insert((start, incident_id.clone()));
            if incident.status == IncidentStatus::Resolved {
                detector.active.remove(&(start, incident_id));
            } else {
                detector.active.insert((start, incident_id));
            }
        }
        for (incident, json) in commit.refreshed.iter().zip(refreshed) {
            let start = incident.started_at.unix_timestamp();
            let incident_id = Incident::id_for(&incident.service, start);
            if !detector.active.contains(&(start, incident_id.clone())) {
                continue;
            }
            if let Some(record) = detector.incidents.get_mut(&incident_id)
                && record.expires_at > now_s
            {
                record.incident = json;
            }
        }
        self.trim_incidents(detector, now_s);
        drop(inner);
        if !ids.is_empty() {
            self.added.send_replace(());
        }
        Ok(ids)
    }

    async fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        // Newest first, a slice of the index per hold of the lock: the records' JSON is copied
        // under it and parsed and filtered outside, so a filter that matches few of many
        // incidents holds up report writes only briefly, and yields in between.
        let mut out = Vec::new();
        let mut last = query.after.clone();
        while out.len() < query.limit {
            let now_s = self.now_ms().div_euclid(1000);
            let slice: Vec<((i64, String), Option<String>)> = {
                let inner = self.lock();
                let detector = &inner.detector;
                let index = if query.active_only {
                    &detector.active
                } else {
                    &detector.all
                };
                // Before the cursor and before `until` ((until, "") precedes every incident
                // that started at `until`).
                let end = [
                    last.clone(),
                    query.until.map(|until| (until, String::new())),
                ]
                .into_iter()
                .flatten()
                .min();
                let candidates = match end {
                    Some(end) => index.range(..end),
                    None => index.range::<(i64, String), _>(..),
                };
                candidates
                    .rev()
                    .take_while(|(start, _)| query.since.is_none_or(|since| *start >= since))
                    .take(READ_SLICE)
                    .map(|(start, id)| {
                        let wanted = query.in_range(*start, id)
                            && query
                                .service
                                .as_ref()
                                .is_none_or(|s| incident_service(id) == Some(s.as_str()));
                        let json = wanted
                            .then(|| detector.record(id, now_s).map(|r| r.incident.clone()))
                            .flatten();
                        ((*start, id.clone()), json)
                    })
                    .collect()
            };
            let Some((end, _)) = slice.last() else {
                break;
            };
            last = Some(end.clone());
            let exhausted = slice.len() < READ_SLICE;
            for ((_, id), json) in slice {
                let Some(incident) = json.and_then(|json| parse_json::<Incident>(&json, &id))
                else {
                    continue;
                };
                if query.filter.matches(&incident) {
                    out.push(incident);
                    if out.len() == query.limit {
                        break;
                    }
                }
            }
            if exhausted {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(out)
    }

    async fn incident(&self, id: &str) -> Result<Option<IncidentRecord>, StoreError> {
        if parse_incident_id(id).is_none() {
            return Ok(None);
        }
        let now_s = self.now_ms().div_euclid(1000);
        let inner = self.lock();
        let Some(record) = inner.detector.record(id, now_s) else {
            return Ok(None);
        };
        Ok(IncidentRecord::from_json(
            id,
            &record.incident,
            &record.events,
        ))
    }

    async fn events_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let Some(after) = parse_stream_id(after) else {
            return Ok(Vec::new());
        };
        Ok(self.lock().detector.events_after(after, limit))
    }

    async fn wait_events(
        &self,
        after: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<StreamRead, StoreError> {
        let Some(after) = parse_stream_id(after) else {
            return Ok(StreamRead::default());
        };
        // Subscribe before looking, so an event added in between still wakes this call.
        let mut added = self.added.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let read = self.lock().detector.read_after(after, limit);
            if read.through.is_some() {
                return Ok(read);
            }
            match tokio::time::timeout_at(deadline, added.changed()).await {
                Ok(Ok(())) => continue,
                // The sender lives as long as the store.
                Ok(Err(_)) | Err(_) => return Ok(StreamRead::default()),
            }
        }
    }

    async fn holds_event(&self, id: StreamId) -> Result<bool, StoreError> {
        let inner = self.lock();
        let stream = &inner.detector.stream;
        Ok(stream.binary_search_by(|(entry, _)| entry.cmp(&id)).is_ok())
    }

    async fn stream_bounds(&self) -> Result<StreamBounds, StoreError> {
        let inner = self.lock();
        Ok(StreamBounds {
            last: inner.detector.last_id,
            // Untrimmed, the stream holds nothing before its first entry either (a process
            // restarted with the embedded store starts a new stream).
            trimmed_through: match (
                inner.detector.trimmed_through,
                inner.detector.stream.front(),
            ) {
                ((0, 0), Some(&(first, _))) => super::just_before(first),
                (trimmed, _) => trimmed,
            },
            trimmed: inner.detector.trimmed_through != (0, 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::reporter::ReporterSecret;

    #[test]
    fn markers_expire_at_once_and_are_swept_out_shard_by_shard_within_a_sweep_period() {
        let secret = ReporterSecret::from_config("test");
        let service = ServiceId::parse("svc").unwrap();
        let mut markers = Markers::<u32>::default();
        let reporters: Vec<Fingerprint> = (0..2_000u32)
            .map(|i| secret.fingerprint(IpAddr::V4(Ipv4Addr::from(i)), None))
            .collect();
        for (i, &reporter) in reporters.iter().enumerate() {
            markers.entry(&service, reporter, i as u32, 1_000, 0);
        }
        let stored =
            |m: &Markers<u32>| m.services[&service].iter().map(HashMap::len).sum::<usize>();
        assert_eq!(stored(&markers), reporters.len());
        assert_eq!(markers.get(&service, reporters[7], 999), Some(7));
        // Expired: ignored at once, and renewed by a new entry.
        assert_eq!(markers.get(&service, reporters[7], 1_000), None);
        assert_eq!(
            *markers.entry(&service, reporters[7], 70, 5_000, 1_000),
            (70, 5_000)
        );
        // Writes every 10 ms of clock time sweep one shard each time its turn comes: within
        // a sweep period of the last expiry, every marker is gone.
        let mut now = 1_000;
        while now <= 5_000 + SWEEP_EVERY_MS {
            markers.sweep_step(now);
            if now == 4_000 {
                assert!(stored(&markers) >= 1, "the renewed marker is kept");
            }
            now += 10;
        }
        assert_eq!(stored(&markers), 0);
        assert_eq!(markers.get(&service, reporters[7], now), None);
    }
}
