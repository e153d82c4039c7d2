//! `downradar simulate`: synthetic crowd-report counts with injected outages, and the ground
//! truth to score a detector against.
//!
//! Real report data with labelled outages is closed (Downdetector sells it), so the detector's
//! accuracy is measured on traffic whose truth we know. The model reproduces what makes
//! detection hard in practice (`shared/research/detection.md`): volumes spanning three orders
//! of magnitude, daily cycles shifted by time zones, weekly cycles, overdispersion, harmless
//! blips, and outages that are global, regional, partial, cascading or slowly rising.
//!
//! # The model
//!
//! - **Volume.** Each service gets a base rate (service-wide reports per minute at its weekly
//!   mean), log-uniform between 0.05 and 60 per minute. Services are drawn in blocks of three,
//!   one from each volume class (sparse below 0.5/min, low below 5/min, high), so that every
//!   selection of three or more services has all three; sparse services are the case where
//!   no method can be fast (detection.md §4.3), and a benchmark without them flatters.
//! - **Regions.** Each service draws 8 to 15 of [`COUNTRIES`], 25 large internet countries
//!   weighted by their share of reports, and jitters the weights per service (log-normal):
//!   services differ in where their users are. Each country has its standard UTC offset (one
//!   representative offset for multi-zone countries) and keeps daylight saving time by its
//!   rule ([`DaylightSaving`]: in the default October runs, Europe's clocks go back on the
//!   25th, Australia's forward on the 4th and Egypt's back on the 29th).
//! - **Problems.** The service's catalog problems, with Zipf weights (1, 1/2, 1/3, …): the
//!   first problem of a catalog entry is the one most people report.
//! - **Expected count** of one cell (bucket, region, problem) = base × region share × problem
//!   share × diurnal(local hour) × weekly(local day) × bucket minutes. The diurnal curve is
//!   the sum of two cosines, 0.26 at 5:00 and 1.6 at 20:00 local time, averaging 1 over a day;
//!   so a service's total is a sum of shifted curves and its regional mix changes over the day,
//!   which is why the detector's regional test needs time-of-day shares. The weekly factor
//!   makes weekends 0.85 or 1.15 times a weekday, normalised to average 1 over a week.
//! - **Overdispersion.** Counts are negative binomial with mean μ and dispersion k = 5
//!   (variance μ + μ²/k), the gamma–Poisson mixture that crowd reports show: the rate itself
//!   wobbles from minute to minute. Means of 10 or more are sampled as that mixture (gamma by
//!   Marsaglia & Tsang 2000, Poisson by inversion below 30 and by Hörmann's PTRS 1993 above);
//!   smaller means by inverting the negative binomial distribution function directly, which is
//!   the same distribution from a single uniform, and answers almost every cell of a sparse
//!   service ("zero") with one comparison.
//! - **Blips.** About once per service-day, one region's rate rises 1.5 to 2.5 times for 1 to 3
//!   buckets (a local news item, an ISP hiccup). Not an outage: a detector should not fire, so
//!   blips are kept clear of outages and only counted in the truth.
//! - **Outages.** Each service starts a Poisson number of outages (mean `--outages-per-week` ×
//!   weeks), at uniform times, never overlapping another outage of the same service and an hour
//!   apart, so each is one incident. Durations are log-uniform over 10 to 180 minutes (most
//!   outages are short). Affected cells run at 5 to 30 times their baseline (log-uniform), plus
//!   a flood of 30 to 80 reports over the first 5 minutes spread over the affected cells: a
//!   sparse service has few reports at baseline, but its users still notice an outage at once.
//!   Kinds: `global` (everything), `regional` (1 to 3 regions), `partial` (1 or 2 problems
//!   everywhere), `ramp` (a linear rise to 5 to 10 times over 30 to 60 minutes, then a plateau;
//!   its flood rises along), and `cascading`: an outage of a service with dependents in the
//!   selection (global, or regional in the same countries) followed 1 to 5 minutes later by
//!   outages of some of its dependents, which name it in `caused_by`. After the injected end
//!   reports die down exponentially over a few minutes (people who noticed late). With a week
//!   or more and five or more services, every kind that the selection allows occurs at least
//!   once.
//!
//! # Determinism
//!
//! All randomness comes from splitmix64 streams derived from `--seed`, one per purpose and
//! service, so the same flags give byte-identical files on one platform (the model uses the
//! platform's `exp`, `ln` and `cos`). We do not use `rand`'s `StdRng`: its algorithm may change
//! between releases, which would silently change every generated file. Profiles depend only on
//! the seed and the service's catalog position, so `--services 5` simulates the same five
//! services as the full catalog does.

use std::collections::BTreeMap;
use std::f64::consts::TAU;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, bail};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tokio::sync::Semaphore;

use crate::buckets::BucketWidth;
use crate::catalog::{Catalog, Problem, Service, ServiceId};
use crate::config::SimulateArgs;
use crate::regions::{DaylightSaving, RegionCode};

/// The countries reports come from: code, relative report volume, standard UTC offset (minutes).
///
/// Weights follow internet population and the reach of the big Western services, so the US
/// leads; the offset of a multi-zone country is that of its most populous zone.
const COUNTRIES: [(&str, f64, i32); 25] = [
    ("US", 30.0, -300),
    ("IN", 12.0, 330),
    ("BR", 9.0, -180),
    ("GB", 8.0, 0),
    ("DE", 6.0, 60),
    ("FR", 5.0, 60),
    ("JP", 6.0, 540),
    ("MX", 5.0, -360),
    ("ID", 5.0, 420),
    ("CA", 4.0, -300),
    ("IT", 3.5, 60),
    ("ES", 3.5, 60),
    ("TR", 3.0, 180),
    ("PH", 3.0, 480),
    ("NG", 2.0, 60),
    ("AU", 2.5, 600),
    ("KR", 2.5, 540),
    ("PL", 2.0, 60),
    ("NL", 2.0, 60),
    ("AR", 2.0, -180),
    ("ZA", 1.5, 120),
    ("EG", 1.5, 120),
    ("VN", 2.0, 420),
    ("TH", 2.0, 420),
    ("SA", 1.5, 180),
];

/// Dispersion k of the negative binomial counts (variance μ + μ²/k).
const DISPERSION: f64 = 5.0;
/// Below this mean, counts are drawn by inverting the negative binomial directly.
const NB_INVERSION_BELOW: f64 = 10.0;
/// Below this rate, Poisson counts are drawn by inversion; above, by PTRS.
const POISSON_INVERSION_BELOW: f64 = 30.0;

/// Volume class boundaries (reports per minute) and the range base rates are drawn from.
const MIN_BASE: f64 = 0.05;
const SPARSE_BELOW: f64 = 0.5;
const LOW_BELOW: f64 = 5.0;
const MAX_BASE: f64 = 60.0;

/// Minutes between the end of one outage's tail and the start of the next of the same
/// service, so that a detector sees two incidents rather than one long one.
const OUTAGE_GAP_MIN: i64 = 60;
/// The recovery tail lasts five time constants, at most 15 minutes.
const TAIL_TIME_CONSTANTS: f64 = 5.0;
const TAIL_MAX_MIN: i64 = 15;
/// Minutes over which the initial flood of reports of a step outage arrives (a shorter
/// outage's flood arrives while it lasts).
const FLOOD_MIN: f64 = 5.0;
/// How often a random start is tried before an outage is given up as not fitting.
const PLACEMENT_TRIES: usize = 64;
/// Share of the outages of a service with dependents that cascade into them.
const CASCADE_CHANCE: f64 = 0.5;
/// Blips stay this many minutes away from outages, so they never blur an outage's edges.
const BLIP_CLEARANCE_MIN: f64 = 10.0;

/// The default start of a file: a fixed date, so that the same flags give the same file.
const FILE_START: OffsetDateTime = time::macros::datetime!(2026-10-01 00:00 UTC);

/// Plans the scenario that `args` describe, starting at `start`; returns it with the number of
/// simulated services.
fn plan(args: &SimulateArgs, start: OffsetDateTime) -> anyhow::Result<(Scenario, usize)> {
    let catalog = Catalog::load_or_builtin(args.catalog.as_deref())?;
    let available = catalog.services().len();
    let selected = match args.services.map(|n| n as usize) {
        None => available,
        Some(n) if n <= available => n,
        Some(n) => bail!("--services {n}: the catalog has only {available} services"),
    };
    let params = Params {
        start,
        days: args.days,
        bucket: args.bucket,
        seed: args.seed,
        outages_per_week: args.outages_per_week,
    };
    let scenario = Scenario::generate(&catalog.services()[..selected], params)?;
    Ok((scenario, selected))
}

/// The ground truth of a run (pretty JSON), written beside its destination under a
/// temporary name and moved into place by [`put_in_place`](Self::put_in_place): until then,
/// a file of that name from an earlier run stays as it was. Dropped before
/// [`keep`](Self::keep), it is removed from wherever it is, so a run that fails leaves no
/// truth of counts it did not write. A destination that is there and no regular file (a
/// device such as `/dev/null`, a named pipe) is written directly, and never removed.
struct TruthFile {
    /// The path as given, for messages.
    given: PathBuf,
    /// Where it goes: the given path with its links followed, so that a link to the truth
    /// is written through, as creating the file would, rather than replaced.
    destination: PathBuf,
    /// The temporary file, until it is moved to the destination.
    pending: Option<PathBuf>,
    /// Whether it was moved to the destination.
    placed: bool,
    kept: bool,
}

impl TruthFile {
    /// Writes the truth of `scenario` for `path`.
    fn write(path: &Path, scenario: &Scenario) -> anyhow::Result<Self> {
        if path == Path::new(crate::import::STDIN) {
            bail!("--truth -: the truth is written to a file of its own; give its path");
        }
        let destination = resolved(path).unwrap_or_else(|| path.to_owned());
        let special = std::fs::metadata(&destination).is_ok_and(|m| !m.is_file());
        let pending = (!special).then(|| {
            let mut temporary = destination.clone().into_os_string();
            temporary.push(format!(".{}.tmp", std::process::id()));
            PathBuf::from(temporary)
        });
        let file = match &pending {
            Some(temporary) => File::create_new(temporary),
            None => File::create(&destination),
        }
        .with_context(|| format!("{}: cannot create the truth file", path.display()))?;
        let truth = Self {
            given: path.to_owned(),
            destination,
            pending,
            placed: false,
            kept: false,
        };
        let mut writer = BufWriter::new(file);
        serde_json::to_writer_pretty(&mut writer, &scenario.truth())
            .map_err(io::Error::from)
            .and_then(|()| writeln!(writer))
            .and_then(|()| writer.flush())
            .with_context(|| format!("{}: cannot write the truth", path.display()))?;
        Ok(truth)
    }

    /// Moves the truth to its destination, replacing any file there; once moved, does
    /// nothing.
    fn put_in_place(&mut self) -> anyhow::Result<()> {
        if let Some(temporary) = &self.pending {
            std::fs::rename(temporary, &self.destination)
                .with_context(|| format!("{}: cannot write the truth", self.given.display()))?;
            self.pending = None;
            self.placed = true;
        }
        Ok(())
    }

    /// Keeps the truth where it is.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for TruthFile {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let written = match &self.pending {
            Some(temporary) => temporary,
            None if self.placed => &self.destination,
            None => return,
        };
        // Nothing more to do if it cannot be removed; the run fails with its own error.
        let _ = std::fs::remove_file(written);
    }
}

/// Whether `a` and `b` name the same file, whether or not it exists yet: `x.csv` and
/// `./x.csv` do, and so do a symbolic link and its target, or two hard links of one file.
fn same_file(a: &Path, b: &Path) -> bool {
    // Both there: one file by its device and inode, however it is reached.
    #[cfg(unix)]
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        return (x.dev(), x.ino()) == (y.dev(), y.ino());
    }
    a == b || resolved(a).is_some_and(|x| resolved(b) == Some(x))
}

/// The file `path` leads to, with every symbolic link followed and its directory made
/// absolute, whether or not the file exists yet: a link to a file not there yet leads where
/// creating the link's name creates it. `None` when a directory on the way does not exist or
/// the links loop.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(full) = path.canonicalize() {
        return Some(full);
    }
    let mut path = path.to_owned();
    // Linux follows at most 40 links in a row (MAXSYMLINKS) before it calls it a loop.
    for _ in 0..40 {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.canonicalize().ok()?,
            _ => Path::new(".").canonicalize().ok()?,
        };
        let full = dir.join(path.file_name()?);
        match std::fs::read_link(&full) {
            // A relative target is relative to the link's directory.
            Ok(target) => path = dir.join(target),
            Err(_) => return Some(full),
        }
    }
    None
}

/// What `downradar simulate --output` does: generates the scenario and writes both files.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let (Some(output), Some(truth)) = (&args.output, &args.truth) else {
        bail!("simulate: --output and --truth are required to write files");
    };
    let to_stdout = output == Path::new(crate::import::STDIN);
    if !to_stdout && same_file(output, truth) {
        bail!(
            "simulate: --output {} and --truth {} name the same file; the counts would \
             overwrite the truth",
            output.display(),
            truth.display()
        );
    }
    let (scenario, selected) = plan(args, args.start.unwrap_or(FILE_START))?;
    // Written first, so that a truth that cannot be written stops the run before the counts
    // are touched; put in place once the counts are written, so that a run that fails leaves
    // the truth of an earlier run as it was, and no new truth of counts never written. On
    // standard output it goes in place before the counts begin: a `backtest --input -`
    // reading them reads it then. (It is removed again if they fail.)
    let mut truth_file = TruthFile::write(truth, &scenario)?;
    if to_stdout {
        truth_file.put_in_place()?;
    }

    let interrupted = watch_for_ctrl_c();
    let (counts, name): (Box<dyn Write>, String) = if to_stdout {
        (Box::new(io::stdout().lock()), "standard output".to_owned())
    } else {
        let file = File::create(output)
            .with_context(|| format!("{}: cannot create the counts file", output.display()))?;
        (Box::new(file), output.display().to_string())
    };
    let counts = UnlessInterrupted {
        inner: counts,
        interrupted: interrupted.clone(),
    };
    // Progress overwrites one line on a terminal; in a log, a line per day is clearer.
    let interactive = io::stderr().is_terminal();
    let days = args.days;
    let written = scenario.write_counts(counts, |day| {
        let line = format!("simulate: day {day}/{days} ({}%)", day * 100 / days);
        if interactive {
            crate::diag_inline!("\r{line}");
        } else {
            crate::diag!("{line}");
        }
    });
    if interrupted.load(Ordering::Relaxed) {
        // No half file left behind (the truth's is removed with it, see `TruthFile`).
        if !to_stdout {
            let _ = std::fs::remove_file(output);
        }
        bail!(
            "simulate: interrupted (Ctrl-C); {name} and {} not written",
            truth.display()
        );
    }
    let summary = crate::output::closed_pipe_is_end(written)
        .with_context(|| format!("{name}: cannot write the counts"))?;
    if interactive {
        crate::diag!();
    }
    truth_file.put_in_place()?;
    truth_file.keep();
    let Some(summary) = summary else {
        crate::diag!(
            "simulate: the reader of {name} closed it before the end; {} is complete",
            truth.display()
        );
        return Ok(());
    };

    let cascading = scenario.outages_of_kind(Kind::Cascading);
    crate::diag!(
        "simulate: {selected} services, {days} day{}: {} rows, {} reports, {} outages \
         ({cascading} cascading) -> {}, {}",
        if days == 1 { "" } else { "s" },
        summary.rows,
        summary.reports,
        scenario.outages.len(),
        name,
        truth.display(),
    );
    print_notes(&scenario, selected);
    Ok(())
}

/// A flag raised by Ctrl-C (SIGINT), which then no longer ends the process at once: the
/// writing stops at the next write, and the run removes what it wrote.
fn watch_for_ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build();
    // Without a runtime (there is always one to be had), Ctrl-C ends the process as it would.
    if let Ok(runtime) = runtime {
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let _ = std::thread::Builder::new()
            .name("ctrl-c".into())
            .spawn(move || {
                runtime.block_on(async {
                    use tokio::signal::unix::{SignalKind, signal};
                    // Registered when made: the writing may begin.
                    let interrupt = signal(SignalKind::interrupt());
                    let _ = ready_tx.send(());
                    if let Ok(mut interrupt) = interrupt
                        && interrupt.recv().await.is_some()
                    {
                        raised.store(true, Ordering::Relaxed);
                    }
                });
            });
        let _ = ready.recv_timeout(std::time::Duration::from_secs(1));
    }
    flag
}

/// A writer that fails once [`watch_for_ctrl_c`]'s flag is up.
struct UnlessInterrupted<W> {
    inner: W,
    interrupted: Arc<AtomicBool>,
}

impl<W: Write> Write for UnlessInterrupted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.interrupted.load(Ordering::Relaxed) {
            // (Not `ErrorKind::Interrupted`, which `write_all` retries.)
            return Err(io::Error::other("interrupted"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Tells about outages left out, or a cascade that cannot happen.
fn print_notes(scenario: &Scenario, selected: usize) {
    let cascading = scenario.outages_of_kind(Kind::Cascading);
    if scenario.dropped > 0 {
        crate::diag!(
            "simulate: note: {} outages did not fit between the others and were left out",
            scenario.dropped
        );
    }
    if scenario.params.days >= 7 && selected >= 5 && cascading == 0 {
        crate::diag!(
            "simulate: note: no cascading outage: no selected service depends on another \
             selected service"
        );
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Params {
    /// Start of the first bucket; on a bucket boundary.
    pub start: OffsetDateTime,
    /// Length of the simulated period.
    pub days: u32,
    /// Width of the count buckets.
    pub bucket: BucketWidth,
    /// Seed of every random stream.
    pub seed: u64,
    /// Mean number of outages each service starts per week.
    pub outages_per_week: f64,
}

/// An outage at a chosen time rather than a drawn one (see [`Scenario::scripted`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedOutage {
    /// Index of the service in the selection.
    pub service: usize,
    /// Any kind but [`Kind::Ramp`]'s slow rise suits a short outage. [`Kind::Cascading`]
    /// means a global or regional outage of this service that each of its dependents in the
    /// selection with users in the affected countries follows a minute later, for as long.
    pub kind: Kind,
    /// Start, in minutes from the start of the period.
    pub start_min: i64,
    /// Length in minutes, without the recovery tail (at least 1).
    pub duration_min: i64,
    /// Time constant of the recovery tail in minutes (positive); `None` draws it as for any
    /// outage (1 to 3 minutes).
    pub tail_min: Option<f64>,
}

/// How many reports a service gets at baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeClass {
    /// Below 0.5 reports per minute.
    Sparse,
    /// 0.5 to 5 reports per minute.
    Low,
    /// 5 or more reports per minute.
    High,
}

impl VolumeClass {
    const ALL: [Self; 3] = [Self::Sparse, Self::Low, Self::High];

    fn of(base_per_min: f64) -> Self {
        if base_per_min < SPARSE_BELOW {
            Self::Sparse
        } else if base_per_min < LOW_BELOW {
            Self::Low
        } else {
            Self::High
        }
    }

    /// The base rates of this class, reports per minute.
    fn range(self) -> (f64, f64) {
        match self {
            Self::Sparse => (MIN_BASE, SPARSE_BELOW),
            Self::Low => (SPARSE_BELOW, LOW_BELOW),
            Self::High => (LOW_BELOW, MAX_BASE),
        }
    }
}

/// The kind of an injected outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every region and problem of the service.
    Global,
    /// 1 to 3 of the service's regions, every problem.
    Regional,
    /// 1 or 2 problems, every region.
    Partial,
    /// Caused by an outage of an upstream service that started 1 to 5 minutes earlier.
    Cascading,
    /// A slow linear rise over 30 to 60 minutes, then a plateau; every region and problem.
    Ramp,
}

impl Kind {
    const ALL: [Self; 5] = [
        Self::Global,
        Self::Regional,
        Self::Partial,
        Self::Cascading,
        Self::Ramp,
    ];
}

/// Whether an outage is seen everywhere or in some regions (the event contract's `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Global,
    Regional,
}

/// One region of a simulated service.
#[derive(Debug, Clone)]
struct RegionModel {
    /// Index into [`COUNTRIES`].
    country: usize,
    code: RegionCode,
    /// Share of the service's reports, rounded as written to the truth.
    share: f64,
}

/// One problem category of a simulated service.
#[derive(Debug, Clone)]
struct ProblemModel {
    name: Problem,
    share: f64,
}

/// A simulated service. Regions are sorted by code and problems by name, the order of the CSV
/// rows; a cell is `region index × problem count + problem index`.
#[derive(Debug, Clone)]
struct ServiceModel {
    id: ServiceId,
    base_per_min: f64,
    /// Weekend rate relative to a weekday.
    weekend_factor: f64,
    regions: Vec<RegionModel>,
    problems: Vec<ProblemModel>,
    /// Indices (in the selection) of the upstream services.
    depends_on: Vec<usize>,
}

impl ServiceModel {
    /// Draws the profile of `service`, the `position`-th of the catalog.
    fn draw(service: &Service, position: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::stream(seed, Purpose::Profile, position as u64);
        // The three services of each block take the three classes in a seeded order.
        let mut classes = VolumeClass::ALL;
        let mut block_rng = SplitMix64::stream(seed, Purpose::VolumeClass, (position / 3) as u64);
        block_rng.shuffle(&mut classes);
        let (low, high) = classes[position % 3].range();
        let base_per_min = round_significant(rng.log_range(low, high), 3);

        // Weighted draws without replacement: big countries are in most services, small ones
        // in some; the log-normal jitter then gives each service its own mix.
        let count = rng.int_range(8, 15) as usize;
        let mut pool: Vec<usize> = (0..COUNTRIES.len()).collect();
        let mut chosen = Vec::with_capacity(count);
        while chosen.len() < count {
            let total: f64 = pool.iter().map(|&c| COUNTRIES[c].1).sum();
            let mut target = rng.uniform() * total;
            let pick = pool
                .iter()
                .position(|&c| {
                    target -= COUNTRIES[c].1;
                    target < 0.0
                })
                .unwrap_or(pool.len() - 1);
            chosen.push(pool.swap_remove(pick));
        }
        let weights: Vec<f64> = chosen
            .iter()
            .map(|&c| COUNTRIES[c].1 * (0.5 * rng.normal()).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut regions: Vec<RegionModel> = chosen
            .iter()
            .zip(&weights)
            .map(|(&country, w)| RegionModel {
                country,
                code: country_code(country),
                share: round_share(w / total),
            })
            .collect();
        regions.sort_by_key(|r| r.code);

        let zipf_total: f64 = (1..=service.problems.len()).map(|i| 1.0 / i as f64).sum();
        let mut problems: Vec<ProblemModel> = service
            .problems
            .iter()
            .enumerate()
            .map(|(i, name)| ProblemModel {
                name: name.clone(),
                share: round_share(1.0 / (i + 1) as f64 / zipf_total),
            })
            .collect();
        problems.sort_by(|a, b| a.name.cmp(&b.name));

        let weekend_factor = if rng.chance(0.5) { 0.85 } else { 1.15 };
        Self {
            id: service.id.clone(),
            base_per_min,
            weekend_factor,
            regions,
            problems,
            depends_on: Vec::new(),
        }
    }

    fn cells(&self) -> usize {
        self.regions.len() * self.problems.len()
    }
}

/// The code of `COUNTRIES[index]`.
fn country_code(index: usize) -> RegionCode {
    RegionCode::parse(COUNTRIES[index].0).expect("COUNTRIES lists built-in regions (unit test)")
}

/// An injected outage. Times are minutes from the start of the simulated period.
#[derive(Debug, Clone)]
struct Outage {
    /// Index of the service in the selection.
    service: usize,
    kind: Kind,
    start: i64,
    /// The injected end (exclusive); the recovery tail follows it.
    end: i64,
    /// Affected regions and problems, as masks over the service's sorted lists.
    regions: Vec<bool>,
    problems: Vec<bool>,
    /// Upstream services (indices in the selection) whose outage caused this one.
    caused_by: Vec<usize>,
    /// Multiplier of the affected cells' baseline; for a ramp, the plateau's.
    peak: f64,
    /// Minutes a ramp takes to reach its peak; `None` for a step outage.
    ramp_min: Option<f64>,
    /// Extra reports over the first minutes (see [`FLOOD_MIN`]; never past the end), or over
    /// a ramp's rise.
    flood: f64,
    /// Time constant of the recovery tail, minutes.
    tail_min: f64,
    /// Share of the service's baseline in the affected cells, to spread the flood over them.
    affected_share: f64,
}

impl Outage {
    /// End of the recovery tail: the outage and its tail occupy `start..tail_end()`.
    fn tail_end(&self) -> i64 {
        let tail = (TAIL_TIME_CONSTANTS * self.tail_min).ceil() as i64;
        self.end + tail.min(TAIL_MAX_MIN)
    }

    /// The factor on the affected cells' baseline at minute `t`.
    fn multiplier(&self, t: f64) -> f64 {
        let (start, end) = (self.start as f64, self.end as f64);
        if t < start || t >= self.tail_end() as f64 {
            return 1.0;
        }
        let level = |t: f64| match self.ramp_min {
            Some(ramp) => 1.0 + (self.peak - 1.0) * ((t - start) / ramp).min(1.0),
            None => self.peak,
        };
        if t < end {
            level(t)
        } else {
            1.0 + (level(end) - 1.0) * (-(t - end) / self.tail_min).exp()
        }
    }

    /// Extra reports per minute at minute `t`, over all affected cells.
    fn flood_per_min(&self, t: f64) -> f64 {
        let since = t - self.start as f64;
        match self.ramp_min {
            // Rising linearly along the ramp: 2F·s/R² integrates to F over the ramp.
            Some(ramp) if (0.0..ramp).contains(&since) => 2.0 * self.flood * since / (ramp * ramp),
            None => {
                let over = FLOOD_MIN.min((self.end - self.start) as f64);
                if (0.0..over).contains(&since) {
                    self.flood / over
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }

    fn is_affected(&self, region: usize, problem: usize) -> bool {
        self.regions[region] && self.problems[problem]
    }
}

/// A harmless bump of one region's reports.
#[derive(Debug, Clone)]
struct Blip {
    /// Seconds from the start of the simulated period, bucket-aligned.
    start: f64,
    end: f64,
    region: usize,
    factor: f64,
}

/// What [`Scenario::write_counts`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountsSummary {
    /// CSV rows, without the header.
    pub rows: u64,
    /// Sum of the counts.
    pub reports: u64,
}

/// A planned simulation: the services' profiles, the outages and the blips. Counts are drawn
/// only when written, bucket by bucket, so a month of minutes never sits in memory.
#[derive(Debug, Clone)]
pub struct Scenario {
    params: Params,
    services: Vec<ServiceModel>,
    /// Sorted by start, then service id.
    outages: Vec<Outage>,
    /// Per service, indices into `outages`.
    outages_by_service: Vec<Vec<usize>>,
    /// Per service.
    blips: Vec<Vec<Blip>>,
    /// Outages drawn but left out because they did not fit between the others.
    dropped: u32,
}

impl Scenario {
    /// Plans a simulation of `services` (a prefix of a catalog, in catalog order).
    pub fn generate(services: &[Service], params: Params) -> anyhow::Result<Self> {
        Self::build(Self::models(services, params.seed), params)
    }

    /// Like [`Scenario::generate`], but with exactly the outages of `script` instead of
    /// drawn ones (`params.outages_per_week` plays no part): the demo's schedule. Each
    /// outage's regions, problems, peak, flood and recovery tail are drawn as usual.
    /// Outages of one service must not overlap (with their recovery tails), and each must
    /// end inside the period.
    pub fn scripted(
        services: &[Service],
        params: Params,
        script: &[ScriptedOutage],
    ) -> anyhow::Result<Self> {
        Self::build_with(Self::models(services, params.seed), params, |planner| {
            planner.script(script)
        })
    }

    /// The profiles of `services`, with their dependencies inside the selection.
    fn models(services: &[Service], seed: u64) -> Vec<ServiceModel> {
        let mut models: Vec<ServiceModel> = services
            .iter()
            .enumerate()
            .map(|(position, service)| ServiceModel::draw(service, position, seed))
            .collect();
        for (model, service) in models.iter_mut().zip(services) {
            // Dependencies outside the selection cannot cascade here.
            model.depends_on = service
                .depends_on
                .iter()
                .filter_map(|dep| services.iter().position(|s| &s.id == dep))
                .collect();
        }
        models
    }

    /// Plans outages and blips for services whose profiles are drawn already.
    fn build(services: Vec<ServiceModel>, params: Params) -> anyhow::Result<Self> {
        Self::build_with(services, params, |planner| {
            planner.plan();
            Ok(())
        })
    }

    /// Plans blips, and outages with `place`, for services whose profiles are drawn already.
    fn build_with(
        services: Vec<ServiceModel>,
        params: Params,
        place: impl FnOnce(&mut Planner) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let width = params.bucket.secs();
        if params.start.unix_timestamp() < 0 {
            // The counts' format (and `backtest`, `import`) starts in 1970.
            bail!(
                "--start {}: must be 1970-01-01T00:00:00Z or later",
                format_time(params.start)
            );
        }
        if params.start.unix_timestamp() % width != 0 || params.start.nanosecond() != 0 {
            bail!(
                "--start {}: must fall on a bucket boundary ({width} s)",
                format_time(params.start)
            );
        }
        let end = params.start.checked_add(Duration::days(params.days.into()));
        if end.is_none_or(|end| end.year() > 9999) {
            bail!(
                "--days {}: the period ends after the year 9999",
                params.days
            );
        }

        let mut planner = Planner::new(&services, &params);
        place(&mut planner)?;
        let Planner {
            mut outages,
            dropped,
            ..
        } = planner;
        outages.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then_with(|| services[a.service].id.cmp(&services[b.service].id))
        });
        let mut outages_by_service = vec![Vec::new(); services.len()];
        for (i, outage) in outages.iter().enumerate() {
            outages_by_service[outage.service].push(i);
        }
        let blips = (0..services.len())
            .map(|s| plan_blips(&services[s], s, &outages_by_service[s], &outages, &params))
            .collect();
        Ok(Self {
            params,
            services,
            outages,
            outages_by_service,
            blips,
            dropped,
        })
    }

    /// Number of buckets in the simulated period.
    pub fn bucket_count(&self) -> u64 {
        u64::from(self.params.days) * self.buckets_per_day()
    }

    /// What was asked for.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// A sampler of this scenario's counts, from its first bucket.
    pub fn sampler(&self) -> CountSampler {
        CountSampler::new(self)
    }

    /// The service, region and problem of `cell` of the `service`-th simulated service, as
    /// [`CountSampler::bucket`] numbers them.
    pub fn cell(&self, service: usize, cell: usize) -> (&ServiceId, RegionCode, &Problem) {
        let svc = &self.services[service];
        let np = svc.problems.len();
        (
            &svc.id,
            svc.regions[cell / np].code,
            &svc.problems[cell % np].name,
        )
    }

    fn buckets_per_day(&self) -> u64 {
        // Bucket widths divide an hour, so they divide a day.
        86_400 / self.params.bucket.secs() as u64
    }

    fn outages_of_kind(&self, kind: Kind) -> usize {
        self.outages.iter().filter(|o| o.kind == kind).count()
    }

    /// Writes the counts as CSV (the `backtest` input) and calls `on_day` with the number of
    /// days written after each simulated day.
    pub fn write_counts<W: Write>(
        &self,
        out: W,
        mut on_day: impl FnMut(u32),
    ) -> io::Result<CountsSummary> {
        let mut out = BufWriter::with_capacity(1 << 20, out);
        out.write_all(b"timestamp,service,region,problem,count\n")?;
        // "service,region,problem," of every cell, formatted once.
        let prefixes: Vec<Vec<Vec<u8>>> = self
            .services
            .iter()
            .map(|svc| {
                svc.regions
                    .iter()
                    .flat_map(|r| {
                        svc.problems
                            .iter()
                            .map(move |p| format!("{},{},{},", svc.id, r.code, p.name).into_bytes())
                    })
                    .collect()
            })
            .collect();
        let mut sampler = self.sampler();
        let mut summary = CountsSummary {
            rows: 0,
            reports: 0,
        };
        let width = self.params.bucket.secs();
        for bucket in 0..self.bucket_count() {
            let at = self.params.start + Duration::seconds(bucket as i64 * width);
            let mut timestamp = at.format(&Rfc3339).map_err(io::Error::other)?;
            timestamp.push(',');
            let mut result = Ok(());
            sampler.bucket(self, bucket, |s, cell, count| {
                if result.is_ok() {
                    result = out
                        .write_all(timestamp.as_bytes())
                        .and_then(|()| out.write_all(&prefixes[s][cell]))
                        .and_then(|()| writeln!(out, "{count}"));
                }
                summary.rows += 1;
                summary.reports += count;
            });
            result?;
            if (bucket + 1) % self.buckets_per_day() == 0 {
                on_day(((bucket + 1) / self.buckets_per_day()) as u32);
            }
        }
        out.flush()?;
        Ok(summary)
    }

    /// The expected count of every cell of every service in bucket `bucket`, into
    /// `means[service][cell]`; with `events`, including outages and blips, otherwise the
    /// baseline alone.
    fn bucket_means(&self, bucket: u64, events: bool, means: &mut [Vec<f64>]) {
        let width = self.params.bucket.secs();
        // Evaluate the rate once a minute at most, so that outages starting inside a wide
        // bucket and the diurnal curve are integrated rather than sampled once.
        let steps = (width / 60).max(1);
        let step_secs = width as f64 / steps as f64;
        let step_min = step_secs / 60.0;
        for cells in means.iter_mut() {
            cells.fill(0.0);
        }
        let start = self.params.start.unix_timestamp() as f64;
        for step in 0..steps {
            let t = (bucket as i64 * width) as f64 + (step as f64 + 0.5) * step_secs;
            let local = LocalTime::at(start + t);
            let minute = t / 60.0;
            for (s, svc) in self.services.iter().enumerate() {
                // The active outage with its multiplier and flood per unit of share: at most
                // one, since outages of a service never overlap; so it is the last one that
                // started, if its tail has not ended (the list is sorted by start).
                let surge = events
                    .then(|| {
                        let own = &self.outages_by_service[s];
                        let started =
                            own.partition_point(|&o| self.outages[o].start as f64 <= minute);
                        let last = &self.outages[*own.get(started.checked_sub(1)?)?];
                        (minute < last.tail_end() as f64).then_some(last)
                    })
                    .flatten()
                    .map(|o| {
                        let flood = o.flood_per_min(minute) * step_min / o.affected_share;
                        (o, o.multiplier(minute), flood)
                    });
                // Usually none: collecting nothing does not allocate.
                let blips: Vec<&Blip> = if events {
                    self.blips[s]
                        .iter()
                        .filter(|b| b.start <= t && t < b.end)
                        .collect()
                } else {
                    Vec::new()
                };
                let weekday = 7.0 / (5.0 + 2.0 * svc.weekend_factor);
                let np = svc.problems.len();
                for (r, region) in svc.regions.iter().enumerate() {
                    let weekly = if local.weekend[region.country] {
                        weekday * svc.weekend_factor
                    } else {
                        weekday
                    };
                    let mut rate = svc.base_per_min
                        * region.share
                        * local.diurnal[region.country]
                        * weekly
                        * step_min;
                    for blip in blips.iter().filter(|b| b.region == r) {
                        rate *= blip.factor;
                    }
                    for (p, problem) in svc.problems.iter().enumerate() {
                        let mut mean = rate * problem.share;
                        if let Some((o, multiplier, flood)) = surge
                            && o.is_affected(r, p)
                        {
                            mean = mean * multiplier + flood * region.share * problem.share;
                        }
                        means[s][r * np + p] += mean;
                    }
                }
            }
        }
    }

    /// The ground truth, as written to the truth file.
    pub fn truth(&self) -> Truth {
        let minutes = |m: i64| self.params.start + Duration::minutes(m);
        let services = self
            .services
            .iter()
            .zip(&self.blips)
            .map(|(svc, blips)| TruthService {
                id: svc.id.clone(),
                class: VolumeClass::of(svc.base_per_min),
                base_per_min: svc.base_per_min,
                weekend_factor: svc.weekend_factor,
                regions: svc.regions.iter().map(|r| (r.code, r.share)).collect(),
                problems: svc
                    .problems
                    .iter()
                    .map(|p| (p.name.clone(), p.share))
                    .collect(),
                blips: blips.len(),
            })
            .collect();
        let outages = self
            .outages
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let svc = &self.services[o.service];
                let mut caused_by: Vec<ServiceId> = o
                    .caused_by
                    .iter()
                    .map(|&u| self.services[u].id.clone())
                    .collect();
                caused_by.sort();
                TruthOutage {
                    id: format!("o{}", i + 1),
                    service: svc.id.clone(),
                    kind: o.kind,
                    start: minutes(o.start),
                    end: minutes(o.end),
                    scope: if o.regions.iter().all(|&a| a) {
                        Scope::Global
                    } else {
                        Scope::Regional
                    },
                    // Masks run over lists sorted by code and name, so these come out sorted.
                    regions: svc
                        .regions
                        .iter()
                        .zip(&o.regions)
                        .filter(|(_, a)| **a)
                        .map(|(r, _)| r.code)
                        .collect(),
                    partial: !o.problems.iter().all(|&a| a),
                    problems: svc
                        .problems
                        .iter()
                        .zip(&o.problems)
                        .filter(|(_, a)| **a)
                        .map(|(p, _)| p.name.clone())
                        .collect(),
                    caused_by,
                    peak_ratio: o.peak,
                }
            })
            .collect();
        Truth {
            seed: self.params.seed,
            start: self.params.start,
            end: self.params.start + Duration::days(self.params.days.into()),
            bucket_secs: self.params.bucket.secs(),
            services,
            outages,
        }
    }
}

/// The truth file: what was simulated, and every injected outage.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Truth {
    pub seed: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// End of the simulated period (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    pub bucket_secs: i64,
    pub services: Vec<TruthService>,
    /// Sorted by start, then service.
    pub outages: Vec<TruthOutage>,
}

/// A simulated service in the truth file.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TruthService {
    pub id: ServiceId,
    pub class: VolumeClass,
    /// Reports per minute, service-wide, at the weekly mean.
    pub base_per_min: f64,
    /// Weekend rate relative to a weekday.
    pub weekend_factor: f64,
    /// Share of the reports per region.
    pub regions: BTreeMap<RegionCode, f64>,
    /// Share of the reports per problem.
    pub problems: BTreeMap<Problem, f64>,
    /// Harmless blips injected (not outages).
    pub blips: usize,
}

/// An injected outage in the truth file; the fields mirror the incident event contract.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TruthOutage {
    /// `o1`, `o2`, … in order of start.
    pub id: String,
    pub service: ServiceId,
    pub kind: Kind,
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// The injected end; reports die down over a few minutes after it.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    pub scope: Scope,
    /// Affected regions, sorted; all of the service's for a global scope.
    pub regions: Vec<RegionCode>,
    /// True when only some problems are elevated.
    pub partial: bool,
    /// Elevated problems, sorted; all of them unless partial.
    pub problems: Vec<Problem>,
    /// Upstream services whose outage caused this one, sorted.
    pub caused_by: Vec<ServiceId>,
    /// Factor on the affected cells' baseline (a ramp's plateau).
    pub peak_ratio: f64,
}

/// Draws the outages of a selection: each service's own, then any kind still missing.
struct Planner<'a> {
    services: &'a [ServiceModel],
    params: &'a Params,
    /// Length of the simulated period, minutes.
    period_min: i64,
    /// Per service, the services that depend on it.
    dependents: Vec<Vec<usize>>,
    rng: SplitMix64,
    outages: Vec<Outage>,
    /// Per service, the `start..tail_end` spans taken.
    busy: Vec<Vec<(i64, i64)>>,
    dropped: u32,
}

impl<'a> Planner<'a> {
    fn new(services: &'a [ServiceModel], params: &'a Params) -> Self {
        let mut dependents = vec![Vec::new(); services.len()];
        for (d, svc) in services.iter().enumerate() {
            for &u in &svc.depends_on {
                dependents[u].push(d);
            }
        }
        Self {
            services,
            params,
            period_min: i64::from(params.days) * 1440,
            dependents,
            rng: SplitMix64::stream(params.seed, Purpose::Outages, 0),
            outages: Vec::new(),
            busy: vec![Vec::new(); services.len()],
            dropped: 0,
        }
    }

    fn plan(&mut self) {
        let mean = self.params.outages_per_week * f64::from(self.params.days) / 7.0;
        let counts: Vec<u64> = (0..self.services.len())
            .map(|_| poisson(&mut self.rng, mean))
            .collect();
        for (s, &count) in counts.iter().enumerate() {
            for _ in 0..count {
                let placed = if !self.dependents[s].is_empty() && self.rng.chance(CASCADE_CHANCE) {
                    self.place_cascade(s)
                } else {
                    let kind = [Kind::Global, Kind::Regional, Kind::Partial, Kind::Ramp]
                        [self.rng.below(4) as usize];
                    let kind = if self.can_host(s, kind) {
                        kind
                    } else {
                        Kind::Global
                    };
                    self.place(s, kind)
                };
                if !placed {
                    self.dropped += 1;
                }
            }
        }
        if self.params.days >= 7 && self.services.len() >= 5 && self.params.outages_per_week > 0.0 {
            self.add_missing_kinds();
        }
    }

    /// Books the outages of `script`, drawing their details (see [`Scenario::scripted`]).
    fn script(&mut self, script: &[ScriptedOutage]) -> anyhow::Result<()> {
        for entry in script {
            let s = entry.service;
            let Some(svc) = self.services.get(s) else {
                bail!(
                    "scripted outage of service #{s}: only {} services",
                    self.services.len()
                );
            };
            if !self.can_host(s, entry.kind) {
                bail!("{}: cannot have a {:?} outage", svc.id, entry.kind);
            }
            if entry.start_min < 0
                || entry.duration_min < 1
                || entry.start_min + entry.duration_min + 1 > self.period_min
            {
                bail!(
                    "{}: a scripted outage must lie inside the period ({} minutes), found \
                     minutes {}..{}",
                    svc.id,
                    self.period_min,
                    entry.start_min,
                    entry.start_min + entry.duration_min
                );
            }
            let kind = match entry.kind {
                Kind::Cascading if self.can_host(s, Kind::Regional) && self.rng.chance(0.4) => {
                    Kind::Regional
                }
                Kind::Cascading => Kind::Global,
                kind => kind,
            };
            let mut outage = self.draw(s, kind);
            outage.start = entry.start_min;
            outage.end = entry.start_min + entry.duration_min;
            if let Some(tail) = entry.tail_min {
                if !(tail > 0.0 && tail.is_finite()) {
                    bail!(
                        "{}: a scripted recovery tail must be a positive number of minutes, \
                         found {tail}",
                        svc.id
                    );
                }
                outage.tail_min = tail;
            }
            if !self.is_apart(s, outage.start, outage.tail_end()) {
                bail!(
                    "{}: the scripted outage at minute {} overlaps another of its outages",
                    svc.id,
                    entry.start_min
                );
            }
            let mut dependents = Vec::new();
            if entry.kind == Kind::Cascading {
                let codes: Vec<RegionCode> = svc
                    .regions
                    .iter()
                    .zip(&outage.regions)
                    .filter(|(_, a)| **a)
                    .map(|(r, _)| r.code)
                    .collect();
                for d in self.dependents[s].clone() {
                    if let Some(mut follower) = self.draw_dependent(d, &outage, &codes) {
                        follower.start = outage.start + 1;
                        follower.end = outage.end + 1;
                        follower.tail_min = entry.tail_min.unwrap_or(follower.tail_min);
                        // A busy dependent sits this one out, as in a drawn cascade.
                        if follower.end < self.period_min
                            && self.is_apart(d, follower.start, follower.tail_end())
                        {
                            dependents.push(follower);
                        }
                    }
                }
            }
            self.book(outage);
            for follower in dependents {
                self.book(follower);
            }
        }
        Ok(())
    }

    /// Whether service `s` has no outage overlapping `start..tail_end` (no gap required).
    fn is_apart(&self, s: usize, start: i64, tail_end: i64) -> bool {
        self.busy[s]
            .iter()
            .all(|&(a, b)| tail_end <= a || start >= b)
    }

    /// Adds one outage of every kind that chance left out, on a random service that allows it.
    fn add_missing_kinds(&mut self) {
        for kind in Kind::ALL {
            if self.outages.iter().any(|o| o.kind == kind) {
                continue;
            }
            let hosts: Vec<usize> = (0..self.services.len())
                .filter(|&s| self.can_host(s, kind))
                .collect();
            if hosts.is_empty() {
                continue;
            }
            let first = self.rng.below(hosts.len() as u64) as usize;
            for i in 0..hosts.len() {
                let s = hosts[(first + i) % hosts.len()];
                let placed = if kind == Kind::Cascading {
                    self.place_cascade(s)
                } else {
                    self.place(s, kind)
                };
                if placed {
                    break;
                }
            }
        }
    }

    fn can_host(&self, s: usize, kind: Kind) -> bool {
        let svc = &self.services[s];
        match kind {
            Kind::Global | Kind::Ramp => true,
            Kind::Regional => svc.regions.len() >= 2,
            Kind::Partial => svc.problems.len() >= 2,
            Kind::Cascading => !self.dependents[s].is_empty(),
        }
    }

    /// Whether service `s` is free over `start..tail_end`, with the gap on both sides.
    fn is_free(&self, s: usize, start: i64, tail_end: i64) -> bool {
        self.busy[s]
            .iter()
            .all(|&(a, b)| tail_end + OUTAGE_GAP_MIN <= a || start >= b + OUTAGE_GAP_MIN)
    }

    fn book(&mut self, outage: Outage) {
        self.busy[outage.service].push((outage.start, outage.tail_end()));
        self.outages.push(outage);
    }

    /// Draws an outage of `kind` on `s` starting at minute 0; the caller moves it.
    fn draw(&mut self, s: usize, kind: Kind) -> Outage {
        let svc = &self.services[s];
        let (nr, np) = (svc.regions.len(), svc.problems.len());
        let (duration, ramp_min, peak) = if kind == Kind::Ramp {
            let ramp = self.rng.range(30.0, 60.0).round();
            let duration = self.rng.int_range(ramp as i64 + 20, 180);
            (duration, Some(ramp), round_tenth(self.rng.range(5.0, 10.0)))
        } else {
            let duration = self.rng.log_range(10.0, 180.0).round() as i64;
            (duration, None, round_tenth(self.rng.log_range(5.0, 30.0)))
        };
        let regions = if kind == Kind::Regional {
            self.rng.subset(nr, 3)
        } else {
            vec![true; nr]
        };
        let problems = if kind == Kind::Partial {
            self.rng.subset(np, 2)
        } else {
            vec![true; np]
        };
        let flood = self.rng.range(30.0, 80.0).round();
        let tail_min = self.rng.range(1.0, 3.0);
        Outage {
            service: s,
            kind,
            start: 0,
            end: duration,
            affected_share: affected_share(svc, &regions, &problems),
            regions,
            problems,
            caused_by: Vec::new(),
            peak,
            ramp_min,
            flood,
            tail_min,
        }
    }

    /// Draws an outage of `kind` on `s` at a random start, leaving `room` minutes after its
    /// tail inside the period; `None` if the period is too short.
    fn draw_placed(&mut self, s: usize, kind: Kind, room: i64) -> Option<Outage> {
        let mut outage = self.draw(s, kind);
        let latest = self.period_min - outage.end - TAIL_MAX_MIN - room;
        if latest < 0 {
            return None;
        }
        let start = self.rng.int_range(0, latest);
        outage.start += start;
        outage.end += start;
        Some(outage)
    }

    fn place(&mut self, s: usize, kind: Kind) -> bool {
        for _ in 0..PLACEMENT_TRIES {
            let Some(outage) = self.draw_placed(s, kind, 0) else {
                return false;
            };
            if self.is_free(s, outage.start, outage.tail_end()) {
                self.book(outage);
                return true;
            }
        }
        false
    }

    /// Places an outage of `upstream` and cascading outages of some of its dependents.
    fn place_cascade(&mut self, upstream: usize) -> bool {
        for _ in 0..PLACEMENT_TRIES {
            let kind = if self.can_host(upstream, Kind::Regional) && self.rng.chance(0.4) {
                Kind::Regional
            } else {
                Kind::Global
            };
            // Dependents start up to 5 and end up to 15 minutes later.
            let Some(up) = self.draw_placed(upstream, kind, 20) else {
                return false;
            };
            if !self.is_free(upstream, up.start, up.tail_end()) {
                continue;
            }
            let codes: Vec<RegionCode> = self.services[upstream]
                .regions
                .iter()
                .zip(&up.regions)
                .filter(|(_, a)| **a)
                .map(|(r, _)| r.code)
                .collect();
            let mut candidates = Vec::new();
            for d in self.dependents[upstream].clone() {
                let outage = self.draw_dependent(d, &up, &codes);
                if let Some(outage) = outage
                    && outage.tail_end() <= self.period_min
                    && self.is_free(d, outage.start, outage.tail_end())
                {
                    candidates.push(outage);
                }
            }
            if candidates.is_empty() {
                continue;
            }
            // Each free dependent goes down with even odds, and at least one does.
            let joins: Vec<bool> = candidates.iter().map(|_| self.rng.chance(0.5)).collect();
            let forced = self.rng.below(candidates.len() as u64) as usize;
            let any = joins.contains(&true);
            self.book(up);
            for (i, outage) in candidates.into_iter().enumerate() {
                if joins[i] || (!any && i == forced) {
                    self.book(outage);
                }
            }
            return true;
        }
        false
    }

    /// The cascading outage of dependent `d` after `up`, in the upstream's affected
    /// countries (`codes`); `None` if `d` has users in none of them.
    fn draw_dependent(&mut self, d: usize, up: &Outage, codes: &[RegionCode]) -> Option<Outage> {
        let svc = &self.services[d];
        let delay = self.rng.int_range(1, 5);
        let overrun = self.rng.int_range(0, 15);
        let partial = svc.problems.len() >= 2 && self.rng.chance(0.25);
        let problems = if partial {
            self.rng.subset(svc.problems.len(), 2)
        } else {
            vec![true; svc.problems.len()]
        };
        let peak = round_tenth(self.rng.log_range(5.0, 30.0));
        let flood = self.rng.range(30.0, 80.0).round();
        let tail_min = self.rng.range(1.0, 3.0);
        let regions: Vec<bool> = svc
            .regions
            .iter()
            .map(|r| codes.contains(&r.code))
            .collect();
        if !regions.contains(&true) {
            return None;
        }
        let start = up.start + delay;
        let end = (up.end + overrun).clamp(start + 10, start + 180);
        Some(Outage {
            service: d,
            kind: Kind::Cascading,
            start,
            end,
            affected_share: affected_share(svc, &regions, &problems),
            regions,
            problems,
            caused_by: vec![up.service],
            peak,
            ramp_min: None,
            flood,
            tail_min,
        })
    }
}

/// The share of a service's baseline in the cells selected by the masks.
fn affected_share(svc: &ServiceModel, regions: &[bool], problems: &[bool]) -> f64 {
    let regions: f64 = svc
        .regions
        .iter()
        .zip(regions)
        .filter(|(_, affected)| **affected)
        .map(|(r, _)| r.share)
        .sum();
    let problems: f64 = svc
        .problems
        .iter()
        .zip(problems)
        .filter(|(_, affected)| **affected)
        .map(|(p, _)| p.share)
        .sum();
    regions * problems
}

/// About one blip per service-day, kept clear of the service's outages.
fn plan_blips(
    svc: &ServiceModel,
    s: usize,
    own: &[usize],
    outages: &[Outage],
    params: &Params,
) -> Vec<Blip> {
    let mut rng = SplitMix64::stream(params.seed, Purpose::Blips, s as u64);
    let width = params.bucket.secs();
    let buckets = i64::from(params.days) * 86_400 / width;
    let count = poisson(&mut rng, f64::from(params.days));
    let mut blips = Vec::new();
    for _ in 0..count {
        let length = rng.int_range(1, 3);
        let first = rng.int_range(0, (buckets - length).max(0));
        let region = rng.below(svc.regions.len() as u64) as usize;
        let factor = rng.range(1.5, 2.5);
        let start = (first * width) as f64;
        let end = ((first + length) * width) as f64;
        let clear = own.iter().all(|&o| {
            let o = &outages[o];
            end / 60.0 + BLIP_CLEARANCE_MIN <= o.start as f64
                || start / 60.0 >= o.tail_end() as f64 + BLIP_CLEARANCE_MIN
        });
        if clear {
            blips.push(Blip {
                start,
                end,
                region,
                factor,
            });
        }
    }
    blips
}

/// Diurnal level and weekend flag of every country of [`COUNTRIES`] at one instant.
struct LocalTime {
    diurnal: [f64; COUNTRIES.len()],
    weekend: [bool; COUNTRIES.len()],
}

impl LocalTime {
    fn at(unix_secs: f64) -> Self {
        let mut local = Self {
            diurnal: [0.0; COUNTRIES.len()],
            weekend: [false; COUNTRIES.len()],
        };
        static RULES: std::sync::OnceLock<[DaylightSaving; COUNTRIES.len()]> =
            std::sync::OnceLock::new();
        let rules =
            RULES.get_or_init(|| COUNTRIES.map(|(code, _, _)| DaylightSaving::of_code(code)));
        for (i, &(_, _, offset_min)) in COUNTRIES.iter().enumerate() {
            let shift = rules[i].shift(unix_secs.floor() as i64);
            let secs = unix_secs + f64::from(offset_min) * 60.0 + shift as f64;
            let day = (secs / 86_400.0).floor();
            local.diurnal[i] = diurnal((secs - day * 86_400.0) / 3600.0);
            // 1970-01-01 was a Thursday: counting Monday as 0, day 0 is weekday 3.
            local.weekend[i] = (day as i64 + 3).rem_euclid(7) >= 5;
        }
        local
    }
}

/// Relative report rate at local hour `hour` (0..24): two cosines (daily and half-daily)
/// fitted to a low of 0.26 at 5:00 and a peak of 1.6 at 20:00; the mean over a day is 1.
fn diurnal(hour: f64) -> f64 {
    1.0 + 0.55 * (TAU * (hour - 18.0) / 24.0).cos()
        + 0.24 * (2.0 * TAU * (hour - 10.0) / 24.0).cos()
}

fn round_significant(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits - 1 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

/// Shares are written to the truth with four decimals, and simulated as written.
fn round_share(x: f64) -> f64 {
    ((x * 10_000.0).round() / 10_000.0).max(0.0001)
}

fn round_tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Draws the counts bucket by bucket, in order: the one sampler behind the CSV, the live
/// traffic of `simulate --target` and the demo (`serve --demo`), so all are the same model
/// with the same seed. It holds the random streams only; each call takes the scenario that
/// made it (see [`Scenario::sampler`]).
pub struct CountSampler {
    /// Services by id, the order of the CSV rows.
    order: Vec<usize>,
    /// One stream per service: a service's counts do not depend on the others.
    rngs: Vec<SplitMix64>,
    means: Vec<Vec<f64>>,
}

impl CountSampler {
    fn new(scenario: &Scenario) -> Self {
        let mut order: Vec<usize> = (0..scenario.services.len()).collect();
        order.sort_by(|&a, &b| scenario.services[a].id.cmp(&scenario.services[b].id));
        let rngs = (0..scenario.services.len())
            .map(|s| SplitMix64::stream(scenario.params.seed, Purpose::Counts, s as u64))
            .collect();
        let means = scenario
            .services
            .iter()
            .map(|s| vec![0.0; s.cells()])
            .collect();
        Self { order, rngs, means }
    }

    /// Calls `each(service, cell, count)` for every non-zero cell of bucket `bucket` of
    /// `scenario` (the one this sampler was made for), services by id and cells in order
    /// ([`Scenario::cell`] names them). Buckets must be drawn in order, each once.
    pub fn bucket(
        &mut self,
        scenario: &Scenario,
        bucket: u64,
        mut each: impl FnMut(usize, usize, u64),
    ) {
        scenario.bucket_means(bucket, true, &mut self.means);
        for &s in &self.order {
            for (cell, &mean) in self.means[s].iter().enumerate() {
                let count = negative_binomial(&mut self.rngs[s], mean, DISPERSION);
                if count > 0 {
                    each(s, cell, count);
                }
            }
        }
    }
}

/// Requests in flight at most in live mode; when all are taken, the simulation waits.
const LIVE_CONCURRENCY: usize = 64;
/// Longest a live request may take before it counts as an error.
const LIVE_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// When every request has failed for this long, live mode gives up (503s included: a
/// server whose store is down refuses every report, though its `/healthz` answers).
const LIVE_FAILING_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// A report due within this much of now is sent at once: timers have millisecond grain.
const LIVE_EARLY: std::time::Duration = std::time::Duration::from_millis(1);
/// Lag above which the progress line says that the simulation falls behind.
const LIVE_LAG_NOTICE_SECS: f64 = 1.0;

/// What `downradar simulate --target` does: sends the scenario's reports to a running server,
/// bucket by bucket, each simulated bucket's reports spread evenly over its real interval
/// (bucket width / `--speed`), with at most [`LIVE_CONCURRENCY`] requests in flight.
///
/// Every report is one `POST /v1/services/{id}/reports` with its region, problem and a
/// client_id of its own (`sim-<seed>-<run>-<n>`, the run being the start in milliseconds), so each is a distinct reporter. A 503 is counted
/// and not retried: the point is to watch the server. When the server answers slower than
/// the traffic arrives, the simulation falls behind rather than queueing, and says so.
pub async fn run_live(args: &SimulateArgs) -> anyhow::Result<()> {
    let Some(target) = args.target.as_deref() else {
        bail!("simulate: --target is required for live traffic");
    };
    let width = args.bucket.secs();
    let start = match args.start {
        Some(start) => start,
        None => {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            OffsetDateTime::from_unix_timestamp(now - now.rem_euclid(width))?
        }
    };
    let (scenario, selected) = plan(args, start)?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(LIVE_CONCURRENCY)
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(LIVE_REQUEST_TIMEOUT)
        .build()
        .context("simulate: cannot build the HTTP client")?;
    let health = format!("{target}/healthz");
    match client.get(&health).send().await {
        Ok(answer) if answer.status().is_success() => {}
        Ok(answer) => bail!(
            "simulate: {health} answered {}: is {target} a downradar server?",
            answer.status()
        ),
        Err(e) => bail!(
            "simulate: cannot reach {target} ({health}): {}",
            error_chain(&e)
        ),
    }
    if let Some(truth) = &args.truth {
        let mut truth_file = TruthFile::write(truth, &scenario)?;
        truth_file.put_in_place()?;
        truth_file.keep();
    }
    print_notes(&scenario, selected);

    let speed = args.speed;
    let days = args.days;
    let live = Arc::new(Live::new(std::time::Instant::now()));
    crate::diag!(
        "simulate: {selected} services, {days} day{} from {} at {speed}x -> {target}{}",
        if days == 1 { "" } else { "s" },
        format_time(start),
        args.truth
            .as_ref()
            .map(|t| format!(" (truth: {})", t.display()))
            .unwrap_or_default(),
    );

    let period_secs = f64::from(days) * 86_400.0;
    let interactive = io::stderr().is_terminal();
    let mut progress = Progress {
        live: live.clone(),
        start,
        speed,
        period_secs,
        interactive,
        last_sent: 0,
        last_at: live.t0,
        shown: false,
    };
    let every = if interactive {
        std::time::Duration::from_millis(250)
    } else {
        std::time::Duration::from_secs(1)
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let semaphore = Arc::new(Semaphore::new(LIVE_CONCURRENCY));
    let mut schedule = Box::pin(send_scenario(
        &scenario, target, &client, speed, &live, &semaphore,
    ));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let stopped = loop {
        tokio::select! {
            () = &mut schedule => break Stop::Done,
            _ = &mut ctrl_c => break Stop::Interrupted,
            _ = tick.tick() => {
                progress.show();
                if live.failing_for() >= Some(LIVE_FAILING_LIMIT) {
                    break Stop::Failing;
                }
            }
        }
    };
    // Sends nothing more. (Kept, its wait for a place among the requests in flight held the
    // first place freed, and the drain below waited out its timeout: Ctrl-C took 10 s at
    // high speeds, counted in the summary's rate.)
    drop(schedule);
    if !matches!(stopped, Stop::Failing) {
        // Let the requests in flight finish, so the summary adds up.
        let drained = semaphore.acquire_many(LIVE_CONCURRENCY as u32);
        let _ = tokio::time::timeout(LIVE_REQUEST_TIMEOUT, drained).await;
    }
    progress.finish(stopped);
    if let Some(failure) = live.first_failure.lock().ok().and_then(|e| e.clone()) {
        crate::diag!("simulate: first failure: {failure}");
    }
    if matches!(stopped, Stop::Failing) {
        bail!(
            "simulate: every request to {target} failed for {} s; giving up",
            LIVE_FAILING_LIMIT.as_secs()
        );
    }
    Ok(())
}

/// Why live mode stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The simulated period is over.
    Done,
    /// Ctrl-C.
    Interrupted,
    /// Every request failed for [`LIVE_FAILING_LIMIT`].
    Failing,
}

/// Shared state of live mode: the schedule's position and the outcome counters.
struct Live {
    /// When sending began; schedule times are offsets from it.
    t0: std::time::Instant,
    /// Real offset (µs) at which the report the schedule is trying to send was due; `u64::MAX`
    /// when it waits for nothing (between reports, or sleeping until the next is due).
    pending_due_us: AtomicU64,
    /// Real offset (µs) the schedule has reached while on time.
    reached_us: AtomicU64,
    sent: AtomicU64,
    counted: AtomicU64,
    not_counted: AtomicU64,
    unavailable: AtomicU64,
    errors: AtomicU64,
    /// Real offset (µs) of the first failure (an error or a 503) since the last 202;
    /// `u64::MAX` when the last answer was a 202.
    failing_since_us: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

/// What became of one live report.
enum Outcome {
    Counted,
    NotCounted,
    /// A 503, with its body.
    Unavailable(String),
    Error(String),
}

impl Live {
    fn new(t0: std::time::Instant) -> Self {
        Self {
            t0,
            pending_due_us: AtomicU64::new(u64::MAX),
            reached_us: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            counted: AtomicU64::new(0),
            not_counted: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            failing_since_us: AtomicU64::new(u64::MAX),
            first_failure: std::sync::Mutex::new(None),
        }
    }

    fn elapsed_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn record(&self, outcome: Outcome) {
        let counter = match &outcome {
            Outcome::Counted => &self.counted,
            Outcome::NotCounted => &self.not_counted,
            Outcome::Unavailable(_) => &self.unavailable,
            Outcome::Error(_) => &self.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Outcome::Error(message) | Outcome::Unavailable(message) = outcome {
            let now = self.elapsed_us();
            let _ = self.failing_since_us.compare_exchange(
                u64::MAX,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if let Ok(mut first) = self.first_failure.lock() {
                first.get_or_insert(message);
            }
        } else {
            self.failing_since_us.store(u64::MAX, Ordering::Relaxed);
        }
    }

    /// How long every answer has been a failure, if the last one was.
    fn failing_for(&self) -> Option<std::time::Duration> {
        let since = self.failing_since_us.load(Ordering::Relaxed);
        (since != u64::MAX)
            .then(|| std::time::Duration::from_micros(self.elapsed_us().saturating_sub(since)))
    }

    /// How far the schedule is behind, in seconds of real time.
    fn lag_secs(&self) -> f64 {
        let due = self.pending_due_us.load(Ordering::Relaxed);
        if due == u64::MAX {
            return 0.0;
        }
        self.elapsed_us().saturating_sub(due) as f64 / 1e6
    }

    /// Real seconds of the schedule done: the time now, or the due time of the report still
    /// waiting to be sent.
    fn reached_secs(&self) -> f64 {
        let now = self.elapsed_us();
        let due = self.pending_due_us.load(Ordering::Relaxed);
        let reached = self.reached_us.load(Ordering::Relaxed);
        now.min(due).max(reached) as f64 / 1e6
    }
}

/// The body of a live report.
#[derive(Serialize)]
struct LiveReport<'a> {
    problem: &'a str,
    region: &'a str,
    client_id: String,
}

/// Sends every report of `scenario` at its time, and returns at the end of the period.
async fn send_scenario(
    scenario: &Scenario,
    target: &str,
    client: &reqwest::Client,
    speed: f64,
    live: &Arc<Live>,
    semaphore: &Arc<Semaphore>,
) {
    let urls: Vec<String> = scenario
        .services
        .iter()
        .map(|svc| format!("{target}/v1/services/{}/reports", svc.id))
        .collect();
    let seed = scenario.params.seed;
    // Distinct per run, so that a rerun within the server's dedup window is counted again.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut sampler = scenario.sampler();
    // Mixes each bucket's reports, so services and regions interleave as they would.
    let mut order_rng = SplitMix64::stream(seed, Purpose::Live, 0);
    let real_bucket_us = scenario.params.bucket.secs() as f64 * 1e6 / speed;
    let mut reports: Vec<(usize, usize)> = Vec::new();
    let mut counter: u64 = 0;
    for bucket in 0..scenario.bucket_count() {
        reports.clear();
        sampler.bucket(scenario, bucket, |s, cell, count| {
            reports.extend(std::iter::repeat_n((s, cell), count as usize));
        });
        order_rng.shuffle(&mut reports);
        let bucket_us = bucket as f64 * real_bucket_us;
        let spacing_us = real_bucket_us / reports.len().max(1) as f64;
        for (i, &(s, cell)) in reports.iter().enumerate() {
            let due_us = (bucket_us + (i as f64 + 0.5) * spacing_us) as u64;
            let due = live.t0 + std::time::Duration::from_micros(due_us);
            if due > std::time::Instant::now() + LIVE_EARLY {
                live.reached_us
                    .fetch_max(due_us.saturating_sub(1), Ordering::Relaxed);
                tokio::time::sleep_until(due.into()).await;
            }
            live.pending_due_us.store(due_us, Ordering::Relaxed);
            let Ok(permit) = semaphore.clone().acquire_owned().await else {
                return;
            };
            live.pending_due_us.store(u64::MAX, Ordering::Relaxed);
            live.reached_us.fetch_max(due_us, Ordering::Relaxed);

            counter += 1;
            let svc = &scenario.services[s];
            let np = svc.problems.len();
            let report = LiveReport {
                problem: svc.problems[cell % np].name.as_str(),
                region: svc.regions[cell / np].code.as_str(),
                client_id: format!("sim-{seed}-{run}-{counter}"),
            };
            let request = client.post(&urls[s]).json(&report);
            live.sent.fetch_add(1, Ordering::Relaxed);
            let live = live.clone();
            tokio::spawn(async move {
                live.record(send_report(request).await);
                drop(permit);
            });
        }
    }
    // The period ends with its last bucket, reports or not.
    let end_us = (scenario.bucket_count() as f64 * real_bucket_us) as u64;
    let end = live.t0 + std::time::Duration::from_micros(end_us);
    live.reached_us.fetch_max(end_us, Ordering::Relaxed);
    tokio::time::sleep_until(end.into()).await;
}

/// Sends one report and classifies the answer.
async fn send_report(request: reqwest::RequestBuilder) -> Outcome {
    #[derive(serde::Deserialize)]
    struct Accepted {
        counted: bool,
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => return Outcome::Error(error_chain(&e)),
    };
    match answer.status().as_u16() {
        202 => match answer.json::<Accepted>().await {
            Ok(Accepted { counted: true }) => Outcome::Counted,
            Ok(Accepted { counted: false }) => Outcome::NotCounted,
            Err(e) => Outcome::Error(format!("202 with an unexpected body: {}", error_chain(&e))),
        },
        status => {
            let body = answer.text().await.unwrap_or_default();
            let body: String = body.chars().take(300).collect();
            let message = format!("{status}: {body}");
            if status == 503 {
                Outcome::Unavailable(message)
            } else {
                Outcome::Error(message)
            }
        }
    }
}

/// An error with its causes ("error: cause: cause").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// The progress line of live mode.
struct Progress {
    live: Arc<Live>,
    start: OffsetDateTime,
    speed: f64,
    period_secs: f64,
    interactive: bool,
    last_sent: u64,
    last_at: std::time::Instant,
    shown: bool,
}

impl Progress {
    /// Simulated time, done, outcome counts and the rate since the last line.
    fn line(&mut self, rate: f64) -> String {
        let live = &self.live;
        let simulated = (live.reached_secs() * self.speed).min(self.period_secs);
        let at = self.start + Duration::seconds(simulated as i64);
        let lag = live.lag_secs();
        let behind = if lag >= LIVE_LAG_NOTICE_SECS {
            " (falling behind: the target answers slower than the traffic arrives)"
        } else {
            ""
        };
        format!(
            "simulate: {} ({:.1}%) sent {}: {} counted, {} not counted, {} 503, {} errors; \
             {rate:.0}/s; lag {lag:.1} s{behind}",
            format_time(at),
            (simulated / self.period_secs * 1000.0).floor() / 10.0,
            live.sent.load(Ordering::Relaxed),
            live.counted.load(Ordering::Relaxed),
            live.not_counted.load(Ordering::Relaxed),
            live.unavailable.load(Ordering::Relaxed),
            live.errors.load(Ordering::Relaxed),
        )
    }

    fn show(&mut self) {
        let now = std::time::Instant::now();
        let sent = self.live.sent.load(Ordering::Relaxed);
        let secs = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        let rate = (sent - self.last_sent) as f64 / secs;
        (self.last_sent, self.last_at) = (sent, now);
        let line = self.line(rate);
        if self.interactive {
            // Pad over the end of a longer previous line.
            crate::diag_inline!("\r{line:<150}");
        } else {
            crate::diag!("{line}");
        }
        self.shown = true;
    }

    /// The summary: the last progress line with the average rate, and why it stopped.
    fn finish(&mut self, stopped: Stop) {
        if self.interactive && self.shown {
            crate::diag!();
        }
        let elapsed = self.live.t0.elapsed().as_secs_f64();
        let rate = self.live.sent.load(Ordering::Relaxed) as f64 / elapsed.max(1e-3);
        let line = self.line(rate);
        let why = match stopped {
            Stop::Done => "end of the simulated period",
            Stop::Interrupted => "interrupted",
            Stop::Failing => "the target fails",
        };
        crate::diag!("{line}; {elapsed:.1} s real; stopped: {why}");
    }
}

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// What a random stream is for; part of the stream's seed.
#[derive(Clone, Copy)]
enum Purpose {
    Profile = 1,
    VolumeClass = 2,
    Outages = 3,
    Blips = 4,
    Counts = 5,
    Live = 6,
}

/// splitmix64 (Steele, Lea & Flood 2014): tiny, fast, and statistically sound for simulation.
pub(crate) struct SplitMix64(u64);

/// The splitmix64 output function, a bijection that scrambles every bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// The stream for `purpose` and `index` under `seed`: distinct inputs start at unrelated
    /// points of the 2⁶⁴-long sequence, far apart for the few million draws each one takes.
    fn stream(seed: u64, purpose: Purpose, index: u64) -> Self {
        let label = mix64((purpose as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index);
        Self(mix64(seed ^ label))
    }

    /// A stream of its own for `seed` (the detector's tests draw their counts from one).
    #[cfg(test)]
    pub(crate) fn seeded(seed: u64) -> Self {
        Self(mix64(seed))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    fn log_range(&mut self, low: f64, high: f64) -> f64 {
        self.range(low.ln(), high.ln()).exp()
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias of at most n/2⁶⁴ is irrelevant).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    fn int_range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal, by Box–Muller.
    fn normal(&mut self) -> f64 {
        let radius = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        radius * (TAU * self.uniform()).cos()
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }

    /// A mask over `n` items with 1 to `most` of them set, but never all (so that a regional
    /// or partial outage is one); `n` must be at least 2.
    fn subset(&mut self, n: usize, most: usize) -> Vec<bool> {
        let k = self.int_range(1, most.min(n - 1) as i64) as usize;
        let mut indices: Vec<usize> = (0..n).collect();
        self.shuffle(&mut indices);
        let mut mask = vec![false; n];
        for &i in &indices[..k] {
            mask[i] = true;
        }
        mask
    }
}

/// A negative binomial count with mean `mean` and dispersion `k` ≥ 1 (variance mean + mean²/k).
pub(crate) fn negative_binomial(rng: &mut SplitMix64, mean: f64, k: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean >= NB_INVERSION_BELOW {
        let rate = mean * gamma(rng, k) / k;
        return poisson(rng, rate);
    }
    let u = rng.uniform();
    // P(0) ≥ 1 − mean (Markov's inequality), so below that the inversion would answer 0 too.
    if u < 1.0 - mean {
        return 0;
    }
    let q = mean / (mean + k);
    let mut pmf = (-k * (mean / k).ln_1p()).exp();
    let mut cdf = pmf;
    let mut n = 0u64;
    // `pmf > 0` stops the walk if rounding keeps the sum just below a `u` very close to 1.
    while u >= cdf && pmf > 0.0 {
        pmf *= q * (n as f64 + k) / (n as f64 + 1.0);
        n += 1;
        cdf += pmf;
    }
    n
}

/// A Gamma(shape, 1) variate for shape ≥ 1 (Marsaglia & Tsang 2000, ACM TOMS 26:363).
fn gamma(rng: &mut SplitMix64, shape: f64) -> f64 {
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = rng.uniform();
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// A Poisson count: sequential inversion for small rates, PTRS (Hörmann 1993, "The
/// transformed rejection method for generating Poisson random variables") for large ones.
pub(crate) fn poisson(rng: &mut SplitMix64, lambda: f64) -> u64 {
    if lambda < POISSON_INVERSION_BELOW {
        let u = rng.uniform();
        let mut pmf = (-lambda).exp();
        let mut cdf = pmf;
        let mut n = 0u64;
        while u >= cdf && pmf > 0.0 {
            n += 1;
            pmf *= lambda / n as f64;
            cdf += pmf;
        }
        return n;
    }
    let log_lambda = lambda.ln();
    let b = 0.931 + 2.53 * lambda.sqrt();
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let v_r = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = rng.uniform() - 0.5;
        let v = rng.uniform();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lambda + 0.43).floor();
        if us >= 0.07 && v <= v_r {
            return k as u64;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        if v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln()
            <= -lambda + k * log_lambda - ln_factorial(k)
        {
            return k as u64;
        }
    }
}

/// ln(n!) for a whole number n ≥ 0: exact below 10, Stirling's series (error < 1e-10) above.
fn ln_factorial(n: f64) -> f64 {
    if n < 10.0 {
        return (2..=n as u64).map(|i| (i as f64).ln()).sum();
    }
    n * n.ln() - n + 0.5 * (TAU * n).ln() + 1.0 / (12.0 * n) - 1.0 / (360.0 * n.powi(3))
        + 1.0 / (1260.0 * n.powi(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use time::macros::datetime;

    /// A cloud with three dependents and one independent service.
    const CATALOG: &str = r#"
        [[service]]
        id = "cloud"
        name = "Cloud"
        problems = ["api", "console", "storage", "login"]

        [[service]]
        id = "chat"
        name = "Chat"
        problems = ["app", "login", "messages"]
        depends_on = ["cloud"]

        [[service]]
        id = "video"
        name = "Video"
        problems = ["app", "playback", "login", "upload", "website"]
        depends_on = ["cloud"]

        [[service]]
        id = "bank"
        name = "Bank"
        problems = ["app", "login", "payments"]

        [[service]]
        id = "shop"
        name = "Shop"
        problems = ["website", "checkout", "login"]
        depends_on = ["cloud"]
    "#;

    fn catalog() -> Catalog {
        Catalog::parse("test.toml", CATALOG).unwrap()
    }

    fn params(seed: u64, days: u32, outages_per_week: f64) -> Params {
        Params {
            start: datetime!(2026-10-01 00:00 UTC),
            days,
            bucket: BucketWidth::ONE_MINUTE,
            seed,
            outages_per_week,
        }
    }

    fn scenario(seed: u64, days: u32, outages_per_week: f64) -> Scenario {
        Scenario::generate(catalog().services(), params(seed, days, outages_per_week)).unwrap()
    }

    /// No outages asked for, none made: the kinds chance left out are added only to a
    /// scenario that has outages (an outage-free history to import had four to six).
    #[test]
    fn no_outages_means_none() {
        for seed in [1, 2] {
            let truth = scenario(seed, 30, 0.0).truth();
            assert!(truth.outages.is_empty(), "{:?}", truth.outages.first());
        }
        assert!(!scenario(1, 30, 0.1).truth().outages.is_empty());
    }

    fn csv(scenario: &Scenario) -> Vec<u8> {
        let mut out = Vec::new();
        scenario.write_counts(&mut out, |_| {}).unwrap();
        out
    }

    /// Counts by (bucket, service index, cell), read back from the CSV.
    fn parse_counts(scenario: &Scenario, csv: &[u8]) -> HashMap<(u64, usize, usize), u64> {
        let text = std::str::from_utf8(csv).unwrap();
        let start = scenario.params.start.unix_timestamp();
        let width = scenario.params.bucket.secs();
        let mut counts = HashMap::new();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            let at = OffsetDateTime::parse(fields[0], &Rfc3339).unwrap();
            let bucket = ((at.unix_timestamp() - start) / width) as u64;
            let s = scenario
                .services
                .iter()
                .position(|svc| svc.id.as_str() == fields[1])
                .unwrap();
            let svc = &scenario.services[s];
            let r = svc
                .regions
                .iter()
                .position(|r| r.code.as_str() == fields[2])
                .unwrap();
            let p = svc
                .problems
                .iter()
                .position(|p| p.name.as_str() == fields[3])
                .unwrap();
            let cell = r * svc.problems.len() + p;
            counts.insert((bucket, s, cell), fields[4].parse().unwrap());
        }
        counts
    }

    #[test]
    fn the_counts_and_the_truth_must_be_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let dotted = dir.path().join(".").join("a.csv");
        let b = dir.path().join("b.json");
        assert!(same_file(&a, &a));
        assert!(
            same_file(&a, &dotted),
            "not written yet, and named two ways"
        );
        assert!(!same_file(&a, &b));
        assert!(same_file(Path::new("x.csv"), Path::new("./x.csv")));
    }

    #[cfg(unix)]
    #[test]
    fn a_link_and_its_target_are_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.json");
        // A link to a file not there yet leads to it: creating the link creates the file.
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink("a.csv", &link).unwrap();
        assert!(same_file(&link, &a), "a dangling link and its target");
        assert!(same_file(&a, &link));
        assert!(!same_file(&link, &b));
        // A link to a link, through a subdirectory, to a file that is there.
        std::fs::write(&a, "x").unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let chained = sub.join("chained.csv");
        std::os::unix::fs::symlink("../link.csv", &chained).unwrap();
        assert!(
            same_file(&chained, &a),
            "links followed to an existing file"
        );
        assert!(same_file(&sub.join("..").join("a.csv"), &a));
        std::fs::remove_file(&a).unwrap();
        assert!(
            same_file(&chained, &a),
            "links followed to a file not there"
        );
        // Two names of one file.
        std::fs::write(&b, "{}").unwrap();
        let hard = dir.path().join("hard.json");
        std::fs::hard_link(&b, &hard).unwrap();
        assert!(same_file(&hard, &b), "hard links");
        assert!(!same_file(&hard, &a));
        // Links in a loop lead nowhere, and are no other file.
        let (x, y) = (dir.path().join("x"), dir.path().join("y"));
        std::os::unix::fs::symlink("y", &x).unwrap();
        std::os::unix::fs::symlink("x", &y).unwrap();
        assert_eq!(resolved(&x), None);
        assert!(!same_file(&x, &a));

        // And the command refuses them, before it writes either.
        std::fs::write(&a, "the truth").unwrap();
        let refused = run(&simulate_args(&[
            "--output".as_ref(),
            chained.as_os_str(),
            "--truth".as_ref(),
            a.as_os_str(),
        ]))
        .unwrap_err()
        .to_string();
        assert!(refused.contains("name the same file"), "{refused}");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "the truth");
    }

    /// A run whose counts cannot be written leaves no new truth: none where there was none,
    /// an earlier run's as it was, and no temporary file.
    #[test]
    fn a_run_whose_counts_fail_leaves_no_new_truth() {
        let dir = tempfile::tempdir().unwrap();
        let truth = dir.path().join("truth.json");
        let args = |output: &Path| {
            simulate_args(&[
                "--output".as_ref(),
                output.as_os_str(),
                "--truth".as_ref(),
                truth.as_os_str(),
            ])
        };
        let nowhere = dir.path().join("nodir").join("counts.csv");
        let failed = format!("{:#}", run(&args(&nowhere)).unwrap_err());
        assert!(failed.contains("cannot create the counts file"), "{failed}");
        assert!(!truth.exists(), "a truth of counts never written");

        std::fs::write(&truth, "an earlier run's").unwrap();
        run(&args(&nowhere)).unwrap_err();
        let full = Path::new("/dev/full");
        if full.exists() {
            // Opened, and every write refused: the counts fail as they are written.
            let failed = format!("{:#}", run(&args(full)).unwrap_err());
            assert!(failed.contains("cannot write the counts"), "{failed}");
        }
        assert_eq!(std::fs::read_to_string(&truth).unwrap(), "an earlier run's");
        let names = || {
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(), ["truth.json"]);

        // A run that writes its counts replaces it.
        let counts = dir.path().join("counts.csv");
        run(&args(&counts)).unwrap();
        let written: Truth =
            serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
        assert_eq!(written.services.len(), 1);
        assert_eq!(names(), ["counts.csv", "truth.json"]);
        // A truth thrown away is written to the device, not beside it.
        let null = Path::new("/dev/null");
        if null.exists() {
            run(&simulate_args(&[
                "--output".as_ref(),
                counts.as_os_str(),
                "--truth".as_ref(),
                null.as_os_str(),
            ]))
            .unwrap();
        }
    }

    /// The arguments of `downradar simulate` for a day of one service, with `flags`.
    fn simulate_args(flags: &[&std::ffi::OsStr]) -> SimulateArgs {
        let args = ["downradar", "simulate", "--days", "1", "--services", "1"]
            .map(std::ffi::OsStr::new)
            .into_iter()
            .chain(flags.iter().copied());
        match crate::config::Cli::try_parse_args(args).unwrap().command {
            Some(crate::config::Command::Simulate(args)) => args,
            other => panic!("not simulate: {other:?}"),
        }
    }

    #[test]
    fn same_seed_gives_identical_bytes_and_another_seed_does_not() {
        let a = csv(&scenario(7, 2, 4.0));
        let b = csv(&scenario(7, 2, 4.0));
        assert!(a == b, "same seed, different output");
        let c = csv(&scenario(8, 2, 4.0));
        assert!(a != c, "different seeds, same output");
        let truth = |seed| serde_json::to_string(&scenario(seed, 2, 4.0).truth()).unwrap();
        assert_eq!(truth(7), truth(7));
        assert_ne!(truth(7), truth(8));
    }

    #[test]
    fn csv_is_sorted_without_zero_rows_and_names_only_catalog_entries() {
        let catalog = catalog();
        let out = csv(&scenario(1, 2, 4.0));
        let text = std::str::from_utf8(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("timestamp,service,region,problem,count"));
        let mut previous: Option<(i64, String, String, String)> = None;
        let mut rows = 0;
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 5, "{line}");
            let at = OffsetDateTime::parse(fields[0], &Rfc3339).unwrap();
            assert_eq!(fields[0], format_time(at), "not canonical UTC: {line}");
            assert_eq!(at.unix_timestamp() % 60, 0, "{line}");
            let service = catalog.get(fields[1]).unwrap_or_else(|| panic!("{line}"));
            let region = RegionCode::parse(fields[2]).unwrap();
            assert_eq!(region.as_str(), fields[2], "{line}");
            assert!(service.has_problem(fields[3]), "{line}");
            let count: u64 = fields[4].parse().unwrap();
            assert!(count > 0, "zero row: {line}");
            let key = (
                at.unix_timestamp(),
                fields[1].to_owned(),
                fields[2].to_owned(),
                fields[3].to_owned(),
            );
            if let Some(previous) = &previous {
                assert!(previous < &key, "not sorted: {previous:?} then {key:?}");
            }
            previous = Some(key);
            rows += 1;
        }
        assert!(rows > 1000, "only {rows} rows");
        let last = previous.unwrap().0;
        assert!(last < datetime!(2026-10-03 00:00 UTC).unix_timestamp());
    }

    /// Sums observed and expected counts, and the negative binomial variance, over the cells
    /// of `service` that `select` picks, in `from..to` (minutes).
    fn window(
        scenario: &Scenario,
        counts: &HashMap<(u64, usize, usize), u64>,
        service: usize,
        (from, to): (i64, i64),
        select: impl Fn(usize, usize) -> bool,
    ) -> (f64, f64, f64) {
        let svc = &scenario.services[service];
        let np = svc.problems.len();
        let mut means: Vec<Vec<f64>> = scenario
            .services
            .iter()
            .map(|s| vec![0.0; s.cells()])
            .collect();
        let (mut observed, mut expected, mut variance) = (0.0, 0.0, 0.0);
        for bucket in from as u64..to as u64 {
            scenario.bucket_means(bucket, false, &mut means);
            for (cell, &mean) in means[service].iter().enumerate() {
                if select(cell / np, cell % np) {
                    observed += counts.get(&(bucket, service, cell)).copied().unwrap_or(0) as f64;
                    expected += mean;
                    variance += mean + mean * mean / DISPERSION;
                }
            }
        }
        (observed, expected, variance)
    }

    #[test]
    fn outages_flood_their_cells_and_leave_the_others_at_baseline() {
        let scenario = scenario(3, 3, 10.0);
        let counts = parse_counts(&scenario, &csv(&scenario));
        let kinds: Vec<Kind> = scenario.outages.iter().map(|o| o.kind).collect();
        for kind in Kind::ALL {
            assert!(kinds.contains(&kind), "no {kind:?} outage in {kinds:?}");
        }
        for o in &scenario.outages {
            let span = (o.start, o.end);
            let (observed, expected, _) = window(&scenario, &counts, o.service, span, |r, p| {
                o.is_affected(r, p)
            });
            assert!(
                observed >= 2.0 * expected + 10.0,
                "{o:?}: observed {observed}, expected {expected} without the outage"
            );
            let (observed, expected, variance) =
                window(&scenario, &counts, o.service, span, |r, p| {
                    !o.is_affected(r, p)
                });
            let slack = 5.0 * variance.sqrt() + 5.0;
            assert!(
                (observed - expected).abs() <= slack,
                "{o:?}: unaffected cells observed {observed}, expected {expected} ± {slack}"
            );
        }
    }

    #[test]
    fn cascades_follow_their_upstream_by_one_to_five_minutes() {
        let scenario = scenario(5, 3, 10.0);
        let cascading: Vec<&Outage> = scenario
            .outages
            .iter()
            .filter(|o| o.kind == Kind::Cascading)
            .collect();
        assert!(!cascading.is_empty());
        for o in cascading {
            assert_eq!(o.caused_by.len(), 1);
            let upstream = o.caused_by[0];
            assert!(scenario.services[o.service].depends_on.contains(&upstream));
            assert!(
                scenario
                    .outages
                    .iter()
                    .any(|u| u.service == upstream && (1..=5).contains(&(o.start - u.start))),
                "{o:?} has no upstream outage 1 to 5 minutes before it"
            );
        }
    }

    #[test]
    fn outages_of_one_service_never_overlap() {
        let scenario = scenario(9, 3, 20.0);
        for own in &scenario.outages_by_service {
            for (i, &a) in own.iter().enumerate() {
                for &b in &own[i + 1..] {
                    let (a, b) = (&scenario.outages[a], &scenario.outages[b]);
                    assert!(a.tail_end() <= b.start || b.tail_end() <= a.start);
                }
            }
        }
    }

    #[test]
    fn a_week_of_five_services_has_every_kind_even_when_chance_gives_none() {
        // So rare that chance draws none (at 0, none are asked for: see `no_outages_means_none`).
        let scenario = Scenario::generate(catalog().services(), params(11, 7, 1e-6)).unwrap();
        for kind in Kind::ALL {
            assert!(scenario.outages_of_kind(kind) >= 1, "{kind:?}");
        }
        let builtin = Catalog::builtin();
        let scenario = Scenario::generate(builtin.services(), params(12, 7, 0.05)).unwrap();
        for kind in Kind::ALL {
            assert!(scenario.outages_of_kind(kind) >= 1, "{kind:?}");
        }
    }

    #[test]
    fn a_single_region_service_is_quiet_at_its_local_night() {
        let mut service = ServiceModel::draw(&catalog().services()[3], 0, 1);
        service.base_per_min = 20.0;
        service.regions = vec![RegionModel {
            country: COUNTRIES.iter().position(|c| c.0 == "JP").unwrap(),
            code: RegionCode::parse("JP").unwrap(),
            share: 1.0,
        }];
        let scenario = Scenario::build(vec![service], params(1, 2, 0.0)).unwrap();
        let counts = parse_counts(&scenario, &csv(&scenario));
        // Japan is UTC+9: local 02:00-05:00 is 17:00-20:00 UTC, local 18:00-21:00 is 09:00-12:00.
        let hours = |from: u64, to: u64| -> u64 {
            counts
                .iter()
                .filter(|((bucket, _, _), _)| (from * 60..to * 60).contains(&(bucket % 1440)))
                .map(|(_, &n)| n)
                .sum()
        };
        let (night, evening) = (hours(17, 20), hours(9, 12));
        assert!(evening > 1000, "{evening}");
        let ratio = night as f64 / evening as f64;
        assert!(ratio < 0.4, "night/evening = {ratio}");
    }

    #[test]
    fn volume_classes_all_occur_in_three_services() {
        let scenario = scenario(13, 1, 0.0);
        let mut classes: Vec<VolumeClass> = scenario.services[..3]
            .iter()
            .map(|s| VolumeClass::of(s.base_per_min))
            .collect();
        classes.dedup();
        assert_eq!(classes.len(), 3, "{classes:?}");
        for svc in &scenario.services {
            assert!((8..=15).contains(&svc.regions.len()));
            let total: f64 = svc.regions.iter().map(|r| r.share).sum();
            assert!((total - 1.0).abs() < 0.001, "{total}");
        }
    }

    #[test]
    fn truth_lists_services_and_outages_in_the_contract_shape() {
        let scenario = scenario(3, 3, 10.0);
        let truth = serde_json::to_value(scenario.truth()).unwrap();
        assert_eq!(truth["seed"], 3);
        assert_eq!(truth["start"], "2026-10-01T00:00:00Z");
        assert_eq!(truth["end"], "2026-10-04T00:00:00Z");
        assert_eq!(truth["bucket_secs"], 60);
        let services = truth["services"].as_array().unwrap();
        assert_eq!(services.len(), 5);
        assert_eq!(services[0]["id"], "cloud");
        assert!(services[0]["blips"].as_u64().unwrap() > 0);
        let outages = truth["outages"].as_array().unwrap();
        assert_eq!(outages.len(), scenario.outages.len());
        for (i, o) in outages.iter().enumerate() {
            assert_eq!(o["id"], format!("o{}", i + 1));
            let service = services.iter().find(|s| s["id"] == o["service"]).unwrap();
            let regions: Vec<&str> = o["regions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            let problems: Vec<&str> = o["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            assert!(regions.is_sorted() && !regions.is_empty(), "{o}");
            assert!(problems.is_sorted() && !problems.is_empty(), "{o}");
            let all_regions = service["regions"].as_object().unwrap().len();
            let all_problems = service["problems"].as_object().unwrap().len();
            assert_eq!(o["scope"] == "global", regions.len() == all_regions, "{o}");
            assert_eq!(o["partial"] == true, problems.len() < all_problems, "{o}");
            assert_eq!(
                o["caused_by"].as_array().unwrap().is_empty(),
                o["kind"] != "cascading",
                "{o}"
            );
            assert!(o["start"].as_str().unwrap() < o["end"].as_str().unwrap());
            let peak = o["peak_ratio"].as_f64().unwrap();
            assert!((5.0..=30.0).contains(&peak), "{o}");
        }
    }

    #[test]
    fn start_off_the_bucket_grid_or_before_1970_is_refused() {
        let mut params = params(1, 1, 0.0);
        params.start = datetime!(2026-10-01 00:00:30 UTC);
        let err = Scenario::generate(catalog().services(), params.clone()).unwrap_err();
        assert!(err.to_string().contains("bucket boundary"), "{err}");
        // Nor can counts begin before 1970: `backtest` and `import` would refuse them.
        params.start = datetime!(1960-01-01 00:00:00 UTC);
        let err = Scenario::generate(catalog().services(), params).unwrap_err();
        assert!(
            err.to_string().contains("1970-01-01T00:00:00Z or later"),
            "{err}"
        );
    }

    #[test]
    fn samplers_have_the_negative_binomial_mean_and_variance() {
        let mut rng = SplitMix64::stream(1, Purpose::Counts, 0);
        for mean in [0.02, 0.7, 4.0, 25.0, 300.0] {
            let n = 100_000;
            let draws: Vec<f64> = (0..n)
                .map(|_| negative_binomial(&mut rng, mean, DISPERSION) as f64)
                .collect();
            let m = draws.iter().sum::<f64>() / n as f64;
            let v = draws.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
            let expected_var = mean + mean * mean / DISPERSION;
            assert!(
                (m - mean).abs() < 5.0 * (expected_var / n as f64).sqrt() + 1e-3,
                "mean {mean}: {m}"
            );
            assert!(
                (v / expected_var - 1.0).abs() < 0.08,
                "mean {mean}: variance {v}, expected {expected_var}"
            );
        }
        for lambda in [3.0, 45.0, 1000.0] {
            let n = 100_000;
            let draws: Vec<f64> = (0..n).map(|_| poisson(&mut rng, lambda) as f64).collect();
            let m = draws.iter().sum::<f64>() / n as f64;
            let v = draws.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
            assert!(
                (m - lambda).abs() < 5.0 * (lambda / n as f64).sqrt(),
                "lambda {lambda}: {m}"
            );
            assert!(
                (v / lambda - 1.0).abs() < 0.05,
                "lambda {lambda}: variance {v}"
            );
        }
    }

    #[test]
    fn countries_are_built_in_regions_and_the_diurnal_curve_averages_one() {
        for index in 0..COUNTRIES.len() {
            country_code(index);
        }
        let mean = (0..1440).map(|m| diurnal(m as f64 / 60.0)).sum::<f64>() / 1440.0;
        assert!((mean - 1.0).abs() < 1e-9, "{mean}");
        assert!(diurnal(5.0) < 0.3 && diurnal(20.5) > 1.55);
    }
}
