//! `downradar backtest`: the live detector, ticked over recorded counts as fast as it can.
//!
//! The file is read whole into memory (per service, its non-empty buckets in time order),
//! then an [`Engine`] with a fresh [`Detector`] is ticked through it an hour of buckets at a
//! time, exactly as the server ticks it through the store. Events go to stdout as JSON Lines
//! in time order; progress and a summary go to stderr.

pub mod score;

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use async_trait::async_trait;

use crate::buckets::BucketWidth;
use crate::catalog::{Catalog, ServiceId};
use crate::config::BacktestArgs;
use crate::detector::{
    CountSource, Detector, DetectorConfig, Engine, EventType, IncidentEvent, SETTLE,
};
use crate::import::CountsReader;
use crate::progress::Progress;
use crate::store::{BucketCounts, StoreError};

/// Buckets per tick: an hour at one-minute buckets. Ticking less often changes nothing the
/// detector decides (it processes every closed bucket in order), only the overhead.
const BUCKETS_PER_TICK: i64 = 60;

/// Counts read from a file, as a [`CountSource`].
#[derive(Debug, Default)]
pub struct RecordedCounts {
    series: HashMap<ServiceId, Vec<BucketCounts>>,
    /// Start of the first and of the last bucket in the file.
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Data rows read.
    pub rows: u64,
}

impl RecordedCounts {
    /// Reads a counts file, which must be sorted by time.
    pub fn read(reader: &mut CountsReader<'_>) -> anyhow::Result<Self> {
        let mut recorded = Self::default();
        let mut progress = Progress::new();
        while let Some(row) = reader.next_row()? {
            recorded.rows += 1;
            if recorded.last.is_some_and(|last| row.bucket < last) {
                bail!(
                    "{}:{}: rows are not sorted by time (this bucket starts before the previous row's)",
                    reader.file_name,
                    reader.line_no
                );
            }
            recorded.first.get_or_insert(row.bucket);
            recorded.last = Some(row.bucket);
            if row.count == 0 {
                continue;
            }
            let buckets = recorded.series.entry(row.service).or_default();
            match buckets.last_mut() {
                Some(b) if b.start == row.bucket => {
                    match b.cells.iter_mut().find(|(cell, _)| *cell == row.cell) {
                        Some((_, count)) => *count += row.count,
                        None => b.cells.push((row.cell, row.count)),
                    }
                }
                _ => buckets.push(BucketCounts {
                    start: row.bucket,
                    cells: vec![(row.cell, row.count)],
                }),
            }
            if recorded.rows % 65_536 == 0 {
                progress.show(|| percent("reading", reader.read, reader.size));
            }
        }
        progress.finish(None);
        Ok(recorded)
    }
}

#[async_trait]
impl CountSource for RecordedCounts {
    async fn counts(
        &self,
        service: &ServiceId,
        from: i64,
        until: i64,
    ) -> Result<Vec<BucketCounts>, StoreError> {
        let Some(buckets) = self.series.get(service) else {
            return Ok(Vec::new());
        };
        let lo = buckets.partition_point(|b| b.start < from);
        let hi = buckets.partition_point(|b| b.start < until);
        Ok(buckets[lo..hi].to_vec())
    }
}

/// What a backtest decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub buckets: u64,
    pub opened: u64,
    pub updated: u64,
    pub resolved: u64,
}

/// Runs the detector over `recorded` from its first bucket to its last, handing each event
/// to `emit` in order.
pub async fn replay(
    catalog: &Catalog,
    config: DetectorConfig,
    recorded: &RecordedCounts,
    mut emit: impl FnMut(&IncidentEvent) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let (Some(first), Some(last)) = (recorded.first, recorded.last) else {
        return Ok(Summary::default());
    };
    let width = config.bucket.secs();
    let mut engine = Engine::new(Detector::new(catalog, config), first);
    let mut summary = Summary::default();
    let mut events = Vec::new();
    let mut progress = Progress::new();
    let settle = SETTLE.as_secs() as i64;
    let end = last + width;
    while engine.cursor() < end {
        let until = (engine.cursor() + BUCKETS_PER_TICK * width).min(end);
        engine.tick(until + settle, recorded, &mut events).await?;
        for event in events.drain(..) {
            match event.kind {
                EventType::Opened => summary.opened += 1,
                EventType::Updated => summary.updated += 1,
                EventType::Resolved => summary.resolved += 1,
            }
            emit(&event)?;
        }
        let done = (engine.cursor() - first) as u64;
        progress.show(|| percent("detecting", done, (last - first) as u64));
    }
    progress.finish(None);
    summary.buckets = ((end - first) / width) as u64;
    Ok(summary)
}

/// Runs `downradar backtest`.
pub async fn run(args: &BacktestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let catalog = Catalog::load_or_builtin(args.catalog.as_deref())?;
    let bucket: BucketWidth = args.bucket;
    let mut reader = CountsReader::open(&args.input, &catalog, bucket)?;
    let recorded = RecordedCounts::read(&mut reader)?;
    let read_in = started.elapsed();
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let truth = args.truth.as_deref().map(read_truth).transpose()?;
    let mut kept = Vec::new();
    let summary = replay(&catalog, args.detector.config(bucket), &recorded, |event| {
        if truth.is_some() {
            kept.push(event.clone());
        }
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n").context("writing to stdout")
    })
    .await?;
    out.flush().context("writing to stdout")?;
    drop(out);
    eprintln!(
        "backtest: {} rows, {} buckets, {} services: {} incidents opened, {} updates, {} resolved \
         (read in {:.1?}, total {:.1?})",
        recorded.rows,
        summary.buckets,
        catalog.services().len(),
        summary.opened,
        summary.updated,
        summary.resolved,
        read_in,
        started.elapsed()
    );
    if let Some(truth) = truth {
        let report = score::score(&truth, &kept, args.warmup);
        eprintln!(
            "\nscore against {} (first {} not scored):\n{report}",
            args.truth.as_deref().unwrap_or(Path::new("")).display(),
            humantime::format_duration(args.warmup)
        );
    }
    Ok(())
}

fn read_truth(path: &Path) -> anyhow::Result<crate::simulate::Truth> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    serde_json::from_reader(io::BufReader::new(file)).with_context(|| {
        format!(
            "{}: not a truth file of `downradar simulate`",
            path.display()
        )
    })
}

/// A progress line: `backtest: reading  42.0%`.
fn percent(what: &str, done: u64, total: u64) -> String {
    let percent = if total == 0 {
        100.0
    } else {
        100.0 * done as f64 / total as f64
    };
    format!("backtest: {what} {percent:5.1}%")
}
