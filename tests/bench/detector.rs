//! Speed of one detector tick: one [`Detector::step`] (one bucket for every service) over
//! 10,000 services × 8 regions × 5 problems held in memory. Target: under 1 s on one core.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench detector
//! ```
//!
//! The catalog (ids `svc-00001` …, five problems each, no dependencies) is generated and
//! parsed with `Catalog::parse`. Traffic is deterministic (splitmix64): each service has a
//! base rate log-uniform between 0.05 and 50 reports per minute, its own mix over the 40
//! region × problem cells, and a per-bucket wobble of its rate (log-normal, about the
//! overdispersion of real reports); counts are Poisson. As a store read would, only non-zero
//! cells are passed. The detector is warmed up with two hours of buckets first, so the
//! measurement is of a steady state, then each measured iteration processes a new bucket
//! (`t += 60`); generating the bucket's counts is not timed.
//!
//! Two cases in one group:
//!
//! - `steady`: ordinary traffic only.
//! - `outage-1pct`: the same, with every hundredth service (1%) at ten times its baseline
//!   in every cell, so incidents are open and the attribution path (accumulate, resolution
//!   test, attribution) runs every bucket for them. The outage starts during a short pre-roll
//!   so the incidents are already open when measuring starts (of the sparse services, below
//!   0.5 reports a minute even at ten times, few have opened by then; stderr says how many).
//!
//! Throughput is reported in services (elements): one over it is the time per service.
//!
//! The state after the warm-up is that of a detector started without history two hours
//! ago: about 2% of the services (almost all busy ones, at least 5 reports a minute) opened
//! an incident when they became watched at minute 15, against a baseline still close to the
//! prior, and keep it open (the baseline does not learn while an incident is open; such an
//! incident is resolved and the baseline rebased after a day). So both cases run the
//! open-incident path for those services too; the warm-up line on stderr prints how many.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use downradar::catalog::{Catalog, ServiceId};
use downradar::detector::{Detector, DetectorConfig};
use downradar::regions::RegionCode;
use downradar::store::Cell;

const SERVICES: usize = 10_000;
const REGIONS: [&str; 8] = ["US", "IN", "BR", "GB", "DE", "FR", "JP", "CA"];
/// Relative report volume of each region (before the per-service jitter).
const REGION_WEIGHTS: [f64; 8] = [30.0, 12.0, 9.0, 8.0, 6.0, 5.0, 6.0, 4.0];
const PROBLEMS: [&str; 5] = ["login", "app", "website", "payments", "notifications"];
const CELLS: usize = REGIONS.len() * PROBLEMS.len();
/// Base rates, reports per minute, log-uniform between these.
const MIN_RATE: f64 = 0.05;
const MAX_RATE: f64 = 50.0;
/// Sigma of the log-normal per-bucket wobble of a service's rate (1/k ≈ 0.17).
const WOBBLE: f64 = 0.4;
/// Buckets fed before measuring: two hours, so the ring of recent buckets (an hour) is full
/// and the baselines have been learning the services' rates for well over an hour.
const WARMUP_BUCKETS: usize = 120;
/// Buckets of outage fed before measuring the outage case.
const OUTAGE_PREROLL: usize = 10;
/// One service in this many is in an outage in the outage case.
const OUTAGE_EVERY: usize = 100;
const OUTAGE_FACTOR: f64 = 10.0;
/// Monday 2026-01-05 00:00 UTC.
const START: i64 = 1_767_571_200;
const WIDTH: i64 = 60;

/// splitmix64: fast, deterministic, good enough for traffic.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Roughly standard normal (Irwin–Hall of four uniforms, rescaled).
    fn normal(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.uniform()).sum();
        (s - 2.0) * 3.0_f64.sqrt()
    }

    /// Poisson by multiplication of uniforms (Knuth): fine for the means used here (< 300).
    fn poisson(&mut self, mean: f64) -> u64 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.uniform();
        while p > limit {
            k += 1;
            p *= self.uniform();
        }
        k
    }
}

/// One service's traffic model.
#[derive(Clone)]
struct Profile {
    /// Reports per bucket.
    rate: f64,
    /// Cumulative distribution over the 40 cells (region-major).
    cumulative: [f64; CELLS],
}

/// The catalog, every service's cells and traffic model, and the buffers of one bucket.
struct Traffic {
    profiles: Vec<Profile>,
    /// Per service, its 40 cells (region-major), cloned into the bucket's counts.
    cells: Vec<Vec<Cell>>,
    /// Catalog position of each service.
    index: HashMap<ServiceId, usize>,
    rng: SplitMix,
    /// The current bucket: per service, its non-zero cells.
    counts: Vec<Vec<(Cell, u64)>>,
}

impl Traffic {
    fn new(catalog: &Catalog, seed: u64) -> Self {
        let mut rng = SplitMix(seed);
        let regions: Vec<RegionCode> = REGIONS
            .iter()
            .map(|r| RegionCode::parse(r).expect("a built-in region"))
            .collect();
        let mut profiles = Vec::with_capacity(SERVICES);
        let mut cells = Vec::with_capacity(SERVICES);
        for service in catalog.services() {
            let rate = MIN_RATE * (MAX_RATE / MIN_RATE).powf(rng.uniform()) * WIDTH as f64 / 60.0;
            // Region weights jittered per service (log-normal); problems Zipf (1, 1/2, …).
            let region_w: Vec<f64> = REGION_WEIGHTS
                .iter()
                .map(|w| w * (0.5 * rng.normal()).exp())
                .collect();
            let mut cumulative = [0.0; CELLS];
            let mut acc = 0.0;
            let mut service_cells = Vec::with_capacity(CELLS);
            for (r, (&region, rw)) in regions.iter().zip(&region_w).enumerate() {
                for (p, problem) in service.problems.iter().enumerate() {
                    acc += rw / (p + 1) as f64;
                    cumulative[r * PROBLEMS.len() + p] = acc;
                    service_cells.push(Cell {
                        region,
                        problem: problem.clone(),
                    });
                }
            }
            for c in &mut cumulative {
                *c /= acc;
            }
            profiles.push(Profile { rate, cumulative });
            cells.push(service_cells);
        }
        Self {
            profiles,
            cells,
            index: catalog
                .services()
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect(),
            rng,
            counts: vec![Vec::new(); SERVICES],
        }
    }

    /// Draws the next bucket into `self.counts`; services `i` with `outage(i)` run at
    /// [`OUTAGE_FACTOR`] times their rate.
    fn fill(&mut self, outage: impl Fn(usize) -> bool) {
        let mut tally = [0u64; CELLS];
        for (i, (profile, counts)) in self.profiles.iter().zip(&mut self.counts).enumerate() {
            let wobble = (WOBBLE * self.rng.normal() - WOBBLE * WOBBLE / 2.0).exp();
            let factor = if outage(i) { OUTAGE_FACTOR } else { 1.0 };
            // Poisson total spread over the cells multinomially = independent Poisson cells.
            let total = self.rng.poisson(profile.rate * wobble * factor);
            counts.clear();
            if total == 0 {
                continue;
            }
            tally.fill(0);
            for _ in 0..total {
                let u = self.rng.uniform();
                let c = profile
                    .cumulative
                    .partition_point(|&v| v <= u)
                    .min(CELLS - 1);
                tally[c] += 1;
            }
            for (c, &n) in tally.iter().enumerate() {
                if n > 0 {
                    counts.push((self.cells[i][c].clone(), n));
                }
            }
        }
    }

    /// Draws the next bucket and steps `detector` through it at `t`; returns the time spent
    /// in `step` and the number of events.
    fn step(
        &mut self,
        detector: &mut Detector,
        t: i64,
        outage: impl Fn(usize) -> bool,
    ) -> (Duration, usize) {
        self.fill(outage);
        let refs: Vec<&[(Cell, u64)]> = self.counts.iter().map(Vec::as_slice).collect();
        let started = Instant::now();
        let events = black_box(detector.step(black_box(t), black_box(&refs)));
        let n = events.len();
        drop(events);
        (started.elapsed(), n)
    }
}

fn catalog() -> Catalog {
    let problems = PROBLEMS.map(|p| format!("{p:?}")).join(", ");
    let mut text = String::with_capacity(SERVICES * 120);
    for i in 1..=SERVICES {
        text.push_str(&format!(
            "[[service]]\nid = \"svc-{i:05}\"\nname = \"Service {i:05}\"\nproblems = [{problems}]\n\n"
        ));
    }
    Catalog::parse("<bench catalog>", &text).expect("the generated catalog is valid")
}

/// A detector and its traffic, positioned at the next bucket.
struct Run {
    detector: Detector,
    traffic: Traffic,
    t: i64,
    outage: bool,
    events: usize,
}

impl Run {
    fn advance(&mut self) -> Duration {
        let outage = self.outage;
        let (spent, events) = self.traffic.step(&mut self.detector, self.t, |i| {
            outage && i % OUTAGE_EVERY == 0
        });
        self.events += events;
        self.t += WIDTH;
        spent
    }

    fn open(&self) -> usize {
        self.detector.open_incidents().len()
    }

    /// Open incidents by the volume of their service: below 0.5, below 5, and at least 5
    /// reports per minute; of the services in an outage only, or of all.
    fn open_by_volume(&self, outage_only: bool) -> [usize; 3] {
        let mut by = [0; 3];
        for incident in self.detector.open_incidents() {
            let i = self.traffic.index[&incident.service];
            if outage_only && !i.is_multiple_of(OUTAGE_EVERY) {
                continue;
            }
            let per_min = self.traffic.profiles[i].rate * 60.0 / WIDTH as f64;
            by[usize::from(per_min >= 0.5) + usize::from(per_min >= 5.0)] += 1;
        }
        by
    }

    /// The services in an outage, by volume as in [`Run::open_by_volume`].
    fn outage_services_by_volume(&self) -> [usize; 3] {
        let mut by = [0; 3];
        for profile in self.traffic.profiles.iter().step_by(OUTAGE_EVERY) {
            let per_min = profile.rate * 60.0 / WIDTH as f64;
            by[usize::from(per_min >= 0.5) + usize::from(per_min >= 5.0)] += 1;
        }
        by
    }
}

fn bench(c: &mut Criterion) {
    let started = Instant::now();
    let catalog = catalog();
    assert_eq!(catalog.services().len(), SERVICES);
    let mut steady = Run {
        detector: Detector::new(&catalog, DetectorConfig::default()),
        traffic: Traffic::new(&catalog, 0x5eed_0001),
        t: START,
        outage: false,
        events: 0,
    };
    let mut warm = Duration::ZERO;
    for _ in 0..WARMUP_BUCKETS {
        warm += steady.advance();
    }
    eprintln!(
        "warm-up: {WARMUP_BUCKETS} buckets in {:.1?} ({:.1?} in step, {:.1?}/tick), {} events, \
         {} incidents open (by volume <0.5/0.5-5/>=5 per min: {:?})",
        started.elapsed(),
        warm,
        warm / WARMUP_BUCKETS as u32,
        steady.events,
        steady.open(),
        steady.open_by_volume(false)
    );

    // The outage case continues from a copy of the warmed-up detector and traffic.
    let mut outage = Run {
        detector: steady.detector.clone(),
        traffic: Traffic {
            profiles: steady.traffic.profiles.clone(),
            cells: steady.traffic.cells.clone(),
            index: steady.traffic.index.clone(),
            rng: SplitMix(0x5eed_0002),
            counts: vec![Vec::new(); SERVICES],
        },
        t: steady.t,
        outage: true,
        events: 0,
    };
    let before = outage.open();
    for _ in 0..OUTAGE_PREROLL {
        outage.advance();
    }
    eprintln!(
        "outage pre-roll: {OUTAGE_PREROLL} buckets with {} services at {OUTAGE_FACTOR}x: \
         {} incidents open (were {before}), {} events; of the services in outage, open by \
         volume: {:?} (of {:?})",
        SERVICES / OUTAGE_EVERY,
        outage.open(),
        outage.events,
        outage.open_by_volume(true),
        outage.outage_services_by_volume()
    );

    let mut group = c.benchmark_group("detector-tick");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(SERVICES as u64));
    for (name, run) in [("steady", &mut steady), ("outage-1pct", &mut outage)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run.advance()).sum())
        });
    }
    group.finish();
    eprintln!(
        "after measuring: steady {} incidents open {:?}, outage case {} open {:?} (by volume)",
        steady.open(),
        steady.open_by_volume(false),
        outage.open(),
        outage.open_by_volume(false)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
