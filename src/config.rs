//! The command line. Every flag of `serve` is also an environment variable `DOWNRADAR_…`;
//! the offline tools (`simulate`) take plain flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use std::num::NonZeroU32;

use crate::buckets::BucketWidth;
use crate::reporter::{AllowedOrigins, TrustedProxies};
use crate::store::StoreSettings;

/// downradar: a self-hostable, crowd-sourced outage detector.
///
/// People report "service X isn't working for me"; downradar counts the reports per service,
/// region and problem in time buckets and serves them over a REST API documented by OpenAPI.
#[derive(Debug, Parser)]
#[command(
    name = "downradar",
    version,
    propagate_version = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// Parses a command line (`args`, the program's name first), or says what is wrong with
    /// it. With a subcommand, the flags of a default `serve` are not there, and neither are
    /// their environment variables: `DOWNRADAR_BUCKET=7s` is no reason to refuse a
    /// `backtest --bucket 60s` (each subcommand reads its own flags' variables).
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let mut command = Self::command();
        // Top-level flags conflict with a subcommand, so one given is the first argument.
        let subcommand = args
            .get(1)
            .and_then(|a| a.to_str())
            .is_some_and(|a| command.find_subcommand(a).is_some());
        if subcommand {
            command = command.mut_args(|arg| arg.env(None::<&str>));
        }
        Self::from_arg_matches_mut(&mut command.try_get_matches_from(args)?)
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI 3.1 specification as JSON.
    Openapi,
    /// Generate synthetic report counts with injected outages, and their ground truth.
    ///
    /// Writes the counts as CSV (the input of `backtest`) and the injected outages as JSON, to
    /// measure a detector against. Deterministic: the same flags and seed give byte-identical
    /// files. Progress goes to stderr; nothing is written to stdout but the counts of
    /// `--output -`.
    Simulate(SimulateArgs),
    /// Load recorded counts (CSV) into Redis, so a new deployment has history from its start.
    ///
    /// Checks every row first, and writes nothing if one is bad. Then adds each row's count
    /// to its bucket and hourly roll-up, with the deployment's retentions: rows older than
    /// --retention go to the roll-up only, rows older than --rollup-retention are skipped.
    /// Loading a file twice counts it twice. Progress goes to stderr.
    Import(ImportArgs),
    /// Run the detector over recorded counts (CSV) and print its incident events.
    ///
    /// Reads COUNTS.csv (header timestamp,service,region,problem,count; sorted by time; absent
    /// rows are zeros) and ticks the same detector the server runs over it, bucket by bucket.
    /// Prints one incident event per line (JSON Lines, the event contract), in time order;
    /// progress, warnings (buckets taken as missing data) and the summary go to stderr.
    Backtest(BacktestArgs),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `downradar serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    mut_arg("bucket", |a| a.default_value_if("demo", "true", crate::demo::DEFAULT_BUCKET)),
    mut_arg("detector_interval", |a| {
        a.default_value_if("demo", "true", crate::demo::DEFAULT_DETECTOR_INTERVAL)
    }),
    mut_arg("detector_warmup", |a| {
        a.default_value_if("demo", "true", crate::demo::DEFAULT_DETECTOR_WARMUP)
    }),
    mut_arg("resolve_after", |a| {
        a.default_value_if("demo", "true", crate::demo::DEFAULT_RESOLVE_AFTER)
    })
)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DOWNRADAR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// How long incident events stay on the event stream, for clients resuming a feed with
    /// Last-Event-ID (1m to 30d). Incidents themselves are kept as long as the roll-ups.
    #[arg(long, env = "DOWNRADAR_EVENT_RETENTION", default_value = "24h", value_parser = parse_event_retention)]
    pub event_retention: Duration,

    /// Redis URL (Redis 7.0 or later, standalone: not a Cluster), e.g.
    /// redis://127.0.0.1:6379/0, or redis://:PASSWORD@HOST:6379/0. A Redis that refuses its
    /// credentials, has no database of the URL's number, or is a Cluster node, stops the
    /// start; one that does not answer is waited for (not ready meanwhile). Without it,
    /// reports are kept in an embedded in-memory store (single process, lost on restart).
    #[arg(long, env = "DOWNRADAR_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Catalog of services (TOML). Without it, the built-in catalog is used.
    #[arg(long, env = "DOWNRADAR_CATALOG")]
    pub catalog: Option<PathBuf>,

    #[command(flatten)]
    pub buckets: BucketArgs,

    /// A reporter is counted once per service within this window (1m to 1d).
    #[arg(long, env = "DOWNRADAR_DEDUP_WINDOW", default_value = "15m", value_parser = parse_dedup_window)]
    pub dedup_window: Duration,

    /// Most reporters counted per address (IPv4 address or IPv6 /64, see
    /// --ipv6-limit-prefix) and service within the
    /// dedup window; reporters behind one address differ only by their client_id, which a
    /// client chooses. 0: no limit. Carrier-grade NAT puts many real people behind one
    /// address, so set it with care (e.g. 20 to 50).
    #[arg(long, env = "DOWNRADAR_MAX_REPORTERS_PER_ADDRESS", default_value_t = 0)]
    pub max_reporters_per_address: u32,

    /// Secret key of the reporter fingerprints (HMAC). Without it a random key is generated at
    /// start, so reporters may be counted again after a restart; set it in production, and
    /// the same on every replica (e.g. `openssl rand -hex 32`; an empty one is refused, and
    /// one under 16 bytes warned about, since fingerprints made with a guessable key could
    /// be traced back to addresses). Prefer the environment variable: a flag shows in the
    /// process list.
    #[arg(long, env = "DOWNRADAR_REPORTER_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub reporter_secret: Option<String>,

    /// Comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For
    /// header is believed (and, for feed links, Forwarded or X-Forwarded-Host/-Proto: such a
    /// proxy must set or strip a client's Forwarded and X-Forwarded-Host headers), e.g.
    /// "10.0.0.0/8,127.0.0.1".
    /// Empty: the peer address is the client.
    #[arg(long, env = "DOWNRADAR_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,

    /// Comma-separated web origins whose pages may send reports from their visitors'
    /// browsers (CORS), e.g. "https://status.example.com". Each is scheme://host[:port]; no
    /// wildcard: a page elsewhere could make its visitors file reports and fake an outage.
    /// Empty: reports come from the deployment's own origin, apps and bots only.
    #[arg(long, env = "DOWNRADAR_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: AllowedOrigins,

    /// Reports that may wait to be written, split evenly among the HTTP workers (each has its
    /// own queue and writer); reports beyond it are answered 503 at once.
    #[arg(long, env = "DOWNRADAR_QUEUE_CAPACITY", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_capacity: u32,

    /// HTTP worker threads, 1 to 512 (default: one per CPU core).
    #[arg(long, env = "DOWNRADAR_WORKERS", value_parser = clap::value_parser!(u16).range(1..=512))]
    pub workers: Option<u16>,

    /// Log format.
    #[arg(long, env = "DOWNRADAR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub detector: DetectorArgs,

    /// Never run the detector in this process: it serves reports, incidents and events while
    /// other replicas detect (without this, every replica stands ready to take over).
    #[arg(long, env = "DOWNRADAR_NO_DETECTOR", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_detector: bool,

    /// How often the detector runs (1s to 1m). Every replica ticks; the one holding the lease
    /// in the store detects, and the lease lasts three ticks, so another replica takes over
    /// within four ticks of its holder's death.
    #[arg(long, env = "DOWNRADAR_DETECTOR_INTERVAL", default_value = "10s", value_parser = parse_detector_interval)]
    pub detector_interval: Duration,

    /// On its very first start (no saved detector state), the detector learns from this much
    /// of the stored history, e.g. imported with `downradar import` (0s to 30d; at most the
    /// --retention is there to learn from).
    #[arg(long, env = "DOWNRADAR_DETECTOR_WARMUP", default_value = "7d", value_parser = parse_detector_warmup)]
    pub detector_warmup: Duration,

    /// Most clients following GET /v1/events at once on this process (1 to 1000000); more are
    /// answered 503 too_many_subscribers. Each holds a file descriptor: where the open-file
    /// limit (raised to its hard limit at start) leaves no room for them beside half the
    /// descriptors (at most 1,024 kept for everything else), fewer are taken, with a warning.
    #[arg(long, env = "DOWNRADAR_MAX_SUBSCRIBERS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_subscribers: u32,

    /// Most GET /v1/events streams one client address may hold at once (1 to 1000000): the
    /// peer's address, or the one a trusted proxy forwarded; an IPv6 /64 counts as one (see
    /// --ipv6-limit-prefix). More
    /// are answered 429 too_many_streams, so one client cannot take every place.
    #[arg(long, env = "DOWNRADAR_MAX_SUBSCRIBERS_PER_ADDRESS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_subscribers_per_address: u32,

    /// The IPv6 prefix by which the limits per address (--max-reporters-per-address,
    /// --max-subscribers-per-address) count a client (32 to 64): 64 counts each /64 as one
    /// address, the block one household or device gets; 56 or 48 count a whole /56 or /48 as
    /// one, against a client that rotates through the /64s it holds (a free tunnel broker
    /// gives a /48), at the cost of counting as one the neighbours an ISP gives /64s of one
    /// /56. Dedup counts a reporter by its /64 whatever this says.
    #[arg(long, env = "DOWNRADAR_IPV6_LIMIT_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(32..=64))]
    pub ipv6_limit_prefix: u8,

    /// How long data sent to a client may wait unacknowledged by the client's machine before
    /// its connection is closed (1s to 1h; TCP_USER_TIMEOUT, on Linux). A GET /v1/events
    /// client whose network is gone gives up its place after this long; one that stops
    /// reading, once its receive buffer is full (events fill it; heartbeats alone take hours).
    #[arg(long, env = "DOWNRADAR_CLIENT_STALL_TIMEOUT", default_value = "60s", value_parser = parse_client_stall_timeout)]
    pub client_stall_timeout: Duration,

    /// How often an idle GET /v1/events stream gets a heartbeat comment (1s to 5m); keep it
    /// under the idle timeout of any proxy in front.
    #[arg(long, env = "DOWNRADAR_SSE_HEARTBEAT", default_value = "15s", value_parser = parse_sse_heartbeat)]
    pub sse_heartbeat: Duration,

    /// Demo mode: fill the store with three days of SYNTHETIC report history, then generate
    /// synthetic live reports for a few real catalog services with an outage every few
    /// minutes (global, regional, partial or cascading), so incidents open, update and
    /// resolve (watch GET /v1/incidents?active=true). The store must be empty: a Redis that
    /// holds any counts, incidents or detector state is refused. Unless given explicitly,
    /// --demo sets --bucket 10s, --detector-interval 2s, --detector-warmup 3d and
    /// --resolve-after 1m.
    #[arg(long, env = "DOWNRADAR_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
}

/// How counts are bucketed and kept: shared by `serve` and `import`, which must agree.
#[derive(Debug, Clone, clap::Args)]
pub struct BucketArgs {
    /// Width of the report buckets; must divide one hour (e.g. 10s, 1m, 5m).
    #[arg(long, env = "DOWNRADAR_BUCKET", default_value = "60s", value_parser = parse_bucket)]
    pub bucket: BucketWidth,

    /// How long report buckets are kept (1h to 3650d).
    #[arg(long, env = "DOWNRADAR_RETENTION", default_value = "8d", value_parser = parse_retention)]
    pub retention: Duration,

    /// How long the hourly roll-ups of the buckets are kept, for long history (1h to 3650d;
    /// at least --retention).
    #[arg(long, env = "DOWNRADAR_ROLLUP_RETENTION", default_value = "90d", value_parser = parse_retention)]
    pub rollup_retention: Duration,
}

impl BucketArgs {
    /// The store settings these give, with the serve-only ones; refused when the roll-ups
    /// would be kept for less time than the buckets they sum. Every read and write takes the
    /// roll-up to outlive its buckets: reads at `resolution=1h` would show zeros where the
    /// buckets still hold reports, and `import` would put rows into buckets past the
    /// roll-up's retention without their roll-up, and without counting them as skipped.
    pub fn store_settings(
        &self,
        dedup_window: Duration,
        max_reporters_per_address: Option<NonZeroU32>,
        event_retention: Duration,
    ) -> anyhow::Result<StoreSettings> {
        if self.rollup_retention < self.retention {
            anyhow::bail!(
                "--rollup-retention {} is shorter than --retention {}: the hourly roll-ups must \
                 be kept at least as long as the buckets they sum (reads at resolution=1h would \
                 show zeros where the buckets still hold reports); raise --rollup-retention to \
                 {} or more, or lower --retention",
                written(self.rollup_retention),
                written(self.retention),
                written(self.retention)
            );
        }
        Ok(StoreSettings {
            bucket: self.bucket,
            retention: self.retention,
            rollup_retention: self.rollup_retention,
            dedup_window,
            max_reporters_per_address,
            event_retention,
        })
    }
}

/// Options of `downradar import`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Redis URL of the deployment to load history into (Redis 7.0 or later), e.g.
    /// redis://127.0.0.1:6379/0, or redis://:PASSWORD@HOST:6379/0.
    #[arg(long, env = "DOWNRADAR_REDIS_URL")]
    pub redis_url: String,

    /// Counts to load: CSV with the header timestamp,service,region,problem,count, each
    /// timestamp the start of a bucket, sorted by time (the `backtest` input; `downradar
    /// simulate` writes it). A file, not a pipe: it is read twice, checked and then loaded.
    #[arg(long, value_name = "COUNTS.csv")]
    pub input: PathBuf,

    /// Catalog of services (TOML); every row must name one of its services and problems.
    /// Without it, the built-in catalog is used.
    #[arg(long, env = "DOWNRADAR_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Bucket width and retention: give the server's values (or the same environment).
    #[command(flatten)]
    pub buckets: BucketArgs,
}

/// Options of `downradar simulate`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(
    clap::ArgGroup::new("destination")
        .required(true)
        .args(["output", "target"])
))]
pub struct SimulateArgs {
    /// Where to write the counts: CSV with the header timestamp,service,region,problem,count,
    /// one row per non-zero bucket cell, sorted by time; `-` writes them to standard output
    /// (for `downradar backtest --input -`). Give exactly one of --output and --target.
    #[arg(long, value_name = "COUNTS.csv", requires = "truth")]
    pub output: Option<PathBuf>,

    /// Send the traffic live to a running server instead, e.g. http://127.0.0.1:8080: each
    /// simulated report is one POST /v1/services/{id}/reports with a distinct client_id, at
    /// --speed. The server buckets reports by its own clock, so at a speed above 1 its series
    /// are compressed in time relative to --truth; and all reports come from one address, so
    /// a server limiting reporters per address counts only that many. Plain http:// only.
    /// Give exactly one of --output and --target.
    #[arg(long, value_name = "URL", value_parser = parse_target)]
    pub target: Option<String>,

    /// Where to write the ground truth (JSON): the seed, each simulated service's volume and
    /// regions, and every injected outage with its kind, time span, regions and problems.
    /// Required with --output, where it is put in place once the counts are written (with
    /// --output -, before they begin, for `backtest --input -`), so that a run that fails
    /// leaves no truth of counts it did not write. Optional with --target, where it is written
    /// before the first report is sent.
    #[arg(long, value_name = "TRUTH.json")]
    pub truth: Option<PathBuf>,

    /// With --target: simulated seconds per real second (above 0, at most 100000), e.g. 1 for
    /// real time, 60 for an hour a minute, 86400 for a day a second.
    #[arg(long, value_name = "X", default_value_t = 1.0, value_parser = parse_speed, conflicts_with = "output")]
    pub speed: f64,

    /// Catalog of services (TOML). Without it, the built-in catalog is used.
    #[arg(long, value_name = "FILE", env = "DOWNRADAR_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Simulate only the first N services of the catalog (default: all of them).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub services: Option<u32>,

    /// Number of simulated days (1 to 3650).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,

    /// Start of the simulated period (RFC 3339, 1970 or later); must fall on a bucket
    /// boundary. Default:
    /// 2026-10-01T00:00:00Z with --output; the current time rounded down to the bucket with
    /// --target.
    #[arg(long, value_parser = parse_rfc3339)]
    pub start: Option<OffsetDateTime>,

    /// Width of the buckets; must divide one hour (e.g. 10s, 1m, 5m).
    #[arg(long, default_value = "60s", value_parser = parse_bucket)]
    pub bucket: BucketWidth,

    /// Seed of the random generator: the same flags and seed give byte-identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Mean number of outages each service starts per week (0 to 100); an outage of an
    /// upstream service may add cascading outages to its dependents. Over 7 days or more of
    /// 5 services or more, every kind of outage the services allow happens at least once
    /// (none at 0).
    #[arg(long, default_value_t = 2.0, value_parser = parse_outages_per_week)]
    pub outages_per_week: f64,
}

/// Parses an RFC 3339 instant such as `2026-10-01T00:00:00Z`, kept in UTC.
fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| format!("{e} (expected e.g. 2026-10-01T00:00:00Z)"))
}

/// The fastest --speed: a simulated day in under a second.
pub const MAX_SPEED: f64 = 100_000.0;

fn parse_speed(s: &str) -> Result<f64, String> {
    let speed: f64 = s
        .parse()
        .map_err(|e| format!("{e} (expected a number such as 1, 60 or 0.5)"))?;
    if !(speed > 0.0 && speed <= MAX_SPEED) {
        return Err(format!("must be above 0 and at most {MAX_SPEED}"));
    }
    Ok(speed)
}

/// A server's base URL: http://host[:port][/prefix], kept without a trailing slash.
fn parse_target(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("http://").ok_or_else(|| {
        if s.starts_with("https://") {
            "https:// is not supported (this build has no TLS); use http://".to_owned()
        } else {
            "expected a URL such as http://127.0.0.1:8080".to_owned()
        }
    })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("the URL has no host (expected e.g. http://127.0.0.1:8080)".into());
    }
    if rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
        return Err("give the server's base URL, without query or fragment".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// More than about 40 outages of up to three hours, each followed by a quiet hour, do not fit
/// in a week; 100 leaves room for asking "as many as fit".
fn parse_outages_per_week(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .parse()
        .map_err(|e| format!("{e} (expected a number such as 2 or 0.5)"))?;
    if !(0.0..=100.0).contains(&rate) {
        return Err("must be between 0 and 100".into());
    }
    Ok(rate)
}

/// Parses a duration such as `90s`, `15m` or `8d`, which must lie in `min..=max`.
fn duration_between(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 90s, 15m, 8d)"))?;
    if d < min || d > max {
        return Err(format!(
            "must be between {} and {}",
            written(min),
            written(max)
        ));
    }
    Ok(d)
}

/// A bound as `--help` writes it: `3650d`, not `9years 11months 27days 21h 50m 24s` (humantime
/// counts a year as 365.25 days and a month as a twelfth of that).
fn written(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => "0s".to_owned(),
        s if d.subsec_nanos() == 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if d.subsec_nanos() == 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if d.subsec_nanos() == 0 && s % 60 == 0 => format!("{}m", s / 60),
        _ => humantime::format_duration(d).to_string(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn parse_resolve_after(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::from_secs(60), 2 * HOUR)
}

fn parse_cascade_window(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::ZERO, HOUR)
}

fn parse_detector_interval(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::from_secs(1), Duration::from_secs(60))
}

fn parse_detector_warmup(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::ZERO, 30 * DAY)
}

fn parse_warmup(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::ZERO, 3650 * DAY)
}

fn parse_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.001..=1000.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number from 0.001 to 1000")),
    }
}

fn parse_min_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (1.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number from 1 to 100")),
    }
}

fn parse_retention(s: &str) -> Result<Duration, String> {
    duration_between(s, HOUR, 3650 * DAY)
}

fn parse_sse_heartbeat(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::from_secs(1), Duration::from_secs(300))
}

fn parse_client_stall_timeout(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::from_secs(1), Duration::from_secs(3600))
}

fn parse_event_retention(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::from_secs(60), 30 * DAY)
}

/// An empty HMAC key would make the fingerprints of IPv4 reporters reversible by trying
/// every address.
fn parse_secret(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(
            "the reporter secret is empty; leave it unset for a random one, or use \
                    e.g. `openssl rand -hex 32`"
                .into(),
        );
    }
    Ok(s.to_owned())
}

/// The dedup window also bounds how late a revocation can still undo a count (it needs the
/// dedup marker), so it may not be shorter than a minute.
fn parse_dedup_window(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::from_secs(60), DAY)
}

fn parse_bucket(s: &str) -> Result<BucketWidth, String> {
    BucketWidth::new(duration_between(s, Duration::from_secs(1), HOUR)?).map_err(|e| e.to_string())
}

/// How the detector decides: shared by `serve` and `backtest`, so a backtest measures exactly
/// what the server will do.
#[derive(Debug, Clone, clap::Args)]
pub struct DetectorArgs {
    /// False incidents allowed per service per 30 days of ordinary traffic (0.001 to 1000).
    /// Sets every threshold: halving it costs a little detection delay.
    #[arg(long, env = "DOWNRADAR_FALSE_ALARM_BUDGET", default_value = "1", value_parser = parse_budget)]
    pub false_alarm_budget: f64,

    /// Fewest distinct reporters in the evidence before an incident opens (1 to 10000).
    #[arg(long, env = "DOWNRADAR_MIN_REPORTERS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub min_reporters: u32,

    /// Fewest times the expected count before an incident opens (1 to 100): a smaller rise,
    /// however significant, is not an outage.
    #[arg(long, env = "DOWNRADAR_MIN_RATIO", default_value = "3", value_parser = parse_min_ratio)]
    pub min_ratio: f64,

    /// How long reports must stay near the baseline before an incident resolves (1m to 2h),
    /// and must have 2/15 of it before as well (two minutes at 15m); a sparse series may
    /// need longer to tell.
    #[arg(long, env = "DOWNRADAR_RESOLVE_AFTER", default_value = "15m", value_parser = parse_resolve_after)]
    pub resolve_after: Duration,

    /// An upstream service's incident counts as the cause of a dependent's when it started
    /// before the dependent's, or at most this long after (0s to 1h).
    #[arg(long, env = "DOWNRADAR_CASCADE_WINDOW", default_value = "5m", value_parser = parse_cascade_window)]
    pub cascade_window: Duration,
}

impl DetectorArgs {
    /// The detector configuration for buckets of `bucket`.
    pub fn config(&self, bucket: BucketWidth) -> crate::detector::DetectorConfig {
        crate::detector::DetectorConfig {
            bucket,
            false_alarm_budget: self.false_alarm_budget,
            min_reporters: self.min_reporters,
            min_ratio: self.min_ratio,
            resolve_after: self.resolve_after,
            cascade_window: self.cascade_window,
            ..crate::detector::DetectorConfig::default()
        }
    }
}

/// Options of `downradar backtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// Catalog of services (TOML); every row must name one of its services and problems.
    /// Without it, the built-in catalog is used.
    #[arg(long, env = "DOWNRADAR_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Counts to run the detector over: CSV with the header
    /// timestamp,service,region,problem,count, sorted by time (`downradar simulate` writes it);
    /// `-` reads standard input.
    #[arg(long, value_name = "COUNTS.csv")]
    pub input: PathBuf,

    /// Width of the file's buckets; must divide one hour (e.g. 1m, 5m).
    #[arg(long, default_value = "60s", value_parser = parse_bucket)]
    pub bucket: BucketWidth,

    /// Score the events against this truth file of `downradar simulate` and print recall,
    /// precision, false incidents, delays and attribution to stderr. The truth of another run
    /// (other buckets, a service the catalog lacks, a period the rows are outside) is refused,
    /// and so are counts cut short: no rows, or rows that begin after the truth's start or end
    /// before its end by longer than its services take to send 50 reports at their mean rate.
    /// An incident detects an outage when it opens from 2 minutes before the outage's start
    /// to 15 after its end; the README's Accuracy section gives every rule.
    #[arg(long, value_name = "TRUTH.json")]
    pub truth: Option<PathBuf>,

    /// With --truth: how much of the start is not scored, since the backtest starts with no
    /// history (as a deployment without `downradar import` does): neither the outages that
    /// begin in it, nor the incidents opened in it or detecting those outages.
    #[arg(long, default_value = "1d", value_parser = parse_warmup, requires = "truth")]
    pub warmup: Duration,

    #[command(flatten)]
    pub detector: DetectorArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn bounds_are_written_as_the_help_writes_them() {
        let refused = parse_retention("5000d").unwrap_err();
        assert_eq!(refused, "must be between 1h and 3650d");
        assert_eq!(written(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(written(Duration::from_secs(90)), "1m 30s");
        assert_eq!(written(Duration::from_secs(300)), "5m");
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_and_flags_parse() {
        let cli = Cli::try_parse_from([
            "downradar",
            "--listen",
            "127.0.0.1:0",
            "--bucket",
            "5m",
            "--dedup-window",
            "1h",
            "--trusted-proxies",
            "10.0.0.0/8, ::1",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.buckets.bucket.secs(), 300);
        assert_eq!(cli.serve.dedup_window, Duration::from_secs(3600));
        assert_eq!(cli.serve.event_retention, Duration::from_secs(86_400));
        assert!(
            cli.serve
                .trusted_proxies
                .contains("10.9.9.9".parse().unwrap())
        );
    }

    #[test]
    fn a_subcommand_is_parsed_without_the_default_serve() {
        let cli = Cli::try_parse_args(["downradar", "openapi"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Openapi)));
        let cli = Cli::try_parse_args(["downradar", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(cli.command.is_none());
        // Serve's flags still conflict with a subcommand.
        assert!(Cli::try_parse_args(["downradar", "--listen", "127.0.0.1:0", "openapi"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Cli::try_parse_from(["downradar", "--bucket", "7s"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--retention", "0s"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--trusted-proxies", "nope"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--log-format", "xml"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--bucket", "18446744073709548016s"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--dedup-window", "1ns"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--retention", "1000000000years"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--event-retention", "59s"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--event-retention", "31d"]).is_err());
        // An empty HMAC key would make fingerprints of IPv4 addresses trivially reversible.
        assert!(Cli::try_parse_from(["downradar", "--reporter-secret", ""]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--reporter-secret", "s3cret"]).is_ok());
        // An origin is scheme://host[:port], never a wildcard.
        for origin in [
            "*",
            "status.example",
            "https://status.example/path",
            "ftp://x",
            "https://",
        ] {
            let refused = Cli::try_parse_from(["downradar", "--allowed-origins", origin]);
            assert!(refused.is_err(), "{origin}");
        }
        let cli = Cli::try_parse_from([
            "downradar",
            "--allowed-origins",
            "https://Status.example, http://[::1]:3000",
        ])
        .unwrap();
        assert!(cli.serve.allowed_origins.allows("https://status.example"));
        assert!(cli.serve.allowed_origins.allows("http://[::1]:3000"));
        assert!(
            !cli.serve
                .allowed_origins
                .allows("https://status.example:8443")
        );
        // A scheme's default port is left out, as a browser's `Origin` leaves it out.
        let cli = Cli::try_parse_from([
            "downradar",
            "--allowed-origins",
            "https://a.example:443,http://b.example:80,http://c.example:443,http://[0:0::1]:80",
        ])
        .unwrap();
        for origin in [
            "https://a.example",
            "http://b.example",
            "http://c.example:443",
            "http://[::1]",
        ] {
            assert!(cli.serve.allowed_origins.allows(origin), "{origin}");
        }
        assert!(!cli.serve.allowed_origins.allows("https://a.example:443"));
        for origin in [
            "http://b.example:99999",
            "http://b.example:0",
            "http://b.example:",
            "http://b.example:8a",
            "http://[::1",
            "http://[not-ip]:80",
            "http://a:b:80",
        ] {
            let refused = Cli::try_parse_from(["downradar", "--allowed-origins", origin]);
            assert!(refused.is_err(), "{origin}");
        }
        for prefix in ["31", "65", "0"] {
            let refused = Cli::try_parse_from(["downradar", "--ipv6-limit-prefix", prefix]);
            assert!(refused.is_err(), "{prefix}");
        }
        assert_eq!(
            Cli::try_parse_from(["downradar"])
                .unwrap()
                .serve
                .ipv6_limit_prefix,
            64
        );
        // actix takes at most 512 workers, and panics beyond.
        assert!(Cli::try_parse_from(["downradar", "--workers", "513"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--workers", "0"]).is_err());
        assert!(Cli::try_parse_from(["downradar", "--workers", "512"]).is_ok());
    }

    #[test]
    fn roll_ups_kept_for_less_time_than_their_buckets_are_refused() {
        let settings = |flags: &[&str]| {
            let argv = ["downradar"].iter().chain(flags);
            let cli = Cli::try_parse_from(argv).unwrap();
            let buckets = match &cli.command {
                Some(Command::Import(import)) => &import.buckets,
                _ => &cli.serve.buckets,
            };
            buckets.store_settings(Duration::from_secs(900), None, DAY)
        };
        let shorter = ["--retention", "30d", "--rollup-retention", "7d"];
        let refused = settings(&shorter).unwrap_err().to_string();
        assert!(
            refused.starts_with("--rollup-retention 7d is shorter than --retention 30d:"),
            "{refused}"
        );
        assert!(refused.contains("raise --rollup-retention to 30d or more"));
        let import = [
            "import",
            "--redis-url",
            "redis://127.0.0.1",
            "--input",
            "c.csv",
        ];
        assert!(settings(&[&import[..], &shorter].concat()).is_err());
        // As long is enough, and the defaults (8d, 90d) are.
        assert!(settings(&["--retention", "30d", "--rollup-retention", "720h"]).is_ok());
        assert!(settings(&[]).is_ok());
        assert!(settings(&import).is_ok());
    }

    #[test]
    fn event_retention_reaches_the_store_settings() {
        let cli = Cli::try_parse_from(["downradar", "--event-retention", "90m"]).unwrap();
        let serve = cli.serve;
        let settings = serve
            .buckets
            .store_settings(Duration::from_secs(900), None, serve.event_retention)
            .unwrap();
        assert_eq!(settings.event_retention, Duration::from_secs(5400));
        for edge in ["1m", "30d"] {
            assert!(Cli::try_parse_from(["downradar", "--event-retention", edge]).is_ok());
        }
    }

    #[test]
    fn demo_sets_its_defaults_and_explicit_flags_still_win() {
        let plain = Cli::try_parse_from(["downradar"]).unwrap().serve;
        assert!(!plain.demo);
        assert_eq!(plain.buckets.bucket.secs(), 60);
        assert_eq!(plain.detector.resolve_after, Duration::from_secs(900));
        assert_eq!(plain.detector_interval, Duration::from_secs(10));
        assert_eq!(plain.detector_warmup, Duration::from_secs(7 * 86_400));

        let demo = Cli::try_parse_from(["downradar", "serve", "--demo"]).unwrap();
        let Some(Command::Serve(demo)) = demo.command else {
            panic!("not serve");
        };
        assert!(demo.demo);
        assert_eq!(demo.buckets.bucket.secs(), 10);
        assert_eq!(demo.detector.resolve_after, Duration::from_secs(60));
        assert_eq!(demo.detector_interval, Duration::from_secs(2));
        assert_eq!(demo.detector_warmup, Duration::from_secs(3 * 86_400));

        let explicit = Cli::try_parse_from([
            "downradar",
            "--demo",
            "--bucket",
            "60s",
            "--detector-interval",
            "10s",
            "--detector-warmup",
            "1h",
            "--resolve-after",
            "15m",
        ])
        .unwrap()
        .serve;
        assert!(explicit.demo);
        assert_eq!(explicit.detector.resolve_after, Duration::from_secs(900));
        assert_eq!(explicit.buckets.bucket.secs(), 60);
        assert_eq!(explicit.detector_interval, Duration::from_secs(10));
        assert_eq!(explicit.detector_warmup, Duration::from_secs(3600));
    }

    #[test]
    fn serve_flags_go_after_serve_or_without_it_never_both() {
        let cli = Cli::try_parse_from(["downradar", "serve", "--redis-url", "redis://x/"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Serve(ref a)) if a.redis_url.is_some()));
        // Flags before the subcommand would be silently dropped: refuse them instead.
        assert!(Cli::try_parse_from(["downradar", "--redis-url", "redis://x/", "serve"]).is_err());
    }

    #[test]
    fn simulate_flags_parse_with_defaults() {
        let args = simulate(&[
            "--output",
            "c.csv",
            "--truth",
            "t.json",
            "--start",
            "2026-10-01T02:00:00+02:00",
        ])
        .unwrap();
        assert_eq!(args.days, 30);
        assert_eq!(args.seed, 1);
        assert_eq!(args.bucket.secs(), 60);
        assert_eq!(args.outages_per_week, 2.0);
        assert_eq!(args.services, None);
        let start = args.start.unwrap();
        assert_eq!(start, time::macros::datetime!(2026-10-01 00:00 UTC));
        assert_eq!(start.offset(), time::UtcOffset::UTC);
        assert_eq!(args.output.as_deref(), Some(std::path::Path::new("c.csv")));
        assert_eq!(args.target, None);
        assert_eq!(args.speed, 1.0);
    }

    fn simulate(flags: &[&str]) -> Result<SimulateArgs, clap::Error> {
        let argv = ["downradar", "simulate"].iter().chain(flags);
        let cli = Cli::try_parse_from(argv)?;
        let Some(Command::Simulate(args)) = cli.command else {
            panic!("not simulate: {:?}", cli.command);
        };
        Ok(args)
    }

    #[test]
    fn simulate_writes_a_file_or_targets_a_server_never_both_nor_neither() {
        use clap::error::ErrorKind;
        // Neither.
        let err = simulate(&["--truth", "t.json"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "{err}");
        // Both.
        let err = simulate(&[
            "--output", "c.csv", "--truth", "t.json", "--target", "http://h",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict, "{err}");
        // A file needs its truth; a server does not.
        let err = simulate(&["--output", "c.csv"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "{err}");
        let live = simulate(&["--target", "http://127.0.0.1:8080/"]).unwrap();
        assert_eq!(live.target.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!((live.output, live.truth, live.start), (None, None, None));
        assert_eq!(live.speed, 1.0);
        let live = simulate(&[
            "--target",
            "http://h:1",
            "--truth",
            "t.json",
            "--speed",
            "600",
        ])
        .unwrap();
        assert_eq!(live.speed, 600.0);
        assert!(live.truth.is_some());
        // --speed only means something live.
        let err =
            simulate(&["--output", "c.csv", "--truth", "t.json", "--speed", "2"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict, "{err}");
    }

    #[test]
    fn bad_live_values_are_refused() {
        for bad in [
            &["--speed", "0"][..],
            &["--speed", "-1"],
            &["--speed", "NaN"],
            &["--speed", "inf"],
            &["--speed", "100001"],
        ] {
            let argv = ["--target", "http://h:1"].iter().chain(bad).copied();
            assert!(simulate(&argv.collect::<Vec<_>>()).is_err(), "{bad:?}");
        }
        assert!(simulate(&["--target", "http://h:1", "--speed", "100000"]).is_ok());
        assert!(simulate(&["--target", "http://h:1", "--speed", "0.01"]).is_ok());
        for bad in [
            "127.0.0.1:8080",
            "https://h",
            "http://",
            "http:///x",
            "http://h/?a=1",
            "",
        ] {
            assert!(simulate(&["--target", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_simulate_values_are_refused() {
        let base = ["--output", "c.csv", "--truth", "t.json"];
        for bad in [
            &["--days", "0"][..],
            &["--services", "0"],
            &["--start", "2026-10-01"],
            &["--outages-per-week", "-1"],
            &["--outages-per-week", "NaN"],
            &["--bucket", "7s"],
        ] {
            let flags: Vec<&str> = base.iter().chain(bad).copied().collect();
            assert!(simulate(&flags).is_err(), "{bad:?}");
        }
        assert!(simulate(&["--output", "c.csv"]).is_err());
    }
}
