//! What the detector decided: `GET /v1/incidents`, `GET /v1/incidents/{id}` and
//! `GET /v1/services/{id}/status`.
//!
//! Everything is read from the store, so every replica answers the same whichever one runs
//! the detector.

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::catalog::ServiceId;
use crate::detector::service::ServiceState;
use crate::detector::{Incident, IncidentEvent, IncidentStatus, Level, Scope};
use crate::regions::RegionCode;
use crate::store::{Granularity, IncidentFilter, IncidentQuery};

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
    #[param(example = true)]
    pub active: Option<bool>,
    /// Only incidents of this service.
    #[param(value_type = Option<String>, example = "tiktok")]
    pub service: Option<String>,
    /// Only incidents affecting this country (ISO 3166-1 alpha-2).
    #[param(value_type = Option<String>, example = "US")]
    pub region: Option<String>,
    /// Only `global` or only `regional` incidents.
    #[param(value_type = Option<Scope>, example = "regional")]
    pub scope: Option<Scope>,
    /// `true`: only partial outages (some problems elevated); `false`: only full ones.
    #[param(example = false)]
    pub partial: Option<bool>,
    /// Only incidents that started at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime, example = "2026-11-20T00:00:00Z")]
    pub since: Option<String>,
    /// Only incidents that started before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime, example = "2026-11-22T00:00:00Z")]
    pub until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(example = 50, minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// Where the page starts: the previous page's `next_cursor` (the id of its last
    /// incident). Absent: the newest incidents.
    #[param(value_type = Option<String>, example = "tiktok-1795262460")]
    pub cursor: Option<String>,
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
            example = json!({"incidents": [{"id": "tiktok-1795262460", "service": "tiktok", "status": "open", "scope": "regional", "regions": ["CA", "US"], "partial": true, "problems": ["login"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null, "expected_per_min": 4.2, "observed_per_min": 61.0}], "next_cursor": "tiktok-1795262460"})),
        (status = 400, description = "`invalid_query`: a bad parameter, limit, time or cursor.", body = ErrorBody,
            example = json!({"code": "invalid_query", "message": "limit must be from 1 to 200"})),
        (status = 404, description = "`unknown_service`: no such service.", body = ErrorBody,
            example = json!({"code": "unknown_service", "message": "unknown service \"myspace\"; GET /v1/services lists them"})),
        (status = 503, description = "`unavailable`: the store failed or was slow.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
            example = json!({"code": "unavailable", "message": "the store is unavailable; retry shortly"})),
    )
)]
#[get("/v1/incidents")]
pub async fn list_incidents(
    state: web::Data<AppState>,
    query: web::Query<IncidentsQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_query(format!(
            "limit must be from 1 to {MAX_LIMIT}"
        )));
    }
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
    let region = query
        .region
        .as_deref()
        .map(RegionCode::parse)
        .transpose()
        .map_err(|e| ApiError::invalid_query(e.to_string()))?;
    let time = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| super::reports::parse_time(name, v))
            .transpose()
    };
    let since = time("since", &query.since)?;
    let until = time("until", &query.until)?;
    let after = query
        .cursor
        .as_deref()
        .map(|cursor| {
            crate::store::parse_incident_id(cursor)
                .map(|(_, start)| (start, cursor.to_owned()))
                .ok_or_else(|| {
                    ApiError::invalid_query(format!(
                        "cursor {cursor:?} is not an incident id; pass a page's next_cursor"
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

/// An incident with its timeline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentDetail {
    pub incident: Incident,
    /// Every event of the incident, oldest first.
    pub events: Vec<IncidentEvent>,
}

/// Get an incident.
///
/// One incident as it stands, with every event it went through.
#[utoipa::path(
    tag = "incidents",
    params(("id" = String, Path, description = "Incident id", example = "tiktok-1795262460")),
    responses(
        (status = 200, description = "The incident and its events.", body = IncidentDetail,
            example = json!({"incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "resolved", "scope": "global", "regions": ["DE", "US"], "partial": false, "problems": ["app", "feed", "login", "server-connection", "video-upload"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": "2026-11-21T12:40:00Z", "expected_per_min": 4.2, "observed_per_min": 61.0},
                "events": [{"type": "incident.opened", "at": "2026-11-21T12:03:00Z", "incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "open", "scope": "global", "regions": ["DE", "US"], "partial": false, "problems": ["app", "feed", "login", "server-connection", "video-upload"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null, "expected_per_min": 4.2, "observed_per_min": 55.0}},
                           {"type": "incident.resolved", "at": "2026-11-21T12:56:00Z", "incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "resolved", "scope": "global", "regions": ["DE", "US"], "partial": false, "problems": ["app", "feed", "login", "server-connection", "video-upload"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": "2026-11-21T12:40:00Z", "expected_per_min": 4.2, "observed_per_min": 61.0}}]})),
        (status = 404, description = "`unknown_incident`: no such incident (or it has expired).", body = ErrorBody,
            example = json!({"code": "unknown_incident", "message": "unknown incident \"tiktok-1\""})),
        (status = 503, description = "`unavailable`: the store failed or was slow.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
            example = json!({"code": "unavailable", "message": "the store is unavailable; retry shortly"})),
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
    Ok(HttpResponse::Ok().json(IncidentDetail {
        incident: record.incident,
        events: record.events,
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
    /// The open incident, if any.
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
        (status = 404, description = "`unknown_service`: no such service.", body = ErrorBody,
            example = json!({"code": "unknown_service", "message": "unknown service \"myspace\"; GET /v1/services lists them"})),
        (status = 503, description = "`unavailable`: the store failed or was slow.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
            example = json!({"code": "unavailable", "message": "the store is unavailable; retry shortly"})),
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
    let saved = state
        .store
        .detector_state(&service)
        .await
        .map_err(|e| unavailable("status", &e))?
        .and_then(|bytes| postcard::from_bytes::<ServiceState>(&bytes).ok());
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
    let reports_24h = reports_in_last_day(state, &service).await?;
    Ok(ServiceStatus {
        service,
        level,
        active_incident: active,
        regions,
        reports_24h,
    })
}

/// Distinct reporters counted for `service` in the 24 hours up to now: whole hours from the
/// hourly roll-up and the hour fractions at either end from the fine buckets (so at most
/// about 25 + 2 × 60 reads with one-minute buckets). When the fine buckets are not kept a day,
/// it is the last 24 whole hours of the roll-up, the current one included.
async fn reports_in_last_day(state: &AppState, service: &ServiceId) -> Result<u64, ApiError> {
    use crate::buckets::{ROLLUP_SECS, align};
    const DAY: i64 = 86_400;
    let fine = state.settings.width(Granularity::Fine);
    let now = state.clock.now().unix_timestamp();
    let until = align(now, fine) + fine;
    let since = until - DAY;
    let mut ranges = Vec::with_capacity(3);
    if crate::store::whole_secs(state.settings.retention) >= DAY && fine < ROLLUP_SECS {
        let first_hour = align(since + ROLLUP_SECS - 1, ROLLUP_SECS);
        let last_hour = align(until, ROLLUP_SECS);
        ranges.push((Granularity::Fine, since, first_hour));
        ranges.push((Granularity::Hourly, first_hour, last_hour));
        ranges.push((Granularity::Fine, last_hour, until));
    } else {
        let until = align(now, ROLLUP_SECS) + ROLLUP_SECS;
        ranges.push((Granularity::Hourly, until - DAY, until));
    }
    let mut total = 0;
    for (granularity, from, to) in ranges {
        if from >= to {
            continue;
        }
        let buckets = state
            .store
            .counts(service, granularity, from, to)
            .await
            .map_err(|e| unavailable("status", &e))?;
        total += buckets
            .iter()
            .flat_map(|b| b.cells.iter().map(|(_, n)| n))
            .sum::<u64>();
    }
    Ok(total)
}
