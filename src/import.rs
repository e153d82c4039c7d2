//! `downradar import`: recorded counts (the backtest CSV) into a store, so a new deployment has
//! history, and with it baselines, from its first minute.
//!
//! The file is streamed twice: a first pass checks every row (each error names the file and
//! line) and writes nothing, so a bad row near the end does not leave the rows before it
//! loaded (loading the fixed file again would count those twice); the second adds the rows in
//! batches through [`Store::add_history`], which sums a batch per bucket and field before
//! writing. Rows are not deduplicated (they already count distinct reporters), so loading a
//! file twice counts it twice.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::buckets::BucketWidth;
use crate::catalog::{Catalog, Problem};
use crate::config::ImportArgs;
use crate::progress::Progress;
use crate::regions::RegionCode;
use crate::store::redis::RedisStore;
use crate::store::{Cell, HistoryAdded, HistoryCount, Store, StoreError};

/// The header every counts file starts with.
pub const HEADER: &str = "timestamp,service,region,problem,count";

/// The path that names standard input or output: `backtest --input -` reads the counts from
/// stdin, `simulate --output -` writes them to stdout (import refuses it).
pub const STDIN: &str = "-";

/// How far ahead of the store's clock a history row may be.
pub const FUTURE_SLACK_SECS: i64 = 86_400;

/// Rows per store call: small enough that a batch (about two commands a row) is written well
/// within the store's one-second call timeout.
const BATCH_ROWS: usize = 5_000;

/// Largest count accepted in one row: a billion distinct reporters in one bucket of one cell
/// is not data but a mistake, and the bound keeps every sum far from overflowing.
const MAX_COUNT: u64 = 1_000_000_000;

/// Rows that repeated a cell (service, region and problem) already given for their bucket
/// among the rows of that bucket: a file concatenated twice, or rows written twice. Their
/// counts are added, and the run says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repeated {
    pub rows: u64,
    /// The line of the first.
    pub first_line: Option<u64>,
}

impl Repeated {
    /// The warning to show about such rows in the file at `path`, if there were any.
    pub fn warning(&self, path: &Path) -> Option<String> {
        let line = self.first_line?;
        Some(format!(
            "warning: {} rows repeated a cell (service, region and problem) already given for \
             their bucket, the first at {}:{line}; their counts were added",
            self.rows,
            path.display()
        ))
    }
}

/// How far apart a file's bucket starts are: a file of wider buckets than `--bucket` says
/// (5-minute counts read as 1-minute ones) has every start a multiple of its width from the
/// first, and the detector would see each count followed by empty buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spacing {
    /// The first bucket start and the last seen.
    first: Option<i64>,
    last: i64,
    /// Distinct starts seen, and the greatest common divisor of their distances from the
    /// first (0 while there is one).
    starts: u64,
    gcd: i64,
}

impl Spacing {
    /// Fewest distinct bucket starts that make a wider spacing worth a word: by chance, 24
    /// starts of a `w`-wide file fall on a grid `k·w` wide about once in `k^23`.
    const MIN_STARTS: u64 = 24;

    /// Notes a row's bucket start (rows come in time order).
    fn add(&mut self, start: i64) {
        match self.first {
            None => (self.first, self.last, self.starts) = (Some(start), start, 1),
            Some(first) if start != self.last => {
                self.last = start;
                self.starts += 1;
                self.gcd = gcd(self.gcd, (start - first).abs());
            }
            Some(_) => {}
        }
    }

    /// The warning to show when every bucket start is a whole multiple of a width wider than
    /// `bucket` from the first, over enough of them to tell.
    pub fn warning(&self, bucket: BucketWidth) -> Option<String> {
        let width = bucket.secs();
        if self.starts < Self::MIN_STARTS || self.gcd <= width {
            return None;
        }
        let spacing = Duration::from_secs(self.gcd.unsigned_abs());
        let wide = humantime::format_duration(spacing);
        let narrow = humantime::format_duration(Duration::from_secs(width.unsigned_abs()));
        // Only a width that divides an hour can be given (a daily file's cannot).
        let advice = match BucketWidth::new(spacing) {
            Ok(_) => format!("if its buckets are {wide} wide, pass --bucket {wide}"),
            Err(_) => format!(
                "if its buckets are {wide} wide, they are wider than any --bucket (which \
                 must divide an hour)"
            ),
        };
        Some(format!(
            "warning: the {} bucket starts of the file are all a multiple of {wide} apart, and \
             --bucket is {narrow}: {advice}; read as {narrow} buckets, each count is followed \
             by {} empty ones",
            self.starts,
            self.gcd / width - 1
        ))
    }
}

/// The greatest common divisor of `a` and `b` (not negative), with `gcd(0, b) = b`.
fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    /// Data rows read.
    pub rows: u64,
    /// Reports in those rows.
    pub reports: u64,
    /// Reports added, to their fine buckets or to the hourly roll-up only; the rest were
    /// older than both retentions.
    pub added: HistoryAdded,
    /// Rows repeating a cell of their bucket.
    pub repeated: Repeated,
    /// How far apart the file's buckets are.
    pub spacing: Spacing,
}

/// Runs `downradar import`.
pub async fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let catalog = Catalog::load_or_builtin(args.catalog.as_deref())?;
    // History is not deduplicated, and adds no events: those settings play no part.
    let settings =
        args.buckets
            .store_settings(Duration::from_secs(900), None, Duration::from_secs(86_400))?;
    let store = RedisStore::connect(&args.redis_url, settings)?;
    let shown = crate::startup::redact_url(&args.redis_url);
    let unusable = || format!("{shown}: cannot use this Redis; check --redis-url");
    if let Some(why) = store.refusal(Duration::from_secs(2)).await {
        bail!("{shown}: {why}");
    }
    match store.ping().await {
        // Buckets the detector does not read (see `RedisStore::check_bucket_width`).
        Err(StoreError::Misconfigured(why)) => bail!("{shown}: {why}"),
        pinged => pinged.with_context(unusable)?,
    }
    // History has happened: a row more than a day ahead of Redis's clock (every replica's)
    // is a mistake (a mistyped year), and would be read as live traffic once its time came.
    // A day, not less: a file's clock or time zone may be off by hours.
    let now = store
        .server_time()
        .await
        .with_context(unusable)?
        .unix_timestamp();
    let started = Instant::now();
    let summary = load(
        &store,
        &catalog,
        args.buckets.bucket,
        &args.input,
        Some(now),
    )
    .await?;
    crate::diag!(
        "import: {} rows, {} reports, {} added, {} to the hourly roll-up only (older than \
         --retention), {} skipped (older than --rollup-retention) in {:.1?}",
        summary.rows,
        summary.reports,
        summary.added.fine,
        summary.added.rollup_only,
        summary.reports - summary.added.total(),
        started.elapsed()
    );
    if let Some(warning) = summary.repeated.warning(&args.input) {
        crate::diag!("import: {warning}");
    }
    if let Some(warning) = summary.spacing.warning(args.buckets.bucket) {
        crate::diag!("import: {warning}");
    }
    Ok(())
}

/// Reads the counts file at `path` and adds it to `store`; `bucket` is the width every
/// timestamp must be aligned to (the deployment's `--bucket`), and with `now` (Unix
/// seconds) no bucket may start more than [`FUTURE_SLACK_SECS`] after it. Nothing is
/// written unless every row is good.
pub async fn load(
    store: &dyn Store,
    catalog: &Catalog,
    bucket: BucketWidth,
    path: &Path,
    now: Option<i64>,
) -> anyhow::Result<ImportSummary> {
    regular_file(path)?;
    let (repeated, spacing) = check(catalog, bucket, path, now)?;
    let mut reader = CountsReader::open(path, catalog, bucket)?;
    let mut progress = Progress::new();
    let mut summary = ImportSummary {
        repeated,
        spacing,
        ..ImportSummary::default()
    };
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    // First line of the batch being built: what a failed write may have partly applied.
    let mut batch_from = 2u64;
    while let Some(count) = reader.next_row()? {
        summary.rows += 1;
        summary.reports += count.count;
        if count.count > 0 {
            batch.push(count);
        }
        if batch.len() >= BATCH_ROWS {
            let line = reader.line_no;
            summary.added += write(store, &batch, &reader.file_name, batch_from, line).await?;
            batch.clear();
            batch_from = line + 1;
            let (percent, rows) = (reader.percent_read(), summary.rows);
            progress.show(|| format!("import: {percent}% ({rows} rows)"));
        }
    }
    let line = reader.line_no;
    summary.added += write(store, &batch, &reader.file_name, batch_from, line).await?;
    progress.finish(Some(format!("import: 100% ({} rows)", summary.rows)));
    Ok(summary)
}

/// Refuses a pipe (or a device): the file is read twice, checked and then loaded, and a pipe
/// read again is empty. (A path that cannot be opened is left to the first reading to say.)
fn regular_file(path: &Path) -> anyhow::Result<()> {
    if path == Path::new(STDIN) {
        bail!(
            "--input -: import cannot read standard input: it reads its input twice, checking \
             every row before it writes any, so write it to a file first"
        );
    }
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        bail!(
            "{}: not a regular file (a pipe?): import reads its input twice, checking every \
             row before it writes any, so write it to a file first",
            path.display()
        );
    }
    Ok(())
}

/// The first pass: reads every row of the file and stops at the first bad one (or the first
/// out of time order); counts the rows that repeat a cell among the rows of their bucket,
/// and notes how far apart the buckets are.
fn check(
    catalog: &Catalog,
    bucket: BucketWidth,
    path: &Path,
    now: Option<i64>,
) -> anyhow::Result<(Repeated, Spacing)> {
    let mut reader = CountsReader::open(path, catalog, bucket)?;
    let mut progress = Progress::new();
    let mut rows = 0u64;
    let mut repeated = Repeated::default();
    let (mut current, mut cells) = (None, HashSet::new());
    while let Some(row) = reader.next_row()? {
        rows += 1;
        if let Some(now) = now
            && row.bucket > now + FUTURE_SLACK_SECS
        {
            anyhow::bail!(
                "{}:{}: the bucket {} is more than a day ahead (it is {} by Redis's clock): \
                 history cannot be in the future",
                reader.file_name,
                reader.line_no,
                crate::detector::bucket_time(row.bucket),
                crate::detector::bucket_time(now)
            );
        }
        if current.is_some_and(|previous| row.bucket < previous) {
            // The rows of a bucket must be together, or a repeat (a file concatenated
            // twice, say) would go unseen, and be counted twice without a word.
            bail!(
                "{}:{}: rows are not sorted by time (this bucket starts before the previous \
                 row's)",
                reader.file_name,
                reader.line_no
            );
        }
        if current != Some(row.bucket) {
            current = Some(row.bucket);
            cells.clear();
        }
        if row.count > 0 && !cells.insert((row.service, row.cell)) {
            repeated.rows += 1;
            repeated.first_line.get_or_insert(reader.line_no);
        }
        if rows.is_multiple_of(BATCH_ROWS as u64) {
            let percent = reader.percent_read();
            progress.show(|| format!("import: checking, {percent}% ({rows} rows)"));
        }
    }
    progress.finish(None);
    Ok((repeated, reader.spacing))
}

/// Streams the rows of a counts file, checking each (errors name the file and line).
pub struct CountsReader<'a> {
    reader: BufReader<Box<dyn Read + Send>>,
    catalog: &'a Catalog,
    bucket: BucketWidth,
    /// The file's name, for messages.
    pub file_name: String,
    /// Its size in bytes (0 when unknown: standard input, a pipe), and the bytes read so far.
    pub size: u64,
    pub read: u64,
    /// The last line read (1 is the header).
    pub line_no: u64,
    line: String,
    /// The last timestamp parsed, reused while rows share it (they are sorted by time).
    last_timestamp: (String, i64),
    /// How far apart the buckets read so far are.
    pub spacing: Spacing,
}

impl<'a> CountsReader<'a> {
    /// Opens `path` (`-`: standard input) and checks its header.
    pub fn open(path: &Path, catalog: &'a Catalog, bucket: BucketWidth) -> anyhow::Result<Self> {
        let (input, file_name, size): (Box<dyn Read + Send>, _, _) = if path == Path::new(STDIN) {
            (Box::new(io::stdin()), "(standard input)".to_owned(), 0)
        } else {
            let file_name = path.display().to_string();
            let file = File::open(path).with_context(|| format!("{file_name}: cannot open"))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            (Box::new(file), file_name, size)
        };
        let mut reader = Self {
            reader: BufReader::with_capacity(1 << 20, input),
            catalog,
            bucket,
            file_name,
            size,
            read: 0,
            line_no: 0,
            line: String::new(),
            last_timestamp: (String::new(), 0),
            spacing: Spacing::default(),
        };
        if !reader.read_line()? {
            bail!(
                "{}: empty file; expected the header {HEADER:?}",
                reader.file_name
            );
        }
        let row = reader.line.trim_end_matches(['\n', '\r']);
        let names: Vec<&str> = row
            .trim_start_matches('\u{feff}')
            .split(',')
            .map(unquote)
            .collect();
        if names.join(",") != HEADER {
            bail!(
                "{}:1: expected the header {HEADER:?}, found {row:?}",
                reader.file_name
            );
        }
        Ok(reader)
    }

    /// How much of the file has been read, in whole percent.
    pub fn percent_read(&self) -> u64 {
        (self.read * 100).checked_div(self.size).unwrap_or(0)
    }

    fn read_line(&mut self) -> anyhow::Result<bool> {
        self.line.clear();
        let n = self
            .reader
            .read_line(&mut self.line)
            .with_context(|| format!("{}:{}: cannot read", self.file_name, self.line_no + 1))?;
        if n > 0 {
            self.line_no += 1;
            self.read += n as u64;
        }
        Ok(n > 0)
    }

    /// The next data row, or `None` at the end of the file.
    pub fn next_row(&mut self) -> anyhow::Result<Option<HistoryCount>> {
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            let row = self.line.trim_end_matches(['\n', '\r']);
            if row.is_empty() {
                continue;
            }
            let row = parse_row(row, self.catalog, self.bucket, &mut self.last_timestamp).map_err(
                |message| anyhow::anyhow!("{}:{}: {message}", self.file_name, self.line_no),
            )?;
            self.spacing.add(row.bucket);
            return Ok(Some(row));
        }
    }
}

/// Writes the batch of lines `from..=to`. A failure may leave part of it written (the store
/// cannot tell), so the error says exactly which lines are done and which are in doubt.
async fn write(
    store: &dyn Store,
    batch: &[HistoryCount],
    file_name: &str,
    from: u64,
    to: u64,
) -> anyhow::Result<HistoryAdded> {
    store.add_history(batch).await.with_context(|| {
        format!(
            "{file_name}: writing lines {from} to {to} failed; lines before {from} are \
             imported, these may be in part: import the rest from line {from} only after \
             checking"
        )
    })
}

/// A CSV field without the double quotes some exporters put around every field. (No field
/// of a counts file holds a comma or a quote, so nothing else of CSV's quoting applies.)
fn unquote(field: &str) -> &str {
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .filter(|f| !f.contains('"'))
        .unwrap_or(field)
}

/// How much of a field a message about a row echoes, in characters.
const ECHO_CHARS: usize = 64;

/// Parses one data row: `2026-10-01T00:00:00Z,tiktok,US,login,3` (fields may be quoted).
fn parse_row(
    row: &str,
    catalog: &Catalog,
    bucket: BucketWidth,
    last: &mut (String, i64),
) -> Result<HistoryCount, String> {
    let fields: Vec<&str> = row.split(',').map(unquote).collect();
    // A row is echoed only as far as anyone needs to recognise it: a damaged file's row can
    // run to megabytes.
    let echo = |text: &str| crate::text::quoted(text, ECHO_CHARS);
    let [timestamp, service, region, problem, count] = fields[..] else {
        return Err(format!(
            "expected 5 fields, found {}: {}",
            fields.len(),
            crate::text::quoted(row, 2 * ECHO_CHARS)
        ));
    };
    if timestamp == "timestamp" {
        return Err(
            "the header again, in the middle of the file (two files joined?): a counts file \
             has one header, on its first line"
                .to_owned(),
        );
    }
    let start = if last.0 == timestamp {
        last.1
    } else {
        let at = OffsetDateTime::parse(timestamp, &Rfc3339)
            .map_err(|e| format!("timestamp {} is not RFC 3339: {e}", echo(timestamp)))?;
        let start = at.unix_timestamp();
        if start < 0 {
            // Bucket keys and incident ids are Unix seconds, which the API gives from 1970.
            return Err(format!(
                "timestamp {timestamp} is before 1970-01-01T00:00:00Z: counts start then or later"
            ));
        }
        if at.nanosecond() != 0 || bucket.start_of(at) != start {
            return Err(format!(
                "timestamp {timestamp} is not the start of a {}s bucket; pass the --bucket \
                 the file was written with (and the server runs with)",
                bucket.secs()
            ));
        }
        *last = (timestamp.to_owned(), start);
        start
    };
    let service = catalog
        .get(service)
        .ok_or_else(|| format!("unknown service {}", echo(service)))?;
    if !service.has_problem(problem) {
        return Err(format!(
            "unknown problem {} for service {:?}",
            echo(problem),
            service.id.as_str()
        ));
    }
    let region = RegionCode::parse(region).map_err(|e| e.to_string())?;
    let count = count.trim().parse::<u64>().map_err(|e| {
        if count.trim().starts_with('-') {
            format!(
                "count {} is negative; a count of reporters is 0 or more",
                echo(count)
            )
        } else {
            format!("count {} is not a whole number: {e}", echo(count))
        }
    })?;
    if count > MAX_COUNT {
        return Err(format!(
            "count {count} is over the limit of {MAX_COUNT} per row"
        ));
    }
    Ok(HistoryCount {
        service: service.id.clone(),
        bucket: start,
        cell: Cell {
            region,
            problem: Problem::parse(problem).map_err(|e| e.to_string())?,
        },
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(row: &str) -> Result<HistoryCount, String> {
        parse_row(
            row,
            &Catalog::builtin(),
            BucketWidth::ONE_MINUTE,
            &mut (String::new(), 0),
        )
    }

    #[test]
    fn the_check_counts_rows_that_repeat_a_cell_of_their_bucket() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "timestamp,service,region,problem,count\n\
             2026-10-01T00:01:00Z,tiktok,US,login,3\n\
             2026-10-01T00:01:00Z,tiktok,DE,login,1\n\
             2026-10-01T00:01:00Z,tiktok,US,login,2\n\
             2026-10-01T00:01:00Z,netflix,US,login,0\n\
             2026-10-01T00:01:00Z,netflix,US,login,0\n\
             2026-10-01T00:02:00Z,tiktok,US,login,1\n\
             2026-10-01T00:02:00Z,tiktok,US,login,1\n",
        )
        .unwrap();
        let (repeated, _) = check(
            &Catalog::builtin(),
            BucketWidth::ONE_MINUTE,
            file.path(),
            None,
        )
        .unwrap();
        assert_eq!(
            repeated,
            Repeated {
                rows: 2,
                first_line: Some(4)
            },
            "the US login rows of each minute; zero rows add nothing"
        );
        let warning = repeated.warning(file.path()).unwrap();
        assert!(
            warning.starts_with("warning: 2 rows repeated a cell")
                && warning.ends_with(":4; their counts were added"),
            "{warning}"
        );
        assert_eq!(Repeated::default().warning(file.path()), None);
    }

    #[test]
    fn a_file_of_wider_buckets_than_bucket_says_is_told() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let spacing = |minutes: &[i64]| {
            let rows: String = minutes
                .iter()
                .map(|m| {
                    format!(
                        "{},tiktok,US,login,3\n",
                        crate::detector::bucket_time(m * 60)
                    )
                })
                .collect();
            std::fs::write(file.path(), format!("{HEADER}\n{rows}")).unwrap();
            check(
                &Catalog::builtin(),
                BucketWidth::ONE_MINUTE,
                file.path(),
                None,
            )
            .unwrap()
            .1
        };
        // Five-minute counts, some five minutes empty, one start given twice.
        let mut five: Vec<i64> = (0..40).filter(|i| i % 7 != 3).map(|i| 5 * i).collect();
        five.insert(4, five[3]);
        let warning = spacing(&five).warning(BucketWidth::ONE_MINUTE).unwrap();
        assert_eq!(
            warning,
            "warning: the 34 bucket starts of the file are all a multiple of 5m apart, and \
             --bucket is 1m: if its buckets are 5m wide, pass --bucket 5m; read as 1m buckets, \
             each count is followed by 4 empty ones"
        );
        let five_minutes = BucketWidth::new(Duration::from_secs(300)).unwrap();
        assert_eq!(spacing(&five).warning(five_minutes), None, "as they are");
        // One start off the grid, or too few starts to tell, says nothing.
        let mut off = five.clone();
        off.push(five.last().unwrap() + 1);
        assert_eq!(spacing(&off).warning(BucketWidth::ONE_MINUTE), None);
        assert_eq!(spacing(&five[..23]).warning(BucketWidth::ONE_MINUTE), None);
        // Hourly counts read as five-minute ones; daily counts, wider than any bucket.
        let hours: Vec<i64> = (0..30).map(|h| 60 * h).collect();
        assert!(
            spacing(&hours)
                .warning(five_minutes)
                .unwrap()
                .contains("a multiple of 1h apart, and --bucket is 5m: if its buckets are 1h wide, pass --bucket 1h;")
        );
        let days: Vec<i64> = (0..30).map(|d| 1440 * d).collect();
        let warning = spacing(&days).warning(five_minutes).unwrap();
        assert!(
            warning.contains(
                "if its buckets are 1day wide, they are wider than any --bucket (which must \
                 divide an hour); read as 5m buckets, each count is followed by 287 empty ones"
            ),
            "{warning}"
        );
    }

    #[test]
    fn a_file_out_of_time_order_is_refused() {
        // A file concatenated twice: its second half repeats the first, but not next to it.
        let file = tempfile::NamedTempFile::new().unwrap();
        let rows =
            "2026-10-01T00:01:00Z,tiktok,US,login,3\n2026-10-01T00:02:00Z,tiktok,US,login,2\n";
        std::fs::write(file.path(), format!("{HEADER}\n{rows}{rows}")).unwrap();
        let error = check(
            &Catalog::builtin(),
            BucketWidth::ONE_MINUTE,
            file.path(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.ends_with(
                ":4: rows are not sorted by time (this bucket starts before the previous row's)"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_pipe_is_refused_before_it_is_read() {
        let error = regular_file(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("/dev/null: not a regular file"),
            "{error}"
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        regular_file(file.path()).unwrap();
    }

    #[test]
    fn rows_parse_into_history() {
        let count = parse("2026-10-01T00:01:00Z,tiktok,US,login,3").unwrap();
        assert_eq!(count.service.as_str(), "tiktok");
        assert_eq!(count.cell.field(), "US:login");
        assert_eq!(count.count, 3);
        assert_eq!(count.bucket % 60, 0);
        // As some exporters write every field.
        let quoted = parse(r#""2026-10-01T00:01:00Z","tiktok","US","login","3""#).unwrap();
        assert_eq!(quoted, count);
        assert!(parse(r#""2026-10-01T00:01:00Z,tiktok,US,login,3""#).is_err());
    }

    /// A header with every name quoted is the header.
    #[test]
    fn a_quoted_header_is_the_header() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "\"timestamp\",\"service\",\"region\",\"problem\",\"count\"\n\
             \"2026-10-01T00:01:00Z\",\"tiktok\",\"US\",\"login\",\"3\"\n",
        )
        .unwrap();
        let catalog = Catalog::builtin();
        let mut reader =
            CountsReader::open(file.path(), &catalog, BucketWidth::ONE_MINUTE).unwrap();
        assert_eq!(reader.next_row().unwrap().unwrap().count, 3);
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        for (row, needle) in [
            ("2026-10-01T00:01:00Z,tiktok,US,login", "expected 5 fields"),
            ("yesterday,tiktok,US,login,3", "not RFC 3339"),
            (
                "1969-12-31T23:59:00Z,tiktok,US,login,3",
                "is before 1970-01-01T00:00:00Z",
            ),
            (
                "2026-10-01T00:01:30Z,tiktok,US,login,3",
                "not the start of a 60s bucket",
            ),
            ("2026-10-01T00:01:00Z,myspace,US,login,3", "unknown service"),
            ("2026-10-01T00:01:00Z,tiktok,US,wifi,3", "unknown problem"),
            ("2026-10-01T00:01:00Z,tiktok,XX,login,3", "unknown region"),
            ("2026-10-01T00:01:00Z,tiktok,US,login,-1", "is negative"),
            (
                "2026-10-01T00:01:00Z,tiktok,US,login,2.5",
                "not a whole number",
            ),
            (
                "timestamp,service,region,problem,count",
                "the header again, in the middle of the file",
            ),
        ] {
            let err = parse(row).unwrap_err();
            assert!(err.contains(needle), "{row}: {err}");
        }
        // A damaged row is echoed only in part.
        let long = "x".repeat(2_000_000);
        for row in [
            format!("2026-10-01T00:01:00Z,{long},US,login,3"),
            format!("2026-10-01T00:01:00Z,tiktok,US,login,3,{long}"),
        ] {
            let err = parse(&row).unwrap_err();
            assert!(
                err.len() < 300 && err.ends_with('…'),
                "{}",
                &err[..300.min(err.len())]
            );
        }
    }
}
