//! `downradar backtest`: the live detector, ticked over recorded counts as fast as it can.
//!
//! A [`CountsFeed`] reads the file on a thread of its own, [`CHUNK_BUCKETS`] buckets at a
//! time (per service, its non-empty buckets in time order), while an [`Engine`] with a fresh
//! [`Detector`] is ticked through the chunks before, exactly as the server ticks it through
//! the store. So reading and detecting share the time of the longer of the two, and memory
//! holds a few chunks, not the file. The events are written to stdout as JSON Lines in time
//! order once the whole file has been read: a bad row anywhere fails the run before any
//! event is printed, as a file read whole would. Progress and a summary go to stderr.

pub mod score;

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context, bail};
use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::buckets::BucketWidth;
use crate::catalog::{Catalog, ServiceId};
use crate::config::BacktestArgs;
use crate::detector::{
    CountSource, Detector, DetectorConfig, Engine, EventType, IncidentEvent, SETTLE,
};
use crate::import::{CountsReader, Repeated, Spacing};
use crate::progress::Progress;
use crate::store::{BucketCounts, StoreError};

/// Buckets per chunk of the file, and so per tick: an hour at one-minute buckets. Ticking
/// less often changes nothing the detector decides (it processes every closed bucket in
/// order), only the overhead.
pub const CHUNK_BUCKETS: i64 = 60;

/// Chunks read ahead of the detector at most.
const READ_AHEAD: usize = 4;

/// Consecutive buckets of a counts file.
#[derive(Debug)]
pub struct Chunk {
    /// Start of the file's first bucket.
    pub first: i64,
    /// Every bucket starting before this is in this chunk or an earlier one; at the end of
    /// the file, the end of its last bucket.
    pub until: i64,
    /// Per service, its buckets with a count, in time order.
    pub series: HashMap<ServiceId, Vec<BucketCounts>>,
    /// Data rows read so far, and the bytes of the file they took of its size.
    pub rows: u64,
    pub read: u64,
    pub size: u64,
    /// Rows so far that repeated a cell their bucket already had (their counts are added),
    /// and the line of the first.
    pub repeated: Repeated,
    /// How far apart the buckets read so far are.
    pub spacing: Spacing,
}

/// A counts file read on a thread of its own, chunk after chunk (see the module docs).
pub struct CountsFeed {
    chunks: mpsc::Receiver<anyhow::Result<Chunk>>,
    /// What [`started`](Self::started) received, for [`next`](Self::next) to return.
    first: Option<Option<anyhow::Result<Chunk>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl CountsFeed {
    /// Starts reading `path`, a counts file of `bucket`-wide buckets of `catalog`'s services,
    /// which must be sorted by time. Errors (the file, its header, any row) come from
    /// [`next`](Self::next), naming the file and line.
    pub fn open(path: &Path, catalog: &Catalog, bucket: BucketWidth) -> Self {
        let (tx, chunks) = mpsc::channel(READ_AHEAD);
        let (path, catalog): (PathBuf, Catalog) = (path.to_owned(), catalog.clone());
        let reader = std::thread::spawn(move || {
            let result = CountsReader::open(&path, &catalog, bucket)
                .and_then(|mut reader| read_chunks(&mut reader, bucket, &tx));
            if let Err(e) = result {
                // Nobody listens any more only when the run has failed already.
                let _ = tx.blocking_send(Err(e));
            }
        });
        Self {
            chunks,
            first: None,
            reader: Some(reader),
        }
    }

    /// Waits until the file has been read up to the end of its first chunk (or to its end,
    /// or an error, which `next` then returns). A `downradar simulate --output -` piping the
    /// counts here has written its truth file by then.
    pub async fn started(&mut self) {
        if self.first.is_none() {
            self.first = Some(self.chunks.recv().await);
        }
    }

    /// The error [`started`](Self::started) received, if it received one: what a later
    /// failure (a truth file a failed simulation never wrote) comes from.
    pub fn failed(&mut self) -> Option<anyhow::Error> {
        match self.first.take() {
            Some(Some(Err(e))) => Some(e),
            first => {
                self.first = first;
                None
            }
        }
    }

    /// The next chunk, or `None` after the last.
    pub async fn next(&mut self) -> anyhow::Result<Option<Chunk>> {
        let received = match self.first.take() {
            Some(first) => first,
            None => self.chunks.recv().await,
        };
        if let Some(chunk) = received {
            return chunk.map(Some);
        }
        // The reader is done (its end of the channel is gone, so it is exiting): at the end
        // of the file, or by a panic, which must not pass for the end of the file.
        if let Some(reader) = self.reader.take()
            && reader.join().is_err()
        {
            bail!("reading the counts file failed: its reader panicked");
        }
        Ok(None)
    }
}

/// Reads the whole file into chunks and sends them; stops early when the receiver is gone.
fn read_chunks(
    reader: &mut CountsReader<'_>,
    bucket: BucketWidth,
    tx: &mpsc::Sender<anyhow::Result<Chunk>>,
) -> anyhow::Result<()> {
    let width = bucket.secs();
    let mut chunk: Option<Chunk> = None;
    let mut last: Option<i64> = None;
    let mut rows = 0;
    let mut repeated = Repeated::default();
    while let Some(row) = reader.next_row()? {
        rows += 1;
        if last.is_some_and(|last| row.bucket < last) {
            bail!(
                "{}:{}: rows are not sorted by time (this bucket starts before the previous row's)",
                reader.file_name,
                reader.line_no
            );
        }
        if let Some(last) = last.filter(|&last| row.bucket - last > MAX_ROW_GAP_SECS) {
            bail!(
                "{}:{}: this bucket, {}, is {} days after the previous row's ({}): a typo in \
                 its year? The detector would take every bucket between one by one (about \
                 30 s a simulated year); at most {} days without a row are read",
                reader.file_name,
                reader.line_no,
                crate::detector::bucket_time(row.bucket),
                (row.bucket - last) / 86_400,
                crate::detector::bucket_time(last),
                MAX_ROW_GAP_SECS / 86_400
            );
        }
        last = Some(row.bucket);
        let first = chunk.as_ref().map_or(row.bucket, |c| c.first);
        let current = match chunk.take() {
            Some(mut full) if row.bucket >= full.until => {
                // The chunk is complete: every bucket before this row's is in it.
                full.until = row.bucket;
                (full.rows, full.read, full.repeated) = (rows - 1, reader.read, repeated);
                full.spacing = reader.spacing;
                if tx.blocking_send(Ok(full)).is_err() {
                    return Ok(());
                }
                None
            }
            open => open,
        };
        let chunk = chunk.insert(current.unwrap_or_else(|| Chunk {
            first,
            until: row.bucket + CHUNK_BUCKETS * width,
            series: HashMap::new(),
            rows: 0,
            read: 0,
            size: reader.size,
            repeated: Repeated::default(),
            spacing: Spacing::default(),
        }));
        if row.count == 0 {
            continue;
        }
        let buckets = chunk.series.entry(row.service).or_default();
        match buckets.last_mut() {
            Some(b) if b.start == row.bucket => {
                match b.cells.iter_mut().find(|(cell, _)| *cell == row.cell) {
                    Some((_, count)) => {
                        *count += row.count;
                        repeated.rows += 1;
                        repeated.first_line.get_or_insert(reader.line_no);
                    }
                    None => b.cells.push((row.cell, row.count)),
                }
            }
            _ => buckets.push(BucketCounts {
                start: row.bucket,
                cells: vec![(row.cell, row.count)],
            }),
        }
    }
    if let (Some(mut tail), Some(last)) = (chunk, last) {
        tail.until = last + width;
        (tail.rows, tail.read, tail.repeated) = (rows, reader.read, repeated);
        tail.spacing = reader.spacing;
        let _ = tx.blocking_send(Ok(tail));
    }
    Ok(())
}

/// Buckets read and not yet detected, per service in time order, as a [`CountSource`]. The
/// engine asks for each bucket once, in order, so each is handed over (moved) when asked for.
#[derive(Default)]
struct Unread(Mutex<HashMap<ServiceId, VecDeque<BucketCounts>>>);

impl Unread {
    fn add(&self, series: HashMap<ServiceId, Vec<BucketCounts>>) {
        let mut unread = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for (service, buckets) in series {
            unread.entry(service).or_default().extend(buckets);
        }
    }
}

#[async_trait]
impl CountSource for Unread {
    async fn counts_many(
        &self,
        services: &[ServiceId],
        from: i64,
        until: i64,
    ) -> Result<Vec<Vec<BucketCounts>>, StoreError> {
        let mut unread = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = services
            .iter()
            .map(|service| {
                let Some(buckets) = unread.get_mut(service) else {
                    return Vec::new();
                };
                let skip = buckets.iter().take_while(|b| b.start < from).count();
                buckets.drain(..skip);
                let take = buckets.iter().take_while(|b| b.start < until).count();
                buckets.drain(..take).collect()
            })
            .collect();
        Ok(taken)
    }
}

/// What a backtest read and decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub repeated: Repeated,
    pub spacing: Spacing,
    pub buckets: u64,
    /// Start of the first bucket and end of the last, when the file has rows.
    pub span: Option<(i64, i64)>,
    pub opened: u64,
    pub updated: u64,
    pub resolved: u64,
}

/// Runs the detector over the counts of `feed` from its first bucket to its last, handing
/// each event to `emit` in order. An error of the feed ends the run with that error.
pub async fn replay(
    catalog: &Catalog,
    config: DetectorConfig,
    mut feed: CountsFeed,
    mut emit: impl FnMut(&IncidentEvent) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let mut engine: Option<Engine> = None;
    let unread = Unread::default();
    let mut summary = Summary::default();
    let mut events = Vec::new();
    let mut progress = Progress::new();
    let settle = SETTLE.as_secs() as i64;
    let width = config.bucket.secs();
    let mut quiet = QuietStretches::default();
    let mut spacing_told = false;
    while let Some(chunk) = feed.next().await? {
        // Told as soon as it shows (and again at the end): the detector, reading a 5-minute
        // file as 1-minute buckets, warns of missing buckets some 300 times a day.
        if !spacing_told && let Some(warning) = chunk.spacing.warning(config.bucket) {
            crate::diag!("backtest: {warning}");
            spacing_told = true;
        }
        let engine =
            engine.get_or_insert_with(|| Engine::new(Detector::new(catalog, config), chunk.first));
        // Told before the detector takes the stretch: the chunk ends where the next row is.
        let rows = chunk.series.values().flatten().map(|b| b.start);
        for (from, to) in quiet.stretches(rows, chunk.until, width) {
            crate::diag!(
                "backtest: the file has no row from {} to {} ({:.0} days); those buckets count \
                 as zero reports",
                crate::detector::bucket_time(from),
                crate::detector::bucket_time(to),
                (to - from) as f64 / 86_400.0
            );
        }
        unread.add(chunk.series);
        // A day of buckets at a time, so that a long stretch shows its progress too.
        while engine.cursor() < chunk.until {
            let until = chunk.until.min(engine.cursor() + TICK_SECS.max(width));
            engine.tick(until + settle, &unread, &mut events).await?;
            for event in events.drain(..) {
                match event.kind {
                    EventType::Opened => summary.opened += 1,
                    EventType::Updated => summary.updated += 1,
                    EventType::Resolved => summary.resolved += 1,
                }
                emit(&event)?;
            }
            progress.show(|| percent(chunk.read, chunk.size, engine.cursor()));
        }
        summary.rows = chunk.rows;
        summary.repeated = chunk.repeated;
        summary.spacing = chunk.spacing;
        summary.buckets = ((chunk.until - chunk.first) / width) as u64;
        summary.span = Some((chunk.first, chunk.until));
        progress.show(|| percent(chunk.read, chunk.size, engine.cursor()));
    }
    progress.finish(None);
    Ok(summary)
}

/// Runs `downradar backtest`.
pub async fn run(args: &BacktestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let catalog = Catalog::load_or_builtin(args.catalog.as_deref())?;
    let bucket: BucketWidth = args.bucket;
    let mut feed = CountsFeed::open(&args.input, &catalog, bucket);
    if args.truth.is_some() {
        feed.started().await;
    }
    let truth = match args.truth.as_deref().map(read_truth).transpose() {
        Ok(truth) => truth,
        Err(e) => return Err(feed.failed().unwrap_or(e)),
    };
    if let (Some(truth), Some(path)) = (&truth, &args.truth) {
        check_truth(truth, path, bucket, args.warmup, &catalog)?;
    }
    let mut kept = Vec::new();
    let summary = replay(&catalog, args.detector.config(bucket), feed, |event| {
        kept.push(event.clone());
        Ok(())
    })
    .await?;
    if let (Some(truth), Some(path)) = (&truth, &args.truth) {
        check_span(truth, path, &args.input, summary.span)?;
    }
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = kept.iter().try_for_each(|event| {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")
    });
    crate::output::closed_pipe_is_end(written.and_then(|()| out.flush()))
        .context("writing to stdout")?;
    drop(out);
    crate::diag!(
        "backtest: {} rows, {} buckets, {} services: {} incidents opened, {} updates, {} resolved \
         (in {:.1?})",
        summary.rows,
        summary.buckets,
        catalog.services().len(),
        summary.opened,
        summary.updated,
        summary.resolved,
        started.elapsed()
    );
    if let Some(warning) = summary.repeated.warning(&args.input) {
        crate::diag!("backtest: {warning}");
    }
    if let Some(warning) = summary.spacing.warning(bucket) {
        crate::diag!("backtest: {warning}");
    }
    if let Some(truth) = truth {
        let causes = score::Causes::new(&catalog, args.detector.cascade_window);
        let report = score::score(&truth, &kept, args.warmup, &causes);
        crate::diag!(
            "\nscore against {} (first {} not scored):\n{report}",
            args.truth.as_deref().unwrap_or(Path::new("")).display(),
            humantime::format_duration(args.warmup)
        );
    }
    Ok(())
}

/// Refuses the truth at `path` when it cannot score a run on `bucket`-wide buckets of
/// `catalog`'s services: its buckets are others, `warmup` leaves none of it, or it names a
/// service the catalog lacks. (Whether the counts lie in its period is known only once they
/// are read.)
fn check_truth(
    truth: &crate::simulate::Truth,
    path: &Path,
    bucket: BucketWidth,
    warmup: std::time::Duration,
    catalog: &Catalog,
) -> anyhow::Result<()> {
    if truth.bucket_secs != bucket.secs() {
        bail!(
            "{}: its outages were simulated on {} s buckets, and --bucket is {} s: pass \
             --bucket {}s to score them",
            path.display(),
            truth.bucket_secs,
            bucket.secs(),
            truth.bucket_secs
        );
    }
    if truth.start + warmup >= truth.end {
        bail!(
            "{}: it covers {}, and --warmup {} leaves none of it to score",
            path.display(),
            humantime::format_duration((truth.end - truth.start).unsigned_abs()),
            humantime::format_duration(warmup)
        );
    }
    if let Some(missing) = truth
        .services
        .iter()
        .find(|s| catalog.get(s.id.as_str()).is_none())
    {
        bail!(
            "{}: its outages were simulated on service {:?}, which the catalog does not have: \
             it is the truth of a run with another catalog",
            path.display(),
            missing.id.as_str()
        );
    }
    Ok(())
}

/// How many reports the truth's services send, at their mean rate, in the longest quiet
/// spell a whole counts file of theirs may begin or end with (see [`check_span`]). Measured:
/// over 50 simulated months of one or two services (`--outages-per-week 0`), the longest
/// stretch without a row anywhere in a file lasted as long as its services take to send 19
/// reports at their mean rate (negative binomial counts in the night's trough); 50 leaves a
/// wide margin, and is still well under a day of the sparsest service (0.05 a minute: 17
/// hours).
const QUIET_REPORTS: f64 = 50.0;

/// Refuses the truth at `path` for the counts of `input`, whose rows run over `span` (the
/// start of the first bucket with a row, the end of the last), `None` without a row: rows
/// outside the truth's period are another run's; and a file with no row, or whose rows begin
/// after the period's start or end before its end by more than the truth's services stay
/// quiet ([`QUIET_REPORTS`] at their mean rate), is cut short: its outages past the rows
/// would be scored as missed. A file's first and last buckets may lack rows (zero counts are
/// left out), so equality would be wrong for a sparse run.
fn check_span(
    truth: &crate::simulate::Truth,
    path: &Path,
    input: &Path,
    span: Option<(i64, i64)>,
) -> anyhow::Result<()> {
    let (start, end) = (truth.start.unix_timestamp(), truth.end.unix_timestamp());
    let time = crate::detector::bucket_time;
    let Some((first, until)) = span else {
        bail!(
            "{}: the file has no rows, so there is nothing to score against {}, whose outages \
             were simulated from {} to {}: pass the counts file of that run",
            input.display(),
            path.display(),
            time(start),
            time(end)
        );
    };
    if first < start || until > end {
        bail!(
            "{}: its outages were simulated from {} to {}, and the counts of {} run from {} to \
             {}: it is the truth of another run",
            path.display(),
            time(start),
            time(end),
            input.display(),
            time(first),
            time(until)
        );
    }
    let per_min: f64 = truth.services.iter().map(|s| s.base_per_min).sum();
    // Saturates when the truth has no reports to send: nothing is then too quiet.
    let quiet = (QUIET_REPORTS / per_min * 60.0).ceil() as i64;
    let gap = |secs: i64| humantime::format_duration(std::time::Duration::from_secs(secs as u64));
    let (edge, missing) = if end - until > quiet {
        (
            format!("end at {}, {} before", time(until), gap(end - until)),
            "end",
        )
    } else if first - start > quiet {
        (
            format!("begin at {}, {} after", time(first), gap(first - start)),
            "start",
        )
    } else {
        return Ok(());
    };
    bail!(
        "{}: its rows {edge} the {missing} of the period of {} ({} to {}): the file is cut \
         short, and the truth's outages outside its rows would be scored as missed (its \
         services send {QUIET_REPORTS} reports in {} at their mean rate of {per_min:.2} a \
         minute; whole simulated files go no longer than about 20 reports' time without a \
         row): pass the whole counts file of that run",
        input.display(),
        path.display(),
        time(start),
        time(end),
        gap(quiet)
    )
}

fn read_truth(path: &Path) -> anyhow::Result<crate::simulate::Truth> {
    if path == Path::new(crate::import::STDIN) {
        bail!("--truth -: the truth is read from a file of its own; give its path");
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    serde_json::from_reader(io::BufReader::new(file)).with_context(|| {
        format!(
            "{}: not a truth file of `downradar simulate`",
            path.display()
        )
    })
}

/// Finds the long stretches of a file with no row, chunk by chunk.
#[derive(Debug, Default)]
struct QuietStretches {
    /// The last bucket with a row so far, or where the next row is.
    last: Option<i64>,
}

impl QuietStretches {
    /// The stretches longer than [`QUIET_STRETCH_SECS`], as `[from, to)`, up to and among
    /// `rows` (bucket starts, in any order) and `until` (where the next row is, or the end
    /// of the file).
    fn stretches(
        &mut self,
        rows: impl Iterator<Item = i64>,
        until: i64,
        width: i64,
    ) -> Vec<(i64, i64)> {
        let mut rows: Vec<i64> = rows.collect();
        rows.sort_unstable();
        rows.dedup();
        let mut found = Vec::new();
        for next in rows.into_iter().chain([until]) {
            if let Some(last) = self.last
                && next - last > QUIET_STRETCH_SECS
            {
                found.push((last + width, next));
            }
            self.last = Some(next);
        }
        found
    }
}

/// How many seconds of buckets the detector takes between progress lines.
const TICK_SECS: i64 = 86_400;

/// The longest stretch of a file without a row that is read: a longer one is a typo in a year,
/// most likely, and the run would take hours or years.
const MAX_ROW_GAP_SECS: i64 = 366 * 86_400;

/// A stretch of the file with no row longer than this is worth a word: a typo in a year
/// makes one, and the detector then takes its buckets one by one.
const QUIET_STRETCH_SECS: i64 = 7 * 86_400;

/// The progress line: `backtest:  42.0% of the file, detected up to 2026-10-05T12:00:00Z`;
/// of standard input, whose size is unknown (0), the megabytes read instead.
fn percent(done: u64, total: u64, cursor: i64) -> String {
    let until = crate::detector::bucket_time(cursor);
    if total == 0 {
        let mb = done as f64 / 1e6;
        format!("backtest: {mb:.1} MB read, detected up to {until}")
    } else {
        let percent = 100.0 * done as f64 / total as f64;
        format!("backtest: {percent:5.1}% of the file, detected up to {until}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    const START: i64 = 1_790_000_000 - 1_790_000_000 % 3600;

    fn stamp(t: i64) -> String {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    fn file(rows: &[(i64, &str, u64)]) -> tempfile::NamedTempFile {
        let mut text = String::from("timestamp,service,region,problem,count\n");
        for (t, service, count) in rows {
            writeln!(text, "{},{service},US,login,{count}", stamp(*t)).unwrap();
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    /// A truth scores counts whose rows cover its period, up to a quiet spell at either edge
    /// as long as its services take to send [`QUIET_REPORTS`] reports at their mean rate.
    #[test]
    fn a_truth_refuses_counts_cut_short() {
        let catalog = Catalog::builtin();
        let params = crate::simulate::Params {
            start: time::OffsetDateTime::from_unix_timestamp(START).unwrap(),
            days: 2,
            bucket: BucketWidth::ONE_MINUTE,
            seed: 7,
            outages_per_week: 0.0,
        };
        let scenario =
            crate::simulate::Scenario::generate(&catalog.services()[..1], params).unwrap();
        let mut truth = scenario.truth();
        // A sparse service: 50 reports in 1,000 minutes.
        truth.services[0].base_per_min = 0.05;
        let end = truth.end.unix_timestamp();
        let quiet = 1000 * 60;
        let check = |span| {
            check_span(&truth, Path::new("t.json"), Path::new("c.csv"), span)
                .map_err(|e| e.to_string())
        };
        assert_eq!(check(Some((START, end))), Ok(()));
        assert_eq!(check(Some((START + quiet, end - quiet))), Ok(()));
        let refused = check(Some((START, end - quiet - 60))).unwrap_err();
        assert!(
            refused.starts_with(
                "c.csv: its rows end at 2026-09-22T21:19:00Z, 16h 41m before the end of the \
                 period of t.json (2026-09-21T14:00:00Z to 2026-09-23T14:00:00Z): the file is \
                 cut short"
            ),
            "{refused}"
        );
        assert!(
            refused.contains("its services send 50 reports in 16h 40m at their mean rate of 0.05"),
            "{refused}"
        );
        let refused = check(Some((START + quiet + 60, end))).unwrap_err();
        assert!(
            refused.contains("its rows begin at 2026-09-22T06:41:00Z, 16h 41m after the start"),
            "{refused}"
        );
        let refused = check(None).unwrap_err();
        assert!(
            refused.starts_with("c.csv: the file has no rows"),
            "{refused}"
        );
        let refused = check(Some((START - 60, end))).unwrap_err();
        assert!(
            refused.ends_with("it is the truth of another run"),
            "{refused}"
        );
    }

    /// A stretch of days with no row is told once, whichever chunks it falls between, and
    /// before the detector takes it (a typo in a year gave minutes of silence).
    #[tokio::test]
    async fn long_stretches_with_no_row_are_told() {
        let day = 86_400;
        let later = START + 10 * day;
        let file = file(&[
            (START, "tiktok", 3),
            (START, "netflix", 1),
            (START + 60, "tiktok", 2),
            (START + 2 * day, "tiktok", 2),
            (later, "netflix", 4),
            (later + 60, "tiktok", 1),
        ]);
        let mut quiet = QuietStretches::default();
        let mut told = Vec::new();
        for chunk in chunks(&file).await.unwrap() {
            let rows = chunk.series.values().flatten().map(|b| b.start);
            told.extend(quiet.stretches(rows, chunk.until, 60));
        }
        assert_eq!(told, [(START + 2 * day + 60, later)]);
    }

    async fn chunks(file: &tempfile::NamedTempFile) -> anyhow::Result<Vec<Chunk>> {
        let mut feed = CountsFeed::open(file.path(), &Catalog::builtin(), BucketWidth::ONE_MINUTE);
        let mut chunks = Vec::new();
        while let Some(chunk) = feed.next().await? {
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    #[tokio::test]
    async fn the_feed_hands_over_every_bucket_once_in_chunks_that_tile_the_file() {
        // 150 minutes with a gap of 100 minutes, two services, and a zero row at each end.
        let mut rows = vec![(START, "tiktok", 0)];
        for m in (0..150).filter(|m| !(20..120).contains(m)) {
            rows.push((START + 60 * m, "tiktok", 1 + m as u64 % 3));
            rows.push((START + 60 * m, "x", 2));
            rows.push((START + 60 * m, "x", 3)); // the same cell twice: added up
        }
        rows.push((START + 60 * 149, "x", 0));
        let file = file(&rows);
        let chunks = chunks(&file).await.unwrap();

        assert!(chunks.len() >= 2, "{} chunks", chunks.len());
        let mut from = START;
        for chunk in &chunks {
            assert_eq!(chunk.first, START);
            assert!(chunk.until > from, "chunks move on");
            for buckets in chunk.series.values() {
                assert!(
                    buckets
                        .iter()
                        .all(|b| (from..chunk.until).contains(&b.start))
                );
            }
            from = chunk.until;
        }
        let last = chunks.last().unwrap();
        assert_eq!(last.until, START + 150 * 60, "the end of the last bucket");
        assert_eq!(last.rows, rows.len() as u64);
        assert_eq!(last.read, last.size);
        assert_eq!(
            last.repeated,
            Repeated {
                rows: 50,
                first_line: Some(5)
            },
            "each minute's second x row, counted, and the first named"
        );

        // Handed to the detector through `Unread`, in ticks that do not match the chunks.
        let unread = Unread::default();
        for chunk in chunks {
            unread.add(chunk.series);
        }
        let names = ["tiktok", "x"];
        let ids: Vec<ServiceId> = names.iter().map(|s| ServiceId::parse(s).unwrap()).collect();
        let mut totals: HashMap<&str, u64> = HashMap::new();
        let mut starts = Vec::new();
        for t in (START..START + 150 * 60).step_by(7 * 60) {
            let read = unread.counts_many(&ids, t, t + 7 * 60).await.unwrap();
            for (service, buckets) in names.into_iter().zip(read) {
                for bucket in buckets {
                    assert!((t..t + 7 * 60).contains(&bucket.start));
                    starts.push((service, bucket.start));
                    *totals.entry(service).or_default() +=
                        bucket.cells.iter().map(|(_, n)| n).sum::<u64>();
                }
            }
        }
        let again = unread.counts_many(&ids, START, i64::MAX).await.unwrap();
        assert!(again.iter().all(Vec::is_empty), "once");
        let expected = |s: &str| -> u64 { rows.iter().filter(|r| r.1 == s).map(|r| r.2).sum() };
        assert_eq!(totals["tiktok"], expected("tiktok"));
        assert_eq!(totals["x"], expected("x"));
        assert_eq!(
            starts.len(),
            2 * 50,
            "one bucket per service and minute with reports"
        );
    }

    #[tokio::test]
    async fn the_feed_refuses_rows_out_of_time_order_naming_the_line() {
        let file = file(&[(START + 60, "x", 1), (START, "x", 1)]);
        let err = chunks(&file).await.unwrap_err().to_string();
        assert!(
            err.ends_with(
                ":3: rows are not sorted by time (this bucket starts before the previous row's)"
            ),
            "{err}"
        );
        assert!(err.starts_with(&file.path().display().to_string()), "{err}");
    }

    /// A row more than a year after the one before is most likely a typo in its year, and
    /// the detector would take every bucket between (about 30 s a simulated year): refused,
    /// naming the line. A year less a day is read.
    #[tokio::test]
    async fn the_feed_refuses_a_row_years_after_the_one_before() {
        let year = 366 * 86_400;
        let typo = file(&[(START, "x", 1), (START + year + 60, "x", 1)]);
        let err = chunks(&typo).await.unwrap_err().to_string();
        assert!(err.contains(":3: this bucket, "), "{err}");
        assert!(
            err.contains("is 366 days after the previous row's"),
            "{err}"
        );
        let year_later = file(&[(START, "x", 1), (START + year, "x", 1)]);
        assert!(chunks(&year_later).await.is_ok());
    }

    #[tokio::test]
    async fn the_feed_reports_a_missing_file_and_a_bad_header() {
        let err = chunks(&tempfile::NamedTempFile::new().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("empty file"), "{err}");
        let missing = CountsFeed::open(
            Path::new("/nonexistent/counts.csv"),
            &Catalog::builtin(),
            BucketWidth::ONE_MINUTE,
        )
        .next()
        .await
        .unwrap_err();
        assert!(missing.to_string().contains("cannot open"), "{missing}");
    }
}
