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
use crate::detector::{Incident, IncidentEvent, Level};
use crate::regions::RegionCode;
use crate::store::IncidentQuery;

/// Most incidents in one page.
const MAX_LIMIT: usize = 200;
const DEFAULT_LIMIT: usize = 50;
/// Most incidents of one start second returned as one page.
const MAX_GROUP: usize = 10_000;

fn unavailable(what: &'static str, e: &crate::store::StoreError) -> ApiError {
    crate::ingest::store_error(what, e);
    ApiError::unavailable()
}

/// Filters of an incident list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentsQuery {
    /// `true`: only open incidents.
    #[param(example = true)]
    pub active: Option<bool>,
    /// Only incidents of this service.
    #[param(value_type = Option<String>, example = "tiktok")]
    pub service: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(example = 50, minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// Only incidents that started before this Unix second: pass the previous page's
    /// `next_before` for the next page.
    #[param(example = 1795262460)]
    pub before: Option<i64>,
}

/// A page of incidents, newest start first. A page holds at most `limit` incidents, except
/// when more than `limit` started in the same second: then the page is all of them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
    /// The `before` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// List incidents.
///
/// Incidents the detector opened, newest start first, optionally only the open ones or one
/// service's. Paginate with `before`.
#[utoipa::path(
    tag = "incidents",
    params(IncidentsQuery),
    responses(
        (status = 200, description = "A page of incidents.", body = IncidentList,
            example = json!({"incidents": [{"id": "tiktok-1795262460", "service": "tiktok", "status": "open", "scope": "regional", "regions": ["CA", "US"], "partial": true, "problems": ["login"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null, "expected_per_min": 4.2, "observed_per_min": 61.0}]})),
        (status = 400, description = "`invalid_query`: a bad parameter or limit.", body = ErrorBody,
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
    let service = match &query.service {
        Some(id) => Some(state.service(id)?.id.clone()),
        None => None,
    };
    let incidents = state
        .store
        .incidents(&IncidentQuery {
            active_only: query.active.unwrap_or(false),
            service,
            started_before: query.before,
            limit: limit + 1,
        })
        .await
        .map_err(|e| unavailable("incidents", &e))?;
    let (mut incidents, next_before) = page(incidents, limit);
    if let Some(before) = next_before
        && incidents.len() == limit
        && incidents
            .iter()
            .all(|i| i.started_at.unix_timestamp() == before)
    {
        // More than a page started in one second (a vast cascade): the page is that whole
        // second, since `before` cannot point inside it.
        incidents = state
            .store
            .incidents(&IncidentQuery {
                active_only: query.active.unwrap_or(false),
                service: query
                    .service
                    .as_deref()
                    .and_then(|s| ServiceId::parse(s).ok()),
                started_before: Some(before + 1),
                limit: MAX_GROUP,
            })
            .await
            .map_err(|e| unavailable("incidents", &e))?
            .into_iter()
            .take_while(|i| i.started_at.unix_timestamp() == before)
            .collect();
    }
    Ok(HttpResponse::Ok().json(IncidentList {
        incidents,
        next_before,
    }))
}

/// Cuts `incidents` (newest start first, up to `limit + 1` of them) to a page, and gives the
/// `before` of the next page. A page ends between two start seconds, so `before` (exclusive)
/// neither repeats nor skips an incident: incidents sharing the boundary's second all go to
/// the next page. When more than a page started in one second, the page is cut at `limit`
/// and `before` is that second (the caller then widens the page to the whole second).
fn page(mut incidents: Vec<Incident>, limit: usize) -> (Vec<Incident>, Option<i64>) {
    if incidents.len() <= limit {
        return (incidents, None);
    }
    let boundary = incidents[limit].started_at.unix_timestamp();
    let keep = incidents[..limit]
        .iter()
        .position(|i| i.started_at.unix_timestamp() == boundary)
        .unwrap_or(limit);
    if keep > 0 {
        incidents.truncate(keep);
        (incidents, Some(boundary + 1))
    } else {
        incidents.truncate(limit);
        (incidents, Some(boundary))
    }
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
            example = json!({"service": "tiktok", "level": "outage", "active_incident": {"id": "tiktok-1795262460", "service": "tiktok", "status": "open", "scope": "regional", "regions": ["US"], "partial": false, "problems": ["app", "feed", "login", "server-connection", "video-upload"], "caused_by": [], "started_at": "2026-11-21T12:01:00Z", "resolved_at": null, "expected_per_min": 4.2, "observed_per_min": 61.0}, "regions": [{"region": "DE", "level": "operational"}, {"region": "US", "level": "outage"}]})),
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
    let snapshot = state
        .store
        .load_detector()
        .await
        .map_err(|e| unavailable("status", &e))?;
    let saved = snapshot
        .and_then(|s| s.services.into_iter().find(|(id, _)| *id == service))
        .and_then(|(_, bytes)| postcard::from_bytes::<ServiceState>(&bytes).ok());
    let active = state
        .store
        .incidents(&IncidentQuery {
            active_only: true,
            service: Some(service.clone()),
            started_before: None,
            limit: 1,
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
    Ok(HttpResponse::Ok().json(ServiceStatus {
        service,
        level,
        active_incident: active,
        regions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{IncidentStatus, Scope};

    fn incident(service: &str, start: i64) -> Incident {
        Incident {
            id: format!("{service}-{start}"),
            service: ServiceId::parse(service).unwrap(),
            status: IncidentStatus::Open,
            scope: Scope::Global,
            regions: vec![],
            partial: false,
            problems: vec![],
            caused_by: vec![],
            started_at: time::OffsetDateTime::from_unix_timestamp(start).unwrap(),
            resolved_at: None,
            expected_per_min: 1.0,
            observed_per_min: 9.0,
        }
    }

    #[test]
    fn pages_end_between_start_seconds() {
        // Newest first; b, c and d started in the same second.
        let all = [
            incident("a", 500),
            incident("b", 400),
            incident("c", 400),
            incident("d", 400),
            incident("e", 300),
        ];
        let (first, next) = page(all[..3].to_vec(), 2);
        assert_eq!(
            first.iter().map(|i| i.service.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(next, Some(401));
        // The next page (started before 401) starts with the whole group.
        let rest: Vec<Incident> = all
            .iter()
            .filter(|i| i.started_at.unix_timestamp() < 401)
            .cloned()
            .collect();
        let (second, next) = page(rest[..3].to_vec(), 2);
        assert_eq!(second.len(), 2);
        assert_eq!(
            next,
            Some(400),
            "a group larger than a page is cut, and said so"
        );
        let (last, next) = page(all[4..].to_vec(), 2);
        assert_eq!((last.len(), next), (1, None));
    }
}
