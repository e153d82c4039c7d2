//! What the detector decided: `GET /v1/incidents`, `GET /v1/incidents/{id}` and
//! `GET /v1/services/{id}/status`.
//!
//! Everything is read from the store, so every replica answers the same whichever one runs
//! the detector.

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::AppState;
use super::error::{ApiError, ErrorBody, ReadsUnavailable, StoreUnavailable, UnknownService};
use crate::catalog::ServiceId;
use crate::detector::{Incident, IncidentEvent, IncidentStatus, Level, Scope};
use crate::regions::RegionCode;
use crate::store::{IncidentFilter, IncidentQuery};

/// Most incidents in one page.
pub(crate) const MAX_LIMIT: usize = 200;
pub(crate) const DEFAULT_LIMIT: usize = 50;

pub(crate) fn unavailable(what: &'static str, e: &crate::store::StoreError) -> ApiError {
    crate::ingest::store_error(what, e);
    ApiError::unavailable()
}

/// Filters of an incident list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentsQuery {
    /// `true`: only open incidents; `false`: only resolved ones. Default: both.
    #[serde(default, deserialize_with = "active")]
    pub active: Option<bool>,
    /// Only incidents of this service, e.g. `tiktok`.
    #[param(value_type = Option<String>)]
    pub service: Option<String>,
    /// Only incidents affecting this country (ISO 3166-1 alpha-2), e.g. `US`.
    #[param(value_type = Option<String>)]
    pub region: Option<String>,
    /// Only `global` or only `regional` incidents.
    #[param(value_type = Option<Scope>)]
    #[serde(default, deserialize_with = "scope")]
    pub scope: Option<Scope>,
    /// `true`: only partial outages (some problems elevated); `false`: only full ones.
    #[serde(default, deserialize_with = "partial")]
    pub partial: Option<bool>,
    /// Only incidents that started at or after this time (RFC 3339), e.g.
    /// `2026-11-20T00:00:00Z`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only incidents that started before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    #[serde(default, deserialize_with = "limit")]
    pub limit: Option<usize>,
    /// Where the page starts: the previous page's `next_cursor` (the id of its last
    /// incident), e.g. `tiktok-1795262460`. Absent: the newest incidents.
    #[param(value_type = Option<String>,
        pattern = "^[a-z0-9-]{1,64}-(0|[1-9][0-9]{0,17})$")]
    pub cursor: Option<String>,
}

fn boolean(text: &str) -> Option<bool> {
    text.parse().ok()
}

fn active<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    super::query_param(d, "active", "true or false", boolean)
}

fn partial<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    super::query_param(d, "partial", "true or false", boolean)
}

fn scope<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Scope>, D::Error> {
    super::query_param(d, "scope", "global or regional", |text| match text {
        "global" => Some(Scope::Global),
        "regional" => Some(Scope::Regional),
        _ => None,
    })
}

fn limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    super::query_param(
        d,
        "limit",
        &format!("a whole number from 1 to {MAX_LIMIT}"),
        |text| {
            text.parse()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
        },
    )
}

/// A page of incidents, newest first (by start; by id among incidents that started in the
/// same second).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
    /// The `cursor` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "tiktok-1795262460")]
    pub next_cursor: Option<String>,
}

/// List incidents.
///
/// Incidents the detector declared, newest first, filtered by service, country, scope,
/// partiality, state and start time. Paginate by passing `next_cursor` back as `cursor`: pages
/// neither repeat nor skip incidents, however many start in the same second.
#[utoipa::path(
    tag = "incidents",
    params(IncidentsQuery),
    responses(
        (status = 200, description = "A page of incidents.", body = IncidentList,
            links(("FirstIncident" = (
                operation_id = "get_incident",
                parameters(("id" = "$response.body#/incidents/0/id")),
                description = "The first incident of the page, with its events and evidence."
            ))),
            example = json!({"incidents": [{"id": "tiktok-1795262460", "service": "tiktok", "status": "open", "scope": "regional", "regions": ["CA", "US"], "partial": true, "problems": ["login"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null, "expected_per_min": 4.2, "observed_per_min": 61.0}], "next_cursor": "tiktok-1795262460"})),
        (status = 400, description = "`invalid_query`: a bad parameter, limit, time or cursor.", body = ErrorBody,
            example = json!({"code": "invalid_query", "message": "limit must be a whole number from 1 to 200, not \"500\""})),
        UnknownService,
        StoreUnavailable,
    )
)]
#[get("/v1/incidents")]
pub async fn list_incidents(
    state: web::Data<AppState>,
    query: web::Query<IncidentsQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let mut store_query = incident_query(&state, &query)?;
    store_query.limit = limit + 1;
    let mut incidents = state
        .store
        .incidents(&store_query)
        .await
        .map_err(|e| unavailable("incidents", &e))?;
    let next_cursor = (incidents.len() > limit).then(|| {
        incidents.truncate(limit);
        incidents[limit - 1].id.clone()
    });
    Ok(HttpResponse::Ok().json(IncidentList {
        incidents,
        next_cursor,
    }))
}

/// The store query of an incident list's filters (without its limit).
pub(crate) fn incident_query(
    state: &AppState,
    query: &IncidentsQuery,
) -> Result<IncidentQuery, ApiError> {
    let service = match &query.service {
        Some(id) => Some(state.service(id)?.id.clone()),
        None => None,
    };
    let region = super::region_filter(query.region.as_deref())?;
    // Starts are whole seconds: a fraction of a second in `since` (inclusive) leaves out the
    // second it falls in, and in `until` (exclusive) takes it in.
    let since = query
        .since
        .as_deref()
        .map(|v| super::reports::parse_time_up("since", v))
        .transpose()?;
    let until = query
        .until
        .as_deref()
        .map(|v| super::reports::parse_time_up("until", v))
        .transpose()?;
    let after = query
        .cursor
        .as_deref()
        .map(|cursor| {
            crate::store::parse_incident_id(cursor)
                .map(|(_, start)| (start, cursor.to_owned()))
                .ok_or_else(|| {
                    ApiError::invalid_query(format!(
                        "cursor {} is not an incident id; pass a page's next_cursor",
                        super::error::quoted(cursor)
                    ))
                })
        })
        .transpose()?;
    Ok(IncidentQuery {
        active_only: query.active == Some(true),
        service,
        since,
        until,
        after,
        filter: IncidentFilter {
            region,
            scope: query.scope,
            partial: query.partial,
            status: (query.active == Some(false)).then_some(IncidentStatus::Resolved),
        },
        limit: 0,
    })
}

/// An incident with its timeline and evidence.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentDetail {
    pub incident: Incident,
    /// Every event of the incident, oldest first.
    pub events: Vec<IncidentEvent>,
    pub evidence: Evidence,
}

/// What the incident rests on: reports against the baseline, over time and per affected
/// region and problem. Expectations are null while the detector has no model of the service.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Evidence {
    /// Width of each point of `series`: `1m`, `5m`, `15m` or `1h` (the finest that keeps the
    /// series within 2,000 points and the stored buckets).
    #[schema(example = "1m")]
    pub resolution: String,
    /// Reports per minute from 30 minutes before the start to the resolution (or the bucket
    /// in progress, which is left out; the last point's rate is over the part of it that has
    /// passed).
    pub series: Vec<EvidencePoint>,
    /// The incident's regions over its course, most reports first.
    pub regions: Vec<RegionEvidence>,
    /// The incident's problems over its course, most reports first.
    pub problems: Vec<ProblemEvidence>,
}

/// Reports per minute in one point of the evidence series.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EvidencePoint {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-21T12:01:00Z")]
    pub at: OffsetDateTime,
    #[schema(example = 58.0)]
    pub observed_per_min: f64,
    /// Reports per minute the baseline expected; null while the detector has no model of
    /// the service.
    #[schema(required = true, example = 4.1)]
    pub expected_per_min: Option<f64>,
}

/// Reports per minute of one region over the incident.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegionEvidence {
    pub region: RegionCode,
    #[schema(example = 41.5)]
    pub observed_per_min: f64,
    /// Reports per minute the baseline expected; null while the detector has no model of
    /// the service.
    #[schema(required = true, example = 2.2)]
    pub expected_per_min: Option<f64>,
}

/// Reports per minute of one problem over the incident.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemEvidence {
    #[schema(value_type = String, example = "login")]
    pub problem: crate::catalog::Problem,
    #[schema(example = 39.0)]
    pub observed_per_min: f64,
    /// Reports per minute the baseline expected; null while the detector has no model of
    /// the service.
    #[schema(required = true, example = 1.3)]
    pub expected_per_min: Option<f64>,
}

/// Most points of an evidence series.
const MAX_EVIDENCE_POINTS: i64 = 2000;
/// How far before its start an incident's evidence series begins.
const EVIDENCE_LEAD: i64 = 1800;

/// The evidence of `incident`, from the stored counts and the detector's model.
async fn evidence(state: &AppState, incident: &Incident) -> Result<Evidence, ApiError> {
    use crate::buckets::{ROLLUP_SECS, Resolution, align};
    use crate::detector::service::SeriesFilter;
    use crate::store::Granularity;
    use std::collections::BTreeMap;

    let fine = state.settings.bucket.secs();
    let now = state.clock.now().unix_timestamp();
    let start = incident.started_at.unix_timestamp();
    // Counts are whole up to the bucket in progress: an open incident's evidence ends there,
    // as its own figures do (up to the detector's last bucket), and the last point of the
    // series is a rate over the part of it that has passed. (Its reports divided by the whole
    // point, a minute's last point dipped to half what it became, and the regions' and
    // problems' rates fell short of the incident's.)
    let whole = align(now, fine).max(start + fine);
    let end = incident
        .resolved_at
        .map_or(whole, |t| t.unix_timestamp())
        .max(start + fine);
    // The finest resolution that is whole buckets, keeps within the points allowed, and whose
    // buckets are still stored (fine ones expire long before the roll-up).
    let fine_kept =
        now - crate::store::whole_secs(state.settings.retention) <= start - EVIDENCE_LEAD;
    let resolution = Resolution::ALL
        .into_iter()
        .find(|r| {
            let step = r.secs();
            let readable = step == ROLLUP_SECS || (fine_kept && step % fine == 0);
            readable && (end - start + EVIDENCE_LEAD) / step < MAX_EVIDENCE_POINTS
        })
        .unwrap_or(Resolution::OneHour);
    let step = resolution.secs();
    let granularity = if step == ROLLUP_SECS && !(fine_kept && fine == ROLLUP_SECS) {
        Granularity::Hourly
    } else {
        Granularity::Fine
    };
    let since = align(start - EVIDENCE_LEAD, step);
    let until = align(end + step - 1, step);
    let reading = state
        .reads
        .take((until - since) / state.settings.width(granularity))
        .await?;
    let buckets = state
        .store
        .counts(&incident.service, granularity, since, until)
        .await
        .map_err(|e| unavailable("incident evidence", &e))?;
    drop(reading);
    let model = super::overview::service_state(state, &incident.service).await?;
    let points = ((until - since) / step) as usize;
    let mut observed = vec![0u64; points];
    let mut regions: BTreeMap<RegionCode, u64> = incident.regions.iter().map(|&r| (r, 0)).collect();
    let mut problems: BTreeMap<&str, u64> =
        incident.problems.iter().map(|p| (p.as_str(), 0)).collect();
    for bucket in buckets.iter().filter(|b| b.start < whole) {
        let slot = ((bucket.start - since) / step) as usize;
        let during =
            bucket.start >= align(start, state.settings.width(granularity)) && bucket.start < end;
        for (cell, n) in &bucket.cells {
            if let Some(total) = observed.get_mut(slot) {
                *total += n;
            }
            if during {
                if let Some(r) = regions.get_mut(&cell.region) {
                    *r += n;
                }
                if let Some(p) = problems.get_mut(cell.problem.as_str()) {
                    *p += n;
                }
            }
        }
    }
    let per_min = |count: f64, secs: i64| super::overview::round2(count * 60.0 / secs as f64);
    let expected = |of: SeriesFilter<'_>, from: i64, to: i64| {
        model.as_ref().map(|m| {
            per_min(
                super::overview::expected_between(m, of, from, to),
                to - from,
            )
        })
    };
    let series = observed
        .iter()
        .enumerate()
        .map(|(i, &count)| {
            let at = since + i as i64 * step;
            let to = (at + step).min(whole.max(at + fine));
            Ok(EvidencePoint {
                at: super::reports::datetime(at)?,
                observed_per_min: per_min(count as f64, to - at),
                expected_per_min: expected(SeriesFilter::default(), at, to),
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let span = (end - start).max(1);
    let mut regions: Vec<RegionEvidence> = regions
        .into_iter()
        .map(|(region, n)| RegionEvidence {
            region,
            observed_per_min: per_min(n as f64, span),
            expected_per_min: expected(
                SeriesFilter {
                    region: Some(region),
                    problem: None,
                },
                start,
                end,
            ),
        })
        .collect();
    regions.sort_by(|a, b| b.observed_per_min.total_cmp(&a.observed_per_min));
    let mut problems: Vec<ProblemEvidence> = incident
        .problems
        .iter()
        .map(|problem| ProblemEvidence {
            problem: problem.clone(),
            observed_per_min: per_min(problems[problem.as_str()] as f64, span),
            expected_per_min: expected(
                SeriesFilter {
                    region: None,
                    problem: Some(problem.as_str()),
                },
                start,
                end,
            ),
        })
        .collect();
    problems.sort_by(|a, b| b.observed_per_min.total_cmp(&a.observed_per_min));
    Ok(Evidence {
        resolution: resolution.to_string(),
        series,
        regions,
        problems,
    })
}

/// Get an incident.
///
/// One incident as it stands, with every event it went through and the evidence: reports per
/// minute against the baseline from half an hour before it started, and per affected region
/// and problem.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id", example = "tiktok-1795262460")),
    responses(
        (status = 200, description = "The incident and its events.", body = IncidentDetail,
            example = json!({"incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "resolved", "scope": "global", "regions": ["DE", "US"], "partial": false, "problems": ["app", "feed", "login", "server-connection", "video-upload"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": "2026-11-21T12:40:00Z", "expected_per_min": 4.2, "observed_per_min": 61.0},
                "events": [{"type": "incident.opened", "at": "2026-11-21T12:03:00Z", "incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "open", "scope": "global", "regions": ["DE", "US"], "partial": false, "problems": ["app", "feed", "login", "server-connection", "video-upload"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null, "expected_per_min": 4.2, "observed_per_min": 55.0}},
                           {"type": "incident.resolved", "at": "2026-11-21T12:56:00Z", "incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "resolved", "scope": "global", "regions": ["DE", "US"], "partial": false, "problems": ["app", "feed", "login", "server-connection", "video-upload"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": "2026-11-21T12:40:00Z", "expected_per_min": 4.2, "observed_per_min": 61.0}}],
                "evidence": {"resolution": "1m", "series": [{"at": "2026-11-21T11:31:00Z", "observed_per_min": 4.0, "expected_per_min": 4.2}, {"at": "2026-11-21T12:01:00Z", "observed_per_min": 58.0, "expected_per_min": 4.1}],
                             "regions": [{"region": "US", "observed_per_min": 41.5, "expected_per_min": 2.2}, {"region": "DE", "observed_per_min": 12.0, "expected_per_min": 1.1}],
                             "problems": [{"problem": "login", "observed_per_min": 39.0, "expected_per_min": 1.3}]}})),
        (status = 404, description = "`unknown_incident`: no such incident (or it has expired).", body = ErrorBody,
            example = json!({"code": "unknown_incident", "message": "unknown incident \"tiktok-1\""})),
        ReadsUnavailable,
    )
)]
#[get("/v1/incidents/{id}")]
pub async fn get_incident(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let record = state
        .store
        .incident(&id)
        .await
        .map_err(|e| unavailable("incident", &e))?
        .ok_or_else(|| ApiError::unknown_incident(&id))?;
    let evidence = evidence(&state, &record.incident).await?;
    Ok(HttpResponse::Ok().json(IncidentDetail {
        incident: record.incident,
        events: record.events,
        evidence,
    }))
}

/// Downdetector's three levels.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusLevel {
    /// Reports are at their usual level.
    Operational,
    /// More reports than usual: moderate evidence, not an outage (yet).
    PossibleProblems,
    /// An open incident.
    Outage,
}

impl From<Level> for StatusLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Operational => Self::Operational,
            Level::Possible => Self::PossibleProblems,
            Level::Outage => Self::Outage,
        }
    }
}

/// The level of one region.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegionStatus {
    pub region: RegionCode,
    pub level: StatusLevel,
}

/// A service's status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceStatus {
    #[schema(value_type = String, example = "tiktok")]
    pub service: ServiceId,
    pub level: StatusLevel,
    /// The open incident; null when there is none.
    #[schema(required = true)]
    pub active_incident: Option<Incident>,
    /// Per region the service has reports from, its level; sorted by region.
    pub regions: Vec<RegionStatus>,
    /// Distinct reporters counted in the last 24 hours.
    #[schema(example = 1342)]
    pub reports_24h: u64,
}

/// Get a service's status.
///
/// The service's level (operational, possible problems, outage), its open incident and the
/// level in each region it has reports from, as of the detector's last tick.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Service id", example = "tiktok")),
    responses(
        (status = 200, description = "The status.", body = ServiceStatus,
            example = json!({"service": "tiktok", "level": "outage", "active_incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "open", "scope": "regional", "regions": ["US"], "partial": false, "problems": ["app", "feed", "login", "server-connection", "video-upload"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null, "expected_per_min": 4.2, "observed_per_min": 61.0}, "regions": [{"region": "DE", "level": "operational"}, {"region": "US", "level": "outage"}], "reports_24h": 1342})),
        UnknownService,
        ReadsUnavailable,
    )
)]
#[get("/v1/services/{id}/status")]
pub async fn service_status(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let service = state.service(&id)?.id.clone();
    Ok(HttpResponse::Ok().json(status_of(&state, service).await?))
}

/// The status of `service` (a catalog id), read from the store.
pub async fn status_of(state: &AppState, service: ServiceId) -> Result<ServiceStatus, ApiError> {
    let (level, active_incident, regions) = level_of(state, &service).await?;
    // The last 24 hours, to the end of the bucket that holds the present moment.
    let width = state.settings.bucket.secs();
    let until = crate::buckets::align(state.clock.now().unix_timestamp(), width) + width;
    let reports_24h = super::overview::counts_between(state, &service, until - 86_400, until)
        .await?
        .cells
        .values()
        .sum();
    Ok(ServiceStatus {
        service,
        level,
        active_incident,
        regions,
        reports_24h,
    })
}

/// The level of `service`, its open incident and its regions' levels (sorted by region): the
/// status without the report count, for callers that need no more (the badge).
pub async fn level_of(
    state: &AppState,
    service: &ServiceId,
) -> Result<(StatusLevel, Option<Incident>, Vec<RegionStatus>), ApiError> {
    let saved = super::overview::service_state(state, service).await?;
    let active = state
        .store
        .incidents(&IncidentQuery {
            active_only: true,
            service: Some(service.clone()),
            limit: 1,
            ..IncidentQuery::default()
        })
        .await
        .map_err(|e| unavailable("status", &e))?
        .into_iter()
        .next();
    let (level, mut regions) = match saved {
        Some(s) => (
            s.level.into(),
            s.region_levels
                .iter()
                .map(|&(region, level)| RegionStatus {
                    region,
                    level: level.into(),
                })
                .collect(),
        ),
        None => (StatusLevel::Operational, Vec::new()),
    };
    let level = if active.is_some() {
        StatusLevel::Outage
    } else {
        level
    };
    regions.sort_by_key(|r: &RegionStatus| r.region);
    Ok((level, active, regions))
}
