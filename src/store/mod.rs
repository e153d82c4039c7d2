//! Where counts live: one [`Store`] trait, two implementations that pass the same test suite.
//!
//! - [`memory::MemoryStore`], the default: embedded, single process, nothing to install.
//! - [`redis::RedisStore`], for production and for several replicas; its key layout is
//!   documented in [`keys`].
//!
//! Both keep, per service, one counter map per time bucket (field = region + problem, value =
//! distinct reporters), an hourly roll-up of the same, and one dedup marker per reporter that
//! holds the token of the report that counted it. For the detector they also keep its leader
//! lease, its persisted state, the stream of incident events and a record of each incident.
//!
//! # Exactly-once acknowledgement
//!
//! A report is acknowledged (202) only after the store applied it. When the store fails or is
//! too slow, the writer cannot know whether a report was applied (the command may have run
//! and only its reply been lost), yet it has told the client 503. It then *revokes* the
//! report: the store remembers its token as revoked, so a delayed write is ignored, and
//! undoes the count if the write did happen. Counts therefore equal the acknowledged reports.

pub mod keys;
pub mod memory;
pub mod redis;

use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::buckets::BucketWidth;
use crate::catalog::{Problem, ServiceId};
use crate::detector::{GapDecision, Incident, IncidentEvent};
use crate::regions::RegionCode;
use crate::reporter::{Fingerprint, hex};

/// One counter of a bucket: a region and a problem category.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    pub region: RegionCode,
    pub problem: Problem,
}

impl Cell {
    /// The hash field that stores this cell: `DE:login`.
    pub fn field(&self) -> String {
        // One per report on the ingest hot path: no formatting machinery.
        let (region, problem) = (self.region.as_str(), self.problem.as_str());
        let mut field = String::with_capacity(region.len() + 1 + problem.len());
        field.push_str(region);
        field.push(':');
        field.push_str(problem);
        field
    }

    /// Parses a hash field written by [`Cell::field`].
    pub fn parse_field(field: &str) -> Option<Self> {
        let (region, problem) = field.split_once(':')?;
        Some(Self {
            region: RegionCode::parse(region).ok()?,
            problem: Problem::parse(problem).ok()?,
        })
    }
}

/// A process-unique id of one report, used to revoke it (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportToken(u128);

impl ReportToken {
    /// A new token: a random per-process prefix and a counter, unique across replicas.
    pub fn next() -> Self {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 8];
            // Without OS randomness, fall back to the clock: still unique per process start.
            if getrandom::fill(&mut bytes).is_err() {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                bytes = (nanos ^ u64::from(std::process::id())).to_le_bytes();
            }
            u64::from_le_bytes(bytes)
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self((u128::from(prefix) << 64) | u128::from(n))
    }

    /// Lower-case hex, as stored.
    pub fn to_hex(self) -> String {
        hex(&self.0.to_be_bytes())
    }
}

/// One report, ready to be written.
#[derive(Debug, Clone)]
pub struct Report {
    pub service: ServiceId,
    pub cell: Cell,
    pub reporter: Fingerprint,
    /// The fingerprint of the reporter's address alone, set when the number of reporters per
    /// address is limited (`StoreSettings::max_reporters_per_address`).
    pub address: Option<Fingerprint>,
    /// Start (Unix seconds) of the fine bucket the report falls in.
    pub bucket: i64,
    pub token: ReportToken,
}

/// Distinct reporters of one cell in one fine bucket, from recorded history
/// (`downradar import`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCount {
    pub service: ServiceId,
    /// Start (Unix seconds) of the fine bucket.
    pub bucket: i64,
    pub cell: Cell,
    pub count: u64,
}

/// What [`Store::add_history`] added, in reports. The rest were older than every retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryAdded {
    /// Added to their fine buckets (and to the hourly roll-up).
    pub fine: u64,
    /// Added to the hourly roll-up only: past the fine buckets' retention, within the
    /// roll-up's.
    pub rollup_only: u64,
}

impl HistoryAdded {
    /// Reports added anywhere.
    pub fn total(&self) -> u64 {
        self.fine + self.rollup_only
    }

    /// Counts `reports` of one row: added to the fine bucket (and so to the roll-up), to the
    /// roll-up only, or (neither) skipped.
    fn count(&mut self, reports: u64, to_fine: bool, to_rollup: bool) {
        if to_fine {
            self.fine += reports;
        } else if to_rollup {
            self.rollup_only += reports;
        }
    }
}

impl std::ops::AddAssign for HistoryAdded {
    fn add_assign(&mut self, other: Self) {
        self.fine += other.fine;
        self.rollup_only += other.rollup_only;
    }
}

/// What the store did with one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted: the reporter was new for this service in the dedup window (or this very
    /// report, by its token, was counted when recorded before).
    Counted,
    /// Not counted: the reporter was already counted in the window.
    Duplicate,
    /// Not counted: its address already had the most reporters allowed in the window.
    Capped,
    /// Ignored: the report had already been revoked.
    Revoked,
}

/// Which series of buckets to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// The fine buckets of `--bucket` width.
    Fine,
    /// The hourly roll-up.
    Hourly,
}

/// Counts of one bucket; cells with no reports are absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCounts {
    /// Bucket start, Unix seconds.
    pub start: i64,
    pub cells: Vec<(Cell, u64)>,
}

/// How the store keeps data.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    pub bucket: BucketWidth,
    /// How long fine buckets are kept.
    pub retention: Duration,
    /// How long hourly roll-ups are kept.
    pub rollup_retention: Duration,
    /// How long a counted reporter is not counted again for the same service.
    pub dedup_window: Duration,
    /// Most reporters counted per address (IPv4 address, IPv6 /64 or `--ipv6-limit-prefix`) per service within the
    /// dedup window; `None`: no limit. Reporters behind one address differ by `client_id`.
    pub max_reporters_per_address: Option<NonZeroU32>,
    /// How long incident events stay on the event stream (for SSE clients resuming with
    /// `Last-Event-ID`); older ones are trimmed when new events are added. Incident records
    /// are kept for `rollup_retention` after the incident's start.
    pub event_retention: Duration,
}

impl StoreSettings {
    /// How long a revoked token is remembered: far longer than any write can be delayed.
    pub const REVOCATION_TTL: Duration = Duration::from_secs(600);

    /// Unix second at which a bucket of `granularity` starting at `start` expires. With
    /// one-hour buckets the fine bucket is the roll-up, and it is kept as long as either says.
    pub fn expires_at(&self, granularity: Granularity, start: i64) -> i64 {
        let secs = whole_secs;
        let rollup = start + crate::buckets::ROLLUP_SECS + secs(self.rollup_retention);
        match granularity {
            Granularity::Fine if self.bucket.secs() == crate::buckets::ROLLUP_SECS => {
                rollup.max(start + self.bucket.secs() + secs(self.retention))
            }
            Granularity::Fine => start + self.bucket.secs() + secs(self.retention),
            Granularity::Hourly => rollup,
        }
    }

    /// Width in seconds of the buckets of `granularity`.
    pub fn width(&self, granularity: Granularity) -> i64 {
        match granularity {
            Granularity::Fine => self.bucket.secs(),
            Granularity::Hourly => crate::buckets::ROLLUP_SECS,
        }
    }
}

/// Which cells a [`Store::sums`] adds up: those in `region` with `problem` (`None`: any).
#[derive(Debug, Clone, Copy, Default)]
pub struct CellFilter<'a> {
    pub region: Option<RegionCode>,
    pub problem: Option<&'a str>,
}

impl CellFilter<'_> {
    pub fn matches(&self, cell: &Cell) -> bool {
        self.region.is_none_or(|r| cell.region == r)
            && self.problem.is_none_or(|p| cell.problem.as_str() == p)
    }

    /// The sum of the counts of the matching cells.
    pub fn sum<'c>(&self, cells: impl IntoIterator<Item = (&'c Cell, &'c u64)>) -> u64 {
        cells
            .into_iter()
            .filter(|(cell, _)| self.matches(cell))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The detector's persisted state: where it stopped and each service's model, as written by
/// the commits so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectorSnapshot {
    /// Start (Unix seconds) of the next bucket the detector has not processed yet.
    pub cursor: i64,
    /// Each service's latest saved state, sorted by service.
    pub services: Vec<SavedState>,
    /// The last commit's decisions on buckets without any report that replaying the states
    /// saved before its cursor may cross (see [`GapDecision`]), oldest first.
    pub gaps: Vec<GapDecision>,
}

/// One service's detector state as a commit saved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    pub service: ServiceId,
    /// The cursor of the commit that saved it: the start of the first bucket the state has
    /// not processed. A commit saves only some services' states (see [`DetectorCommit`]), so
    /// this may be older than [`DetectorSnapshot::cursor`]; never newer.
    pub cursor: i64,
    /// The detector's encoding (opaque to the store).
    pub state: Vec<u8>,
}

/// One step of the detector, written atomically by its leader.
#[derive(Debug, Clone, Copy)]
pub struct DetectorCommit<'a> {
    /// The lease holder writing; the commit is refused when it no longer holds the lease.
    pub holder: &'a str,
    /// The cursor of the saved state this step continues from (`None`: there is none yet).
    /// The commit is refused, as [`StoreError::LeaseLost`], when the store holds another: a
    /// leader cut off from the store while another led and committed, which then takes the
    /// lease again, must reload instead of writing its stale state over the newer one and
    /// announcing again what was announced.
    pub continues_from: Option<i64>,
    /// The new cursor (see [`DetectorSnapshot::cursor`]).
    pub cursor: i64,
    /// The states saved by this step, each at `cursor`; not every service's (see
    /// [`crate::detector::Detector::checkpoint`]): the others keep the cursor they were saved
    /// at.
    pub states: &'a [(ServiceId, Vec<u8>)],
    /// Services whose saved states are deleted (they left the catalog).
    pub forget: &'a [ServiceId],
    /// The decisions on buckets without any report that a replay of the saved states may
    /// cross ([`crate::detector::Detector::gap_decisions`]); they replace the last commit's.
    pub gaps: &'a [GapDecision],
    /// The events decided in this step, in order. Each is appended to the event stream and
    /// updates the record of its incident.
    pub events: &'a [IncidentEvent],
    /// Open incidents whose figures (`expected_per_min`, `observed_per_min`, averaged over
    /// the incident so far) moved since their records were written, with no event in this
    /// step: their records are rewritten, and nothing is appended to the stream (an
    /// `incident.updated` announces a change of scope, regions, problems or cause, not of
    /// figures). A record the store no longer holds open (resolved, or expired) is left as
    /// it is.
    pub refreshed: &'a [Incident],
}

/// Which incidents to list, newest first: by start, and by id (descending) among incidents
/// that started in the same second.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    /// Only open incidents.
    pub active_only: bool,
    /// Only incidents of this service.
    pub service: Option<ServiceId>,
    /// Only incidents that started at or after this Unix second.
    pub since: Option<i64>,
    /// Only incidents that started before this Unix second.
    pub until: Option<i64>,
    /// Only incidents after this one in the listing order, given as its (start, id): the
    /// last incident of the previous page (a pagination cursor).
    pub after: Option<(i64, String)>,
    /// Only incidents whose record also matches these.
    pub filter: IncidentFilter,
    /// At most this many.
    pub limit: usize,
}

/// Conditions on an incident's record (its attribution).
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only incidents affecting this region.
    pub region: Option<crate::regions::RegionCode>,
    /// Only incidents of this scope.
    pub scope: Option<crate::detector::Scope>,
    /// Only partial (`true`) or only full (`false`) outages.
    pub partial: Option<bool>,
    /// Only incidents in this state.
    pub status: Option<crate::detector::IncidentStatus>,
}

impl IncidentFilter {
    /// Whether `incident` meets every condition.
    pub fn matches(&self, incident: &Incident) -> bool {
        self.region.is_none_or(|r| incident.regions.contains(&r))
            && self.scope.is_none_or(|s| incident.scope == s)
            && self.partial.is_none_or(|p| incident.partial == p)
            && self.status.is_none_or(|s| incident.status == s)
    }
}

impl IncidentQuery {
    /// Whether the incident `id` that started at `start` is in the query's range of starts
    /// and after its cursor (its record's conditions are [`IncidentQuery::filter`]'s).
    pub(crate) fn in_range(&self, start: i64, id: &str) -> bool {
        self.since.is_none_or(|since| start >= since)
            && self.until.is_none_or(|until| start < until)
            && self
                .after
                .as_ref()
                .is_none_or(|(s, i)| (start, id) < (*s, i.as_str()))
    }
}

/// A stream id `<ms>-<seq>` as (milliseconds, sequence).
pub type StreamId = (u64, u64);

/// Where the event stream stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamBounds {
    /// The id of the last event ever added (`(0, 0)`: none yet).
    pub last: StreamId,
    /// The stream holds nothing up to this id any more, or never did: events up to it were
    /// trimmed away, or the stream was reset (an untrimmed stream whose first entry comes
    /// after an id a reader saw was made anew, by a store restarted without its data, and
    /// what the reader knew is gone). Every event after it is still there. A reader that
    /// last saw an id before this one may have missed events. `(0, 0)`: the stream has held
    /// every event since its first.
    pub trimmed_through: StreamId,
    /// Whether entries were ever trimmed from this stream (by retention). Redis trims whole
    /// blocks of entries, so after a quiet spell longer than the retention the next event's
    /// trim can take the last one a reader saw: that stream was not made anew.
    pub trimmed: bool,
}

impl StreamBounds {
    /// Whether a reader that has read the stream through `read` finds it made anew (by a
    /// store restarted without its data): it ends before that id, or holds nothing from
    /// before that id although nothing was ever trimmed from it.
    pub fn reset_since(&self, read: StreamId) -> bool {
        read != (0, 0) && (self.last < read || !self.trimmed && self.trimmed_through > read)
    }

    /// Whether a reader's last entry `read`, which the stream no longer `holds`, was lost
    /// rather than trimmed by retention: the store went back to an older state (a Redis
    /// restarted from a snapshot), and the ids it adds since are new ones, after `read`, for
    /// events the reader may have had under other ids.
    pub fn lost(&self, read: StreamId, holds: bool) -> bool {
        read != (0, 0) && !holds && self.trimmed_through < read
    }
}

/// The id just before `id`: what a stream starting at `id` does not hold.
pub(crate) fn just_before((ms, seq): StreamId) -> StreamId {
    match (ms, seq) {
        (0, 0) => (0, 0),
        (ms, 0) => (ms - 1, u64::MAX),
        (ms, seq) => (ms, seq - 1),
    }
}

/// An incident with every event it went through, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    pub incident: Incident,
    pub events: Vec<IncidentEvent>,
}

/// What one wait on the event stream read ([`Store::wait_events`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamRead {
    /// The events, oldest first.
    pub events: Vec<StreamEvent>,
    /// The id of the last entry read: past the last event when entries that are not events
    /// this version can read (another version's, or written by hand) were passed over. The
    /// next read starts after it, so such an entry is skipped once, not read again and again.
    pub through: Option<StreamId>,
}

/// An event read back from the event stream, with its stream id (`<ms>-<seq>`).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub id: String,
    pub event: IncidentEvent,
}

/// The service and start (Unix seconds) of the incident id `<service>-<start>`, when `id` is
/// exactly what [`Incident::id_for`] writes for them; `None` for anything else.
pub(crate) fn parse_incident_id(id: &str) -> Option<(ServiceId, i64)> {
    let (service, start) = id.rsplit_once('-')?;
    let service = ServiceId::parse(service).ok()?;
    let start: i64 = start.parse().ok()?;
    (Incident::id_for(&service, start) == id).then_some((service, start))
}

/// The service part of an incident id (everything before the last `-`).
pub(crate) fn incident_service(id: &str) -> Option<&str> {
    id.rsplit_once('-').map(|(service, _)| service)
}

/// A stream id as (milliseconds, sequence): `<ms>-<seq>`, or `<ms>` for `<ms>-0` (as Redis
/// reads an incomplete start id), so `0` is the position before every event. `None` when it
/// is neither.
pub(crate) fn parse_stream_id(s: &str) -> Option<(u64, u64)> {
    let number = |part: &str| {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse::<u64>().ok()
    };
    match s.split_once('-') {
        Some((ms, seq)) => Some((number(ms)?, number(seq)?)),
        None => Some((number(s)?, 0)),
    }
}

/// A lease time to live in milliseconds, as both stores apply it: at least 1 ms (Redis refuses
/// `PX 0`) and at most about 34 years.
pub(crate) fn lease_millis(ttl: Duration) -> i64 {
    ttl.as_millis().clamp(1, 1 << 40) as i64
}

/// Whole seconds of `d`, saturating.
pub(crate) fn whole_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// The JSON of an event and of its incident, as both stores keep them.
pub(crate) fn to_json(event: &IncidentEvent) -> Result<(String, String), StoreError> {
    Ok((encode_json(event)?, encode_json(&event.incident)?))
}

/// An incident event or record as JSON.
pub(crate) fn encode_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode an incident or its event: {e}")))
}

/// Stored JSON read back; what does not parse (only a bug or a foreign writer could store
/// it) is logged and left out.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Option<T> {
    serde_json::from_str(json)
        .inspect_err(
            |e| tracing::warn!(what, error = %e, "ignoring a stored record that does not parse"),
        )
        .ok()
}

impl IncidentRecord {
    /// The record of incident `id` from its stored JSON (the incident and its events);
    /// `None` when the incident does not parse, and events that do not parse are skipped.
    pub(crate) fn from_json(id: &str, incident: &str, events: &[String]) -> Option<Self> {
        Some(Self {
            incident: parse_json(incident, id)?,
            events: events
                .iter()
                .filter_map(|json| parse_json(json, id))
                .collect(),
        })
    }
}

/// A store failure. Callers answer 503: the store may be back in a moment.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer in time.
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    /// The store answered with an error, or the connection failed.
    #[error("store error: {0}")]
    Backend(String),
    /// The store could not be reached at all: the call was provably never sent.
    #[error("store unreachable: {0}")]
    Unreachable(String),
    /// This replica's settings disagree with the deployment's, so its writes would be lost
    /// (another `--bucket` than the detector leader's); the call was not sent.
    #[error("{0}")]
    Misconfigured(String),
    /// A detector commit was refused: the writer no longer holds the leader lease, or the
    /// saved state it continues from is no longer the store's (another leader committed
    /// since, or the store lost its data).
    #[error(
        "the detector commit was refused: the lease is held by another process, or the saved \
         state moved on (another leader committed, or the store lost its data)"
    )]
    LeaseLost,
}

/// Durable report counts.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and metrics: `memory` or `redis`.
    fn kind(&self) -> &'static str;

    /// Records a batch in one round trip; one outcome per report, in order. Each report is
    /// applied atomically (dedup check and count together); on error, any subset of the batch
    /// may have been applied, and the caller must [`revoke`](Store::revoke) the whole batch.
    /// Recording a report again (its token) is harmless: it is counted once, and answered
    /// [`Recorded::Counted`] again while its dedup marker lasts, so a batch may be re-sent.
    async fn record(&self, batch: &[Report]) -> Result<Vec<Recorded>, StoreError>;

    /// Undoes reports whose acknowledgement never reached the client, whether or not they
    /// were applied, and makes sure they are ignored should they arrive later. Idempotent.
    async fn revoke(&self, reports: &[Report]) -> Result<(), StoreError>;

    /// Adds recorded history to the fine buckets and the hourly roll-up, as if its reporters
    /// had reported then (no dedup: history already counts distinct reporters). Buckets whose
    /// retention has already run out are skipped. Adding the same history twice counts it
    /// twice. Returns how many reports were added, and where.
    async fn add_history(&self, counts: &[HistoryCount]) -> Result<HistoryAdded, StoreError>;

    /// A number that changes whenever counts of `service` that were already written change
    /// ([`revoke`](Store::revoke) undoing a count, [`add_history`](Store::add_history)); a
    /// new report changes its bucket only. Readers that keep past buckets' counts check it.
    async fn generation(&self, service: &ServiceId) -> Result<u64, StoreError>;

    /// Counts of `service` in the buckets of `granularity` whose start is in `[from, until)`,
    /// in time order; empty buckets are left out.
    async fn counts(
        &self,
        service: &ServiceId,
        granularity: Granularity,
        from: i64,
        until: i64,
    ) -> Result<Vec<BucketCounts>, StoreError>;

    /// [`Store::counts`] of each of `services`, in their order. (The detector reads every
    /// service's new buckets each tick: a store over the network answers them together.)
    async fn counts_many(
        &self,
        services: &[ServiceId],
        granularity: Granularity,
        from: i64,
        until: i64,
    ) -> Result<Vec<Vec<BucketCounts>>, StoreError> {
        let mut out = Vec::with_capacity(services.len());
        for service in services {
            out.push(self.counts(service, granularity, from, until).await?);
        }
        Ok(out)
    }

    /// Per bucket of [`Store::counts`], the sum of the cells in `region` with `problem` (each
    /// `None`: any), as (start, sum); buckets with nothing matching may be left out.
    async fn sums(
        &self,
        service: &ServiceId,
        granularity: Granularity,
        from: i64,
        until: i64,
        of: CellFilter<'_>,
    ) -> Result<Vec<(i64, u64)>, StoreError>;

    /// Succeeds when the store answers (and, on Redis, is not too old to run the scripts).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Takes the detector lease for `holder` when nobody holds it, or renews it when `holder`
    /// already does; either way it then expires `ttl` from now. False: another holder has it.
    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives the lease up if `holder` holds it, so another replica takes over at once.
    async fn release_lease(&self, holder: &str) -> Result<(), StoreError>;

    /// The detector's saved state, if any: the last commit's cursor and each service's
    /// latest save.
    async fn load_detector(&self) -> Result<Option<DetectorSnapshot>, StoreError>;

    /// One service's detector state as last saved, if it has one.
    async fn detector_state(&self, service: &ServiceId) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes one detector step atomically: the cursor, the states saved, the gap decisions,
    /// the events on the stream and the incident records. [`StoreError::LeaseLost`] (and
    /// nothing of the step written; the Redis store may leave states it sent ahead under
    /// keys of `holder` that expire) when `holder` does not hold the lease or the saved
    /// cursor is not the one the step continues from. Returns the stream ids of the events,
    /// in order.
    async fn commit_detector(&self, commit: DetectorCommit<'_>) -> Result<Vec<String>, StoreError>;

    /// Incidents matching `query`, newest start first.
    async fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>, StoreError>;

    /// One incident with its events, if it exists (and has not expired).
    async fn incident(&self, id: &str) -> Result<Option<IncidentRecord>, StoreError>;

    /// Events on the stream after the stream id `after` (`0` for the oldest retained), oldest
    /// first, at most `limit`.
    async fn events_after(&self, after: &str, limit: usize)
    -> Result<Vec<StreamEvent>, StoreError>;

    /// Like [`Store::events_after`], but when there is no such entry yet, waits up to `wait`
    /// for one to be added (and then returns what was added), and says how far it read. One
    /// caller per process (the event fan-out) uses it: in Redis it blocks a connection of its
    /// own.
    async fn wait_events(
        &self,
        after: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<StreamRead, StoreError>;

    /// The last event id and how far the stream has been trimmed.
    async fn stream_bounds(&self) -> Result<StreamBounds, StoreError>;

    /// Whether the stream still holds the entry `id`. A reader's last entry gone from a
    /// stream that goes on past it, and not trimmed away, means the store lost entries it had
    /// (Redis restarted from an older snapshot) and added new ones since: see
    /// [`StreamBounds::lost`].
    async fn holds_event(&self, id: StreamId) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_made_anew_is_told_from_one_trimmed() {
        let bounds = |last, trimmed_through, trimmed| StreamBounds {
            last,
            trimmed_through,
            trimmed,
        };
        // Read through its last event, or not yet through it: no reset.
        assert!(!bounds((10, 0), (0, 0), false).reset_since((10, 0)));
        assert!(!bounds((12, 0), (4, 0), true).reset_since((10, 0)));
        // Trimmed down to nothing, or trimmed (a whole block) past what was read after a
        // quiet spell: not made anew.
        assert!(!bounds((10, 0), (10, 0), true).reset_since((10, 0)));
        assert!(!bounds((15, 0), (14, u64::MAX), true).reset_since((10, 0)));
        // Gone (ending before what was read), or begun after it with nothing trimmed.
        assert!(bounds((0, 0), (0, 0), false).reset_since((10, 0)));
        assert!(bounds((15, 0), (14, u64::MAX), false).reset_since((10, 0)));
        // A reader that has read nothing has nothing to lose.
        assert!(!bounds((0, 0), (0, 0), false).reset_since((0, 0)));
    }

    #[test]
    fn cell_fields_read_back() {
        let cell = Cell::parse_field("DE:video-upload").unwrap();
        assert_eq!(cell.region.as_str(), "DE");
        assert_eq!(cell.problem.as_str(), "video-upload");
        assert_eq!(cell.field(), "DE:video-upload");
    }

    #[test]
    fn incident_ids_parse_only_as_written() {
        let tiktok = ServiceId::parse("tiktok").unwrap();
        assert_eq!(
            parse_incident_id("tiktok-1795262460"),
            Some((tiktok, 1_795_262_460))
        );
        assert_eq!(
            parse_incident_id("aws-cloudfront-60"),
            Some((ServiceId::parse("aws-cloudfront").unwrap(), 60))
        );
        for bad in [
            "tiktok",
            "tiktok-",
            "-5",
            "tiktok-+5",
            "tiktok-05",
            "Tik-5",
            "tiktok-x",
        ] {
            assert_eq!(parse_incident_id(bad), None, "{bad:?}");
        }
        assert_eq!(
            incident_service("aws-cloudfront-60"),
            Some("aws-cloudfront")
        );
    }

    #[test]
    fn stream_ids_parse_as_redis_reads_a_start() {
        assert_eq!(parse_stream_id("0"), Some((0, 0)));
        assert_eq!(
            parse_stream_id("1795262460000-3"),
            Some((1_795_262_460_000, 3))
        );
        assert_eq!(
            parse_stream_id("1795262460000"),
            Some((1_795_262_460_000, 0))
        );
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "+1",
            "1.5",
            "a-1",
            "18446744073709551616",
        ] {
            assert_eq!(parse_stream_id(bad), None, "{bad:?}");
        }
    }
}
