//! `GET /v1/services` and `GET /v1/services/{id}`: the catalog.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, UnknownService};
use crate::catalog::{Service, ServiceId};

/// Every watched service.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceList {
    /// In catalog order.
    pub services: Vec<Service>,
}

/// One service, with the services that depend on it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "aws", "name": "Amazon Web Services",
    "problems": ["console", "api", "compute", "storage", "networking", "login"],
    "depends_on": [], "dependents": ["reddit", "slack", "zoom"]
}))]
pub struct ServiceDetail {
    pub id: ServiceId,
    #[schema(example = "TikTok")]
    pub name: String,
    /// Problem categories people can report.
    pub problems: Vec<crate::catalog::Problem>,
    /// Upstream services this one depends on.
    pub depends_on: Vec<ServiceId>,
    /// Services that depend on this one.
    pub dependents: Vec<ServiceId>,
}

/// List services.
///
/// Every service in the catalog, with its problem categories and upstream dependencies.
#[utoipa::path(
    tag = "services",
    responses((status = 200, description = "The catalog.", body = ServiceList,
        example = json!({"services": [{"id": "tiktok", "name": "TikTok", "problems": ["app", "login", "video-upload", "feed", "server-connection"], "depends_on": ["oracle-cloud"]}]})))
)]
#[get("/v1/services")]
pub async fn list_services(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(ServiceList {
        services: state.catalog.services().to_vec(),
    })
}

/// Get a service.
///
/// One service: its problem categories, its upstream dependencies and the services that
/// depend on it.
#[utoipa::path(
    tag = "services",
    params(("id" = String, Path, description = "Service id", example = "aws")),
    responses(
        (status = 200, description = "The service.", body = ServiceDetail,
            example = json!({"id": "aws", "name": "Amazon Web Services", "problems": ["console", "api", "compute", "storage", "networking", "login"], "depends_on": [], "dependents": ["reddit", "slack", "zoom"]})),
        UnknownService,
    )
)]
#[get("/v1/services/{id}")]
pub async fn get_service(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let service = state.service(&id)?;
    let dependents = state
        .catalog
        .services()
        .iter()
        .filter(|s| s.depends_on.contains(&service.id))
        .map(|s| s.id.clone())
        .collect();
    Ok(HttpResponse::Ok().json(ServiceDetail {
        id: service.id.clone(),
        name: service.name.clone(),
        problems: service.problems.clone(),
        depends_on: service.depends_on.clone(),
        dependents,
    }))
}
