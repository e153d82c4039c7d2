//! A cache of the settled part of report series, per process.
//!
//! A series over its longest range reads 30,000 buckets (on Redis about 0.14 s of CPU in all),
//! and a dashboard asks for the same series again and again, a little further on each time.
//! Buckets that ended more than [`SETTLED_AFTER`] ago take no more reports, so their sums are
//! kept, per service, granularity and filter, and a request reads from the store only what
//! the cache does not hold: the buckets after it (the newest, which may still change), or the
//! whole range when it starts before what is held. Settled buckets still change in two ways,
//! and both move the service's generation in the store ([`Store::generation`]), which every
//! read checks: reports revoked once a store failure is over, and history added
//! (`downradar import`). Sums read in full are read again after [`FRESH_FOR`] all the same
//! (buckets expire, for one). The cache holds at most [`MAX_SLOTS`] buckets' sums (8 bytes
//! each), forgetting the series used longest ago first (down to nine tenths of it at once).
//!
//! [`Store::generation`]: crate::store::Store::generation

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::buckets::align;
use crate::catalog::{Problem, ServiceId};
use crate::regions::RegionCode;
use crate::store::{CellFilter, Granularity};

/// How long after its end a bucket is settled: reports are written within milliseconds of
/// their arrival, and a write in doubt gives up within two seconds.
pub const SETTLED_AFTER: i64 = 60;
/// How long sums read in full are used before they are read again.
pub const FRESH_FOR: Duration = Duration::from_secs(600);
/// Most buckets' sums held, all series together (32 MiB).
pub const MAX_SLOTS: usize = 4 << 20;

/// One series: a service's buckets of one granularity, with a filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    service: ServiceId,
    granularity: Granularity,
    region: Option<RegionCode>,
    problem: Option<Problem>,
}

/// The settled sums of one series held: bucket `from + i * width` has `sums[i]`, as of the
/// service's generation `generation`.
#[derive(Debug)]
struct Entry {
    from: i64,
    width: i64,
    generation: u64,
    sums: Vec<u64>,
    read_at: Instant,
    used: u64,
}

impl Entry {
    fn until(&self) -> i64 {
        self.from + self.sums.len() as i64 * self.width
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    slots: usize,
    uses: u64,
}

impl Inner {
    /// Forgets the series used longest ago, in one pass, until the rest fill at most
    /// [`EVICT_TO`] of the cap: a cache kept full by a client going through many series
    /// pays for a sort now and then, not for a scan of every entry on every read.
    fn evict(&mut self) {
        let mut by_use: Vec<(u64, Key)> = self
            .entries
            .iter()
            .map(|(key, entry)| (entry.used, key.clone()))
            .collect();
        by_use.sort_unstable_by_key(|&(used, _)| used);
        let keep = MAX_SLOTS / 10 * EVICT_TO;
        for (_, key) in by_use {
            if self.slots <= keep {
                break;
            }
            if let Some(old) = self.entries.remove(&key) {
                self.slots -= old.sums.len();
            }
        }
    }
}

/// Tenths of [`MAX_SLOTS`] left held after an eviction.
const EVICT_TO: usize = 9;

/// The cache (see the module's documentation).
#[derive(Debug, Default)]
pub struct SeriesCache {
    inner: Mutex<Inner>,
}

/// A series by its service, granularity and filter, and the read of it: its buckets are
/// `width` apart, and the service's counts were at `generation` when the read began.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRead<'a> {
    pub service: &'a ServiceId,
    pub granularity: Granularity,
    pub filter: CellFilter<'a>,
    pub width: i64,
    pub generation: u64,
}

impl SeriesRead<'_> {
    fn key(&self) -> Key {
        Key {
            service: self.service.clone(),
            granularity: self.granularity,
            region: self.filter.region,
            problem: self.filter.problem.and_then(|p| Problem::parse(p).ok()),
        }
    }
}

/// How a read is served: what the cache holds of it (the sums of the buckets from the read's
/// start up to `from`, one per bucket), and `[from, until)` from the store (nothing when
/// `from` is the read's end).
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub held: Vec<u64>,
    pub from: i64,
}

impl SeriesCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How to serve `read` of the buckets starting in `[since, until)`, at `at`.
    pub fn plan(&self, read: SeriesRead<'_>, (since, until): (i64, i64), at: Instant) -> Plan {
        let key = read.key();
        let mut inner = self.inner();
        inner.uses += 1;
        let uses = inner.uses;
        let whole = Plan {
            held: Vec::new(),
            from: since,
        };
        let Some(entry) = inner.entries.get_mut(&key) else {
            return whole;
        };
        let usable = entry.width == read.width
            && entry.generation == read.generation
            && at.saturating_duration_since(entry.read_at) < FRESH_FOR
            && entry.from <= since
            && since < entry.until();
        if !usable {
            return whole;
        }
        entry.used = uses;
        let from = entry.until().min(until);
        let first = ((since - entry.from) / read.width) as usize;
        let last = ((from - entry.from) / read.width) as usize;
        Plan {
            held: entry.sums[first..last].to_vec(),
            from,
        }
    }

    /// Keeps what `read` (planned from `since`) got from the store at `at`: `sums`, one per
    /// bucket from `from`, as far as they are settled at `now` (Unix seconds). Read from the
    /// read's start, they replace what was held; read from the end of what was held, they
    /// extend it.
    pub fn keep(
        &self,
        read: SeriesRead<'_>,
        (since, from): (i64, i64),
        sums: &[u64],
        (now, at): (i64, Instant),
    ) {
        let width = read.width;
        let settled = ((settled_until(now, width) - from).max(0) / width) as usize;
        let settled = &sums[..settled.min(sums.len())];
        if settled.is_empty() {
            return;
        }
        let key = read.key();
        let mut inner = self.inner();
        inner.uses += 1;
        let uses = inner.uses;
        let mut freed = 0;
        match inner.entries.get_mut(&key) {
            Some(entry) if from > since => {
                // Only where the entry ends, as of the same counts: it may have been
                // replaced meanwhile.
                if entry.width != width
                    || entry.generation != read.generation
                    || entry.until() != from
                {
                    return;
                }
                // Exactly: what is held is what is counted against the cap.
                entry.sums.reserve_exact(settled.len());
                entry.sums.extend_from_slice(settled);
                entry.used = uses;
            }
            _ if from > since => return,
            _ => {
                let entry = Entry {
                    from,
                    width,
                    generation: read.generation,
                    sums: settled.to_vec(),
                    read_at: at,
                    used: uses,
                };
                if let Some(old) = inner.entries.insert(key, entry) {
                    freed = old.sums.len();
                }
            }
        }
        inner.slots = inner.slots + settled.len() - freed;
        if inner.slots > MAX_SLOTS {
            inner.evict();
        }
    }

    /// Buckets' sums held, all series together.
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.inner().slots
    }
}

/// The start of the first bucket of `width` that is not settled at `now` (a bucket is settled
/// once [`SETTLED_AFTER`] has passed since its end).
fn settled_until(now: i64, width: i64) -> i64 {
    align(now - SETTLED_AFTER, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 60;

    fn series(service: &ServiceId) -> SeriesRead<'_> {
        SeriesRead {
            service,
            granularity: Granularity::Fine,
            filter: CellFilter::default(),
            width: W,
            generation: 0,
        }
    }

    /// A read planned and kept: buckets `[since, until)` whose sums are their start in
    /// minutes, at `now`; returns the plan.
    fn read(
        cache: &SeriesCache,
        s: SeriesRead<'_>,
        range: (i64, i64),
        now: i64,
        at: Instant,
    ) -> Plan {
        let plan = cache.plan(s, range, at);
        let sums: Vec<u64> = (plan.from..range.1)
            .step_by(W as usize)
            .map(|t| (t / W) as u64)
            .collect();
        cache.keep(s, (range.0, plan.from), &sums, (now, at));
        plan
    }

    #[test]
    fn settled_buckets_are_held_and_the_rest_is_read() {
        let cache = SeriesCache::new();
        let service = ServiceId::parse("tiktok").unwrap();
        let s = series(&service);
        let t0 = Instant::now();
        let now = 1_000 * W + 30;
        // The first read takes everything; the buckets that ended a minute ago are kept.
        let plan = read(&cache, s, (900 * W, 1_001 * W), now, t0);
        assert_eq!(
            plan,
            Plan {
                held: Vec::new(),
                from: 900 * W
            }
        );
        assert_eq!(settled_until(now, W), 999 * W);
        assert_eq!(cache.slots(), 99);
        // Again: what is settled is held, the last two buckets are read.
        let plan = read(&cache, s, (900 * W, 1_001 * W), now, t0);
        assert_eq!(plan.from, 999 * W);
        assert_eq!(plan.held, (900..999).collect::<Vec<u64>>());
        // A minute on, a range a minute on: held from its start, and grown by what settled.
        let plan = read(&cache, s, (901 * W, 1_002 * W), now + W, t0);
        assert_eq!((plan.from, plan.held.len()), (999 * W, 98));
        assert_eq!(cache.slots(), 100);
        assert_eq!(cache.plan(s, (901 * W, 1_002 * W), t0).from, 1_000 * W);
        // A range within what is held reads nothing.
        let plan = cache.plan(s, (950 * W, 960 * W), t0);
        assert_eq!((plan.from, plan.held.len()), (960 * W, 10));
        // One starting before it, another filter, another width: read whole.
        assert_eq!(cache.plan(s, (899 * W, 960 * W), t0).from, 899 * W);
        let mut other = s;
        other.filter.problem = Some("login");
        assert_eq!(cache.plan(other, (950 * W, 960 * W), t0).from, 950 * W);
        let mut wider = s;
        wider.width = 2 * W;
        assert_eq!(cache.plan(wider, (950 * W, 960 * W), t0).from, 950 * W);
        // Counts changed in the store (a new generation): read whole, and held anew.
        let mut changed = s;
        changed.generation = 1;
        assert_eq!(cache.plan(changed, (950 * W, 960 * W), t0).from, 950 * W);
        read(&cache, changed, (950 * W, 1_002 * W), now + W, t0);
        assert_eq!(cache.slots(), 50, "the entry was replaced");
        assert_eq!(cache.plan(changed, (950 * W, 960 * W), t0).held.len(), 10);
        assert!(cache.plan(s, (950 * W, 960 * W), t0).held.is_empty());
        // What was read in full is read again once it is no longer fresh.
        let later = t0 + FRESH_FOR;
        assert_eq!(cache.plan(changed, (950 * W, 960 * W), later).from, 950 * W);
    }

    #[test]
    fn the_series_used_longest_ago_are_forgotten_first() {
        let cache = SeriesCache::new();
        let services: Vec<ServiceId> = ["a", "b", "c"]
            .iter()
            .map(|s| ServiceId::parse(s).unwrap())
            .collect();
        let t0 = Instant::now();
        let half = (MAX_SLOTS / 2) as i64;
        let now = (half + 10) * W;
        read(&cache, series(&services[0]), (0, half * W), now, t0);
        read(&cache, series(&services[1]), (0, half * W), now, t0);
        assert_eq!(cache.slots(), MAX_SLOTS);
        // `a` is used again, so `b` goes when `c` comes.
        assert!(!cache.plan(series(&services[0]), (0, W), t0).held.is_empty());
        read(&cache, series(&services[2]), (0, 10 * W), now, t0);
        assert_eq!(
            cache.slots(),
            MAX_SLOTS / 2 + 10,
            "down to 90 % of the cap at most"
        );
        assert!(cache.plan(series(&services[1]), (0, W), t0).held.is_empty());
        assert!(!cache.plan(series(&services[0]), (0, W), t0).held.is_empty());
    }
}
