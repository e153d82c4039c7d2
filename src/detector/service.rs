//! One service's detector: its baseline, its tests, its incident state machine and the
//! attribution of an open incident to regions and problems.
//!
//! Every bucket, three families of series are tested (detection.md §5): the service total,
//! each region, and each problem category. Region and problem expectations are the total's
//! expectation times the series' share (regions by hour of the day on a clock that moves
//! with each country's, since the regional mix follows the time zones and daylight saving
//! time; problems overall). Each series runs exact negative-binomial tail
//! tests over several windows plus a CUSUM for a four-fold rise; a family fires when any of
//! its tests passes the family's threshold (see [`Thresholds`]) with at least
//! `min_reporters` reports and at least `min_ratio` times the expected count. The size rule
//! is what keeps a small sympathetic bump, or a busy service's ordinary wobble, from becoming
//! an incident however significant it is statistically.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::baseline::{
    Baseline, Dispersion, FirstHourScores, Held, HeldScores, LevelSums, ProfileClock, Recurrence,
};
use super::event::Scope;
use super::stats::{binomial_upper_score, lower_score, threshold, upper_score};
use crate::catalog::Problem;
use crate::regions::{DaylightSaving, RegionCode};
use crate::store::Cell;

/// Downdetector's three levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum Level {
    #[default]
    Operational,
    /// Moderate evidence: more reports than usual, not (yet) an outage.
    Possible,
    /// An open incident.
    Outage,
}

/// How the detector decides; see [`super::DetectorConfig`] for the meaning of each field.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub width: i64,
    pub min_reporters: f64,
    pub min_ratio: f64,
    pub resolve_after: usize,
    pub thresholds: Thresholds,
    /// Test windows, in buckets, shortest first.
    pub windows: Vec<usize>,
    /// Buckets of history kept per service.
    pub ring: usize,
}

impl Tuning {
    /// The longest window a resolution stretches to (see [`RESOLVE_STRETCH`]).
    pub fn resolve_longest(resolve_after: usize) -> usize {
        (resolve_after * RESOLVE_STRETCH.0).div_ceil(RESOLVE_STRETCH.1)
    }

    /// Buckets before the newest whose windows must have been quiet as well for an incident
    /// to resolve (see [`RESOLVE_CONFIRM`]), for a resolution time of `resolve_after`
    /// buckets.
    pub fn resolve_confirm(resolve_after: usize) -> usize {
        (resolve_after * RESOLVE_CONFIRM.0)
            .div_ceil(RESOLVE_CONFIRM.1)
            .max(1)
    }
}

/// Evidence thresholds in nats, from the false-alarm budget.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Buckets in the budget's period divided by the budget (false alarms allowed).
    pub buckets_per_false_alarm: f64,
    /// Tests per series and bucket: the windows and the CUSUM.
    pub tests: f64,
}

/// Families of series share the budget equally.
const FAMILIES: f64 = 3.0;
/// "Possible problems" needs half the evidence of an outage and a doubling.
const POSSIBLE_FRACTION: f64 = 0.5;
const POSSIBLE_RATIO: f64 = 2.0;
const POSSIBLE_MIN_REPORTS: f64 = 3.0;
/// CUSUM design shift: a four-fold rise.
const CUSUM_RATIO: f64 = 4.0;
/// A bucket counts towards an outage's onset when above this multiple of its expectation.
const ONSET_RATIO: f64 = 1.5;
/// The false-alarm rate of the onset's test of a bucket, shared among the service's series.
const ONSET_ALPHA: f64 = 0.05;
/// Buckets kept for the windows, the onset and the resolution test: at least this many,
/// and always the longest resolution window and the longest test window (see
/// [`Tuning::ring`]).
pub const MIN_RING: usize = 60;
/// Resolution: the recent counts must favour the baseline over the incident's rate by this
/// likelihood ratio, over a window long enough that the incident's rate would have produced
/// at least `RESOLVE_EVIDENCE` extra reports.
const RESOLVE_LLR: f64 = 3.0;
const RESOLVE_EVIDENCE: f64 = 6.0;
/// The incident's rate that a resolution weighs the recent counts against is at most this
/// many times the baseline, unless a shorter window could not tell that rate from the
/// baseline (see `quiet_since`). An outage's first burst (everyone who notices reports at
/// once) overstates the rate it goes on at: on a sparse series it put that rate at hundreds
/// of times the baseline, against which a quarter of an hour with a report or two was
/// evidence of the end. On the simulations (seeds 1 to 3), 103 of 1,123 detections resolved
/// more than ten minutes before their outage ended, 77 with a cap of twenty. Ten (on
/// 2026-12-07, seeds 1 to 12): 467 → 417 of about 4,530 detections, and the second
/// incidents of outages taken to have ended (splits) 24 → 19, with the same recall and the
/// same time open past the outages' ends; below ten, recall and overstays began to suffer.
const RESOLVE_MAX_RATIO: f64 = 10.0;
/// A window that is quiet for long enough to resolve stretches to this fraction of the
/// resolution time (numerator, denominator) where that is what it takes for the rate of
/// [`RESOLVE_MAX_RATIO`] to give [`RESOLVE_EVIDENCE`] extra reports. On a sparse series
/// after a flood, the shortest window weighed its counts against the rate that window
/// could tell (twenty or fifty times a baseline of a report an hour), which a quarter of an
/// hour with one report refuted while the outage still ran at five or six times. Half as
/// long again (2026-12-07, seeds 1 to 12; held-out 13 to 18): detections resolved more
/// than ten minutes before their outages ended 417 → 347 (181 → 155), splits 19 → 15
/// (9 → 7), false incidents 52 → 48 (22 → 20), recall the same; the cost is sparse
/// services' outages staying open longer after they end, p99 27 → 33 minutes (28 → 36),
/// the longest 51 → 62 (51 → 59). Twice as long: 318 early, the same splits, p99 38 and
/// the longest 69 (107).
const RESOLVE_STRETCH: (usize, usize) = (3, 2);
/// An incident resolves only when its series were quiet (see `ServiceState::quiet_since`) in
/// the windows ending with each bucket before the newest, over this fraction (numerator,
/// denominator) of the resolution time, as well (at least one bucket; two minutes at the
/// default `--resolve-after` of 15, a bucket of the demo's 10 seconds at its 1 minute). The
/// test runs every bucket on windows that overlap all but a bucket, so an outage that goes
/// on has a chance to pass for over at each of them: on a sparse series, a lull of a
/// quarter of an hour with a report or none now and then, which ends with the next report.
/// Confirmed over two minutes (2026-12-07, seeds 1 to 12; held-out 13 to 18): resolutions
/// decided more than ten minutes before their outages ended 242 → 190 (110 → 89),
/// `resolved_at` more than ten minutes early 345 → 295 (157 → 136), splits 34 → 21
/// (15 → 10), false incidents 67 → 54 (29 → 22); the cost is two minutes more open past
/// every outage's end, median 17 → 19, p99 34 → 38 (36 → 41). A longer `--resolve-after`
/// instead: at 17 minutes (a median of 18 past the end), 316 early `resolved_at`s and 25
/// splits; at 19 (a median of 20), 287 and 21, about what this gives a minute sooner.
const RESOLVE_CONFIRM: (usize, usize) = (2, 15);
/// Attribution: a region or problem is elevated when its count since the onset has a
/// p-value below 0.05 / (number of series), is at least double and at least this many.
const ELEVATED_ALPHA: f64 = 0.05;
const ELEVATED_RATIO: f64 = 2.0;
const ELEVATED_MIN: f64 = 3.0;
/// The excess is concentrated (regional, or partial) when the other series fall short of
/// the incident's overall factor with a p-value below this.
const CONCENTRATED_ALPHA: f64 = 1e-3;
const CONCENTRATED_MIN_EXPECTED: f64 = 20.0;
const CONCENTRATED_SHARE: f64 = 0.25;
/// An incident said to be global is said to be regional only when the rest shows no sign of
/// a rise at this level (hysteresis: series near the line made global outages flap).
const STAYS_GLOBAL_ALPHA: f64 = 0.05;
/// An open incident's attribution changes once the evidence has said so in this many
/// buckets in a row (the sums since the onset with and without the latest buckets): its
/// scope, whether it is partial, and each region and problem it names, each on its own. A
/// country or problem near the line otherwise crossed it back and forth, an update a
/// minute.
const ATTRIBUTION_STEADY: usize = 3;
/// An incident open this long, in buckets observed, is a new normal, not an outage (see
/// `observe`).
const MAX_OPEN_SECS: i64 = 86_400;
/// The same for a service that had been silent before its incident (under
/// [`SILENT_PER_MIN`] over the day before): its first traffic, a flood or its users
/// arriving, opens an incident, and a flood is over within hours, while users stay. (With
/// a day, a fresh deployment's services each held an outage open for a day when their
/// reports began.) Three hours: the longest outage the simulator injects.
const NEW_TRAFFIC_OPEN_SECS: i64 = 3 * 3600;
/// Reports per minute, on average over a day, below which a service counts as silent.
const SILENT_PER_MIN: f64 = 0.005;
/// A service still in its watch opens an incident only on a rise after this many buckets.
const WATCH_QUIET: usize = 2;
/// For its first hour a service's counts are learned as they are, unwinsorised.
const COLD_SECS: f64 = 3600.0;
/// The bucket an incident opens on teaches the score tails scores of at most this many
/// times their family's threshold (see [`ServiceState::learn_opening`]).
const OPENING_SCORE_CAP: f64 = 2.0;
/// ... and only in windows expecting at least this many reports.
const OPENING_MIN_EXPECTED: f64 = 0.5;
/// Memory of the region and problem shares, in days; pseudo-count of the hourly shares.
const SHARE_MEMORY_DAYS: f64 = 7.0;
const SHARE_PSEUDO: f64 = 20.0;

impl Thresholds {
    /// The threshold of a family of `series` series.
    pub fn family(&self, series: usize) -> f64 {
        threshold(
            1.0,
            self.buckets_per_false_alarm * FAMILIES,
            self.tests * series.max(1) as f64,
        )
    }
}

/// One bucket as the tests see it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Slot {
    /// Bucket start.
    t: i64,
    x: f32,
    mu: f32,
    region_x: Vec<f32>,
    region_mu: Vec<f32>,
    problem_x: Vec<f32>,
    /// Counts per region and problem, `[region * problems + problem]` (see
    /// [`ServiceState::attribute`]), kept for the slots an incident may open on (the
    /// longest window's); empty in older ones. Saved apart from the rest (see [`encode`]).
    #[serde(skip)]
    region_problem_x: Vec<f32>,
}

/// A CUSUM for a four-fold rise, with the sums of its current run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Cusum {
    s: f32,
    x: f32,
    mu: f32,
}

impl Cusum {
    fn update(&mut self, x: f64, mu: f64, inv_k: f64) {
        // Poisson log-likelihood ratio, deflated by the variance inflation of the negative
        // binomial (a quasi-likelihood), so overdispersed series do not drift up.
        let llr = (x * CUSUM_RATIO.ln() - mu * (CUSUM_RATIO - 1.0)) / (1.0 + mu * inv_k);
        let s = f64::from(self.s) + llr;
        if s <= 0.0 {
            *self = Self::default();
        } else {
            self.s = s as f32;
            self.x += x as f32;
            self.mu += mu as f32;
        }
    }
}

/// Per test window, (observed, expected) sums of each series; see `window_sums`. The
/// regions' and problems' sums are laid out series after series, one entry per window.
struct WindowSums {
    windows: usize,
    total: Vec<(f64, f64)>,
    regions: Vec<(f64, f64)>,
    problems: Vec<(f64, f64)>,
}

impl WindowSums {
    fn region(&self, r: usize) -> &[(f64, f64)] {
        &self.regions[r * self.windows..(r + 1) * self.windows]
    }

    fn problem(&self, p: usize) -> &[(f64, f64)] {
        &self.problems[p * self.windows..(p + 1) * self.windows]
    }
}

/// What the tests say about one series this bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Verdict {
    strong: bool,
    possible: bool,
    /// Possible problems by the evidence before it is calibrated to the series' tails: what
    /// decides whether the dispersions hold the bucket back (see `ServiceState::learn`).
    unusual: bool,
}

impl Verdict {
    /// Both verdicts in one: strong if either is, possible if either is.
    fn or(self, other: Verdict) -> Verdict {
        Verdict {
            strong: self.strong || other.strong,
            possible: self.possible || other.possible,
            unusual: self.unusual || other.unusual,
        }
    }
}

/// Attribution of an open incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    pub scope: Scope,
    pub regions: Vec<RegionCode>,
    pub partial: bool,
    pub problems: Vec<Problem>,
}

impl Attribution {
    /// The attribution that follows this one given the latest evidence, `next`. A global
    /// outage's affected regions only grow while it stays global: a region that was
    /// elevated is not news again when its share of the growing sums dips, and a feed
    /// updated every bucket for such churn tells its readers nothing.
    fn settle(&self, mut next: Attribution) -> Attribution {
        if self.scope == Scope::Global && next.scope == Scope::Global {
            next.regions = sorted(self.regions.iter().chain(&next.regions).copied());
        }
        next
    }
}

/// An open incident's running sums since its onset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Open {
    pub started_at: i64,
    pub opened_at: i64,
    x: f64,
    mu: f64,
    region_x: Vec<f64>,
    region_mu: Vec<f64>,
    problem_x: Vec<f64>,
    problem_mu: Vec<f64>,
    /// Counts per region and problem since the onset, as in [`Slot`]. Saved apart from the
    /// rest (see [`encode`]).
    #[serde(skip)]
    region_problem_x: Vec<f64>,
    /// Buckets observed since the onset, up to the newest one accumulated.
    buckets: u64,
    pub attribution: Attribution,
    pub caused_by: Vec<crate::catalog::ServiceId>,
    /// The countries its last event named (see [`ServiceState::regions_named`]). Saved apart
    /// from the rest (see [`encode`]).
    #[serde(skip)]
    pub shown: Vec<RegionCode>,
}

/// What a bucket changed about the service's incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    Updated,
    /// Resolved; the incident's last elevated bucket ended at this Unix second.
    Resolved {
        at: i64,
    },
}

/// The detector state of one service; persisted between ticks and across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceState {
    baseline: Baseline,
    regions: Vec<RegionCode>,
    /// Per region, exponentially weighted reports in each hour of the day on a clock that
    /// moves with the region's (24 each: UTC plus the country's daylight saving shift, so
    /// that an hour of its users' day keeps its place all year; see
    /// [`ServiceState::region_hour`]).
    region_hours: Vec<f32>,
    region_totals: Vec<f32>,
    /// The same for all regions together, per UTC hour. Nothing in this build reads it (the
    /// regions' hours, each on its own clock, sum to what it was for); it is learned and
    /// saved for the builds before, which divide by it.
    hour_totals: Vec<f32>,
    problems: Vec<Problem>,
    problem_totals: Vec<f32>,
    /// Dispersion of the region series and of the problem series (pooled per family):
    /// smaller series wobble more, relative to their mean, than the total.
    region_dispersion: Dispersion,
    problem_dispersion: Dispersion,
    ring: VecDeque<Slot>,
    cusum: Cusum,
    region_cusums: Vec<Cusum>,
    problem_cusums: Vec<Cusum>,
    pub open: Option<Open>,
    /// When the last incident resolved (the end of its decision bucket).
    resolved_at: Option<i64>,
    /// Buckets learned in a row that did not look like possible problems (see `learn`).
    /// Saved apart from the rest, with what the dispersions hold back (see [`encode`]).
    #[serde(skip)]
    ordinary_run: u32,
    /// Whether its watch may end early on a rise seen within it (see `observe`): only for a
    /// service whose data starts with its watch (a backtest's, or a first leader's warm-up
    /// on the stored history). A service added to a running detector's catalog got no
    /// reports before, by no fault of its own: its ordinary traffic, starting, looked like a
    /// flood after quiet minutes. Not saved: a restored state is past its watch, or treated
    /// as such an addition.
    #[serde(skip)]
    rises: bool,
    /// The start of the first bucket with a report it observed: where its service's history
    /// begins, as far as the detector saw it; `None` before any, [`LONG_AGO`] for a state
    /// saved before it was kept. Saved apart from the rest (see [`encode`]).
    #[serde(skip)]
    first_report: Option<i64>,
    pub level: Level,
    pub region_levels: Vec<(RegionCode, Level)>,
}

/// [`ServiceState::first_report`] of a state saved before it was kept: its history began
/// at some unknown time before.
const LONG_AGO: i64 = i64::MIN;

/// What a service's state holds back for later (see `ServiceState::learn`), saved after the
/// rest: a state saved before there was any decodes as it was, with nothing held back (and
/// one saved with it decodes in a build from before, which ignores what follows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Pending {
    ordinary_run: u32,
    total: Held,
    regions: Held,
    problems: Held,
}

/// What the families' score tails learned from the service's first hour (see
/// `Dispersion::learn_first_hour_score`), saved after the profile's clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct FirstHour {
    total: FirstHourScores,
    regions: FirstHourScores,
    problems: FirstHourScores,
}

/// The counts per region and problem of the ring's slots and of the open incident, saved
/// after [`Pending`] for the same reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Cells {
    ring: Vec<Vec<f32>>,
    open: Vec<f64>,
}

/// What the windows' score tails hold back (see `ServiceState::learn`), saved after
/// [`Cells`] for the same reason.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Scores {
    total: HeldScores,
    regions: HeldScores,
    problems: HeldScores,
}

/// A service's state as saved in the store: the state, then what its dispersions hold back
/// ([`Pending`]), then its counts per region and problem ([`Cells`]), then what its score
/// tails hold back ([`Scores`]), then its baseline's slow level ([`LevelSums`]), then the
/// days its slots of the day spent in incidents ([`Recurrence`]), then the countries its
/// open incident's last event named ([`Open::shown`]), then how many buckets of each slot of
/// the day its profile learned at their own counts (`Baseline::known`), then the clock its
/// profile runs on ([`ProfileClock`]), then what its score tails learned from its first
/// hour ([`FirstHour`]), then the start of its first bucket with a report. Each part was
/// added after the one before it: a build from before reads what it knows and ignores the
/// rest.
pub fn encode(state: &ServiceState) -> Result<Vec<u8>, postcard::Error> {
    let mut bytes = postcard::to_stdvec(state)?;
    let pending = Pending {
        ordinary_run: state.ordinary_run,
        total: state.baseline.dispersion.held(),
        regions: state.region_dispersion.held(),
        problems: state.problem_dispersion.held(),
    };
    bytes.extend(postcard::to_stdvec(&pending)?);
    let cells = Cells {
        ring: state
            .ring
            .iter()
            .map(|s| s.region_problem_x.clone())
            .collect(),
        open: state
            .open
            .as_ref()
            .map(|o| o.region_problem_x.clone())
            .unwrap_or_default(),
    };
    bytes.extend(postcard::to_stdvec(&cells)?);
    let scores = Scores {
        total: state.baseline.dispersion.held_scores(),
        regions: state.region_dispersion.held_scores(),
        problems: state.problem_dispersion.held_scores(),
    };
    bytes.extend(postcard::to_stdvec(&scores)?);
    bytes.extend(postcard::to_stdvec(&state.baseline.slow_level())?);
    bytes.extend(postcard::to_stdvec(state.baseline.recurrence())?);
    let shown = state.open.as_ref().map_or(&[][..], |o| &o.shown[..]);
    bytes.extend(postcard::to_stdvec(shown)?);
    bytes.extend(postcard::to_stdvec(state.baseline.known())?);
    bytes.extend(postcard::to_stdvec(&state.baseline.clock())?);
    let first_hour = FirstHour {
        total: state.baseline.dispersion.first_hour_scores(),
        regions: state.region_dispersion.first_hour_scores(),
        problems: state.problem_dispersion.first_hour_scores(),
    };
    bytes.extend(postcard::to_stdvec(&first_hour)?);
    bytes.extend(postcard::to_stdvec(&state.first_report)?);
    Ok(bytes)
}

/// A service's state from the store (see [`encode`]). What it held back is lost, not the
/// state, when that part does not decode.
pub fn decode(bytes: &[u8]) -> Result<ServiceState, postcard::Error> {
    let (mut state, rest) = postcard::take_from_bytes::<ServiceState>(bytes)?;
    // Unless saved with it, its first report is long past.
    state.first_report = Some(LONG_AGO);
    let (slow, (known, clock)) = decode_trailers(&mut state, rest);
    // A state saved before the slow level starts it where its short-term level is.
    state.baseline.set_slow_level(slow);
    state.baseline.set_known(known);
    // One saved before the profile's clock ran on UTC: `None` says so, and the first bucket
    // observed moves it to its clock (see `ServiceState::keep_clocks`).
    state.baseline.set_clock(clock);
    Ok(state)
}

/// What follows the known buckets in a save, when it was saved.
type AfterSlowLevel = (Option<Vec<f32>>, Option<ProfileClock>);

/// Restores what follows the state (see [`encode`]) as far as it decodes, and returns the
/// slow level, the slots' known buckets and the profile's clock, those of them that were
/// saved.
fn decode_trailers(state: &mut ServiceState, rest: &[u8]) -> (Option<LevelSums>, AfterSlowLevel) {
    match decode_trailers_to_slow_level(state, rest) {
        Some((slow, rest)) => (Some(slow), decode_trailers_after_slow_level(state, rest)),
        None => (None, (None, None)),
    }
}

/// Restores what follows the state up to the slow level, and returns it and the bytes after.
fn decode_trailers_to_slow_level<'a>(
    state: &mut ServiceState,
    rest: &'a [u8],
) -> Option<(LevelSums, &'a [u8])> {
    let (pending, rest) = postcard::take_from_bytes::<Pending>(rest).ok()?;
    state.ordinary_run = pending.ordinary_run;
    state.baseline.dispersion.set_held(pending.total);
    state.region_dispersion.set_held(pending.regions);
    state.problem_dispersion.set_held(pending.problems);
    // Counts per region and problem that do not fit the state are left out: attribution
    // then judges a partial outage's countries on all their reports, as before they were
    // kept.
    let (cells, rest) = postcard::take_from_bytes::<Cells>(rest).ok()?;
    if cells.ring.len() == state.ring.len() {
        for (slot, cells) in state.ring.iter_mut().zip(cells.ring) {
            slot.region_problem_x = cells;
        }
        if let Some(open) = &mut state.open {
            open.region_problem_x = cells.open;
        }
    }
    // Scores held back are lost with a state saved before they were; the tails then learn
    // from the rest of the episode only.
    let (scores, rest) = postcard::take_from_bytes::<Scores>(rest).ok()?;
    state.baseline.dispersion.set_held_scores(scores.total);
    state.region_dispersion.set_held_scores(scores.regions);
    state.problem_dispersion.set_held_scores(scores.problems);
    postcard::take_from_bytes::<LevelSums>(rest).ok()
}

/// Restores what follows the slow level (see [`encode`]) as far as it decodes, and returns
/// the slots' known buckets and the profile's clock, if they were saved.
fn decode_trailers_after_slow_level(state: &mut ServiceState, rest: &[u8]) -> AfterSlowLevel {
    let Ok((recurrence, rest)) = postcard::take_from_bytes::<Recurrence>(rest) else {
        return (None, None);
    };
    state.baseline.set_recurrence(recurrence);
    // Saved before the countries shown were, a global outage's next event names its
    // attribution's countries, which may be fewer than the last one named.
    let Ok((shown, rest)) = postcard::take_from_bytes::<Vec<RegionCode>>(rest) else {
        return (None, None);
    };
    if let Some(open) = &mut state.open {
        open.shown = shown;
    }
    let Ok((known, rest)) = postcard::take_from_bytes::<Vec<f32>>(rest) else {
        return (None, None);
    };
    if rest.is_empty() {
        // Saved before the clock: its profile ran on UTC.
        return (Some(known), None);
    }
    // (Saved as an option: a state restored from a build before the clock, and saved again
    // before its first bucket, still says its profile is on UTC.) A clock that does not
    // decode, or cannot be, is no sign of an old save: the profile is taken to be on the
    // clock its regions give, as it most likely was, and is not moved.
    let (clock, rest) = match postcard::take_from_bytes::<Option<ProfileClock>>(rest) {
        Ok((None, rest)) => (None, rest),
        Ok((Some(clock), rest)) if clock.valid() => (Some(clock), rest),
        _ => (Some(state.regions_clock()), &[][..]),
    };
    // Saved before the first hour's scores were kept apart: they are in the tails, if any.
    if let Ok((first_hour, rest)) = postcard::take_from_bytes::<FirstHour>(rest) {
        if let Ok(first_report) = postcard::from_bytes::<Option<i64>>(rest) {
            state.first_report = first_report;
        }
        state
            .baseline
            .dispersion
            .set_first_hour_scores(first_hour.total);
        state
            .region_dispersion
            .set_first_hour_scores(first_hour.regions);
        state
            .problem_dispersion
            .set_first_hour_scores(first_hour.problems);
    }
    (Some(known), clock)
}

impl ServiceState {
    /// A service with no history: `problems` from the catalog, `prior` reports per bucket.
    pub fn new(problems: Vec<Problem>, tuning: &Tuning, prior: f64) -> Self {
        let np = problems.len();
        Self {
            baseline: Baseline::new(tuning.width, tuning.windows.len(), prior),
            regions: Vec::new(),
            region_hours: Vec::new(),
            region_totals: Vec::new(),
            hour_totals: vec![0.0; 24],
            problem_totals: vec![0.0; np],
            region_dispersion: Dispersion::new(tuning.windows.len()),
            problem_dispersion: Dispersion::new(tuning.windows.len()),
            problem_cusums: vec![Cusum::default(); np],
            problems,
            ring: VecDeque::with_capacity(tuning.ring),
            cusum: Cusum::default(),
            region_cusums: Vec::new(),
            open: None,
            resolved_at: None,
            ordinary_run: 0,
            rises: false,
            first_report: None,
            level: Level::Operational,
            region_levels: Vec::new(),
        }
    }

    /// The start of the first bucket with a report this state observed, where known: its
    /// service's history, as the detector saw it, begins there. `None` before any report,
    /// and for a state saved by a build that did not keep it.
    pub fn first_report(&self) -> Option<i64> {
        self.first_report.filter(|&t| t != LONG_AGO)
    }

    /// The state, its watch ending early on a rise seen within it when `rises` (see the
    /// field).
    pub fn with_rises(mut self, rises: bool) -> Self {
        self.rises = rises;
        self
    }

    /// The bucket width (seconds) this state learned on.
    pub fn bucket_width(&self) -> i64 {
        self.baseline.width()
    }

    /// Whether a saved state fits the current configuration: the same bucket width and test
    /// windows. A state that does not is started afresh. (Its problems may differ: see
    /// [`adopt_problems`](Self::adopt_problems).)
    pub fn fits(&self, tuning: &Tuning) -> bool {
        self.baseline.width() == tuning.width && self.baseline.windows() == tuning.windows.len()
    }

    /// Takes the catalog's problem categories for the service, when they changed: the
    /// problems kept keep what was learned of them (their shares, their CUSUMs, their counts
    /// in the recent buckets and in an open incident), a new one starts at the mean share of
    /// those kept, and a removed one is forgotten but for its reports in the totals. The
    /// baseline, the regions and an open incident are kept: a category added while the
    /// service is down must not make the detector relearn it from the outage (it had, and
    /// never reported it). Returns whether anything changed.
    pub fn adopt_problems(&mut self, problems: &[Problem]) -> bool {
        if self.problems == problems {
            return false;
        }
        let old: Vec<Option<usize>> = problems
            .iter()
            .map(|p| self.problems.iter().position(|q| q == p))
            .collect();
        fn remap<T: Copy + Default>(values: &[T], old: &[Option<usize>]) -> Vec<T> {
            old.iter()
                .map(|i| i.and_then(|i| values.get(i).copied()).unwrap_or_default())
                .collect()
        }
        // A new problem starts at the mean share of those kept, not at an unseen one's: its
        // ordinary reports, against a share near zero, scored as a flood, and taught the
        // problems' shared score tails that such scores were ordinary for weeks.
        let kept: Vec<f32> = old
            .iter()
            .filter_map(|i| i.and_then(|i| self.problem_totals.get(i).copied()))
            .collect();
        let mean = kept.iter().sum::<f32>() / kept.len().max(1) as f32;
        self.problem_totals = old
            .iter()
            .map(|i| {
                i.and_then(|i| self.problem_totals.get(i).copied())
                    .unwrap_or(mean)
            })
            .collect();
        // The same per region, for the counts kept per region and problem.
        fn remap_rows<T: Copy + Default>(
            values: &[T],
            from: usize,
            old: &[Option<usize>],
        ) -> Vec<T> {
            values
                .chunks(from.max(1))
                .flat_map(|row| remap(row, old))
                .collect()
        }
        let np = self.problems.len();
        self.problem_cusums = remap(&self.problem_cusums, &old);
        for slot in &mut self.ring {
            slot.problem_x = remap(&slot.problem_x, &old);
            slot.region_problem_x = remap_rows(&slot.region_problem_x, np, &old);
        }
        if let Some(open) = &mut self.open {
            open.problem_x = remap(&open.problem_x, &old);
            open.problem_mu = remap(&open.problem_mu, &old);
            open.region_problem_x = remap_rows(&open.region_problem_x, np, &old);
            let attribution = &mut open.attribution;
            attribution.problems.retain(|p| problems.contains(p));
            if !attribution.partial || attribution.problems.is_empty() {
                attribution.partial = false;
                attribution.problems = sorted(problems.iter().cloned());
            }
        }
        self.problems = problems.to_vec();
        true
    }

    /// The service's expected count in the bucket starting at `t`; `None` before a day of
    /// history.
    pub fn rate(&self, t: i64) -> Option<f64> {
        self.baseline.has_a_day().then(|| self.baseline.expected(t))
    }

    /// The service's mean rate over about its last day (reports per bucket), whatever the
    /// time of day; `None` before a day of history.
    pub fn daily_rate(&self) -> Option<f64> {
        self.baseline
            .has_a_day()
            .then(|| self.baseline.daily_mean())
    }

    /// How improbable a bucket at `t` with no report at all is for this service, in nats
    /// (−ln P(0) under its negative binomial); `None` before a day of history.
    pub fn silence(&self, t: i64) -> Option<f64> {
        self.rate(t).map(|mu| self.silence_at(mu))
    }

    /// The same at the rate of the service's open incident so far; `None` with none open.
    pub fn incident_silence(&self) -> Option<f64> {
        let open = self.open.as_ref().filter(|o| o.buckets > 0)?;
        Some(self.silence_at(open.x / open.buckets as f64))
    }

    fn silence_at(&self, mu: f64) -> f64 {
        let k = self.baseline.dispersion(0);
        if k.is_finite() && k > 0.0 {
            k * (mu / k).ln_1p()
        } else {
            mu
        }
    }

    fn region_index(&mut self, code: RegionCode) -> usize {
        if let Some(i) = self.regions.iter().position(|&r| r == code) {
            return i;
        }
        self.regions.push(code);
        self.region_hours.extend([0.0; 24]);
        self.region_totals.push(0.0);
        self.region_cusums.push(Cusum::default());
        for slot in &mut self.ring {
            slot.region_x.push(0.0);
            slot.region_mu.push(0.0);
        }
        if let Some(open) = &mut self.open {
            open.region_x.push(0.0);
            open.region_mu.push(0.0);
        }
        self.regions.len() - 1
    }

    /// Reports from all regions, as the region shares weigh them.
    fn region_reports(&self) -> f64 {
        self.region_totals.iter().map(|&v| f64::from(v)).sum()
    }

    /// The hour of the day at `t` on the clock region `r`'s hourly shares are kept by: UTC
    /// moved forward while the country's daylight saving time is in force.
    /// (Only the shift matters, not the time zone: each region's hours are its own.)
    fn region_hour(&self, r: usize, t: i64) -> usize {
        let local = t + DaylightSaving::of(self.regions[r]).shift(t);
        (local.rem_euclid(86_400) / 3600) as usize
    }

    /// The number of reports the hourly share of region `r` at `t` rests on: its reports in
    /// that hour (see [`region_hour`](Self::region_hour)) plus a pseudo-count at its share
    /// over the whole day, which is shrunk (add one half) so unseen regions get a small share.
    /// `all` is [`region_reports`](Self::region_reports).
    fn region_share_reports(&self, r: usize, t: i64, all: f64) -> f64 {
        let day = (f64::from(self.region_totals[r]) + 0.5) / self.share_days(all);
        f64::from(self.region_hours[r * 24 + self.region_hour(r, t)]) + SHARE_PSEUDO * day
    }

    /// The denominator of the regions' day shares (see `region_share_reports`): every
    /// region's reports and an unseen region's, each shrunk by a half.
    fn share_days(&self, all: f64) -> f64 {
        all + 0.5 * (self.regions.len() + 1) as f64
    }

    /// Every region's [`region_share_reports`](Self::region_share_reports) at `t`, and what
    /// their shares are shares of: their sum and an unseen region's pseudo-count, so the
    /// shares of all regions, seen or not, sum to one whichever clocks they keep.
    fn region_shares(&self, t: i64, all: f64) -> (Vec<f64>, f64) {
        let reports: Vec<f64> = (0..self.regions.len())
            .map(|r| self.region_share_reports(r, t, all))
            .collect();
        let total = reports.iter().sum::<f64>() + self.unseen_share_reports(all);
        (reports, total)
    }

    /// The pseudo-count a region never seen gets (see `region_share_reports`).
    fn unseen_share_reports(&self, all: f64) -> f64 {
        SHARE_PSEUDO * 0.5 / self.share_days(all)
    }

    /// Keeps the service's clocks up to date at `t`, once an hour (and on the first bucket
    /// after a state from a build before them was restored): the profile's follows where
    /// the reports come from (see [`ProfileClock`]). A state saved before regions kept their
    /// own clocks had their hours on UTC, learned up to its last bucket; those of regions
    /// that were in daylight saving time then move an hour on, to where their clock files
    /// them, and so does the profile. (By the clocks of the last bucket, not of `t`: a state
    /// saved in summer and restored in winter had learned its days an hour early in UTC.)
    fn keep_clocks(&mut self, t: i64, width: i64) {
        let restored = self.baseline.clock().is_none();
        if !restored && t.rem_euclid(3600) >= width {
            return;
        }
        let mut learned = t;
        if restored {
            learned = self.ring.back().map_or(t, |slot| slot.t);
            for r in 0..self.regions.len() {
                let by = DaylightSaving::of(self.regions[r]).shift(learned) / 3600;
                self.region_hours[r * 24..(r + 1) * 24].rotate_right(by as usize);
            }
        }
        self.baseline.follow_clock(self.regions_clock(), learned);
    }

    /// The clock the reports' countries give the profile (see [`ProfileClock`]).
    fn regions_clock(&self) -> ProfileClock {
        ProfileClock::of(
            self.regions
                .iter()
                .zip(&self.region_totals)
                .map(|(&code, &reports)| (DaylightSaving::of(code), f64::from(reports))),
        )
    }

    fn problem_share(&self, p: usize) -> f64 {
        let all: f64 = self.problem_totals.iter().map(|&v| f64::from(v)).sum();
        (f64::from(self.problem_totals[p]) + 0.5) / (all + 0.5 * self.problems.len() as f64)
    }

    /// Every problem's share, in catalog order.
    fn problem_shares(&self) -> Vec<f64> {
        (0..self.problems.len())
            .map(|p| self.problem_share(p))
            .collect()
    }

    /// Processes the bucket starting at `t` with its `cells`; returns what changed.
    pub fn observe(&mut self, t: i64, cells: &[(Cell, u64)], tuning: &Tuning) -> Option<Change> {
        if self.first_report.is_none() && cells.iter().any(|&(_, n)| n > 0) {
            self.first_report = Some(t);
        }
        self.keep_clocks(t, tuning.width);
        let mu = self.baseline.expected(t);

        // The bucket's marginals.
        let mut slot = if self.ring.len() >= tuning.ring {
            self.ring.pop_front().unwrap_or_default()
        } else {
            Slot::default()
        };
        slot.t = t;
        slot.x = 0.0;
        slot.mu = mu as f32;
        slot.problem_x.clear();
        slot.problem_x.resize(self.problems.len(), 0.0);
        let np = self.problems.len();
        let mut region_x = std::mem::take(&mut slot.region_x);
        region_x.clear();
        region_x.resize(self.regions.len(), 0.0);
        slot.region_problem_x.clear();
        slot.region_problem_x.resize(self.regions.len() * np, 0.0);
        for (cell, count) in cells {
            let count = *count as f32;
            let r = self.region_index(cell.region);
            if region_x.len() < self.regions.len() {
                region_x.resize(self.regions.len(), 0.0);
                slot.region_problem_x.resize(self.regions.len() * np, 0.0);
            }
            region_x[r] += count;
            if let Some(p) = self.problems.iter().position(|p| *p == cell.problem) {
                slot.problem_x[p] += count;
                slot.region_problem_x[r * np + p] += count;
            }
            slot.x += count;
        }
        slot.region_x = region_x;
        let all = self.region_reports();
        let (share_reports, shares_total) = self.region_shares(t, all);
        slot.region_mu.clear();
        slot.region_mu.extend(
            share_reports
                .iter()
                .map(|reports| (mu * reports / shares_total) as f32),
        );
        self.ring.push_back(slot);
        // Counts per region and problem serve an incident opening on the longest window's
        // slots, and no older ones.
        let longest = tuning.windows.last().copied().unwrap_or(1);
        if let Some(old) = self.ring.len().checked_sub(longest + 1) {
            self.ring[old].region_problem_x = Vec::new();
        }
        let sums = self.window_sums(tuning);

        // Tests.
        let inv_k_1 = 1.0 / self.baseline.dispersion(0);
        let extra = self.baseline.uncertainty(t);
        let verdict_total = self.test_total(tuning, &sums, inv_k_1, extra);
        let (verdict_regions, region_verdicts) =
            self.test_regions(tuning, &sums, extra, &share_reports);
        let verdict_problems = self.test_problems(tuning, &sums, extra);
        // Nothing opens before the service has been watched for the longest window: a
        // service first seen mid-stream is busy, not flooding. After that, its own counts
        // outweigh the population prior within minutes. Unless the counts rose within the
        // watch itself: a flood after quiet minutes is no busy service first seen.
        let longest = tuning.windows.last().copied().unwrap_or(1);
        let watched =
            self.baseline.age as usize >= longest || self.rises && self.rose_while_watched(tuning);
        let verdict = verdict_total.or(verdict_regions).or(verdict_problems);
        let strong = watched && verdict.strong;
        let possible = verdict.possible;

        let was_open = self.open.is_some();
        let change = match self.open.take() {
            None if strong => {
                // What the dispersions held back was this outage's onset.
                for dispersion in self.dispersions() {
                    dispersion.drop_held();
                }
                self.learn_opening(t, tuning, &sums);
                let open = self.open_incident(t, tuning);
                self.open = Some(open);
                Some(Change::Opened)
            }
            None => {
                self.learn(t, mu, verdict, tuning, &sums);
                None
            }
            Some(mut open) if open.buckets as i64 * tuning.width >= self.max_open_secs(tuning) => {
                // Elevated for a day (three hours, after a silent day): not an outage but a
                // new normal (or a baseline that was wrong from the start). Resolve it and
                // learn the service afresh from here.
                // A day of buckets observed, not of time: buckets missing while the store or
                // the server was down are not evidence, and an incident still open when
                // data resumes after a day of them must be judged on the counts that follow,
                // not rebased on the flood before the gap.
                self.accumulate(&mut open);
                let recent = self.window(tuning.ring, |s| (f64::from(s.x), 0.0)).0
                    / self.ring.len().max(1) as f64;
                self.baseline.rebase(recent);
                self.reset_cusums();
                self.resolved_at = Some(t + tuning.width);
                self.open = Some(open);
                Some(Change::Resolved {
                    at: t + tuning.width,
                })
            }
            Some(mut open) => {
                self.accumulate(&mut open);
                if let Some(end) = self.resolution(&open, tuning) {
                    self.resolved_at = Some(t + tuning.width);
                    self.reset_cusums();
                    self.open = Some(open);
                    Some(Change::Resolved { at: end })
                } else {
                    // An update says something new: a global incident names every country
                    // it has named before (see `regions_named`), so a country leaving its
                    // excess changes its attribution but not what its next event would say.
                    let attribution = self.steady_attribution(&open);
                    let before = self.shown_attribution(&open);
                    open.attribution = attribution;
                    let changed = self.shown_attribution(&open) != before;
                    self.open = Some(open);
                    changed.then_some(Change::Updated)
                }
            }
        };

        // While an incident stays open, a level dragged down before it climbs back (see
        // `Baseline::relax_level`).
        if was_open && self.open.is_some() {
            self.baseline.relax_level(t);
        }
        // The baseline is frozen while an incident is open, but for the slots of the day
        // that were in one on each of the days before as well and that the profile has
        // hardly seen outside one (see `Baseline::recurs`): a rise that comes back there
        // every day is the service's day, and the seasonal profile and the shares learn it
        // as it is. (Frozen, a business-hours service first seen at night opened an
        // incident every morning, which resolved every evening, for as long as it ran.)
        if (was_open || change == Some(Change::Opened)) && self.baseline.recurs(t) {
            let x = self.ring.back().map_or(0.0, |s| f64::from(s.x));
            self.baseline.learn_season(t, x, true);
            self.learn_shares(t, tuning);
        }

        self.level = match (&self.open, change) {
            (_, Some(Change::Resolved { .. })) => Level::Operational,
            (Some(_), _) => Level::Outage,
            (None, _) if possible => Level::Possible,
            (None, _) => Level::Operational,
        };
        let affected = self.open.as_ref().filter(|_| self.level == Level::Outage);
        self.region_levels = self
            .regions
            .iter()
            .zip(region_verdicts)
            .map(|(&code, v)| {
                let level = if affected.is_some_and(|o| o.attribution.regions.contains(&code)) {
                    Level::Outage
                } else if v.possible || v.strong {
                    Level::Possible
                } else {
                    Level::Operational
                };
                (code, level)
            })
            .collect();
        change
    }

    /// How long an incident stays open, in buckets observed, before it is taken as a new
    /// normal (the baseline is frozen while it is open, so it says how the service was
    /// before).
    fn max_open_secs(&self, tuning: &Tuning) -> i64 {
        let per_min = self.baseline.daily_mean() * 60.0 / tuning.width as f64;
        if per_min < SILENT_PER_MIN {
            NEW_TRAFFIC_OPEN_SECS
        } else {
            MAX_OPEN_SECS
        }
    }

    /// Teaches the score tails the bucket an incident opens on, as one bucket: each test's
    /// score at most [`OPENING_SCORE_CAP`] times its family's threshold, and only from
    /// windows expecting at least [`OPENING_MIN_EXPECTED`] reports. Learning from ordinary
    /// buckets alone, the tails never saw the bursts of a series that bursts often, since
    /// each one opened an incident: they went on judging the next burst as rare as the
    /// first. An outage teaches them no more than that a score of about the threshold
    /// happened; the sparse series' windows, where one report more is an outage or
    /// nothing, are left out (there a few openings outweighed what the tail knew, and the
    /// service's slow ramps were missed).
    fn learn_opening(&mut self, t: i64, tuning: &Tuning, sums: &WindowSums) {
        let extra = self.baseline.uncertainty(t);
        let cap = |series: usize| Learns::Opening {
            cap: OPENING_SCORE_CAP * tuning.thresholds.family(series),
        };
        learn_scores(
            &mut self.baseline.dispersion,
            &sums.total,
            extra,
            self.cusum,
            cap(1),
        );
        let learns = cap(self.regions.len());
        for (r, &cusum) in self.region_cusums.iter().enumerate() {
            learn_scores(
                &mut self.region_dispersion,
                sums.region(r),
                extra,
                cusum,
                learns,
            );
        }
        let learns = cap(self.problems.len());
        for (p, &cusum) in self.problem_cusums.iter().enumerate() {
            learn_scores(
                &mut self.problem_dispersion,
                sums.problem(p),
                extra,
                cusum,
                learns,
            );
        }
    }

    /// The dispersions of the three families: the total, the regions and the problems.
    fn dispersions(&mut self) -> [&mut Dispersion; 3] {
        [
            &mut self.baseline.dispersion,
            &mut self.region_dispersion,
            &mut self.problem_dispersion,
        ]
    }

    fn reset_cusums(&mut self) {
        self.cusum = Cusum::default();
        self.region_cusums.fill(Cusum::default());
        self.problem_cusums.fill(Cusum::default());
    }

    /// Takes the incident off the service after [`Change::Resolved`].
    pub fn close(&mut self) -> Option<Open> {
        self.open.take()
    }

    /// Sums over the last `w` buckets of a series given by `f` (observed, expected).
    fn window(&self, w: usize, f: impl Fn(&Slot) -> (f64, f64)) -> (f64, f64) {
        // A window never reaches back past the last resolution: the outage that was just
        // declared over must not open a new incident from the buckets it already used.
        let since = self.resolved_at.unwrap_or(i64::MIN);
        self.ring
            .iter()
            .rev()
            .take(w)
            .take_while(|s| s.t >= since)
            .fold((0.0, 0.0), |(x, m), s| {
                let (a, b) = f(s);
                (x + a, m + b)
            })
    }

    /// The observed and expected sums over each test window, ending with the newest bucket,
    /// of the total, each region and each problem: what both the tests and the learning
    /// read, computed once per bucket in one pass back through the ring (a window never
    /// reaches back past the last resolution; see [`window`](Self::window)).
    fn window_sums(&self, tuning: &Tuning) -> WindowSums {
        let n = tuning.windows.len();
        let (nr, np) = (self.regions.len(), self.problems.len());
        let shares = self.problem_shares();
        let mut sums = WindowSums {
            windows: n,
            total: vec![(0.0, 0.0); n],
            regions: vec![(0.0, 0.0); nr * n],
            problems: vec![(0.0, 0.0); np * n],
        };
        let (mut total, mut regions, mut problems) =
            ((0.0, 0.0), vec![(0.0, 0.0); nr], vec![(0.0, 0.0); np]);
        let since = self.resolved_at.unwrap_or(i64::MIN);
        let longest = tuning.windows.last().copied().unwrap_or(0);
        // Window `next` is complete once `seen` buckets are summed; windows longer than the
        // buckets there are hold all of them.
        let (mut next, mut seen) = (0, 0);
        let mut snapshot = |w: usize, total, regions: &[(f64, f64)], problems: &[(f64, f64)]| {
            sums.total[w] = total;
            for (r, &v) in regions.iter().enumerate() {
                sums.regions[r * n + w] = v;
            }
            for (p, &v) in problems.iter().enumerate() {
                sums.problems[p * n + w] = v;
            }
        };
        for s in self.ring.iter().rev().take(longest) {
            if s.t < since {
                break;
            }
            let mu = f64::from(s.mu);
            total.0 += f64::from(s.x);
            total.1 += mu;
            for (sum, (&x, &m)) in regions.iter_mut().zip(s.region_x.iter().zip(&s.region_mu)) {
                sum.0 += f64::from(x);
                sum.1 += f64::from(m);
            }
            for ((sum, &x), &share) in problems.iter_mut().zip(&s.problem_x).zip(&shares) {
                sum.0 += f64::from(x);
                sum.1 += mu * share;
            }
            seen += 1;
            while next < n && tuning.windows[next] <= seen {
                snapshot(next, total, &regions, &problems);
                next += 1;
            }
        }
        while next < n {
            snapshot(next, total, &regions, &problems);
            next += 1;
        }
        sums
    }

    fn verdict(
        &self,
        tuning: &Tuning,
        h: f64,
        dispersion: &Dispersion,
        extra_inv_k: f64,
        cusum: Cusum,
        sums: &[(f64, f64)],
    ) -> Verdict {
        let mut v = Verdict::default();
        // `score` gives the evidence calibrated to the series' tail, and before that.
        let mut consider = |x: f64, m: f64, score: &dyn Fn() -> (f64, f64)| {
            // Possible problems need a doubling; an outage, `--min-ratio` (which may be less).
            let doubled = x >= POSSIBLE_RATIO * m;
            let risen = x >= tuning.min_ratio * m;
            if x >= POSSIBLE_MIN_REPORTS.min(tuning.min_reporters) && (doubled || risen) {
                let (s, raw) = score();
                if s >= h && x >= tuning.min_reporters && risen {
                    v.strong = true;
                }
                if doubled && s >= h * POSSIBLE_FRACTION {
                    v.possible = true;
                }
                if doubled && raw >= h * POSSIBLE_FRACTION {
                    v.unusual = true;
                }
            }
        };
        for (i, &(x, m)) in sums.iter().enumerate() {
            let k = 1.0 / (1.0 / dispersion.k(i) + extra_inv_k);
            consider(x, m, &|| {
                let raw = upper_score(x, m, k);
                (dispersion.calibrate(i, raw), raw)
            });
        }
        // The CUSUM's statistic is calibrated to its own tail: it sums evidence over runs of
        // any length, so its distribution is neither a window's nor a p-value's.
        let (x, m) = (f64::from(cusum.x), f64::from(cusum.mu));
        consider(x, m, &|| {
            let raw = f64::from(cusum.s);
            (dispersion.calibrate(sums.len(), raw), raw)
        });
        v
    }

    fn test_total(
        &mut self,
        tuning: &Tuning,
        sums: &WindowSums,
        inv_k: f64,
        extra: f64,
    ) -> Verdict {
        let last = self.ring.back().cloned().unwrap_or_default();
        self.cusum
            .update(f64::from(last.x), f64::from(last.mu), inv_k + extra);
        let h = tuning.thresholds.family(1);
        self.verdict(
            tuning,
            h,
            &self.baseline.dispersion,
            extra,
            self.cusum,
            &sums.total,
        )
    }

    /// Tests every region; `share_reports` is what each region's share at this bucket
    /// rests on (see `region_shares`), which widens its dispersion.
    fn test_regions(
        &mut self,
        tuning: &Tuning,
        sums: &WindowSums,
        extra: f64,
        share_reports: &[f64],
    ) -> (Verdict, Vec<Verdict>) {
        let h = tuning.thresholds.family(self.regions.len());
        let mut all = Verdict::default();
        let mut each = Vec::with_capacity(self.regions.len());
        for (r, &reports) in share_reports.iter().enumerate() {
            let (x, mu) = self.ring.back().map_or((0.0, 0.0), |s| {
                (f64::from(s.region_x[r]), f64::from(s.region_mu[r]))
            });
            // The share, too, is an estimate from a limited number of reports.
            let extra = extra + 1.0 / reports.max(1.0);
            let inv_k = 1.0 / self.region_dispersion.k(0);
            self.region_cusums[r].update(x, mu, inv_k + extra);
            let v = self.verdict(
                tuning,
                h,
                &self.region_dispersion,
                extra,
                self.region_cusums[r],
                sums.region(r),
            );
            all = all.or(v);
            each.push(v);
        }
        (all, each)
    }

    fn test_problems(&mut self, tuning: &Tuning, sums: &WindowSums, extra: f64) -> Verdict {
        if self.problems.len() < 2 {
            return Verdict::default();
        }
        let h = tuning.thresholds.family(self.problems.len());
        let mut all = Verdict::default();
        for p in 0..self.problems.len() {
            let share = self.problem_share(p);
            let (x, mu) = self.ring.back().map_or((0.0, 0.0), |s| {
                (f64::from(s.problem_x[p]), f64::from(s.mu) * share)
            });
            let extra = extra + 1.0 / (f64::from(self.problem_totals[p]) + 0.5);
            let inv_k = 1.0 / self.problem_dispersion.k(0);
            self.problem_cusums[p].update(x, mu, inv_k + extra);
            let v = self.verdict(
                tuning,
                h,
                &self.problem_dispersion,
                extra,
                self.problem_cusums[p],
                sums.problem(p),
            );
            all = all.or(v);
        }
        all
    }

    /// Learns from a bucket with no incident open, given what the tests said of it; the
    /// count is winsorised, and more so when the bucket already looked like possible
    /// problems, and the dispersions hold it back until they know whether it was noise when
    /// it looked so before the score calibration.
    fn learn(&mut self, t: i64, mu: f64, verdict: Verdict, tuning: &Tuning, sums: &WindowSums) {
        let possible = verdict.possible;
        let Some(slot) = self.ring.back() else { return };
        let x = f64::from(slot.x);
        let k = self.baseline.dispersion(0);
        let cold = self.baseline.age as f64 * tuning.width as f64 <= COLD_SECS;
        let ordinary = mu + 4.0 * (mu + mu * mu / k).sqrt() + 1.0;
        let cap = if cold {
            // Nothing to judge against yet: learn the service as it is.
            f64::INFINITY
        } else if possible {
            // Half again the expectation, and not a report more (for a sparse service,
            // twelve times its rate: its ramps were learned as they rose). But at least the
            // seasonal profile: where the level holds the expectation below the profile
            // (dragged down by hours the profile overestimates), ordinary counts look high
            // against it, and the level must still climb back. Never more than an ordinary
            // bucket's cap.
            (1.5 * mu).max(self.baseline.profile(t)).min(ordinary)
        } else {
            ordinary
        };
        // Nor does such a bucket teach the dispersions yet: its residual may be the rise of an
        // outage, not noise. (Learned at once, a slow ramp widened the dispersion as it rose,
        // nearly threefold within 45 minutes on a busy service, and was never found.) They hold
        // it back until the series has looked ordinary for the longest window (it was
        // noise: they learn it) or an incident opens (they forget it). The windows' score
        // tails hold its scores back with them, computed with the dispersions as if they had
        // learned it. (Scored with the narrower dispersions the tests use meanwhile, a ramp's
        // own early buckets taught the tails that such scores were ordinary. Learned at once,
        // a ramp's scores taught the tails so as it rose: a 15-minute score of 79 nats was
        // deflated to 10, below the threshold, and the tails remember for 30 days, so every
        // later ramp of the service was missed as well.) The CUSUM's tail learns its
        // statistic at once, as the test ran it: on a sparse series whose expectation runs
        // low for a while, the statistic climbs through hours of a report now and then, and
        // held back it opened false incidents (see `learn_scores`).
        //
        // Whether the bucket is held back is judged on its evidence before the calibration to
        // the score tails (`Verdict::unusual`), whose possible problems are those after it
        // and more. The dispersions describe a series' ordinary spread and the tails its
        // bursts; judged after the calibration, a bursty series' bursts, already deflated by
        // the tails, taught the dispersions as well, and each widened the spread the next
        // was judged by, twice over: on NAB's IBM tweets, a burst to ten times the median
        // scored 7 nats against a one-bucket dispersion `1/k` of 1.6 widened by earlier
        // bursts, 5 after the calibration, under half the threshold, and the burst's next
        // buckets were judged against a `1/k` of 2.1 to 3.4. Judged before it (2026-12-07):
        // NAB 54.82 → 59.87 (windows hit 24 → 27, false-positive rows 88 → 109), ramps
        // (`tests/tools/ramps`) 276 → 285 of 324; seeds 1 to 12 false incidents 54 → 56,
        // headline outages 2,556 → 2,557 of 2,558, all 4,532 → 4,534; seeds 13 to 18, the
        // relapse and the daily tools the same. Judged before it for the learning cap too,
        // NAB 59.48 but 170 false incidents on seeds 1 to 12 and one open a day; for the cap
        // alone, NAB 53.85.
        let hold = (possible || verdict.unusual) && !cold;
        self.ordinary_run = if hold {
            0
        } else {
            self.ordinary_run.saturating_add(1)
        };
        let release = self.ordinary_run as usize == tuning.windows.last().copied().unwrap_or(1);
        let learned = x.min(cap);
        self.baseline
            .learn(t, learned, learned == x, &sums.total, hold);
        // The score tails learn from every bucket without an incident; the first hour's
        // scores, against a baseline still near the population prior, only until the
        // baseline has learned a day (see `Dispersion::learn_first_hour_score`).
        if self.baseline.has_a_day() {
            for dispersion in self.dispersions() {
                dispersion.forget_first_hour();
            }
        }
        let learns = if cold {
            Learns::FirstHour
        } else {
            Learns::Ordinary { hold }
        };
        let extra = self.baseline.uncertainty(t);
        learn_scores(
            &mut self.baseline.dispersion,
            &sums.total,
            extra,
            self.cusum,
            learns,
        );
        // So do the region and problem families' tails; their dispersions hold back as the
        // total's does.
        self.region_dispersion.decay(tuning.width);
        for (r, &cusum) in self.region_cusums.iter().enumerate() {
            let region = sums.region(r);
            self.region_dispersion.learn_or_hold(region, hold);
            learn_scores(&mut self.region_dispersion, region, extra, cusum, learns);
        }
        self.problem_dispersion.decay(tuning.width);
        for (p, &cusum) in self.problem_cusums.iter().enumerate() {
            let problem = sums.problem(p);
            self.problem_dispersion.learn_or_hold(problem, hold);
            learn_scores(&mut self.problem_dispersion, problem, extra, cusum, learns);
        }
        if release {
            for dispersion in self.dispersions() {
                dispersion.release();
            }
        }
        // Shares learn from ordinary buckets only.
        if !possible {
            self.learn_shares(t, tuning);
        }
    }

    /// Learns the region and problem shares from the newest bucket, at `t`.
    fn learn_shares(&mut self, t: i64, tuning: &Tuning) {
        let hour = (t.rem_euclid(86_400) / 3600) as usize;
        let width = tuning.width as f64;
        let keep_all = 1.0 - width / (SHARE_MEMORY_DAYS * 86_400.0);
        let keep_hour = 1.0 - width / (SHARE_MEMORY_DAYS * 3600.0);
        let slot = self.ring.back().cloned().unwrap_or_default();
        for r in 0..self.regions.len() {
            let xr = slot.region_x.get(r).copied().unwrap_or(0.0);
            let i = r * 24 + self.region_hour(r, t);
            self.region_hours[i] = self.region_hours[i] * keep_hour as f32 + xr;
            self.region_totals[r] = self.region_totals[r] * keep_all as f32 + xr;
        }
        self.hour_totals[hour] = self.hour_totals[hour] * keep_hour as f32 + slot.x;
        for (p, total) in self.problem_totals.iter_mut().enumerate() {
            *total = *total * keep_all as f32 + slot.problem_x[p];
        }
    }

    /// Whether the counts of a service still in its watch (see `observe`) rose within it:
    /// since some bucket, at least `min_ratio` times the rate before it (with a report's
    /// grace), and significantly so at the total's threshold: an exact binomial test of how
    /// the watch's reports fell either side of the split, for each split (a union bound over
    /// them). At least [`WATCH_QUIET`] buckets come before the rise: a first bucket cut short
    /// (a file, or a service, starting mid-bucket) is no rise.
    fn rose_while_watched(&self, tuning: &Tuning) -> bool {
        let n = (self.baseline.age as usize + 1).min(self.ring.len());
        if n <= WATCH_QUIET {
            return false;
        }
        let counts: Vec<u64> = self
            .ring
            .range(self.ring.len() - n..)
            .map(|s| f64::from(s.x).round() as u64)
            .collect();
        let total: u64 = counts.iter().sum();
        let h = tuning.thresholds.family(1) + ((n - WATCH_QUIET) as f64).ln();
        let mut before = counts[..WATCH_QUIET].iter().sum::<u64>();
        for (split, &x) in counts.iter().enumerate().skip(WATCH_QUIET) {
            let after = total - before;
            let rate_before = (before + 1) as f64 / split as f64;
            let rate_after = after as f64 / (n - split) as f64;
            if rate_after >= tuning.min_ratio * rate_before
                && binomial_upper_score(after, total, (n - split) as f64 / n as f64) >= h
            {
                return true;
            }
            before += x;
        }
        false
    }

    fn open_incident(&mut self, t: i64, tuning: &Tuning) -> Open {
        // The onset: the earliest of the consecutive elevated buckets ending now, within the
        // longest test window. Consecutive in time: the ring skips buckets taken as missing
        // (see `Detector::step`), and a bucket before such a gap is no part of a run seen
        // after it (after three hours without data, ordinary minutes before them had been
        // taken as the start of an outage found after them).
        // A bucket is part of it when its total, a country's or a problem's reports are
        // above their expectation, significantly so among all those series. (A country of
        // two reports in the bucket, against a tenth of one expected, had been enough: with
        // many small countries one did so by chance in most minutes, and the onset walked
        // back through ordinary ones, which diluted the sums the attribution judges.)
        let longest = tuning.windows.last().copied().unwrap_or(1);
        let series = 1 + self.regions.len() + self.problems.len();
        let h = -(ONSET_ALPHA / series as f64).ln();
        let above = |x: f32, m: f64, k: f64| {
            let x = f64::from(x);
            x >= 1.0 && x > ONSET_RATIO * m && upper_score(x, m, k) >= h
        };
        let (k, k_region, k_problem) = (
            self.baseline.dispersion(0),
            self.region_dispersion.k(0),
            self.problem_dispersion.k(0),
        );
        let shares = self.problem_shares();
        let mut onset = t;
        let mut from = self.ring.len() - 1;
        // Never reaching back into the previous incident: ids (service and start) stay unique.
        let floor = self.resolved_at.unwrap_or(i64::MIN);
        for (i, s) in self.ring.iter().enumerate().rev().take(longest) {
            if s.t < floor || s.t != onset && s.t != onset - tuning.width {
                break;
            }
            let mu = f64::from(s.mu);
            let elevated = above(s.x, mu, k)
                || s.region_x
                    .iter()
                    .zip(&s.region_mu)
                    .any(|(&x, &m)| above(x, f64::from(m), k_region))
                || s.problem_x
                    .iter()
                    .zip(&shares)
                    .any(|(&x, share)| above(x, mu * share, k_problem));
            if !elevated && s.t != t {
                break;
            }
            onset = s.t;
            from = i;
        }
        // A run without a report reaches back, consecutive, to the reports the windows found
        // (`--min-reporters` of them). In a sparse series no bucket stands out alone (one
        // report in ten seconds against a tenth of one expected is no evidence), and the run
        // was the present bucket alone, at 10-second buckets often empty: a global incident
        // in no country at no reports a minute (simulation seed 5). (A run holding reports
        // keeps its onset: reaching back for more took in ordinary buckets, and a false
        // incident judged against their lower rate stayed open longer: 0.2-2 hours more
        // in all per 30-day simulation, one more split.)
        let mut held: f64 = self.ring.range(from..).map(|s| f64::from(s.x)).sum();
        let empty = held == 0.0;
        while empty && held < tuning.min_reporters && from > 0 && self.ring.len() - from < longest {
            let s = &self.ring[from - 1];
            if s.t < floor || s.t != onset - tuning.width {
                break;
            }
            held += f64::from(s.x);
            onset = s.t;
            from -= 1;
        }
        let np = self.problems.len();
        let mut open = Open {
            started_at: onset,
            opened_at: t,
            x: 0.0,
            mu: 0.0,
            region_x: vec![0.0; self.regions.len()],
            region_mu: vec![0.0; self.regions.len()],
            problem_x: vec![0.0; np],
            problem_mu: vec![0.0; np],
            region_problem_x: Vec::new(),
            buckets: 0,
            attribution: Attribution {
                scope: Scope::Global,
                regions: Vec::new(),
                partial: false,
                problems: Vec::new(),
            },
            caused_by: Vec::new(),
            shown: Vec::new(),
        };
        for s in self.ring.iter().skip(from) {
            add_slot(&mut open, s, &shares);
        }
        open.attribution = self.attribute(&open, true);
        open
    }

    /// The attribution `open` moves to: what the sums since the onset say now and in the
    /// buckets before (up to [`ATTRIBUTION_STEADY`] in all, since it opened), where they
    /// agree (see [`steady`]).
    fn steady_attribution(&self, open: &Open) -> Attribution {
        let now = open.attribution.settle(self.attribute(open, false));
        if now == open.attribution {
            return now;
        }
        let shares = self.problem_shares();
        let mut verdicts = vec![now];
        let mut earlier = open.clone();
        for slot in self.ring.iter().rev().take(ATTRIBUTION_STEADY - 1) {
            // Not as far back as the sums the incident opened on: the attribution it opened
            // with rests on its first bucket or two, and is corrected at once.
            if slot.t <= open.opened_at + self.width() {
                break;
            }
            remove_slot(&mut earlier, slot, &shares);
            verdicts.push(open.attribution.settle(self.attribute(&earlier, false)));
        }
        steady(&open.attribution, &verdicts)
    }

    fn accumulate(&self, open: &mut Open) {
        let shares = self.problem_shares();
        if let Some(s) = self.ring.back() {
            add_slot(open, s, &shares);
        }
    }

    /// When the incident is over, where it most likely ended (see `quiet_since`).
    ///
    /// The incident is judged on the series it is about: its elevated regions (regional, or
    /// the countries a global outage shows in), summed, and, when it is partial, its
    /// problems, summed; it is over once both are quiet. With neither, the total. (A partial
    /// outage's countries, all problems summed, can look quiet while its problem still runs
    /// high: judged on them alone, it resolved and opened again, one outage split into
    /// several incidents. Each country on its own as well kept incidents open longer with no
    /// gain: p99 27 → 58 minutes past their outages on seed 1, and a headline outage split.)
    ///
    /// It must have looked over as well by the buckets up to each of a few before the newest
    /// (see [`RESOLVE_CONFIRM`]).
    fn resolution(&self, open: &Open, tuning: &Tuning) -> Option<i64> {
        let confirm = Tuning::resolve_confirm(tuning.resolve_after);
        for back in 0..confirm {
            self.ended(open, tuning, back)?;
        }
        // Where it ended, from the stretch of the earliest of those windows on.
        self.ended(open, tuning, confirm)
    }

    /// Whether the incident was over by the buckets up to `back` before the newest, and if
    /// so where it most likely ended, from then to the newest bucket (see
    /// [`resolution`](Self::resolution)).
    fn ended(&self, open: &Open, tuning: &Tuning, back: usize) -> Option<i64> {
        let regions: Vec<usize> = open
            .attribution
            .regions
            .iter()
            .filter_map(|c| self.regions.iter().position(|r| r == c))
            .collect();
        let problems: Vec<usize> = if open.attribution.partial {
            open.attribution
                .problems
                .iter()
                .filter_map(|c| self.problems.iter().position(|p| p == c))
                .collect()
        } else {
            Vec::new()
        };
        let mut ends = Vec::with_capacity(2);
        if !regions.is_empty() {
            let onset = regions.iter().fold((0.0, 0.0), |(x, m), &r| {
                (x + open.region_x[r], m + open.region_mu[r])
            });
            ends.push(self.quiet_since(open, tuning, back, onset, |s: &Slot| {
                regions.iter().fold((0.0, 0.0), |(x, m), &r| {
                    (x + f64::from(s.region_x[r]), m + f64::from(s.region_mu[r]))
                })
            })?);
        }
        if !problems.is_empty() {
            let shares: f64 = problems.iter().map(|&p| self.problem_share(p)).sum();
            let onset = problems.iter().fold((0.0, 0.0), |(x, m), &p| {
                (x + open.problem_x[p], m + open.problem_mu[p])
            });
            ends.push(self.quiet_since(open, tuning, back, onset, |s: &Slot| {
                let x = problems.iter().map(|&p| f64::from(s.problem_x[p])).sum();
                (x, f64::from(s.mu) * shares)
            })?);
        }
        if ends.is_empty() {
            ends.push(
                self.quiet_since(open, tuning, back, (open.x, open.mu), |s: &Slot| {
                    (f64::from(s.x), f64::from(s.mu))
                })?,
            );
        }
        ends.into_iter().max()
    }

    /// Whether one series of an open incident had been near its baseline for long enough by
    /// the bucket `back` before the newest (`series` gives a bucket's observed and expected
    /// counts, `onset` their sums since the incident's onset); if so, where in the quiet
    /// stretch, from its window's start to the newest bucket, it most likely ended.
    fn quiet_since(
        &self,
        open: &Open,
        tuning: &Tuning,
        back: usize,
        (ix, im): (f64, f64),
        series: impl Fn(&Slot) -> (f64, f64),
    ) -> Option<i64> {
        // The incident's rate, as a multiple of the baseline, that a window expecting `m`
        // reports weighs its counts against: the rate since the onset, but at most
        // [`RESOLVE_MAX_RATIO`] (or the ratio it took to open, if higher) unless the window
        // is too short to tell that from the baseline (then the smallest rate it can tell,
        // the onset's at most). A window can tell the onset's rate, and so that one, once
        // `m * (onset - 1)` reaches the evidence.
        let onset = (ix / im.max(1e-9)).max(tuning.min_ratio);
        let capped = RESOLVE_MAX_RATIO.max(tuning.min_ratio).min(onset);
        let alternative = |m: f64| {
            (1.0 + RESOLVE_EVIDENCE / m.max(1e-9))
                .max(RESOLVE_MAX_RATIO.max(tuning.min_ratio))
                .min(onset)
        };
        let evidence = |m: f64| m * (onset - 1.0) >= RESOLVE_EVIDENCE;
        // The window is long enough for the capped rate's evidence too, when that takes at
        // most RESOLVE_STRETCH times the resolution time (see there).
        let longest = Tuning::resolve_longest(tuning.resolve_after);
        let enough = |m: f64, n: usize| {
            evidence(m) && (n >= longest || m * (capped - 1.0) >= RESOLVE_EVIDENCE)
        };
        let (mut x, mut m, mut n) = (0.0, 0.0, 0usize);
        for s in self.ring.iter().rev().skip(back) {
            if s.t < open.started_at {
                return None;
            }
            let (a, b) = series(s);
            x += a;
            m += b;
            n += 1;
            if n >= tuning.resolve_after && enough(m, n) {
                break;
            }
        }
        if n < tuning.resolve_after {
            return None;
        }
        let rho = alternative(m);
        let quiet = if evidence(m) {
            // log L(baseline) - log L(incident rate) over the window.
            let llr = m * (rho - 1.0) - x * rho.ln();
            llr >= RESOLVE_LLR && x <= ONSET_RATIO * m.max(1.0) + 2.0
        } else {
            // The whole ring cannot give that evidence (a rare problem, a sparse country: a
            // few reports a day), and the likelihood test could never pass: quiet once the
            // ring holds no more reports than the baseline expects in it.
            x <= m
        };
        quiet.then(|| {
            // Where in the quiet stretch the incident's rate most likely gave way to the
            // baseline's: the end of the prefix with the largest log-likelihood ratio of the
            // two (its start when none favours the incident). The last bucket above the
            // baseline anywhere in the stretch, as before, was as often a late bucket of
            // ordinary noise as the outage's end: a quarter of an hour late. The stretch runs
            // on to the newest bucket: a window ending before it was quiet too, and begins
            // earlier.
            let first = self.ring.len() - back - n;
            let (mut llr, mut best) = (0.0, 0.0);
            let mut end = self.ring[first].t;
            for s in self.ring.iter().skip(first) {
                let (a, b) = series(s);
                llr += a * rho.ln() - b * (rho - 1.0);
                if llr > best {
                    best = llr;
                    end = s.t + tuning.width;
                }
            }
            end.max(open.started_at + tuning.width)
        })
    }

    /// Global or regional, partial or not, from the sums since the onset; `first` for the
    /// attribution an incident opens with.
    fn attribute(&self, open: &Open, first: bool) -> Attribution {
        let k = self.baseline.dispersion(self.baseline.windows() - 1);
        let rho = open.x / open.mu.max(1e-9);
        // Once global, an incident becomes regional only when the rest shows no sign of a
        // rise at all. (Not when it opens: the scope it is given then is a placeholder, and
        // the stricter test made an outage of one country global whenever the rest of a
        // busy service rose a little by chance in its first buckets.)
        let sticky =
            (!first && open.attribution.scope == Scope::Global).then_some(STAYS_GLOBAL_ALPHA);
        let (partial, problems) =
            match concentrated(&open.problem_x, &open.problem_mu, rho, k, None) {
                Some(elevated) if self.problems.len() > 1 => (true, elevated),
                _ => (false, (0..self.problems.len()).collect()),
            };
        // A partial outage's countries are judged on its problems' reports alone: with every
        // problem summed, the others' ordinary reports hid where it was (a rise of logins in
        // the US alone was global, in no country or in random ones).
        let restricted;
        let (region_x, region_mu, rho) = match self.problem_rows(open, &problems) {
            Some(rows) if partial => {
                restricted = rows;
                (&restricted.0[..], &restricted.1[..], restricted.2)
            }
            _ => (&open.region_x[..], &open.region_mu[..], rho),
        };
        let (scope, regions) = match concentrated(region_x, region_mu, rho, k, sticky) {
            Some(elevated) => (
                Scope::Regional,
                sorted(elevated.into_iter().map(|i| self.regions[i])),
            ),
            None => (
                Scope::Global,
                sorted(
                    elevated(region_x, region_mu, k)
                        .into_iter()
                        .map(|i| self.regions[i]),
                ),
            ),
        };
        let problems = sorted(problems.into_iter().map(|p| self.problems[p].clone()));
        Attribution {
            scope,
            regions,
            partial,
            problems,
        }
    }
}

impl ServiceState {
    /// Reports per minute observed and expected over `open`, up to `end` when it has
    /// ended (its `resolved_at`): the quiet buckets it had to stay open for after its last
    /// elevated one are no part of it (counted, they diluted a resolved outage's rate, a
    /// fifth of it for a four-minute outage at the default `--resolve-after`).
    pub fn per_min(&self, open: &Open, end: Option<i64>) -> (f64, f64) {
        let (mut x, mut mu, mut buckets) = (open.x, open.mu, open.buckets);
        if let Some(end) = end {
            for s in self.ring.iter().rev().take_while(|s| s.t >= end) {
                if s.t >= open.started_at && buckets > 1 {
                    x -= f64::from(s.x);
                    mu -= f64::from(s.mu);
                    buckets -= 1;
                }
            }
        }
        let minutes = (buckets.max(1) * self.width() as u64) as f64 / 60.0;
        (x.max(0.0) / minutes, mu.max(0.0) / minutes)
    }

    /// What an event of `open` would say of its attribution: scope, the countries it
    /// names, partial, problems.
    fn shown_attribution(&self, open: &Open) -> Attribution {
        Attribution {
            regions: self.regions_named(open),
            ..open.attribution.clone()
        }
    }

    /// The countries an event about `open` names: its attribution's, or for a global
    /// outage none of whose countries is elevated on its own yet (its first minutes, a
    /// sparse service), those holding at least half of its excess. Only the events name
    /// these: the incident is still judged, and resolved, on the service's whole counts.
    /// A global outage's events keep naming what they named (`shown`), so its list only
    /// grows, as the attribution's does.
    pub fn regions_named(&self, open: &Open) -> Vec<RegionCode> {
        let attribution = &open.attribution;
        if attribution.scope == Scope::Regional {
            return attribution.regions.clone();
        }
        if !attribution.regions.is_empty() || !open.shown.is_empty() {
            return sorted(attribution.regions.iter().chain(&open.shown).copied());
        }
        let problems: Vec<usize> = attribution
            .problems
            .iter()
            .filter_map(|p| self.problems.iter().position(|q| q == p))
            .collect();
        let rows = attribution
            .partial
            .then(|| self.problem_rows(open, &problems))
            .flatten();
        let (x, mu) = rows
            .as_ref()
            .map_or((&open.region_x[..], &open.region_mu[..]), |(x, mu, _)| {
                (&x[..], &mu[..])
            });
        sorted(main_excess(x, mu).into_iter().map(|i| self.regions[i]))
    }

    /// Per region, the reports of `problems` since `open`'s onset and their expectation
    /// (the region's share of the expectation times the problems'), and the problems'
    /// overall factor; `None` when the counts per region and problem do not cover the
    /// incident (a state saved before they were kept).
    fn problem_rows(&self, open: &Open, problems: &[usize]) -> Option<(Vec<f64>, Vec<f64>, f64)> {
        let np = self.problems.len();
        let regions = open.region_x.len();
        if np == 0 || open.region_problem_x.len() < regions * np {
            return None;
        }
        let (px, pmu) = problems.iter().fold((0.0, 0.0), |(x, m), &p| {
            (x + open.problem_x[p], m + open.problem_mu[p])
        });
        let covered: f64 = open.region_problem_x.iter().sum();
        // Every counted report of the incident is in the rows (f32 sums: within a report).
        if (covered - open.problem_x.iter().sum::<f64>()).abs() > 1.0 {
            return None;
        }
        let share = pmu / open.mu.max(1e-9);
        let x = (0..regions)
            .map(|r| {
                problems
                    .iter()
                    .map(|&p| open.region_problem_x[r * np + p])
                    .sum()
            })
            .collect();
        let mu = open.region_mu.iter().map(|m| m * share).collect();
        Some((x, mu, px / pmu.max(1e-9)))
    }
}

/// Feeds a bucket's window scores and its CUSUM statistic to a family's tails (the CUSUM's
/// is the tail after the windows'). Scores are computed only for windows well above their
/// expectation (the rest cannot reach the tail), with the dispersion as if what it holds
/// back were learned; with `hold`, the windows' scores are held back with the bucket's
/// residuals, and the CUSUM's learned at once (see `ServiceState::learn`). Holding the
/// CUSUM's back too found one more outage in the simulations (a ramp, on seed 1) and
/// doubled to tripled the false incidents (0.13 / 0.08 / 0.18 to 0.36 / 0.28 / 0.54 per
/// service per 30 days on seeds 1 to 3), most of them on sparse services.
fn learn_scores(
    dispersion: &mut Dispersion,
    windows: &[(f64, f64)],
    extra_inv_k: f64,
    cusum: Cusum,
    learns: Learns,
) {
    let (hold, cap, min_expected) = match learns {
        Learns::Ordinary { hold } => (hold, f64::INFINITY, 0.0),
        Learns::FirstHour => (false, f64::INFINITY, 0.0),
        Learns::Opening { cap } => (false, cap, OPENING_MIN_EXPECTED),
    };
    let learn = |dispersion: &mut Dispersion, test: usize, score: f64, hold: bool| match learns {
        Learns::FirstHour => dispersion.learn_first_hour_score(test, score),
        _ => dispersion.learn_score(test, score, hold),
    };
    let big = |x: f64, m: f64| x >= 3.0 && x >= 1.5 * m && m >= min_expected;
    for (i, &(x, m)) in windows.iter().enumerate() {
        let score = if big(x, m) {
            upper_score(x, m, 1.0 / (1.0 / dispersion.k_with_held(i) + extra_inv_k)).min(cap)
        } else {
            0.0
        };
        learn(dispersion, i, score, hold);
    }
    let score = if big(f64::from(cusum.x), f64::from(cusum.mu)) {
        f64::from(cusum.s).min(cap)
    } else {
        0.0
    };
    learn(dispersion, windows.len(), score, false);
}

/// What a bucket teaches the score tails (see [`learn_scores`]).
#[derive(Debug, Clone, Copy)]
enum Learns {
    /// An ordinary bucket's scores; with `hold`, the windows' are held back.
    Ordinary { hold: bool },
    /// A bucket of the service's first hour: its scores serve through its first day.
    FirstHour,
    /// The scores of the bucket an incident opens on, each at most `cap` (see
    /// [`ServiceState::learn_opening`]).
    Opening { cap: f64 },
}

/// The attribution that follows `current` given `verdicts`, what the evidence said in the
/// latest buckets (the newest first): a scope, or being partial, changes when every verdict
/// says the new one; a region or problem is named once every verdict names it and stays
/// named until none does. When the scope (or partial) changes, the regions (problems) are
/// those every verdict names, or the newest verdict's if they have none in common.
fn steady(current: &Attribution, verdicts: &[Attribution]) -> Attribution {
    fn agreed<T: PartialEq + Copy>(
        current: T,
        verdicts: &[Attribution],
        of: fn(&Attribution) -> T,
    ) -> T {
        let now = of(&verdicts[0]);
        if verdicts.iter().all(|v| of(v) == now) {
            now
        } else {
            current
        }
    }
    fn members<T: Ord + Clone>(current: Option<&[T]>, lists: &[&[T]]) -> Vec<T> {
        let in_all = |x: &T| lists.iter().all(|l| l.contains(x));
        let common: Vec<T> = lists[0].iter().filter(|x| in_all(x)).cloned().collect();
        match current {
            Some(current) => sorted(
                current
                    .iter()
                    .filter(|x| lists.iter().any(|l| l.contains(x)))
                    .cloned()
                    .chain(common),
            ),
            None if common.is_empty() => lists[0].to_vec(),
            None => common,
        }
    }
    let scope = agreed(current.scope, verdicts, |v| v.scope);
    let partial = agreed(current.partial, verdicts, |v| v.partial);
    let regions: Vec<&[RegionCode]> = verdicts.iter().map(|v| v.regions.as_slice()).collect();
    let problems: Vec<&[Problem]> = verdicts.iter().map(|v| v.problems.as_slice()).collect();
    Attribution {
        scope,
        regions: members(
            (scope == current.scope).then_some(current.regions.as_slice()),
            &regions,
        ),
        partial,
        problems: if partial {
            members(
                (partial == current.partial).then_some(current.problems.as_slice()),
                &problems,
            )
        } else {
            // Not partial: every problem, as every verdict that is not partial lists.
            verdicts
                .iter()
                .find(|v| !v.partial)
                .map_or_else(|| current.problems.clone(), |v| v.problems.clone())
        },
    }
}

/// Takes a slot added by [`add_slot`] back out of the sums.
fn remove_slot(open: &mut Open, s: &Slot, problem_shares: &[f64]) {
    open.x -= f64::from(s.x);
    open.mu -= f64::from(s.mu);
    for (r, (&x, &m)) in s.region_x.iter().zip(&s.region_mu).enumerate() {
        open.region_x[r] -= f64::from(x);
        open.region_mu[r] -= f64::from(m);
    }
    for (p, &x) in s.problem_x.iter().enumerate() {
        open.problem_x[p] -= f64::from(x);
        open.problem_mu[p] -= f64::from(s.mu) * problem_shares[p];
    }
    for (sum, &x) in open.region_problem_x.iter_mut().zip(&s.region_problem_x) {
        *sum -= f64::from(x);
    }
    open.buckets -= 1;
}

fn add_slot(open: &mut Open, s: &Slot, problem_shares: &[f64]) {
    open.x += f64::from(s.x);
    open.mu += f64::from(s.mu);
    open.region_x
        .resize(s.region_x.len().max(open.region_x.len()), 0.0);
    open.region_mu.resize(open.region_x.len(), 0.0);
    for (r, (&x, &m)) in s.region_x.iter().zip(&s.region_mu).enumerate() {
        open.region_x[r] += f64::from(x);
        open.region_mu[r] += f64::from(m);
    }
    for (p, &x) in s.problem_x.iter().enumerate() {
        open.problem_x[p] += f64::from(x);
        open.problem_mu[p] += f64::from(s.mu) * problem_shares[p];
    }
    if open.region_problem_x.len() < s.region_problem_x.len() {
        open.region_problem_x.resize(s.region_problem_x.len(), 0.0);
    }
    for (sum, &x) in open.region_problem_x.iter_mut().zip(&s.region_problem_x) {
        *sum += f64::from(x);
    }
    open.buckets += 1;
}

/// Indices of the series whose count is elevated above its expectation.
fn elevated(x: &[f64], mu: &[f64], k: f64) -> Vec<usize> {
    let h = -(ELEVATED_ALPHA / x.len().max(1) as f64).ln();
    (0..x.len())
        .filter(|&i| {
            x[i] >= ELEVATED_MIN
                && x[i] >= ELEVATED_RATIO * mu[i]
                && upper_score(x[i], mu[i], k) >= h
        })
        .collect()
}

/// The series holding at least half of the excess of reports over their expectation, the
/// largest excesses first.
fn main_excess(x: &[f64], mu: &[f64]) -> Vec<usize> {
    let mut excess: Vec<(usize, f64)> = (0..x.len())
        .filter(|&i| x[i] >= 1.0 && x[i] > mu[i])
        .map(|i| (i, x[i] - mu[i]))
        .collect();
    excess.sort_by(|a, b| b.1.total_cmp(&a.1));
    let half = excess.iter().map(|e| e.1).sum::<f64>() / 2.0;
    let mut sum = 0.0;
    excess
        .into_iter()
        .take_while(|&(_, e)| {
            let before = sum;
            sum += e;
            before < half
        })
        .map(|(i, _)| i)
        .collect()
}

/// Which of a service's series an expectation is for.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeriesFilter<'a> {
    pub region: Option<RegionCode>,
    pub problem: Option<&'a str>,
}

impl ServiceState {
    /// Bucket width the state was learned on, seconds.
    pub fn width(&self) -> i64 {
        self.baseline.width()
    }

    /// What the baseline expects in the bucket starting at `t` for the series `of`: the mean
    /// and the negative-binomial dispersion `k` of its count (the sampling noise widened by
    /// the baseline's own uncertainty). This is the current model applied to `t`: the
    /// seasonal profile, today's level and the present region and problem shares.
    pub fn expectation(&self, t: i64, of: SeriesFilter<'_>) -> (f64, f64) {
        let mut mean = self.baseline.expected(t);
        let mut k = self.baseline.dispersion(0);
        if let Some(code) = of.region {
            let all = self.region_reports();
            let reports = match self.regions.iter().position(|&r| r == code) {
                Some(r) => self.region_share_reports(r, t, all),
                // A region never seen: the share an unseen region gets.
                None => self.unseen_share_reports(all),
            };
            let share = reports / self.region_shares(t, all).1;
            mean *= share;
            k = k.min(self.region_dispersion.k(0));
        }
        if let Some(problem) = of.problem {
            let share = self
                .problems
                .iter()
                .position(|p| p.as_str() == problem)
                .map_or(0.0, |p| self.problem_share(p));
            mean *= share;
            k = k.min(self.problem_dispersion.k(0));
        }
        let k = 1.0 / (1.0 / k + self.baseline.uncertainty(t));
        (mean, k)
    }

    /// The mean and variance of the series `of`'s count summed over the buckets starting in
    /// `[since, until)`, taken as independent. Evaluated once per run of buckets of up to
    /// [`SAMPLE_SECS`], at its middle, for the whole run: the profile is linear between the
    /// centres of its 15-minute slots, so the sum barely moves, and a long range at a fine
    /// bucket width (2,000 hourly points of 10-second buckets would be 720,000 evaluations,
    /// about a second) stays cheap on the HTTP worker that also writes reports.
    pub fn expectation_over(&self, since: i64, until: i64, of: SeriesFilter<'_>) -> (f64, f64) {
        let width = self.width();
        // The buckets starting in the range (one, for a range shorter than a bucket).
        let buckets = ((until - since).max(0) + width - 1) / width;
        let run = (SAMPLE_SECS / width).max(1);
        let (mut mean, mut variance) = (0.0, 0.0);
        for first in (0..buckets).step_by(run as usize) {
            let n = run.min(buckets - first);
            let (mu, k) = self.expectation(since + (first + n / 2) * width, of);
            mean += mu * n as f64;
            variance += (mu + mu * mu / k) * n as f64;
        }
        (mean, variance)
    }
}

/// The longest run of buckets [`ServiceState::expectation_over`] evaluates once, seconds.
const SAMPLE_SECS: i64 = 900;

/// The elevated series when the excess is concentrated in them: the others together fall
/// significantly short of the incident's overall factor `rho` without having clearly risen
/// themselves (or, with enough counts, have barely risen at all). `sticky` (a p-value) is
/// for an incident already said to be spread: then any rise of the others at that level
/// keeps it so. `None`: the excess is spread.
fn concentrated(
    x: &[f64],
    mu: &[f64],
    rho: f64,
    k: f64,
    sticky: Option<f64>,
) -> Option<Vec<usize>> {
    let up = elevated(x, mu, k);
    if up.is_empty() || up.len() == x.len() {
        return None;
    }
    let (mut rest_x, mut rest_mu) = (0.0, 0.0);
    for i in (0..x.len()).filter(|i| !up.contains(i)) {
        rest_x += x[i];
        rest_mu += mu[i];
    }
    // Significantly short of the overall factor; or, with enough counts to measure it, risen
    // by less than a quarter of the overall rise (a long incident's sums are large, and the
    // rest's own wobble then hides a small shortfall from the exact test).
    let short = lower_score(rest_x, rho * rest_mu, k) >= -CONCENTRATED_ALPHA.ln();
    let flat = rest_mu >= CONCENTRATED_MIN_EXPECTED
        && rest_x / rest_mu - 1.0 <= CONCENTRATED_SHARE * (rho - 1.0);
    // But not when the rest has clearly risen too: the outage is everywhere, and the rest
    // only looks short of the overall factor because the most elevated series were picked
    // out of it (a global outage then flapped between global and regional as series crossed
    // the line).
    let risen = upper_score(rest_x, rest_mu, k) >= -CONCENTRATED_ALPHA.ln()
        && rest_x / rest_mu.max(1e-9) - 1.0 > CONCENTRATED_SHARE * (rho - 1.0);
    // With `sticky` (the incident is already global), any sign of a rise in the rest keeps it
    // so.
    let stirred = sticky.is_some_and(|alpha| upper_score(rest_x, rest_mu, k) >= -alpha.ln());
    ((flat || (short && !risen)) && !stirred).then_some(up)
}

fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribution(scope: Scope, regions: &[&str]) -> Attribution {
        Attribution {
            scope,
            regions: regions
                .iter()
                .map(|r| RegionCode::parse(r).unwrap())
                .collect(),
            partial: false,
            problems: Vec::new(),
        }
    }

    /// A service of one problem in the US: `history` minutes of `per_min(minute)` reports,
    /// the state that learned them, and the next minute.
    fn learned(history: i64, per_min: impl Fn(i64) -> u64) -> (ServiceState, Tuning, i64) {
        let tuning = crate::detector::DetectorConfig::default().tuning();
        let problems = vec![Problem::parse("login").unwrap()];
        let mut state = ServiceState::new(problems.clone(), &tuning, 0.5);
        let cell = Cell {
            region: RegionCode::parse("US").unwrap(),
            problem: problems[0].clone(),
        };
        for i in 0..history {
            state.observe(i * 60, &[(cell.clone(), per_min(i))], &tuning);
        }
        (state, tuning, history)
    }

    /// Learns minute `i` holding `x` reports as a bucket that looked like possible problems
    /// (`observe` decides that from the evidence; here it is given).
    fn learn_possible(state: &mut ServiceState, tuning: &Tuning, i: i64, x: f32) {
        learn_as(state, tuning, i, x, true);
    }

    /// Learns minute `i` holding `x` reports, looking like possible problems or not.
    fn learn_as(state: &mut ServiceState, tuning: &Tuning, i: i64, x: f32, possible: bool) {
        let t = i * 60;
        let mu = state.baseline.expected(t);
        let slot = Slot {
            t,
            x,
            mu: mu as f32,
            region_x: vec![x; state.regions.len()],
            region_mu: vec![mu as f32; state.regions.len()],
            problem_x: vec![x; state.problems.len()],
            region_problem_x: Vec::new(),
        };
        state.ring.pop_front();
        state.ring.push_back(slot);
        let sums = state.window_sums(tuning);
        let verdict = Verdict {
            possible,
            unusual: possible,
            ..Verdict::default()
        };
        state.learn(t, mu, verdict, tuning, &sums);
    }

    /// An incident opening on a bucket without a report holds the reports that opened it,
    /// `--min-reporters` of them: in a sparse series no bucket stands out alone, and its
    /// onset was that empty bucket only (10-second buckets, simulation seed 5: a global
    /// incident in no country, at no reports a minute).
    #[test]
    fn an_incident_opening_on_an_empty_bucket_holds_the_reports_that_opened_it() {
        // A report every ten minutes for three days; then one a minute for eight minutes,
        // none of them significant alone, and an empty minute, on which it opens.
        let (mut state, tuning, now) = learned(3 * 1440, |i| u64::from(i % 10 == 0));
        for i in now..now + 8 {
            learn_possible(&mut state, &tuning, i, 1.0);
        }
        learn_possible(&mut state, &tuning, now + 8, 0.0);
        let open = state.open_incident((now + 8) * 60, &tuning);
        assert_eq!(
            (open.started_at, open.x),
            ((now + 3) * 60, 5.0),
            "the last five reports and the empty minute: {open:?}"
        );
        assert_eq!(
            open.attribution.regions,
            [RegionCode::parse("US").unwrap()],
            "{open:?}"
        );
    }

    /// A bucket that looks like possible problems teaches the baseline at most half again
    /// its expectation. It used to be that plus one report: for a service with a report
    /// every twelve minutes, twelve times its rate, so an hour of a slow rise taught the
    /// baseline the rise (the expectation went up sevenfold) and the outage it became never
    /// opened (sparse services' ramps were most of the outages the simulations missed).
    #[test]
    fn possible_problems_teach_a_sparse_baseline_little_of_their_rise() {
        let (mut state, tuning, now) = learned(3 * 1440, |i| u64::from(i % 12 == 0));
        let before = state.baseline.expected(now * 60);
        for i in now..now + 60 {
            // A report every minute, twelve times the usual.
            learn_possible(&mut state, &tuning, i, 1.0);
        }
        let after = state.baseline.expected((now + 60) * 60);
        assert!(
            after < 2.0 * before,
            "an hour of possible problems took the expectation from {before} to {after}"
        );
    }

    /// ...but a level dragged down to its floor (here by two hours without a report; in the
    /// simulations, by hours the profile overestimates) recovers once the counts are back
    /// at the profile, though at twice the dragged-down expectation those buckets look like
    /// possible problems. Taught only half again that expectation, the level climbed back
    /// too slowly: on a simulated seed an ordinary morning opened a false incident that
    /// stayed open for nine hours, frozen with the level.
    #[test]
    fn a_level_dragged_down_recovers_though_its_buckets_look_like_possible_problems() {
        // Ten reports a minute for three days, then two hours without any.
        let (mut state, tuning, now) =
            learned(3 * 1440 + 120, |i| if i < 3 * 1440 { 10 } else { 0 });
        let profile = state.baseline.profile(now * 60);
        let low = state.baseline.expected(now * 60);
        assert!(
            low < 0.6 * profile,
            "the level is down: {low} against {profile}"
        );
        // After an hour it is above two thirds of the profile (0.71; taught half again the
        // expectation alone, 0.63).
        for i in now..now + 60 {
            learn_possible(&mut state, &tuning, i, 10.0);
        }
        let t = (now + 60) * 60;
        let (after, profile) = (state.baseline.expected(t), state.baseline.profile(t));
        assert!(
            after > 0.67 * profile,
            "an hour of ordinary counts left the expectation at {after} against {profile}"
        );
    }

    /// The scores of a service's first hour, against a baseline still near the population
    /// prior, hold back its tests through its first day (a save within it keeps them) and
    /// are then forgotten: here a 40-nat score comes out at a fraction of that on its first
    /// day, and near what it is after. (They had stayed in the tails for their 30 days.)
    #[test]
    fn the_first_hours_scores_serve_the_first_day_only() {
        // Busy from its first minute, far above the prior.
        let per_min = |i: i64| if i % 2 == 0 { 290 } else { 510 };
        let (state, tuning, now) = learned(120, per_min);
        let calibrated = |s: &ServiceState| -> Vec<f64> {
            (0..=tuning.windows.len())
                .map(|test| s.baseline.dispersion.calibrate(test, 40.0))
                .collect()
        };
        let first_day = calibrated(&state);
        assert!(first_day.iter().all(|&c| c < 20.0), "{first_day:?}");
        let mut state = decode(&encode(&state).unwrap()).unwrap();
        assert_eq!(calibrated(&state), first_day, "restored");
        let cell = Cell {
            region: RegionCode::parse("US").unwrap(),
            problem: state.problems[0].clone(),
        };
        for i in now..1440 + 60 {
            state.observe(i * 60, &[(cell.clone(), per_min(i))], &tuning);
        }
        let after = calibrated(&state);
        assert!(after.iter().all(|&c| c > 35.0), "{after:?}");
    }

    /// The bucket an incident opens on teaches the score tails, once and no more than scores
    /// of twice the threshold: a series whose bursts keep opening incidents comes to judge
    /// them as its own (learning from ordinary buckets alone, its tails never saw one), and
    /// an outage ten times larger teaches them no more. A sparse series' windows, expecting
    /// under half a report, learn nothing from it.
    #[test]
    fn an_opening_teaches_the_score_tails_no_more_than_twice_the_threshold() {
        let tests = crate::detector::DetectorConfig::default()
            .tuning()
            .windows
            .len()
            + 1;
        let calibrated = |state: &ServiceState| -> Vec<f64> {
            (0..tests)
                .map(|test| state.baseline.dispersion.calibrate(test, 40.0))
                .collect()
        };
        let opened_by = |state: &ServiceState, tuning: &Tuning, now: i64, burst: u64| {
            let mut state = state.clone();
            let cell = Cell {
                region: RegionCode::parse("US").unwrap(),
                problem: state.problems[0].clone(),
            };
            let t = now * 60;
            let change = state.observe(t, &[(cell, burst)], tuning);
            assert_eq!(change, Some(Change::Opened), "a burst of {burst}");
            calibrated(&state)
        };
        // Busy: 40 reports a minute, give or take 11.
        let (state, tuning, now) = learned(3 * 1440, |i| if i % 2 == 0 { 29 } else { 51 });
        let before = calibrated(&state);
        let (small, large) = (
            opened_by(&state, &tuning, now, 1000),
            opened_by(&state, &tuning, now, 10_000),
        );
        assert!(
            small.iter().zip(&before).all(|(a, b)| a < b),
            "a score of 40 nats came out at {before:?} before the opening, {small:?} after"
        );
        assert_eq!(small, large);
        // Sparse: a report an hour.
        let (state, tuning, now) = learned(3 * 1440, |i| u64::from(i % 60 == 0));
        let before = calibrated(&state);
        let after = opened_by(&state, &tuning, now, 30);
        assert!(
            after.iter().zip(&before).all(|(a, b)| (a - b).abs() < 1e-6),
            "{before:?} before, {after:?} after"
        );
    }

    /// `--min-ratio` below the doubling that possible problems need is still the ratio an
    /// outage needs (the doubling gated both, so below 2 the setting did nothing): a busy
    /// series, nearly Poisson, at 1.7 times its expectation over every window is an outage
    /// at a ratio of 1.5, not at 3, and never possible problems.
    #[test]
    fn a_min_ratio_below_two_is_the_ratio_an_outage_needs() {
        let problems = vec![Problem::parse("login").unwrap()];
        let verdict = |min_ratio: f64| {
            let tuning = Tuning {
                min_ratio,
                ..crate::detector::DetectorConfig::default().tuning()
            };
            let state = ServiceState::new(problems.clone(), &tuning, 1.0);
            let mut dispersion = Dispersion::new(tuning.windows.len());
            let expected: Vec<f64> = tuning.windows.iter().map(|&w| 100.0 * w as f64).collect();
            let ordinary: Vec<(f64, f64)> = expected.iter().map(|&m| (m, m)).collect();
            for _ in 0..10_000 {
                dispersion.learn(&ordinary);
            }
            let risen: Vec<(f64, f64)> = expected.iter().map(|&m| (1.7 * m, m)).collect();
            let h = tuning.thresholds.family(1);
            state.verdict(&tuning, h, &dispersion, 0.0, Cusum::default(), &risen)
        };
        let (low, default) = (verdict(1.5), verdict(3.0));
        assert!(low.strong && !low.possible, "{low:?}");
        assert!(!default.strong && !default.possible, "{default:?}");
    }

    /// A service used in one country keeps its day where it was when the country's clocks
    /// change: its profile and its country's hourly share run on a clock that moves with
    /// the country's. On UTC alone, a British service twenty times busier from 08:00 to 18:00 local
    /// time saw its first morning of summer time, an hour early in UTC, as an outage.
    #[test]
    fn a_countrys_day_keeps_its_place_when_its_clocks_change() {
        let tuning = crate::detector::DetectorConfig::default().tuning();
        let problems = vec![Problem::parse("login").unwrap()];
        let gb = RegionCode::parse("GB").unwrap();
        let cell = Cell {
            region: gb,
            problem: problems[0].clone(),
        };
        // 2026-03-22 00:00 UTC; British summer time starts a week later, at 01:00 UTC.
        let start = 1_774_137_600;
        let summer = start + 7 * 86_400 + 3600;
        let busy = |t: i64| {
            let local = t + if t >= summer { 3600 } else { 0 };
            let minutes = local.rem_euclid(86_400) / 60;
            // One a minute at night, rising over an hour from 07:30 to twenty, falling from
            // 17:30.
            let rise = ((minutes as f64 - 450.0) / 60.0).clamp(0.0, 1.0);
            let fall = ((1110.0 - minutes as f64) / 60.0).clamp(0.0, 1.0);
            20f64.powf(rise.min(fall)).round() as u64
        };
        let mut state = ServiceState::new(problems, &tuning, 1.0);
        let mut opened = Vec::new();
        for i in 0..14 * 1440 {
            let t = start + i * 60;
            if state.observe(t, &[(cell.clone(), busy(t))], &tuning) == Some(Change::Opened) {
                opened.push(t);
            }
            let local = t + if t >= summer { 3600 } else { 0 };
            if local.rem_euclid(86_400) == 9 * 3600 {
                // At 09:00 local time the expectation is the day's, before the change and
                // after, for the service and for its country.
                for of in [None, Some(gb)] {
                    let (mean, _) = state.expectation(
                        t,
                        SeriesFilter {
                            region: of,
                            problem: None,
                        },
                    );
                    if t > start + 3 * 86_400 {
                        assert!(
                            (14.0..26.0).contains(&mean),
                            "{of:?} at {t}: {mean} expected against 20"
                        );
                    }
                }
            }
        }
        // The first mornings may open incidents (a day never seen); none after the change.
        assert!(
            opened.iter().all(|&t| t < start + 3 * 86_400),
            "opened at {opened:?}"
        );
        assert_eq!(
            state.baseline.clock(),
            Some(&ProfileClock::of([(DaylightSaving::Europe, 1.0)]))
        );
        // Restored from a build before the clocks (whose profile and hourly shares ran on
        // UTC), it moves both to the country's clock at its next bucket: saved at 09:00 BST
        // with its day learned at 07:00 to 17:00 UTC, it expects 09:00 BST's count at 08:00
        // UTC the next bucket, as it should.
        let mut old = state.clone();
        let on_its_clock = old.region_hours.clone();
        for r in 0..old.regions.len() {
            old.region_hours[r * 24..(r + 1) * 24].rotate_left(1);
        }
        old.baseline
            .follow_clock(ProfileClock::default(), start + 14 * 86_400);
        old.baseline.set_clock(None);
        let saved = old.clone();
        let t = start + 14 * 86_400 + 8 * 3600;
        old.observe(t, &[(cell.clone(), busy(t))], &tuning);
        assert_eq!(old.region_hours, {
            // (The bucket just learned added to its hour.)
            let mut hours = on_its_clock;
            let i = old.region_hour(0, t);
            hours[i] = old.region_hours[i];
            hours
        });
        let total = SeriesFilter {
            region: None,
            problem: None,
        };
        let (mean, _) = old.expectation(t + 60, total);
        assert!((14.0..26.0).contains(&mean), "{mean} expected against 20");
        // Restored in winter (26 October, the day after the clocks went back), it moves them
        // by the clocks of its last bucket, a summer one, as the build with the clocks had
        // them all along: its days were learned on UTC an hour early, however long ago.
        let winter = start + 218 * 86_400 + 8 * 3600;
        let (mut old, mut new) = (saved, state);
        for state in [&mut old, &mut new] {
            state.observe(winter, &[(cell.clone(), 5)], &tuning);
        }
        assert_eq!(old.region_hours, new.region_hours);
        assert_eq!(
            old.expectation(winter + 60, total),
            new.expectation(winter + 60, total)
        );
    }

    /// A bucket that looks like possible problems does not teach the dispersions while it
    /// may be an outage's onset: its residual is the rise suspected, not noise. Learned at
    /// once, an hour of a busy service at three times its rate (a ramp on its way up) took
    /// `k` from 18 to 11 per minute and from 200 to 30 per five and fifteen minutes, and a
    /// slow ramp that widened the dispersion as it rose was never found. Once the series
    /// has looked ordinary for the longest window, the hour was noise, and is learned.
    #[test]
    fn possible_problems_teach_the_dispersion_once_they_turn_out_to_be_noise() {
        // 40 reports a minute, give or take 11: k about 20 per minute.
        let (mut state, tuning, now) = learned(3 * 1440, |i| if i % 2 == 0 { 29 } else { 51 });
        let windows = tuning.windows.len();
        let k = |state: &ServiceState| {
            (0..windows)
                .map(|w| (state.baseline.dispersion(w), state.region_dispersion.k(w)))
                .collect::<Vec<_>>()
        };
        let before = k(&state);
        for i in now..now + 60 {
            learn_possible(&mut state, &tuning, i, 120.0);
        }
        let held = k(&state);
        let kept = |(b, a): (&(f64, f64), &(f64, f64))| a.0 > 0.99 * b.0 && a.1 > 0.99 * b.1;
        assert!(
            before.iter().zip(&held).all(kept),
            "k per window (total, region) went from {before:?} to {held:?}"
        );
        // Then ordinary minutes: the hour is learned once they span the longest window. (Per
        // minute: the longer windows' sums still hold some of the hour in those minutes.)
        let longest = *tuning.windows.last().unwrap() as i64;
        let ordinary = |i: i64| if i % 2 == 0 { 29.0 } else { 51.0 };
        for i in now + 60..now + 59 + longest {
            learn_as(&mut state, &tuning, i, ordinary(i), false);
        }
        let soon = k(&state)[0];
        let last = now + 59 + longest;
        learn_as(&mut state, &tuning, last, ordinary(last), false);
        let learned = k(&state)[0];
        assert!(
            soon.0 > 0.9 * before[0].0 && learned.0 < 0.7 * before[0].0,
            "k per minute (total, region): {:?} before, {soon:?} a minute short of the longest \
             window, {learned:?} after it",
            before[0]
        );
        assert!(learned.1 < 0.7 * before[0].1, "{learned:?}");
    }

    /// A burst that the series' score tails deflate below possible problems is still held
    /// back from the dispersions when its evidence before the calibration says possible
    /// problems: the tails already account for the series' bursts, and learned by the
    /// dispersions as well, each burst widened the spread the next was judged by.
    #[test]
    fn a_burst_the_tails_deflate_is_still_held_back_from_the_dispersions() {
        // 40 reports a minute, give or take 11, and tails that have seen scores of 40 nats
        // in a third of the buckets: a bursty series.
        let (mut state, tuning, now) = learned(3 * 1440, |i| if i % 2 == 0 { 29 } else { 51 });
        for dispersion in state.dispersions() {
            for _ in 0..2000 {
                for test in 0..=tuning.windows.len() {
                    dispersion.learn_score(test, 40.0, false);
                }
            }
        }
        let before = state.baseline.dispersion(0);
        let (mu, k) = (state.baseline.expected(now * 60), before);
        let raw = upper_score(90.0, mu, k);
        let h = tuning.thresholds.family(1);
        let calibrated = state.baseline.dispersion.calibrate(0, raw);
        assert!(
            calibrated < h * POSSIBLE_FRACTION && raw >= h * POSSIBLE_FRACTION,
            "a burst of 90 against {mu:.1} scores {raw:.1}, {calibrated:.1} calibrated (h {h:.1})"
        );
        let cell = Cell {
            region: RegionCode::parse("US").unwrap(),
            problem: Problem::parse("login").unwrap(),
        };
        assert_eq!(state.observe(now * 60, &[(cell, 90)], &tuning), None);
        assert_eq!(
            state.level,
            Level::Operational,
            "not possible problems once calibrated"
        );
        assert!(
            !state.baseline.dispersion.held().is_empty(),
            "held back from the dispersions"
        );
        let after = state.baseline.dispersion(0);
        assert!(
            (after / before - 1.0).abs() < 1e-9,
            "k per minute {before} → {after}"
        );
    }

    /// Nor do the windows' score tails learn such a bucket's scores while it may be an
    /// outage's onset: learned at once, a slow ramp's scores taught the tails as it rose (a
    /// 15-minute score of 79 nats came out at 10), and for the tails' 30 days of memory
    /// deflated the service's later ramps as much. Once the series has looked ordinary for
    /// the longest window, they are learned.
    #[test]
    fn possible_problems_teach_the_score_tails_once_they_turn_out_to_be_noise() {
        let (mut state, tuning, now) = learned(3 * 1440, |i| if i % 2 == 0 { 29 } else { 51 });
        let windows = tuning.windows.len();
        // What a score of 30 nats in each window comes out at, in the total's family and
        // the regions'.
        let calibrated = |state: &ServiceState| {
            (0..windows)
                .map(|w| {
                    (
                        state.baseline.dispersion.calibrate(w, 30.0),
                        state.region_dispersion.calibrate(w, 30.0),
                    )
                })
                .collect::<Vec<_>>()
        };
        let before = calibrated(&state);
        // An hour at five times the usual count.
        for i in now..now + 60 {
            learn_possible(&mut state, &tuning, i, 200.0);
        }
        let held = calibrated(&state);
        let kept = |(b, a): (&(f64, f64), &(f64, f64))| a.0 > b.0 - 0.1 && a.1 > b.1 - 0.1;
        assert!(
            before.iter().zip(&held).all(kept),
            "30 nats per window (total, region) came out at {before:?}, then {held:?}"
        );
        assert!(!state.baseline.dispersion.held_scores().is_empty());
        let longest = *tuning.windows.last().unwrap() as i64;
        let ordinary = |i: i64| if i % 2 == 0 { 29.0 } else { 51.0 };
        for i in now + 60..now + 60 + longest {
            learn_as(&mut state, &tuning, i, ordinary(i), false);
        }
        assert!(state.baseline.dispersion.held_scores().is_empty());
        let learned = calibrated(&state);
        let deflated = |(b, a): (&(f64, f64), &(f64, f64))| a.0 < b.0 - 3.0 && a.1 < b.1 - 3.0;
        assert!(
            before.iter().zip(&learned).all(deflated),
            "30 nats per window (total, region) came out at {before:?}, then {learned:?}"
        );
    }

    /// What was held back when an incident opens was the outage's onset: it is forgotten,
    /// in every family, and the dispersions are as before the rise.
    #[test]
    fn an_opening_forgets_what_was_held_back() {
        let (mut state, tuning, now) = learned(3 * 1440, |i| if i % 2 == 0 { 29 } else { 51 });
        let before = (state.baseline.dispersion(0), state.region_dispersion.k(0));
        let cell = Cell {
            region: RegionCode::parse("US").unwrap(),
            problem: state.problems[0].clone(),
        };
        let mut opened = None;
        for (n, i) in (now..now + 60).enumerate() {
            // A ramp: from two and a half times the usual count, up by half of it a minute.
            let x = 100 + 20 * n as u64;
            let held = state.baseline.dispersion.held();
            if let Some(Change::Opened) = state.observe(i * 60, &[(cell.clone(), x)], &tuning) {
                opened = Some((n, held));
                break;
            }
        }
        let (minutes, held) = opened.expect("the ramp opens an incident");
        assert!(
            !held.is_empty(),
            "its first {minutes} minutes were held back"
        );
        assert!(state.baseline.dispersion.held().is_empty());
        assert!(state.region_dispersion.held().is_empty());
        for dispersion in state.dispersions() {
            assert!(dispersion.held_scores().is_empty());
        }
        let after = (state.baseline.dispersion(0), state.region_dispersion.k(0));
        let same = |a: f64, b: f64| (a / b - 1.0).abs() < 1e-9;
        assert!(
            same(after.0, before.0) && same(after.1, before.1),
            "{before:?} before the ramp, {after:?} after"
        );
    }

    /// A global incident none of whose countries is elevated on its own names those holding
    /// at least half of its excess, and its events go on naming what they named.
    #[test]
    fn a_global_incident_names_the_countries_of_its_excess() {
        let tuning = crate::detector::DetectorConfig::default().tuning();
        let mut state = ServiceState::new(vec![Problem::parse("login").unwrap()], &tuning, 0.5);
        let code = |c: &str| RegionCode::parse(c).unwrap();
        state.regions = vec![code("US"), code("DE"), code("FR"), code("JP")];
        let mut open = Open {
            started_at: 0,
            opened_at: 60,
            x: 20.0,
            mu: 8.0,
            // Excess: US 6, DE 4, FR 2, JP none.
            region_x: vec![10.0, 6.0, 3.0, 1.0],
            region_mu: vec![4.0, 2.0, 1.0, 1.0],
            problem_x: vec![20.0],
            problem_mu: vec![8.0],
            region_problem_x: Vec::new(),
            buckets: 2,
            attribution: attribution(Scope::Global, &[]),
            caused_by: Vec::new(),
            shown: Vec::new(),
        };
        assert_eq!(state.regions_named(&open), [code("US")]);
        open.region_x[1] = 8.0;
        assert_eq!(state.regions_named(&open), [code("DE"), code("US")]);
        // Named once, a country stays named beside those found elevated since.
        open.shown = vec![code("US")];
        open.attribution = attribution(Scope::Global, &["FR"]);
        assert_eq!(state.regions_named(&open), [code("FR"), code("US")]);
        // Saved and restored (a restart, a new leader), it still does...
        state.open = Some(open.clone());
        let saved = encode(&state).unwrap();
        let named = |state: &ServiceState| state.regions_named(state.open.as_ref().unwrap());
        assert_eq!(named(&decode(&saved).unwrap()), [code("FR"), code("US")]);
        // ...where a state saved before the countries shown were names the attribution's.
        let shown = postcard::to_stdvec(&open.shown).unwrap();
        let known = postcard::to_stdvec(state.baseline.known()).unwrap();
        let clock = postcard::to_stdvec(&state.baseline.clock()).unwrap();
        let first_hour = postcard::to_stdvec(&FirstHour::default()).unwrap();
        let first_report = postcard::to_stdvec(&state.first_report).unwrap();
        assert!(
            saved.ends_with(
                &[
                    &shown[..],
                    &known[..],
                    &clock[..],
                    &first_hour[..],
                    &first_report[..]
                ]
                .concat()
            ),
            "the countries shown are saved before the known slots, the clock, the first \
             hour's scores and the first report"
        );
        let after = saved.len()
            - shown.len()
            - known.len()
            - clock.len()
            - first_hour.len()
            - first_report.len();
        let before = decode(&saved[..after]).unwrap();
        assert_eq!(named(&before), [code("FR")]);
        // A regional incident names its countries alone.
        open.attribution = attribution(Scope::Regional, &["JP"]);
        assert_eq!(state.regions_named(&open), [code("JP")]);
    }

    /// The first report observed marks where the service's history begins: silent buckets
    /// before it do not, nor does any bucket after; and it is saved.
    #[test]
    fn the_first_bucket_with_a_report_is_kept() {
        let (mut state, tuning, _) = learned(30, |i| u64::from(i >= 20));
        assert_eq!(state.first_report(), Some(20 * 60));
        let cell = Cell {
            region: RegionCode::parse("DE").unwrap(),
            problem: Problem::parse("login").unwrap(),
        };
        state.observe(30 * 60, &[(cell, 4)], &tuning);
        assert_eq!(state.first_report(), Some(20 * 60));
        let restored = decode(&encode(&state).unwrap()).unwrap();
        assert_eq!(restored.first_report(), Some(20 * 60));
        let (silent, _, _) = learned(30, |_| 0);
        assert_eq!(silent.first_report(), None);
        assert_eq!(
            decode(&encode(&silent).unwrap()).unwrap().first_report(),
            None
        );
    }

    /// The counts per region and problem are saved after the rest, for the slots that keep
    /// them; a state saved without them (by an earlier build) decodes with none.
    #[test]
    fn counts_per_region_and_problem_are_saved_after_the_rest() {
        let (state, tuning, _) = learned(3 * 1440, |i| if i % 2 == 0 { 29 } else { 51 });
        let longest = *tuning.windows.last().unwrap();
        let kept: Vec<usize> = (0..state.ring.len())
            .filter(|&i| !state.ring[i].region_problem_x.is_empty())
            .collect();
        assert_eq!(kept.len(), longest, "the longest window's slots keep them");
        assert_eq!(kept[0], state.ring.len() - longest);
        let saved = encode(&state).unwrap();
        let restored = decode(&saved).unwrap();
        let matrices = |s: &ServiceState| -> Vec<Vec<f32>> {
            s.ring.iter().map(|s| s.region_problem_x.clone()).collect()
        };
        assert_eq!(matrices(&restored), matrices(&state));
        assert_eq!(
            encode(&restored).unwrap(),
            saved,
            "a round trip changes nothing"
        );

        let mut earlier = postcard::to_stdvec(&state).unwrap();
        earlier.extend(postcard::to_stdvec(&Pending::default()).unwrap());
        let old = decode(&earlier).unwrap();
        assert!(old.ring.iter().all(|s| s.region_problem_x.is_empty()));
        assert_eq!(old.ring.len(), state.ring.len());
    }

    /// What is held back is saved after the rest of the state, and each part added since
    /// after the one before: a state saved before there was any (the same bytes without it)
    /// still decodes, with nothing held back, instead of being misread or relearned from
    /// scratch; and a state saved with it decodes in a build from before, which reads the
    /// rest and ignores what follows.
    #[test]
    fn states_saved_before_anything_was_held_back_still_decode() {
        let (mut state, tuning, now) = learned(3 * 1440, |i| if i % 2 == 0 { 29 } else { 51 });
        for i in now..now + 5 {
            learn_possible(&mut state, &tuning, i, 120.0);
        }
        // Two ordinary minutes since: still held back, and counted.
        learn_as(&mut state, &tuning, now + 5, 29.0, false);
        learn_as(&mut state, &tuning, now + 6, 51.0, false);
        assert_eq!(state.ordinary_run, 2);
        let held = state.baseline.dispersion.held();
        assert!(!held.is_empty(), "something is held back");
        // The slot at `now` is in an incident, as it was on each of the three days before.
        for day in (0..=3).rev() {
            state.baseline.recurs((now - day * 1440) * 60);
        }
        assert_ne!(state.baseline.recurrence(), &Recurrence::default());
        let saved = encode(&state).unwrap();
        let restored = decode(&saved).unwrap();
        let recurrence = postcard::to_stdvec(state.baseline.recurrence()).unwrap();
        // No incident is open: no countries shown.
        let shown = postcard::to_stdvec(&Vec::<RegionCode>::new()).unwrap();
        let known = postcard::to_stdvec(state.baseline.known()).unwrap();
        let clock = postcard::to_stdvec(&state.baseline.clock()).unwrap();
        // Three days in, the first hour's scores are forgotten.
        let first_hour = postcard::to_stdvec(&FirstHour::default()).unwrap();
        let first_report = postcard::to_stdvec(&Some(0_i64)).unwrap();
        assert!(
            saved.ends_with(
                &[
                    &recurrence[..],
                    &shown[..],
                    &known[..],
                    &clock[..],
                    &first_hour[..],
                    &first_report[..]
                ]
                .concat()
            ),
            "the recurrence is saved before the countries shown, then the known slots, the \
             profile's clock, the first hour's scores and the first report last"
        );
        assert_eq!(
            restored.first_report(),
            Some(0),
            "its first minute had reports"
        );
        assert_eq!(restored.baseline.recurrence(), state.baseline.recurrence());
        assert_eq!(restored.baseline.known(), state.baseline.known());
        assert!(state.baseline.clock().is_some());
        assert_eq!(restored.baseline.clock(), state.baseline.clock());
        // Saved by the build before the first report was kept: its history began at some
        // time unknown, and saved again it still did.
        let long_ago = postcard::to_stdvec(&Some(LONG_AGO)).unwrap();
        let whole = saved.clone();
        let unreported = &whole[..whole.len() - first_report.len()];
        let old = decode(unreported).unwrap();
        assert_eq!(old.first_report(), None);
        assert_eq!(encode(&old).unwrap(), [unreported, &long_ago].concat());
        // Saved by the build before the first hour's scores were kept apart: the same.
        let prior = unreported[..unreported.len() - first_hour.len()].to_vec();
        assert_eq!(
            encode(&decode(&prior).unwrap()).unwrap(),
            [unreported, &long_ago].concat()
        );
        // Saved by the build before the clock: its profile ran on UTC, and says so.
        let unclocked = decode(&prior[..prior.len() - clock.len()]).unwrap();
        assert_eq!(unclocked.baseline.clock(), None);
        assert_eq!(unclocked.baseline.known(), state.baseline.known());
        // A clock that does not decode is no old save: the regions' clock, not moved.
        let mut damaged = prior[..prior.len() - clock.len()].to_vec();
        damaged.extend([1, 200]);
        let damaged = decode(&damaged).unwrap();
        assert_eq!(damaged.baseline.clock(), Some(&state.regions_clock()));
        // The possible problems' buckets were learned capped: their slot is not as well
        // known as it is learned.
        let mut as_learned = state.baseline.clone();
        as_learned.set_known(None);
        assert_ne!(as_learned.known(), state.baseline.known());
        // Saved by the build before the known slots: the rest decodes, and every bucket
        // learned counts as known, as that build counted them.
        let earlier = decode(&prior[..prior.len() - clock.len() - known.len()]).unwrap();
        assert_eq!(earlier.baseline.known(), as_learned.known());
        assert_eq!(earlier.baseline.recurrence(), state.baseline.recurrence());
        // Saved by the build before the recurrence: the rest decodes, and no slot has an
        // incident behind it.
        let saved =
            &prior[..prior.len() - recurrence.len() - shown.len() - known.len() - clock.len()];
        let before = decode(saved).unwrap();
        assert_eq!(before.baseline.recurrence(), &Recurrence::default());
        assert_eq!(before.baseline.slow_level(), state.baseline.slow_level());
        assert_eq!(restored.baseline.dispersion.held(), held);
        assert_eq!(
            restored.region_dispersion.held(),
            state.region_dispersion.held()
        );
        let scores = state.baseline.dispersion.held_scores();
        assert!(!scores.is_empty(), "scores are held back");
        assert_eq!(restored.baseline.dispersion.held_scores(), scores);
        assert_eq!(restored.ordinary_run, state.ordinary_run);
        let slow = postcard::to_stdvec(&state.baseline.slow_level()).unwrap();
        assert!(saved.ends_with(&slow), "the slow level is saved before it");
        assert_eq!(restored.baseline.slow_level(), state.baseline.slow_level());
        // Saved by the build before the slow level: the rest decodes, and the slow level
        // starts where the short-term level stands.
        let previous = decode(&saved[..saved.len() - slow.len()]).unwrap();
        assert_eq!(previous.baseline.dispersion.held_scores(), scores);
        assert_eq!(previous.baseline.dispersion.held(), held);
        let mut started = state.baseline.clone();
        started.set_slow_level(None);
        assert_eq!(previous.baseline.slow_level(), started.slow_level());
        // Saved by a build from before the score tails held anything back: the rest
        // decodes, and the tails hold nothing.
        let trailer = postcard::to_stdvec(&Scores {
            total: scores,
            regions: state.region_dispersion.held_scores(),
            problems: state.problem_dispersion.held_scores(),
        })
        .unwrap();
        let mut older = decode(&saved[..saved.len() - slow.len() - trailer.len()]).unwrap();
        assert!(older.baseline.dispersion.held_scores().is_empty());
        assert_eq!(older.baseline.dispersion.held(), held);
        assert_eq!(older.ordinary_run, state.ordinary_run);
        // What such a state holds back from then on is saved whole, and restored. (Its tails
        // held back only the windows' scores, one entry short of its tails, and a restore
        // threw them away as not fitting, at every restart for good.)
        for i in now + 7..now + 12 {
            learn_possible(&mut older, &tuning, i, 120.0);
        }
        let scores = older.baseline.dispersion.held_scores();
        assert!(!scores.is_empty());
        let again = decode(&encode(&older).unwrap()).unwrap();
        assert_eq!(again.baseline.dispersion.held_scores(), scores);
        assert_eq!(
            again.region_dispersion.held_scores(),
            older.region_dispersion.held_scores()
        );
        assert_eq!(
            encode(&restored).unwrap(),
            whole,
            "a round trip changes nothing"
        );

        let before = postcard::to_stdvec(&state).unwrap();
        assert!(saved.starts_with(&before));
        let old = decode(&before).unwrap();
        assert!(old.baseline.dispersion.held().is_empty());
        assert_eq!(old.ordinary_run, 0);
        // What follows the state, unreadable, costs what was held back, not the state.
        let mut garbled = before.clone();
        garbled.extend([0xff; 9]);
        assert_eq!(
            postcard::to_stdvec(&decode(&garbled).unwrap()).unwrap(),
            before
        );
        assert_eq!(postcard::to_stdvec(&old).unwrap(), before);
        let by_an_older_build: ServiceState = postcard::from_bytes(saved).unwrap();
        assert_eq!(postcard::to_stdvec(&by_an_older_build).unwrap(), before);
    }

    /// A series that expects too few reports for its ring to hold a resolution's evidence
    /// is quiet once the ring holds no more reports than it expects. The incident here is
    /// set open by hand, global and named after a sparse country (Germany: a report every
    /// three hours, and four in the six hours the incident has been open). Its rate there is
    /// under three times Germany's baseline, and an hour of Germany expects less than a
    /// report, so the likelihood test could never weigh the 3 nats a resolution needs: with
    /// that test alone, it stays open (until the day a "new normal" takes). In the
    /// simulation, sparse services' global ramps named only their sparsest country and
    /// stayed open 13 and 22 hours past their outages.
    #[test]
    fn an_incident_named_after_a_sparse_country_resolves_once_the_country_is_quiet() {
        let tuning = crate::detector::DetectorConfig::default().tuning();
        let problems = vec![Problem::parse("login").unwrap()];
        let mut state = ServiceState::new(problems.clone(), &tuning, 0.5);
        let (us, de) = (
            RegionCode::parse("US").unwrap(),
            RegionCode::parse("DE").unwrap(),
        );
        let cell = |region| Cell {
            region,
            problem: problems[0].clone(),
        };
        // A report from the US every other minute, from Germany every three hours.
        let traffic = |i: i64, de_every: i64| {
            let mut cells = vec![(cell(us), u64::from(i % 2 == 0))];
            if i % de_every == 0 {
                cells.push((cell(de), 1));
            }
            cells
        };
        let days = 2 * 1440;
        for i in 0..days {
            state.observe(i * 60, &traffic(i, 180), &tuning);
        }
        let started_at = (days - 360) * 60;
        let mut open = Open {
            started_at,
            opened_at: started_at + 600,
            x: 200.0,
            mu: 180.0,
            region_x: Vec::new(),
            region_mu: Vec::new(),
            problem_x: vec![200.0],
            problem_mu: vec![180.0],
            region_problem_x: Vec::new(),
            buckets: 360,
            attribution: attribution(Scope::Global, &["DE"]),
            caused_by: Vec::new(),
            shown: Vec::new(),
        };
        for region in &state.regions {
            let (x, mu) = if *region == de {
                (4.0, 2.0)
            } else {
                (196.0, 178.0)
            };
            open.region_x.push(x);
            open.region_mu.push(mu);
        }
        state.open = Some(open);
        // Germany goes on reporting every ten minutes for half an hour: the incident stays
        // open. Then it is quiet, and the incident resolves once its ring holds no more
        // reports than it expects (about one in the hours Germany used to report in).
        let mut resolved = None;
        for i in days..days + 150 {
            let de_every = if i < days + 30 { 10 } else { 100_000 };
            if let Some(Change::Resolved { .. }) =
                state.observe(i * 60, &traffic(i, de_every), &tuning)
            {
                resolved = Some(i - days);
                break;
            }
        }
        assert!(
            resolved.is_some_and(|minute| (30..=90).contains(&minute)),
            "resolved at minute {resolved:?} (Germany's last report at minute 20)"
        );
    }

    /// Buckets taken as missing never reach a service's state, so its ring jumps over them.
    /// An outage found after such a gap starts after it: the minutes before the gap, however
    /// they looked, are no part of the run of elevated buckets that opened it.
    #[test]
    fn an_outage_found_after_missing_buckets_starts_after_them() {
        let tuning = crate::detector::DetectorConfig::default().tuning();
        let problems = vec![Problem::parse("login").unwrap()];
        let cell = Cell {
            region: RegionCode::parse("US").unwrap(),
            problem: problems[0].clone(),
        };
        let days = 2 * 1440;
        // Two days of ten reports a minute, then two minutes a little above (elevated for the
        // onset, far from an outage).
        let state_before_flood = || {
            let mut state = ServiceState::new(problems.clone(), &tuning, 1.0);
            for i in 0..days {
                state.observe(i * 60, &[(cell.clone(), 10)], &tuning);
            }
            for i in days..days + 2 {
                assert_eq!(state.observe(i * 60, &[(cell.clone(), 20)], &tuning), None);
            }
            state
        };
        // The flood from minute `from`: where its incident starts.
        let flood_start = |state: &mut ServiceState, from: i64| {
            let opened = (from..from + 10).find(|&i| {
                state.observe(i * 60, &[(cell.clone(), 200)], &tuning) == Some(Change::Opened)
            });
            assert!(opened.is_some(), "the flood opens an incident");
            state.open.as_ref().unwrap().started_at
        };
        // Three hours missing, then the flood.
        let resumed = days + 2 + 180;
        assert_eq!(
            flood_start(&mut state_before_flood(), resumed),
            resumed * 60,
            "starts with the flood, after the gap"
        );
        // With the same two minutes just before it, the flood's run reaches back over them.
        assert_eq!(flood_start(&mut state_before_flood(), days + 2), days * 60);
    }

    /// A change of attribution takes every recent verdict: a country crossing the line for a
    /// bucket is not named, nor one dipping under it for a bucket dropped; each country and
    /// the scope are judged on their own.
    #[test]
    fn attribution_changes_once_the_recent_verdicts_agree() {
        let regional = |regions: &[&str]| attribution(Scope::Regional, regions);
        let current = regional(&["DE", "FR"]);
        // Spain in the newest verdict only; France missing from one verdict of three.
        assert_eq!(
            steady(
                &current,
                &[
                    regional(&["DE", "ES", "FR"]),
                    regional(&["DE"]),
                    regional(&["DE", "FR"])
                ]
            ),
            current
        );
        // Spain in all three, France in none: named, and dropped.
        assert_eq!(
            steady(
                &current,
                &[
                    regional(&["DE", "ES"]),
                    regional(&["DE", "ES"]),
                    regional(&["DE", "ES"])
                ]
            ),
            regional(&["DE", "ES"])
        );
        // A scope one verdict disagrees with stays; the regions still follow theirs.
        let global = attribution(Scope::Global, &["DE", "ES", "FR"]);
        assert_eq!(
            steady(
                &current,
                &[
                    global.clone(),
                    regional(&["DE", "ES", "FR"]),
                    global.clone()
                ]
            ),
            regional(&["DE", "ES", "FR"])
        );
        // Every verdict global: global, with the countries all of them name.
        assert_eq!(
            steady(
                &current,
                &[
                    global.clone(),
                    attribution(Scope::Global, &["DE", "FR"]),
                    global.clone()
                ]
            ),
            attribution(Scope::Global, &["DE", "FR"])
        );
        // With one verdict (just opened), it is followed.
        assert_eq!(steady(&current, std::slice::from_ref(&global)), global);
    }

    #[test]
    fn a_global_outage_keeps_the_regions_it_has_named_and_a_regional_one_follows_evidence() {
        let global = attribution(Scope::Global, &["BR", "IN", "US"]);
        assert_eq!(
            global.settle(attribution(Scope::Global, &["IN", "JP", "US"])),
            attribution(Scope::Global, &["BR", "IN", "JP", "US"])
        );
        // Unchanged evidence is no update.
        assert_eq!(global.settle(attribution(Scope::Global, &["US"])), global);
        // A change of scope, or a regional outage's regions, follow the evidence.
        assert_eq!(
            global.settle(attribution(Scope::Regional, &["US"])),
            attribution(Scope::Regional, &["US"])
        );
        assert_eq!(
            attribution(Scope::Regional, &["DE", "FR"])
                .settle(attribution(Scope::Regional, &["DE"])),
            attribution(Scope::Regional, &["DE"])
        );
    }

    #[test]
    fn sums_over_runs_of_buckets_match_the_bucket_by_bucket_sums() {
        let config = crate::detector::DetectorConfig::default();
        let tuning = config.tuning();
        let problems = vec![Problem::parse("login").unwrap()];
        let mut state = ServiceState::new(problems.clone(), &tuning, 1.0);
        let us = RegionCode::parse("US").unwrap();
        // Four days of a daily cycle, 2 to 18 reports a minute.
        for i in 0..4 * 1440 {
            let t = i * 60;
            let hour = (t % 86_400) as f64 / 3600.0;
            let x = (10.0 - 8.0 * (std::f64::consts::TAU * hour / 24.0).cos()).round() as u64;
            let cell = Cell {
                region: us,
                problem: problems[0].clone(),
            };
            state.observe(t, &[(cell, x)], &tuning);
        }
        let of = SeriesFilter {
            region: Some(us),
            problem: None,
        };
        let exact = |since: i64, until: i64| {
            (since..until).step_by(60).fold((0.0, 0.0), |(m, v), t| {
                let (mu, k) = state.expectation(t, of);
                (m + mu, v + mu + mu * mu / k)
            })
        };
        let day = 4 * 86_400;
        for (since, until) in [
            (day, day + 3600),
            (day + 1800, day + 86_400),
            (day, day + 60),
            (day, day + 30),
        ] {
            let (m, v) = state.expectation_over(since, until, of);
            let (em, ev) = exact(since, until);
            assert!((m / em - 1.0).abs() < 0.01, "{since}..{until}: {m} vs {em}");
            assert!((v / ev - 1.0).abs() < 0.01, "{since}..{until}: {v} vs {ev}");
        }
        assert_eq!(state.expectation_over(day, day, of), (0.0, 0.0));
    }

    #[test]
    fn a_global_outage_needs_a_quiet_rest_to_become_regional() {
        // Three countries flooded, two with a small rise each: short of the overall factor,
        // as what is left after the most elevated are picked out always is.
        let mu = [10.0, 10.0, 10.0, 5.0, 5.0];
        let risen = [100.0, 100.0, 100.0, 9.0, 9.0];
        let rho = risen.iter().sum::<f64>() / mu.iter().sum::<f64>();
        let k = 1e6;
        assert_eq!(concentrated(&risen, &mu, rho, k, None), Some(vec![0, 1, 2]));
        assert_eq!(
            concentrated(&risen, &mu, rho, k, Some(STAYS_GLOBAL_ALPHA)),
            None,
            "once global, a stirring rest keeps it global"
        );
        // A rest that has not moved makes it regional either way.
        let quiet = [100.0, 100.0, 100.0, 5.0, 5.0];
        let rho = quiet.iter().sum::<f64>() / mu.iter().sum::<f64>();
        for sticky in [None, Some(STAYS_GLOBAL_ALPHA)] {
            assert_eq!(
                concentrated(&quiet, &mu, rho, k, sticky),
                Some(vec![0, 1, 2])
            );
        }
    }
}
