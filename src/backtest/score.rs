//! Scoring a backtest against the truth of `downradar simulate`: recall, precision, false
//! incidents, detection delay and attribution, per volume class and per kind of outage.
//!
//! Rules:
//! - An incident *detects* an outage of its service when it opens between two minutes before
//!   the outage's start and fifteen minutes after its injected end. The first such incident
//!   is the detection; any further one is a *split* (one outage should give one incident)
//!   and counts as a false incident.
//! - Every other incident is *false*. False incidents are counted per service-week.
//! - Delay: from the outage's start to the `at` of the `incident.opened` event.
//! - How long incidents stay open: a detection's *overstay* runs from the outage's injected
//!   end to the incident's resolution, and a false incident's time from its start to its
//!   resolution (an incident still open at the end of the file ends there). A status page
//!   shows an outage for all of that time.
//! - Attribution is judged on the incident's last state (its last event): the scope; for a
//!   regional outage the exact set of regions; `partial`; for a partial outage the exact set
//!   of problems; the set of `caused_by`. It is *exact* when all of them are right. Sets
//!   are compared whatever their order.
//! - `caused_by` is judged by the rule the detector follows (the event contract's "upstream
//!   services with an open incident when this one opened", widened by the cascade window),
//!   applied to the truth's times (see [`Causes`]): the cause the simulator injected, and
//!   any other upstream (`depends_on`) outage under way when this one began, or beginning at
//!   most the cascade window after. A dependent's own outage during an unrelated upstream
//!   one is, to a detector that sees counts only, a cascade. (An upstream incident stays
//!   open some minutes past its outage's end, until its resolution is confirmed: a dependent
//!   outage beginning then is named caused by it, and scored wrong here.)
//! - Delays and other quantiles are linear between the two nearest values.
//! - The first `warmup` of the file is not scored: the backtest starts with no history, as a
//!   new deployment does without `downradar import`. Neither are the outages that start in
//!   it, the incidents that open in it, nor the incidents that detect such an outage.
//! - The headline class is what the targets name: outages of at least 5× the
//!   baseline on services with at least one report per minute.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

use crate::catalog::{Catalog, ServiceId};
use crate::detector::{IncidentEvent, Scope};
use crate::simulate::{self, Kind, Truth, TruthOutage, VolumeClass};

/// Minutes before an outage's start, and after its end, in which an opening still detects it.
const EARLY_MIN: i64 = 2;
const LATE_MIN: i64 = 15;

/// Scores of one group of outages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub outages: usize,
    pub detected: usize,
    /// Delays of the detections, seconds, sorted.
    pub delays: Vec<i64>,
    pub exact: usize,
    pub scope: usize,
    pub regions: usize,
    pub partial: usize,
    pub problems: usize,
    pub cause: usize,
}

impl Row {
    pub fn recall(&self) -> f64 {
        ratio(self.detected, self.outages)
    }

    pub fn exact_share(&self) -> f64 {
        ratio(self.exact, self.detected)
    }

    /// The `q`-quantile of the delays, minutes.
    pub fn delay_min(&self, q: f64) -> Option<f64> {
        minutes_at(&self.delays, q)
    }
}

/// The `q`-quantile of `seconds` (sorted), in minutes; `None` when there are none. Linear
/// between the two nearest values (Hyndman and Fan's type 7, numpy's default), so the
/// median of an even number of values is the mean of the two middle ones.
fn minutes_at(seconds: &[i64], q: f64) -> Option<f64> {
    let h = seconds.len().checked_sub(1)? as f64 * q.clamp(0.0, 1.0);
    let (below, above) = (h.floor() as usize, h.ceil() as usize);
    let (a, b) = (seconds[below] as f64, seconds[above] as f64);
    Some((a + (h - h.floor()) * (b - a)) / 60.0)
}

/// [`minutes_at`] as printed: whole minutes, or `-` for none.
fn whole_minutes_at(seconds: &[i64], q: f64) -> String {
    minutes_at(seconds, q).map_or("-".to_owned(), |m| format!("{m:.0}"))
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// The whole score.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub all: Row,
    /// Outages of at least 5× on services with at least 1 report per minute.
    pub headline: Row,
    pub by_class: BTreeMap<&'static str, Row>,
    pub by_kind: BTreeMap<&'static str, Row>,
    /// Incidents opened in the scored period, and how many of them were false or splits.
    pub incidents: usize,
    pub false_incidents: usize,
    pub splits: usize,
    pub false_by_class: BTreeMap<&'static str, usize>,
    pub service_weeks: f64,
    pub weeks_by_class: BTreeMap<&'static str, f64>,
    /// Per detection, seconds from the outage's end to the incident's resolution (the event
    /// that ends it), sorted.
    pub overstays: Vec<i64>,
    /// Per detection, seconds from the outage's end to the incident's `resolved_at` (where
    /// the detector says it ended), sorted.
    pub end_errors: Vec<i64>,
    /// Seconds that false incidents were open, in all and the longest.
    pub false_open: i64,
    pub longest_false: i64,
}

impl Report {
    pub fn precision(&self) -> f64 {
        ratio(self.incidents - self.false_incidents, self.incidents)
    }

    pub fn false_per_service_week(&self) -> f64 {
        self.false_incidents as f64 / self.service_weeks
    }
}

fn class_name(c: VolumeClass) -> &'static str {
    match c {
        VolumeClass::Sparse => "sparse (<0.5/min)",
        VolumeClass::Low => "low (0.5-5/min)",
        VolumeClass::High => "high (>=5/min)",
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Global => "global",
        Kind::Regional => "regional",
        Kind::Partial => "partial",
        Kind::Cascading => "cascading",
        Kind::Ramp => "ramp",
    }
}

/// An incident as the score sees it: its opening and its last state.
struct Seen<'a> {
    opened: OffsetDateTime,
    last: &'a IncidentEvent,
}

impl Seen<'_> {
    /// When the incident was resolved (its last event), or `end` (of the file) if it never
    /// was: until then a status page shows it.
    fn closed(&self, end: OffsetDateTime) -> OffsetDateTime {
        match self.last.incident.resolved_at {
            Some(_) => self.last.at,
            None => end,
        }
    }
}

/// What an outage's `caused_by` should name, as the event contract defines it: its upstream
/// services (the catalog's `depends_on`) with an outage under way when it began, or beginning
/// at most `window` (the detector's `--cascade-window`) after it; and the cause the simulator
/// injected.
pub struct Causes {
    upstream: HashMap<ServiceId, Vec<ServiceId>>,
    window: time::Duration,
}

impl Causes {
    pub fn new(catalog: &Catalog, window: Duration) -> Self {
        Self {
            upstream: catalog
                .services()
                .iter()
                .map(|s| (s.id.clone(), s.depends_on.clone()))
                .collect(),
            // At most a day, so that adding it to a time cannot overflow (the CLI allows an hour).
            window: time::Duration::try_from(window.min(Duration::from_secs(86_400)))
                .unwrap_or(time::Duration::DAY),
        }
    }

    /// The causes `outage` should be given, among `truth`'s outages.
    fn of<'a>(&self, truth: &'a Truth, outage: &'a TruthOutage) -> BTreeSet<&'a ServiceId> {
        let upstream = self
            .upstream
            .get(&outage.service)
            .map_or(&[][..], Vec::as_slice);
        let under_way = truth.outages.iter().filter(|o| {
            upstream.contains(&o.service)
                && o.start <= outage.start + self.window
                && o.end > outage.start
        });
        outage
            .caused_by
            .iter()
            .chain(under_way.map(|o| &o.service))
            .collect()
    }
}

/// Scores `events` (a backtest's output, in order) against `truth`.
pub fn score(truth: &Truth, events: &[IncidentEvent], warmup: Duration, causes: &Causes) -> Report {
    let scored_from = truth.start + warmup;
    let mut incidents: Vec<Seen<'_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for event in events {
        match index.get(event.incident.id.as_str()) {
            Some(&i) => incidents[i].last = event,
            None => {
                index.insert(&event.incident.id, incidents.len());
                incidents.push(Seen {
                    opened: event.at,
                    last: event,
                });
            }
        }
    }
    // Incidents opened before the scored period are not scored, nor are those that detect an
    // outage that began before it (counted false, they would charge the warm-up's outages to
    // the scored period).
    let unscored = |seen: &Seen<'_>| {
        seen.opened < scored_from
            || truth.outages.iter().any(|o| {
                o.start < scored_from && o.service == seen.last.incident.service && detects(seen, o)
            })
    };
    incidents.retain(|seen| !unscored(seen));

    let class_of: HashMap<&str, (VolumeClass, f64)> = truth
        .services
        .iter()
        .map(|s| (s.id.as_str(), (s.class, s.base_per_min)))
        .collect();
    let mut report = Report::default();
    let weeks = (truth.end - scored_from).as_seconds_f64() / (7.0 * 86_400.0);
    report.service_weeks = weeks * truth.services.len() as f64;
    for s in &truth.services {
        *report
            .weeks_by_class
            .entry(class_name(s.class))
            .or_default() += weeks;
    }

    // Match: outages in start order; each takes the first unmatched incident of its service
    // that opened within its span.
    let mut matched = vec![false; incidents.len()];
    let mut detection: Vec<Option<usize>> = Vec::new();
    let outages: Vec<&TruthOutage> = truth
        .outages
        .iter()
        .filter(|o| o.start >= scored_from)
        .collect();
    for outage in &outages {
        let hit = (0..incidents.len()).find(|&i| {
            !matched[i]
                && incidents[i].last.incident.service == outage.service
                && detects(&incidents[i], outage)
        });
        if let Some(i) = hit {
            matched[i] = true;
        }
        detection.push(hit);
    }
    // Splits: further incidents opening within an outage's span.
    for (i, seen) in incidents.iter().enumerate() {
        report.incidents += 1;
        if matched[i] {
            continue;
        }
        report.false_incidents += 1;
        let open = (seen.closed(truth.end) - seen.last.incident.started_at).whole_seconds();
        report.false_open += open;
        report.longest_false = report.longest_false.max(open);
        let split = outages
            .iter()
            .any(|o| o.service == seen.last.incident.service && detects(seen, o));
        if split {
            report.splits += 1;
        }
        let class = class_of
            .get(seen.last.incident.service.as_str())
            .map_or("unknown", |(c, _)| class_name(*c));
        *report.false_by_class.entry(class).or_default() += 1;
    }

    for (outage, hit) in outages.iter().zip(detection) {
        let (class, base) = class_of
            .get(outage.service.as_str())
            .copied()
            .unwrap_or((VolumeClass::Sparse, 0.0));
        let headline = outage.peak_ratio >= 5.0 && base >= 1.0;
        if let Some(i) = hit {
            let overstay = incidents[i].closed(truth.end) - outage.end;
            report.overstays.push(overstay.whole_seconds());
            if let Some(said) = incidents[i].last.incident.resolved_at {
                report.end_errors.push((said - outage.end).whole_seconds());
            }
        }
        let expected_causes = causes.of(truth, outage);
        // Collect into the groups this outage belongs to.
        let add = |row: &mut Row| {
            row.outages += 1;
            if let Some(i) = hit {
                judge(row, outage, &incidents[i], &expected_causes);
            }
        };
        add(&mut report.all);
        if headline {
            add(&mut report.headline);
        }
        add(report.by_class.entry(class_name(class)).or_default());
        add(report.by_kind.entry(kind_name(outage.kind)).or_default());
    }
    for row in [&mut report.all, &mut report.headline]
        .into_iter()
        .chain(report.by_class.values_mut())
        .chain(report.by_kind.values_mut())
    {
        row.delays.sort_unstable();
    }
    report.overstays.sort_unstable();
    report.end_errors.sort_unstable();
    report
}

/// Whether `seen` opened within `outage`'s span: from [`EARLY_MIN`] before its start to
/// [`LATE_MIN`] after its end (its service is not checked).
fn detects(seen: &Seen<'_>, outage: &TruthOutage) -> bool {
    seen.opened >= outage.start - time::Duration::minutes(EARLY_MIN)
        && seen.opened <= outage.end + time::Duration::minutes(LATE_MIN)
}

fn judge(row: &mut Row, outage: &TruthOutage, seen: &Seen<'_>, causes: &BTreeSet<&ServiceId>) {
    row.detected += 1;
    row.delays
        .push((seen.opened - outage.start).whole_seconds());
    let got = &seen.last.incident;
    let scope = matches!(
        (outage.scope, got.scope),
        (simulate::Scope::Global, Scope::Global) | (simulate::Scope::Regional, Scope::Regional)
    );
    let regions =
        outage.scope == simulate::Scope::Global || same_set(&got.regions, &outage.regions);
    let partial = got.partial == outage.partial;
    let problems = !outage.partial || same_set(&got.problems, &outage.problems);
    let cause = got.caused_by.iter().collect::<BTreeSet<_>>() == *causes;
    row.scope += usize::from(scope);
    row.regions += usize::from(scope && regions);
    row.partial += usize::from(partial);
    row.problems += usize::from(partial && problems);
    row.cause += usize::from(cause);
    row.exact += usize::from(scope && regions && partial && problems && cause);
}

/// Whether `a` and `b` hold the same items, in whatever order: the detector writes its lists
/// sorted, but a truth written by hand or by another tool need not.
fn same_set<T: Ord>(a: &[T], b: &[T]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: f64| {
            if x.is_nan() {
                "-".to_owned()
            } else {
                format!("{:.1}%", 100.0 * x)
            }
        };
        let mins = |x: Option<f64>| x.map_or("-".to_owned(), |m| format!("{m:.1}"));
        writeln!(
            f,
            "| outages | n | recall | median delay (min) | p90 delay (min) | exact attribution | scope | regions | partial | problems | cause |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|---|---|")?;
        let mut line = |name: &str, r: &Row| {
            writeln!(
                f,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.outages,
                pct(r.recall()),
                mins(r.delay_min(0.5)),
                mins(r.delay_min(0.9)),
                pct(r.exact_share()),
                pct(ratio(r.scope, r.detected)),
                pct(ratio(r.regions, r.detected)),
                pct(ratio(r.partial, r.detected)),
                pct(ratio(r.problems, r.detected)),
                pct(ratio(r.cause, r.detected)),
            )
        };
        line("≥5× on ≥1/min services", &self.headline)?;
        for (name, row) in &self.by_class {
            line(name, row)?;
        }
        for (name, row) in &self.by_kind {
            line(name, row)?;
        }
        line("all", &self.all)?;
        writeln!(f)?;
        writeln!(
            f,
            "incidents: {}, precision {}, false {} ({} splits): {:.3} per service-week ({:.2} per service per 30 days)",
            self.incidents,
            pct(self.precision()),
            self.false_incidents,
            self.splits,
            self.false_per_service_week(),
            self.false_per_service_week() * 30.0 / 7.0,
        )?;
        let overstay = |q: f64| whole_minutes_at(&self.overstays, q);
        writeln!(
            f,
            "open after the outage's end (min): median {}, p90 {}, p99 {}, max {}; false incidents open {:.1} h in all, the longest {:.1} h",
            overstay(0.5),
            overstay(0.9),
            overstay(0.99),
            overstay(1.0),
            self.false_open as f64 / 3600.0,
            self.longest_false as f64 / 3600.0,
        )?;
        let said = |q: f64| whole_minutes_at(&self.end_errors, q);
        writeln!(
            f,
            "resolved_at minus the outage's end (min): p10 {}, median {}, p90 {}",
            said(0.1),
            said(0.5),
            said(0.9),
        )?;
        for (class, weeks) in &self.weeks_by_class {
            let n = self.false_by_class.get(class).copied().unwrap_or(0);
            writeln!(
                f,
                "  false in {class}: {n} ({:.3} per service-week)",
                n as f64 / weeks
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, at: &str, start: &str, resolved: Option<&str>) -> IncidentEvent {
        let status = if resolved.is_some() {
            "resolved"
        } else {
            "open"
        };
        serde_json::from_value(serde_json::json!({
            "type": kind, "at": at,
            "incident": {"id": format!("svc-{start}"), "service": "svc", "status": status,
                "scope": "global", "regions": ["US"], "partial": false, "problems": ["login"],
                "caused_by": [], "started_at": start, "resolved_at": resolved,
                "expected_per_min": 1.0, "observed_per_min": 9.0}
        }))
        .unwrap()
    }

    #[test]
    fn quantiles_lie_between_the_nearest_values() {
        let minutes = |m: &[i64]| m.iter().map(|m| m * 60).collect::<Vec<_>>();
        assert_eq!(minutes_at(&[], 0.5), None);
        assert_eq!(minutes_at(&minutes(&[7]), 0.9), Some(7.0));
        assert_eq!(minutes_at(&minutes(&[1, 2, 3]), 0.5), Some(2.0));
        // The median of an even number of values is the mean of the middle two.
        assert_eq!(minutes_at(&minutes(&[16, 18]), 0.5), Some(17.0));
        assert_eq!(
            minutes_at(&minutes(&[1, 2, 21, 22, 30, 40]), 0.5),
            Some(21.5)
        );
        // p90 of 1..=10: at 9 × 0.9 = 8.1, a tenth of the way from the ninth value to the tenth.
        let p90 = minutes_at(&minutes(&(1..=10).collect::<Vec<_>>()), 0.9).unwrap();
        assert!((p90 - 9.1).abs() < 1e-9, "{p90}");
    }

    /// No service depends on another.
    fn no_causes() -> Causes {
        Causes {
            upstream: HashMap::new(),
            window: time::Duration::minutes(5),
        }
    }

    /// A truth with one service, `svc`, from 2026-10-01 to 2026-10-03, and `outages`.
    fn truth_of(outages: serde_json::Value) -> Truth {
        serde_json::from_value(serde_json::json!({
            "seed": 1, "start": "2026-10-01T00:00:00Z", "end": "2026-10-03T00:00:00Z",
            "bucket_secs": 60,
            "services": [{"id": "svc", "class": "high", "base_per_min": 10.0,
                "weekend_factor": 1.0, "regions": {"US": 1.0, "CA": 1.0}, "problems": {"login": 1.0},
                "blips": 0}],
            "outages": outages
        }))
        .unwrap()
    }

    /// Regions, problems and causes are compared as sets: a truth need not list them sorted.
    #[test]
    fn attribution_lists_are_compared_whatever_their_order() {
        let truth = truth_of(serde_json::json!([{"id": "o1", "service": "svc",
            "kind": "regional", "start": "2026-10-02T10:00:00Z", "end": "2026-10-02T11:00:00Z",
            "scope": "regional", "regions": ["US", "CA"], "partial": false,
            "problems": ["login"], "caused_by": [], "peak_ratio": 10.0}]));
        let mut opened = event(
            "incident.opened",
            "2026-10-02T10:01:00Z",
            "2026-10-02T10:00:00Z",
            None,
        );
        opened.incident.scope = Scope::Regional;
        opened.incident.regions = ["CA", "US"]
            .iter()
            .map(|r| crate::regions::RegionCode::parse(r).unwrap())
            .collect();
        let report = score(&truth, &[opened], Duration::from_secs(86_400), &no_causes());
        assert_eq!((report.all.detected, report.all.exact), (1, 1));
    }

    /// `caused_by` is judged as the event contract defines it: an upstream outage under way
    /// when a dependent's own outage began is its cause, injected or not; one that ended
    /// before it began, or began more than the cascade window after, is not.
    #[test]
    fn causes_are_the_upstream_outages_under_way() {
        let outage = |id: &str, service: &str, start: &str, end: &str, caused_by: &[&str]| {
            serde_json::json!({"id": id, "service": service, "kind": "global",
                "start": start, "end": end, "scope": "global", "regions": ["US"],
                "partial": false, "problems": ["login"], "caused_by": caused_by,
                "peak_ratio": 10.0})
        };
        let truth = truth_of(serde_json::json!([
            outage(
                "o1",
                "up",
                "2026-10-02T09:00:00Z",
                "2026-10-02T12:00:00Z",
                &[]
            ),
            // Its own outage, during the upstream one.
            outage(
                "o2",
                "svc",
                "2026-10-02T10:00:00Z",
                "2026-10-02T10:30:00Z",
                &[]
            ),
            outage(
                "o3",
                "up",
                "2026-10-02T14:00:00Z",
                "2026-10-02T14:30:00Z",
                &[]
            ),
            // After the upstream one ended; and one before the next began (within the window).
            outage(
                "o4",
                "svc",
                "2026-10-02T15:00:00Z",
                "2026-10-02T15:30:00Z",
                &[]
            ),
            outage(
                "o5",
                "svc",
                "2026-10-02T18:00:00Z",
                "2026-10-02T18:30:00Z",
                &[]
            ),
            outage(
                "o6",
                "up",
                "2026-10-02T18:04:00Z",
                "2026-10-02T18:30:00Z",
                &[]
            ),
        ]));
        let causes = Causes {
            upstream: [(
                ServiceId::parse("svc").unwrap(),
                vec![ServiceId::parse("up").unwrap()],
            )]
            .into(),
            window: time::Duration::minutes(5),
        };
        let named = |start: &str, caused_by: &[&str]| {
            let mut opened = event("incident.opened", start, start, None);
            opened.incident.caused_by = caused_by
                .iter()
                .map(|s| ServiceId::parse(s).unwrap())
                .collect();
            opened
        };
        let right = [
            named("2026-10-02T10:00:00Z", &["up"]),
            named("2026-10-02T15:00:00Z", &[]),
            named("2026-10-02T18:00:00Z", &["up"]),
        ];
        let report = score(&truth, &right, Duration::from_secs(86_400), &causes);
        assert_eq!(
            report.all.detected, 3,
            "svc's own outages (up's are not detected here)"
        );
        assert_eq!(report.all.cause, 3);
        let wrong = [
            named("2026-10-02T10:00:00Z", &[]),
            named("2026-10-02T15:00:00Z", &["up"]),
            named("2026-10-02T18:00:00Z", &[]),
        ];
        let report = score(&truth, &wrong, Duration::from_secs(86_400), &causes);
        assert_eq!(report.all.cause, 0);
    }

    /// An outage that starts in the warm-up is not scored, and neither is the incident that
    /// detects it after the warm-up: it is no false incident.
    #[test]
    fn the_detection_of_an_outage_begun_in_the_warm_up_is_not_scored() {
        let truth = truth_of(serde_json::json!([{"id": "o1", "service": "svc",
            "kind": "ramp", "start": "2026-10-01T23:50:00Z", "end": "2026-10-02T01:00:00Z",
            "scope": "global", "regions": ["US"], "partial": false,
            "problems": ["login"], "caused_by": [], "peak_ratio": 6.0}]));
        let opened = event(
            "incident.opened",
            "2026-10-02T00:20:00Z",
            "2026-10-02T00:10:00Z",
            None,
        );
        let report = score(&truth, &[opened], Duration::from_secs(86_400), &no_causes());
        assert_eq!(
            (report.all.outages, report.incidents, report.false_incidents),
            (0, 0, 0)
        );
    }

    /// A detection that stays open 40 minutes past its outage's end, a false incident open
    /// for two and a half hours and one still open when the file ends, two hours later.
    #[test]
    fn how_long_incidents_stay_open_is_measured() {
        let truth: Truth = serde_json::from_value(serde_json::json!({
            "seed": 1, "start": "2026-10-01T00:00:00Z", "end": "2026-10-03T00:00:00Z",
            "bucket_secs": 60,
            "services": [{"id": "svc", "class": "high", "base_per_min": 10.0,
                "weekend_factor": 1.0, "regions": {"US": 1.0}, "problems": {"login": 1.0},
                "blips": 0}],
            "outages": [{"id": "o1", "service": "svc", "kind": "global",
                "start": "2026-10-02T10:00:00Z", "end": "2026-10-02T11:00:00Z",
                "scope": "global", "regions": ["US"], "partial": false, "problems": ["login"],
                "caused_by": [], "peak_ratio": 10.0}]
        }))
        .unwrap();
        let (a, b, c) = (
            "2026-10-02T10:00:00Z",
            "2026-10-02T15:00:00Z",
            "2026-10-02T22:00:00Z",
        );
        let events = [
            event("incident.opened", "2026-10-02T10:01:00Z", a, None),
            event(
                "incident.resolved",
                "2026-10-02T11:40:00Z",
                a,
                Some("2026-10-02T11:25:00Z"),
            ),
            event("incident.opened", "2026-10-02T15:01:00Z", b, None),
            event(
                "incident.resolved",
                "2026-10-02T17:30:00Z",
                b,
                Some("2026-10-02T17:30:00Z"),
            ),
            event("incident.opened", "2026-10-02T22:01:00Z", c, None),
        ];
        let report = score(&truth, &events, Duration::from_secs(86_400), &no_causes());
        assert_eq!((report.all.detected, report.false_incidents), (1, 2));
        // Shown open until the event that resolves it; said to have ended 25 minutes late.
        assert_eq!(report.overstays, [40 * 60]);
        assert_eq!(report.end_errors, [25 * 60]);
        assert_eq!(report.false_open, (150 + 120) * 60);
        assert_eq!(report.longest_false, 150 * 60);
        let printed = report.to_string();
        assert!(
            printed.contains(
                "open after the outage's end (min): median 40, p90 40, p99 40, max 40; \
                 false incidents open 4.5 h in all, the longest 2.5 h"
            ),
            "{printed}"
        );
        assert!(
            printed.contains("resolved_at minus the outage's end (min): p10 25, median 25, p90 25"),
            "{printed}"
        );
    }
}
