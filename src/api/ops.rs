//! Operations: liveness, readiness and Prometheus metrics.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// A health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (liveness) or `ready` (readiness).
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The store in use: `memory` or `redis`.
    #[schema(example = "redis")]
    pub store: &'static str,
}

/// Liveness.
///
/// 200 while the process serves HTTP; it does not touch the store.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The process is up.", body = Health, example = json!({"status": "ok", "store": "redis"})))
)]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        store: state.store.kind(),
    })
}

/// Readiness.
///
/// 200 when the store answers, 503 when it does not (take the replica out of rotation). On
/// Redis, also 503 until the replica has read Redis's clock once (it stamps reports on that
/// clock, as every replica does), and while Redis is older than 7.0 (the log says so).
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "The store answers.", body = Health, example = json!({"status": "ready", "store": "redis"})),
        (status = 503, description = "`unavailable`: the store does not answer (or, on Redis, its clock has not been read yet, it is older than 7.0, or the detector's leader detects on another `--bucket` than this replica's).", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
            example = json!({"code": "unavailable", "message": "the store is unavailable; retry shortly"})),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await.map_err(|e| {
        crate::ingest::store_error("ping", &e);
        ApiError::unavailable()
    })?;
    if !state.clock.settled() {
        return Err(ApiError::clock_unsettled());
    }
    Ok(HttpResponse::Ok().json(Health {
        status: "ready",
        store: state.store.kind(),
    }))
}

/// Prometheus metrics.
///
/// Requests by route, method and status; request latency; reports by outcome; ingest batch
/// sizes, queue depth and flush latency; store errors by operation; the detector: whether
/// this replica leads it, tick duration and outcome, lag behind the clock, open incidents,
/// incident events and buckets taken as missing data; event-feed subscribers; on Redis, this
/// host's clock offset from Redis's.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "Metrics in the Prometheus text format.", content_type = "text/plain; version=0.0.4",
        body = String, example = "# TYPE downradar_reports_total counter\ndownradar_reports_total{outcome=\"counted\"} 42\n"))
)]
#[get("/metrics")]
pub async fn prometheus_metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::prometheus().render())
}
