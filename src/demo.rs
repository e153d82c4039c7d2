//! `serve --demo`: synthetic crowd traffic that keeps the live detector busy, so anyone can
//! watch incidents open, update and resolve within minutes of starting the server.
//!
//! Everything here is SYNTHETIC, drawn from the model of `downradar simulate` (one
//! [`Scenario`] with the same seed for history and live traffic, so they join without a
//! seam):
//!
//! 1. [`Demo::prepare`] (before the detector starts) refuses a store that holds anything,
//!    picks a few real catalog services including dependency pairs (see [`SERVICES`]), and
//!    adds three days of quiet history through [`Store::add_history`], so the detector's
//!    warm-up learns baselines from it.
//! 2. [`Demo::run`] then writes live reports through [`Store::record`], each a distinct
//!    reporter, at their time on the app's [`Clock`]; tokio only paces the loop. Every few
//!    minutes one scripted outage starts (global, cascading into dependents, regional or
//!    partial, in turn), the first one in the minute the server starts (a one-minute global
//!    outage of the busiest service with a quick recovery, so that its incident opens within
//!    seconds and resolves within about two minutes); each start and end is logged.
//!
//! The detector reads the time through [`Demo::clock`], which never runs ahead of the
//! traffic written: it cannot close a bucket the demo has not finished, however the clock
//! jumps (a test's manual clock) or the writes lag (a slow store).
//!
//! Why refuse a store with data rather than share it: synthetic reports would be counted
//! with real ones, in the same buckets, baselines and incidents, with nothing to tell them
//! apart. Use the embedded store or an empty Redis database.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use time::OffsetDateTime;

use crate::buckets::align;
use crate::catalog::{Catalog, Service};
use crate::clock::Clock;
use crate::reporter::{ClientId, ReporterSecret};
use crate::simulate::{CountSampler, Kind, Params, Scenario, ScriptedOutage, TruthOutage};
use crate::store::{
    Granularity, HistoryCount, IncidentQuery, Report, ReportToken, Store, StoreError, StoreSettings,
};

/// `--bucket` under `--demo`: short buckets, so an outage shows within seconds.
pub const DEFAULT_BUCKET: &str = "10s";
/// `--detector-interval` under `--demo`.
pub const DEFAULT_DETECTOR_INTERVAL: &str = "2s";
/// `--detector-warmup` under `--demo`: the history the demo adds.
pub const DEFAULT_DETECTOR_WARMUP: &str = "3d";
/// `--resolve-after` under `--demo`: incidents resolve a minute after reports are back to
/// normal, so the demo shows resolutions within minutes.
pub const DEFAULT_RESOLVE_AFTER: &str = "1m";

/// The services the demo simulates, when the catalog has them (the built-in one does): AWS
/// with Slack and Netflix, Google Cloud with Spotify, for cascades; and some on their own.
/// Their order fixes each one's simulated volume.
pub const SERVICES: [&str; 8] = [
    "aws",
    "slack",
    "netflix",
    "google-cloud",
    "spotify",
    "github",
    "whatsapp",
    "steam",
];

/// Days of history added before the detector starts.
const HISTORY_DAYS: u32 = 3;
/// Days of live traffic; after that the demo stops sending (restart it to run again).
const LIVE_DAYS: u32 = 30;
/// The seed of the simulation: every demo run draws the same services and outages.
const SEED: u64 = 7;
/// Minutes between the starts of two outages.
const OUTAGE_EVERY_MIN: i64 = 4;
/// Minutes a service rests after an outage of it starts, besides the quiet `--resolve-after`
/// before its incident resolves and the confirmation of it (see [`rest_min`]): the outage (up
/// to 4 minutes), its cascade (one more), its recovery tail (up to 15) and two to spare, so
/// that outages never merge.
const REST_BEFORE_RESOLVING_MIN: i64 = 22;
/// Time constant, in minutes, of the first outage's recovery tail: its reports are back at
/// the baseline about a minute after it ends.
const FIRST_TAIL_MIN: f64 = 0.2;
/// The kinds of outages, in turn.
const ROTATION: [Kind; 4] = [Kind::Global, Kind::Cascading, Kind::Regional, Kind::Partial];
/// How often the traffic loop wakes to write the reports that have come due.
const PACE: Duration = Duration::from_millis(250);
/// Rows per history write: small, so each is written well within the store's call timeout
/// even on a busy machine.
const HISTORY_BATCH: usize = 1_000;
/// Most reports per live write.
const LIVE_BATCH: usize = 2_000;
/// The address the synthetic reporters seem to come from: TEST-NET-1 (RFC 5737), which no
/// real client has.
const DEMO_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// The demo's traffic: prepared history, the live schedule and the writer's position.
pub struct Demo {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    written: Arc<WrittenClock>,
    scenario: Scenario,
    sampler: CountSampler,
    /// The next bucket of the scenario to draw.
    next_bucket: u64,
    /// Drawn reports not yet written, as (due Unix milliseconds, service, cell), in order.
    pending: VecDeque<(i64, usize, usize)>,
    /// The live outages, by start; how many have been announced as started, and which of
    /// those have not ended yet.
    outages: Vec<TruthOutage>,
    started: usize,
    ongoing: Vec<usize>,
    secret: ReporterSecret,
    /// Reports written so far (also numbers the synthetic reporters).
    sent: u64,
}

/// The detector's clock under `--demo`: the app's clock, but never past the time up to which
/// the demo has written its traffic.
struct WrittenClock {
    clock: Arc<dyn Clock>,
    /// Unix milliseconds up to which every report is written.
    until_ms: AtomicI64,
}

impl Clock for WrittenClock {
    fn now(&self) -> OffsetDateTime {
        let until = OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(self.until_ms.load(Ordering::Acquire)) * 1_000_000,
        )
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        self.clock.now().min(until)
    }

    fn settled(&self) -> bool {
        self.clock.settled()
    }
}

impl Demo {
    /// Checks that `store` is empty, plans the demo on `catalog` from the clock's now, and
    /// adds its history to the store. Call it before the detector starts.
    pub async fn prepare(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        catalog: &Catalog,
        settings: StoreSettings,
        resolve_after: Duration,
    ) -> anyhow::Result<Self> {
        tracing::warn!(
            "DEMO MODE: every report this server counts is SYNTHETIC, generated by the server \
             itself; its incidents are not real outages"
        );
        let now = clock.now().unix_timestamp();
        ensure_empty(store.as_ref(), catalog, now, &settings).await?;

        let services = select(catalog);
        let width = settings.bucket.secs();
        // Outages are placed in whole minutes from the start, and buckets must fit too.
        let unit = lcm(width, 60);
        let start = align(now, unit) - i64::from(HISTORY_DAYS) * 86_400;
        let params = Params {
            start: OffsetDateTime::from_unix_timestamp(start)?,
            days: HISTORY_DAYS + LIVE_DAYS,
            bucket: settings.bucket,
            seed: SEED,
            outages_per_week: 0.0,
        };
        let first_live = ((align(now, width) - start) / width) as u64;
        let first_minute = (now - start) / 60;
        let script = schedule(&services, &params, first_minute, rest_min(resolve_after))?;
        let scenario = Scenario::scripted(&services, params, &script)
            .context("cannot plan the demo traffic")?;
        let truth = scenario.truth();
        let names: Vec<String> = truth
            .services
            .iter()
            .map(|s| format!("{} ({}/min)", s.id, s.base_per_min))
            .collect();
        tracing::info!(
            services = %names.join(", "),
            history = %format!("{HISTORY_DAYS}d"),
            "demo: adding synthetic history"
        );

        let mut demo = Self {
            written: Arc::new(WrittenClock {
                clock: clock.clone(),
                until_ms: AtomicI64::new(bucket_start(&scenario, first_live) * 1000),
            }),
            store,
            clock,
            sampler: scenario.sampler(),
            next_bucket: 0,
            pending: VecDeque::new(),
            outages: truth.outages,
            started: 0,
            ongoing: Vec::new(),
            secret: ReporterSecret::random().context("cannot generate the demo's key")?,
            sent: 0,
            scenario,
        };
        let added = demo.add_history(first_live).await?;
        tracing::info!(
            reports = added,
            outages = demo.outages.len(),
            every = %format!("{OUTAGE_EVERY_MIN}m"),
            "demo: history added; live synthetic traffic starts with the detector, the first \
             outage at once"
        );
        Ok(demo)
    }

    /// The clock the detector must read under `--demo` (see the module docs).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.written.clone()
    }

    /// Draws the buckets before `first_live` and adds them as history.
    async fn add_history(&mut self, first_live: u64) -> anyhow::Result<u64> {
        let mut batch: Vec<HistoryCount> = Vec::with_capacity(HISTORY_BATCH);
        let mut added = 0;
        while self.next_bucket < first_live {
            let bucket = self.next_bucket;
            let start = bucket_start(&self.scenario, bucket);
            let scenario = &self.scenario;
            self.sampler.bucket(scenario, bucket, |s, cell, count| {
                let (service, region, problem) = scenario.cell(s, cell);
                batch.push(HistoryCount {
                    service: service.clone(),
                    bucket: start,
                    cell: crate::store::Cell {
                        region,
                        problem: problem.clone(),
                    },
                    count,
                });
            });
            self.next_bucket += 1;
            if batch.len() >= HISTORY_BATCH || self.next_bucket == first_live {
                added += self
                    .store
                    .add_history(&batch)
                    .await
                    .context("demo: cannot add the synthetic history")?
                    .total();
                batch.clear();
                tokio::task::yield_now().await;
            }
        }
        Ok(added)
    }

    /// Writes every report that has come due by the clock's now and announces the outages
    /// that started or ended. On a store error the reports stay pending and are written on
    /// the next call (each is a distinct reporter, so one already counted is not counted
    /// twice).
    pub async fn step(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let width_ms = self.scenario.params().bucket.secs() * 1000;
        // Draw every bucket that has begun, spreading its reports evenly over it.
        while self.next_bucket < self.scenario.bucket_count()
            && bucket_start(&self.scenario, self.next_bucket) * 1000 <= now_ms
        {
            let bucket = self.next_bucket;
            let mut drawn = Vec::new();
            self.sampler
                .bucket(&self.scenario, bucket, |s, cell, count| {
                    drawn.extend(std::iter::repeat_n((s, cell), count as usize));
                });
            // Interleave the services (the sampler lists them one after another).
            drawn.sort_by_key(|&(s, cell)| (interleave(s, cell), s));
            let start_ms = bucket_start(&self.scenario, bucket) * 1000;
            let n = drawn.len().max(1) as i64;
            for (i, (s, cell)) in drawn.into_iter().enumerate() {
                self.pending.push_back((
                    start_ms + (2 * i as i64 + 1) * width_ms / (2 * n),
                    s,
                    cell,
                ));
            }
            self.next_bucket += 1;
        }
        while self.pending.front().is_some_and(|&(due, ..)| due <= now_ms) {
            let take = self
                .pending
                .iter()
                .take(LIVE_BATCH)
                .take_while(|&&(due, ..)| due <= now_ms)
                .count();
            let batch: Vec<Report> = self
                .pending
                .iter()
                .take(take)
                .enumerate()
                .map(|(i, &(due, s, cell))| self.report(self.sent + i as u64, due, s, cell))
                .collect();
            self.store.record(&batch).await?;
            self.pending.drain(..take);
            self.sent += take as u64;
        }
        self.written.until_ms.fetch_max(now_ms, Ordering::AcqRel);
        self.announce(now);
        Ok(())
    }

    /// One synthetic report: a reporter of its own, in the bucket it is due in.
    fn report(&self, n: u64, due_ms: i64, s: usize, cell: usize) -> Report {
        let (service, region, problem) = self.scenario.cell(s, cell);
        let width = self.scenario.params().bucket.secs();
        let client = ClientId::parse(&format!("demo-{n}")).ok();
        Report {
            service: service.clone(),
            cell: crate::store::Cell {
                region,
                problem: problem.clone(),
            },
            reporter: self.secret.fingerprint(DEMO_ADDRESS, client.as_ref()),
            address: None,
            bucket: align(due_ms.div_euclid(1000), width),
            token: ReportToken::next(),
        }
    }

    /// Logs the outages that started or ended by `now`.
    fn announce(&mut self, now: OffsetDateTime) {
        while let Some(o) = self.outages.get(self.started).filter(|o| o.start <= now) {
            tracing::info!(
                service = %o.service,
                kind = ?o.kind,
                scope = ?o.scope,
                regions = %list(&o.regions),
                partial = o.partial,
                problems = %list(&o.problems),
                caused_by = %list(&o.caused_by),
                minutes = (o.end - o.start).whole_minutes(),
                ratio = o.peak_ratio,
                "demo: synthetic outage starts"
            );
            self.ongoing.push(self.started);
            self.started += 1;
        }
        let outages = &self.outages;
        self.ongoing.retain(|&i| {
            let o = &outages[i];
            if o.end > now {
                return true;
            }
            tracing::info!(
                service = %o.service,
                kind = ?o.kind,
                "demo: synthetic outage ends (its reports die down over a few minutes)"
            );
            false
        });
    }

    /// Writes the traffic every [`PACE`] until `stop` fires (or the demo's days are over).
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(PACE);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "demo: cannot write the synthetic reports; retrying");
            }
            if self.next_bucket >= self.scenario.bucket_count() && self.pending.is_empty() {
                tracing::info!(
                    days = LIVE_DAYS,
                    "demo: the synthetic traffic is over; restart the server to run it again"
                );
                break;
            }
        }
    }
}

/// The start (Unix seconds) of `bucket` of `scenario`.
fn bucket_start(scenario: &Scenario, bucket: u64) -> i64 {
    let params = scenario.params();
    params.start.unix_timestamp() + bucket as i64 * params.bucket.secs()
}

/// A sort key that deals each service's reports out evenly among the others'.
fn interleave(s: usize, cell: usize) -> usize {
    cell.wrapping_mul(31).wrapping_add(s) % 64
}

/// The services of [`SERVICES`] that `catalog` has; with fewer than three of them (a custom
/// catalog), its first eight services.
fn select(catalog: &Catalog) -> Vec<Service> {
    let named: Vec<Service> = SERVICES
        .iter()
        .filter_map(|id| catalog.get(id).cloned())
        .collect();
    if named.len() >= 3 {
        named
    } else {
        catalog.services().iter().take(8).cloned().collect()
    }
}

/// Minutes a service rests after an outage of it starts, with incidents resolving after
/// `resolve_after` of quiet, confirmed over 2/15 of it before: 24 under `--demo`'s one minute,
/// 39 at the usual 15, 56 at 30. (A fixed 40 left the eight services resting at once under
/// `--demo`: five outages in 20 minutes, then none for 20; and was too short past 20.)
fn rest_min(resolve_after: Duration) -> i64 {
    let quiet = resolve_after.as_secs().div_ceil(60) as usize;
    let confirm = crate::detector::service::Tuning::resolve_confirm(quiet);
    REST_BEFORE_RESOLVING_MIN + (quiet + confirm) as i64
}

/// The outages of the live part, from minute `first` on: one every [`OUTAGE_EVERY_MIN`]
/// minutes while a service can take one, the kinds of [`ROTATION`] in turn, each on a service
/// that has rested `rest` minutes since its last, as have its upstreams (and, for a cascade,
/// its dependents); the first a global outage of the busiest service.
fn schedule(
    services: &[Service],
    params: &Params,
    first: i64,
    rest: i64,
) -> anyhow::Result<Vec<ScriptedOutage>> {
    // The volumes depend only on the seed and the order: draw them once to pick the first.
    let volumes = Scenario::generate(services, params.clone())?
        .truth()
        .services;
    let busiest = (0..services.len())
        .max_by(|&a, &b| volumes[a].base_per_min.total_cmp(&volumes[b].base_per_min))
        .unwrap_or(0);
    let dependents: Vec<Vec<usize>> = services
        .iter()
        .map(|up| {
            services
                .iter()
                .enumerate()
                .filter(|(_, s)| s.depends_on.contains(&up.id))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let can_host = |s: usize, kind: Kind| match kind {
        Kind::Cascading => !dependents[s].is_empty(),
        Kind::Partial => services[s].problems.len() >= 2,
        _ => true,
    };
    let last = i64::from(params.days) * 1440 - rest;
    let mut free_from = vec![first; services.len()];
    let mut script = Vec::new();
    let mut slot = 0usize;
    let mut minute = first;
    while minute < last {
        // The first is short and recovers at once, so that its incident also resolves within
        // the first minutes.
        let (duration, tail_min) = if slot == 0 {
            (1, Some(FIRST_TAIL_MIN))
        } else {
            (2 + (slot % 3) as i64, None)
        };
        let pick = (0..ROTATION.len()).find_map(|k| {
            let kind = ROTATION[(slot + k) % ROTATION.len()];
            let order = (0..services.len()).map(|i| (i + slot) % services.len());
            let mut candidates = std::iter::once(busiest).filter(|_| slot == 0).chain(order);
            candidates
                .find(|&s| {
                    // While an upstream's incident may be open, the detector would rightly
                    // name it the cause of any outage of its dependents.
                    let upstreams_rest = (0..services.len())
                        .filter(|&u| dependents[u].contains(&s))
                        .all(|u| free_from[u] <= minute);
                    can_host(s, kind)
                        && free_from[s] <= minute
                        && upstreams_rest
                        && (kind != Kind::Cascading
                            || dependents[s].iter().all(|&d| free_from[d] <= minute))
                })
                .map(|s| (s, kind))
        });
        if let Some((s, kind)) = pick {
            free_from[s] = minute + rest;
            if kind == Kind::Cascading {
                for &d in &dependents[s] {
                    free_from[d] = minute + 1 + rest;
                }
            }
            script.push(ScriptedOutage {
                service: s,
                kind,
                start_min: minute,
                duration_min: duration,
                tail_min,
            });
        }
        slot += 1;
        minute += OUTAGE_EVERY_MIN;
    }
    if script.is_empty() {
        bail!("the demo found no outage to schedule");
    }
    Ok(script)
}

/// Refuses a store that holds detector state, incident events, incidents or counts of any
/// catalog service (see the module docs).
async fn ensure_empty(
    store: &dyn Store,
    catalog: &Catalog,
    now: i64,
    settings: &StoreSettings,
) -> anyhow::Result<()> {
    let refuse = |what: &str| {
        anyhow::anyhow!(
            "--demo writes synthetic reports, but the {} store already holds {what}; run the \
             demo on the embedded store (no --redis-url) or on an empty Redis database (e.g. \
             redis://127.0.0.1:6379/15 after FLUSHDB)",
            store.kind()
        )
    };
    let check = "cannot check that the store is empty";
    if store.load_detector().await.context(check)?.is_some() {
        return Err(refuse("detector state"));
    }
    if store.stream_bounds().await.context(check)?.last != (0, 0) {
        return Err(refuse("incident events"));
    }
    let any = IncidentQuery {
        limit: 1,
        ..IncidentQuery::default()
    };
    if !store.incidents(&any).await.context(check)?.is_empty() {
        return Err(refuse("incidents"));
    }
    let kept = crate::store::whole_secs(settings.rollup_retention.max(settings.retention));
    for service in catalog.services() {
        let counts = store
            .counts(&service.id, Granularity::Hourly, now - kept, now + 2 * 3600)
            .await
            .context(check)?;
        if !counts.is_empty() {
            return Err(refuse(&format!("reports of {}", service.id)));
        }
    }
    Ok(())
}

/// A comma-separated list, for logs.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn lcm(a: i64, b: i64) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under `--demo`'s defaults the outages keep coming, at most one slot apart, and every
    /// service gets its own; none comes back before its rest is over (with its upstreams'
    /// and, for a cascade, its dependents'). With a fixed 40-minute rest the eight services
    /// took five outages in 20 minutes, then none for 20, and Slack and Spotify none at all.
    #[test]
    fn the_demo_outages_keep_coming_and_every_service_rests() {
        let services = select(&Catalog::builtin());
        assert_eq!(services.len(), SERVICES.len());
        let width = crate::buckets::BucketWidth::new(Duration::from_secs(10)).unwrap();
        let params = Params {
            start: OffsetDateTime::from_unix_timestamp(1_790_000_000 - 1_790_000_000 % 3600)
                .unwrap(),
            days: HISTORY_DAYS + LIVE_DAYS,
            bucket: width,
            seed: SEED,
            outages_per_week: 0.0,
        };
        let first = i64::from(HISTORY_DAYS) * 1440;
        let rest = rest_min(Duration::from_secs(60));
        assert_eq!(rest, 24);
        assert_eq!(rest_min(Duration::from_secs(900)), 39);
        // 4 + 1 + 15 minutes, 30 of quiet, 4 to confirm it: 54.
        assert_eq!(rest_min(Duration::from_secs(1800)), 56);
        let script = schedule(&services, &params, first, rest).unwrap();
        let day: Vec<&ScriptedOutage> = script
            .iter()
            .filter(|o| o.start_min < first + 1440)
            .collect();
        for pair in day.windows(2) {
            assert!(
                pair[1].start_min - pair[0].start_min <= 2 * OUTAGE_EVERY_MIN,
                "no outage from minute {} to {}",
                pair[0].start_min - first,
                pair[1].start_min - first
            );
        }
        // Each service's outages, its own or a cascade's from upstream (a minute later).
        for (i, service) in services.iter().enumerate() {
            let outages: Vec<i64> = day
                .iter()
                .filter_map(|o| {
                    let upstream = &services[o.service];
                    if o.service == i {
                        Some(o.start_min)
                    } else {
                        (o.kind == Kind::Cascading && service.depends_on.contains(&upstream.id))
                            .then_some(o.start_min + 1)
                    }
                })
                .collect();
            assert!(outages.len() >= 10, "{}: {outages:?}", service.id);
            assert!(
                outages.windows(2).all(|w| w[1] - w[0] >= rest),
                "{}: {outages:?}",
                service.id
            );
        }
        // Dependents rest while their upstream does.
        for o in &day {
            for up in &day {
                let upstream_of = services[o.service]
                    .depends_on
                    .contains(&services[up.service].id);
                if upstream_of && up.start_min < o.start_min {
                    assert!(o.start_min - up.start_min >= rest, "{o:?} after {up:?}");
                }
            }
        }
    }
}
