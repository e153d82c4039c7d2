//! What is going on right now: `GET /v1/services/{id}/problems`, `GET /v1/services/{id}/map`
//! and `GET /v1/outages/now`; and the reads they share (counts over a window, the detector's
//! expectations).

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::AppState;
use super::error::{ApiError, ErrorBody, ReadsUnavailable, StoreUnavailable, UnknownService};
use super::incidents::unavailable;
use super::reports::datetime;
use crate::buckets::{ROLLUP_SECS, align};
use crate::catalog::{Problem, ServiceId};
use crate::detector::Incident;
use crate::detector::service::{SeriesFilter, ServiceState};
use crate::regions::{RegionCode, Regions};
use crate::store::{Cell, Granularity, IncidentQuery};

/// Distinct reporters per cell of a service over a range, and where they begin.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub cells: BTreeMap<Cell, u64>,
    /// The earliest bucket read that holds a report, as `[start, end)`.
    pub first: Option<(i64, i64)>,
}

/// Distinct reporters per cell of `service` in `[since, until)` (both multiples of the bucket
/// width): whole hours from the hourly roll-up, the hour fractions at either end from the fine
/// buckets, so a day costs at most about 25 + 2 × 60 reads with one-minute buckets. When the
/// fine buckets do not reach back to `since`, the roll-up's hours that overlap the range are
/// used instead (a little more than the range).
pub(crate) async fn counts_between(
    state: &AppState,
    service: &ServiceId,
    since: i64,
    until: i64,
) -> Result<Counts, ApiError> {
    let fine = state.settings.width(Granularity::Fine);
    let now = state.clock.now().unix_timestamp();
    let fine_kept = now - crate::store::whole_secs(state.settings.retention) <= since;
    let mut ranges = Vec::with_capacity(3);
    if fine_kept && fine < ROLLUP_SECS {
        let first_hour = align(since + ROLLUP_SECS - 1, ROLLUP_SECS);
        let last_hour = align(until, ROLLUP_SECS);
        if first_hour >= last_hour {
            ranges.push((Granularity::Fine, since, until));
        } else {
            ranges.push((Granularity::Fine, since, first_hour));
            ranges.push((Granularity::Hourly, first_hour, last_hour));
            ranges.push((Granularity::Fine, last_hour, until));
        }
    } else {
        // One-hour buckets are the roll-up's hours.
        let granularity = if fine_kept {
            Granularity::Fine
        } else {
            Granularity::Hourly
        };
        ranges.push((
            granularity,
            align(since, ROLLUP_SECS),
            align(until + ROLLUP_SECS - 1, ROLLUP_SECS),
        ));
    }
    let _reading = state
        .reads
        .take(
            ranges
                .iter()
                .map(|&(granularity, from, to)| {
                    (to - from).max(0) / state.settings.width(granularity)
                })
                .sum(),
        )
        .await?;
    let mut out = Counts::default();
    for (granularity, from, to) in ranges {
        if from >= to {
            continue;
        }
        let buckets = state
            .store
            .counts(service, granularity, from, to)
            .await
            .map_err(|e| unavailable("counts", &e))?;
        let width = state.settings.width(granularity);
        for bucket in buckets {
            let span = (bucket.start, bucket.start + width);
            if bucket.cells.iter().any(|&(_, n)| n > 0) && out.first.is_none_or(|f| span < f) {
                out.first = Some(span);
            }
            for (cell, n) in bucket.cells {
                *out.cells.entry(cell).or_default() += n;
            }
        }
    }
    Ok(out)
}

/// Where the expectations over a read from `since` begin: at `since`, or where the service's
/// history does when that is later. The detector knows when its first report came; a bucket
/// with reports that the read found wholly before it (history imported since) moves the
/// start back to that bucket. (One that holds the first report, an hour of the roll-up,
/// does not: its reports came from then on.) Expected counts over time without history
/// would be reports that nobody could have sent: a week's map on a deployment three days
/// old said every country had under half its usual reports. `first_read`: the read's first
/// bucket with a report, as `[start, end)`.
pub(crate) fn history_start(
    model: &ServiceState,
    first_read: Option<(i64, i64)>,
    since: i64,
) -> i64 {
    match model.first_report() {
        Some(t) => match first_read {
            Some((start, end)) if end <= t => since.max(start),
            _ => since.max(t),
        },
        None => since,
    }
}

/// The detector's saved state of `service`, when it has one learned on the current bucket
/// width.
pub(crate) async fn service_state(
    state: &AppState,
    service: &ServiceId,
) -> Result<Option<ServiceState>, ApiError> {
    let saved = state
        .store
        .detector_state(service)
        .await
        .map_err(|e| unavailable("detector state", &e))?;
    Ok(saved
        .and_then(|bytes| crate::detector::service::decode(&bytes).ok())
        .filter(|s| s.width() == state.settings.bucket.secs()))
}

/// Expected reports of the series `of` in `[since, until)`: the sum over its buckets.
pub(crate) fn expected_between(
    model: &ServiceState,
    of: SeriesFilter<'_>,
    since: i64,
    until: i64,
) -> f64 {
    model.expectation_over(since, until, of).0
}

/// The windows the overview reads take, with their length in seconds.
const WINDOWS: [(&str, i64); 10] = [
    ("5m", 300),
    ("15m", 900),
    ("30m", 1800),
    ("1h", 3600),
    ("3h", 3 * 3600),
    ("6h", 6 * 3600),
    ("12h", 12 * 3600),
    ("24h", 86_400),
    ("48h", 2 * 86_400),
    ("7d", 7 * 86_400),
];

/// A `window` query parameter in seconds: one of [`WINDOWS`].
fn parse_window(window: Option<&str>, default: i64) -> Result<i64, ApiError> {
    let Some(text) = window else {
        return Ok(default);
    };
    WINDOWS
        .iter()
        .find(|(name, _)| *name == text)
        .map(|&(_, secs)| secs)
        .ok_or_else(|| {
            ApiError::invalid_query(format!(
                "window={} is not one of {}",
                super::error::quoted(text),
                WINDOWS.map(|(name, _)| name).join(", ")
            ))
        })
}

/// The window `[since, until)` ending with the bucket that holds the present moment.
fn window_range(state: &AppState, secs: i64) -> (i64, i64) {
    let width = state.settings.width(Granularity::Fine);
    let until = align(state.clock.now().unix_timestamp(), width) + width;
    (until - align(secs + width - 1, width), until)
}

/// Query of the overview reads.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// How far back to look, ending now, e.g. `1h`.
    #[param(value_type = Option<String>,
        pattern = "^(5m|15m|30m|1h|3h|6h|12h|24h|48h|7d)$")]
    pub window: Option<String>,
}

/// One problem's reports.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemShare {
    #[schema(value_type = String, example = "login")]
    pub problem: Problem,
    /// Distinct reporters of this problem in the window.
    #[schema(example = 412)]
    pub reports: u64,
    /// Its share of all the window's reports, to three decimals (0 when there are none).
    #[schema(example = 0.61)]
    pub share: f64,
}

/// The most reported problems of a service.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemList {
    #[schema(value_type = String, example = "tiktok")]
    pub service: ServiceId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub until: OffsetDateTime,
    /// Distinct reporters in the window, all problems.
    pub total: u64,
    /// Every problem of the service, most reported first (ties in alphabetical order).
    pub problems: Vec<ProblemShare>,
}

/// Most reported problems.
///
/// The service's problem categories with their reports and shares over a recent window
/// (default 24h), most reported first.
#[utoipa::path(
    tag = "services",
    params(("id" = String, Path, description = "Service id", example = "tiktok"), WindowQuery),
    responses(
        (status = 200, description = "The problems.", body = ProblemList,
            example = json!({"service": "tiktok", "since": "2026-11-20T12:04:00Z", "until": "2026-11-21T12:04:00Z", "total": 675,
                "problems": [{"problem": "login", "reports": 412, "share": 0.61}, {"problem": "app", "reports": 201, "share": 0.298},
                             {"problem": "feed", "reports": 62, "share": 0.092}, {"problem": "server-connection", "reports": 0, "share": 0.0}, {"problem": "video-upload", "reports": 0, "share": 0.0}]})),
        (status = 400, description = "`invalid_query`: a bad window.", body = ErrorBody,
            example = json!({"code": "invalid_query", "message": "window=\"9d\" is not one of 5m, 15m, 30m, 1h, 3h, 6h, 12h, 24h, 48h, 7d"})),
        UnknownService,
        ReadsUnavailable,
    )
)]
#[get("/v1/services/{id}/problems")]
pub async fn service_problems(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let service = state.service(&id)?;
    let (since, until) = window_range(&state, parse_window(query.window.as_deref(), 86_400)?);
    let counts = counts_between(&state, &service.id, since, until)
        .await?
        .cells;
    let mut per_problem: Vec<(Problem, u64)> =
        service.problems.iter().map(|p| (p.clone(), 0)).collect();
    for (cell, n) in counts {
        if let Some(entry) = per_problem.iter_mut().find(|(p, _)| *p == cell.problem) {
            entry.1 += n;
        }
    }
    let total: u64 = per_problem.iter().map(|(_, n)| n).sum();
    per_problem.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(HttpResponse::Ok().json(ProblemList {
        service: service.id.clone(),
        since: datetime(since)?,
        until: datetime(until)?,
        total,
        problems: per_problem
            .into_iter()
            .map(|(problem, reports)| ProblemShare {
                problem,
                reports,
                share: if total == 0 {
                    0.0
                } else {
                    round3(reports as f64 / total as f64)
                },
            })
            .collect(),
    }))
}

/// One country on the outage map.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MapCountry {
    #[schema(value_type = String, example = "US")]
    pub region: RegionCode,
    #[schema(example = "United States")]
    pub name: &'static str,
    /// Distinct reporters from the country in the window.
    #[schema(example = 220)]
    pub reports: u64,
    /// What the baseline expects from it over the window, or over the part of it since the
    /// service's history began (its first report); absent while the detector has no
    /// baseline for the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 14.5)]
    pub expected: Option<f64>,
    /// `reports / expected`, the expectation taken as at least 0.001 (a country expected to
    /// be silent); absent with `expected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 15.2)]
    pub ratio: Option<f64>,
    /// A point inside the country for a map marker (the centroid of its largest part).
    #[schema(example = 39.20361)]
    pub lat: f64,
    #[schema(example = -98.05451)]
    pub lon: f64,
}

/// Where a service's reports come from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutageMap {
    #[schema(value_type = String, example = "tiktok")]
    pub service: ServiceId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub until: OffsetDateTime,
    /// Countries with reports in the window, most reports first.
    pub countries: Vec<MapCountry>,
}

/// Outage map.
///
/// Per country with reports in a recent window (default 1h): the reports, what the baseline
/// expects from it, their ratio, and where to put its marker.
#[utoipa::path(
    tag = "services",
    params(("id" = String, Path, description = "Service id", example = "tiktok"), WindowQuery),
    responses(
        (status = 200, description = "The map.", body = OutageMap,
            example = json!({"service": "tiktok", "since": "2026-11-21T11:04:00Z", "until": "2026-11-21T12:04:00Z",
                "countries": [{"region": "US", "name": "United States", "reports": 220, "expected": 14.5, "ratio": 15.2, "lat": 39.20361, "lon": -98.05451},
                              {"region": "DE", "name": "Germany", "reports": 9, "expected": 7.1, "ratio": 1.27, "lat": 51.63561, "lon": 9.89737}]})),
        (status = 400, description = "`invalid_query`: a bad window.", body = ErrorBody,
            example = json!({"code": "invalid_query", "message": "window=\"2d\" is not one of 5m, 15m, 30m, 1h, 3h, 6h, 12h, 24h, 48h, 7d"})),
        UnknownService,
        ReadsUnavailable,
    )
)]
#[get("/v1/services/{id}/map")]
pub async fn service_map(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let service = state.service(&id)?;
    let (since, until) = window_range(&state, parse_window(query.window.as_deref(), 3600)?);
    let counts = counts_between(&state, &service.id, since, until).await?;
    let model = service_state(&state, &service.id).await?;
    let mut per_region: BTreeMap<RegionCode, u64> = BTreeMap::new();
    for (cell, n) in counts.cells {
        *per_region.entry(cell.region).or_default() += n;
    }
    let regions = Regions::builtin();
    let mut countries: Vec<MapCountry> = per_region
        .into_iter()
        .map(|(region, reports)| {
            let expected = model.as_ref().map(|m| {
                let of = SeriesFilter {
                    region: Some(region),
                    problem: None,
                };
                expected_between(m, of, history_start(m, counts.first, since), until)
            });
            let country = regions.country(region);
            MapCountry {
                region,
                name: country.name,
                reports,
                expected: expected.map(round2),
                ratio: expected.map(|e| round2(reports as f64 / e.max(1e-3))),
                lat: country.centroid.lat(),
                lon: country.centroid.lon(),
            }
        })
        .collect();
    countries.sort_by(|a, b| b.reports.cmp(&a.reports).then(a.region.cmp(&b.region)));
    Ok(HttpResponse::Ok().json(OutageMap {
        service: service.id.clone(),
        since: datetime(since)?,
        until: datetime(until)?,
        countries,
    }))
}

/// Two decimals are plenty for rates and ratios read by people.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `x` to three decimals.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// An ongoing outage and how bad it is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Outage {
    pub incident: Incident,
    /// Reports per minute above what the baseline expects (`observed_per_min −
    /// expected_per_min`, at least 0): the number of people affected beyond the usual, which
    /// ranks the list.
    #[schema(example = 56.8)]
    pub excess_per_min: f64,
    /// `observed_per_min / expected_per_min`, the expectation taken as at least 0.001 per
    /// minute (a service expected to be silent; `expected_per_min` shows it rounded to 0).
    #[schema(example = 14.5)]
    pub ratio: f64,
}

/// What is down right now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutagesNow {
    /// Open incidents, most severe first.
    pub outages: Vec<Outage>,
}

/// Outages now.
///
/// Every open incident, most severe first: ranked by the reports per minute above the
/// baseline, then by the ratio to it.
#[utoipa::path(
    tag = "incidents",
    responses(
        (status = 200, description = "The open incidents.", body = OutagesNow,
            links(("MostSevere" = (
                operation_id = "get_incident",
                parameters(("id" = "$response.body#/outages/0/incident/id")),
                description = "The most severe outage's incident, with its events and evidence."
            ))),
            example = json!({"outages": [{"incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "open", "scope": "regional", "regions": ["CA", "US"], "partial": true, "problems": ["login"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null, "expected_per_min": 4.2, "observed_per_min": 61.0}, "excess_per_min": 56.8, "ratio": 14.52}]})),
        StoreUnavailable,
    )
)]
#[get("/v1/outages/now")]
pub async fn outages_now(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let open = state
        .store
        .incidents(&IncidentQuery {
            active_only: true,
            limit: 10_000,
            ..IncidentQuery::default()
        })
        .await
        .map_err(|e| unavailable("outages", &e))?;
    let mut outages: Vec<Outage> = open
        .into_iter()
        .map(|incident| {
            let (expected, observed) = (incident.expected_per_min, incident.observed_per_min);
            Outage {
                excess_per_min: round2((observed - expected).max(0.0)),
                ratio: round2(observed / expected.max(1e-3)),
                incident,
            }
        })
        .collect();
    outages.sort_by(|a, b| {
        b.excess_per_min
            .total_cmp(&a.excess_per_min)
            .then(b.ratio.total_cmp(&a.ratio))
            .then_with(|| a.incident.id.cmp(&b.incident.id))
    });
    Ok(HttpResponse::Ok().json(OutagesNow { outages }))
}
