//! `GET /v1/regions`: the built-in countries.

use actix_web::{HttpResponse, get};
use serde::Serialize;

use crate::regions::{Continent, Coordinates, RegionCode, Regions};

/// Every region reports can be counted in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegionList {
    /// Sorted by code.
    pub regions: Vec<RegionInfo>,
}

/// One country.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegionInfo {
    pub code: RegionCode,
    /// English short name.
    #[schema(example = "Germany")]
    pub name: &'static str,
    /// Continent code: AF, AN, AS, EU, NA, OC or SA.
    pub continent: Continent,
    /// A representative point inside the country (for maps).
    #[schema(value_type = Object, example = json!({"lat": 51.63561, "lon": 9.89737}))]
    pub centroid: Coordinates,
}

/// List regions.
///
/// Every ISO 3166-1 alpha-2 country (plus Kosovo as `XK`) with its name, continent and a
/// representative point. Reports name one of these codes, or give coordinates that are
/// resolved to one.
#[utoipa::path(
    tag = "regions",
    responses((status = 200, description = "The regions.", body = RegionList,
        example = json!({"regions": [{"code": "DE", "name": "Germany", "continent": "EU", "centroid": {"lat": 51.63561, "lon": 9.89737}}]})))
)]
#[get("/v1/regions")]
pub async fn list_regions() -> HttpResponse {
    let regions = Regions::builtin()
        .countries()
        .iter()
        .map(|c| RegionInfo {
            code: c.code,
            name: c.name,
            continent: c.continent,
            centroid: c.centroid,
        })
        .collect();
    HttpResponse::Ok().json(RegionList { regions })
}
