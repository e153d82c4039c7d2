//! The one error shape of the API: `{"code": "...", "message": "...", "details": {...}}`.
//!
//! `code` is stable and meant for programs; `message` is for people and may change. Every 4xx
//! and 5xx the service sends, including those of the framework's extractors and unknown
//! routes, has this shape. A 503 and a 429 carry `Retry-After`. Internal causes go to the log, never
//! into a response.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Value, json};

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 1;
/// Seconds a client should wait before retrying after a 429 (a place must free first).
pub const LIMITED_RETRY_AFTER_SECS: u32 = 3;

/// How much of what a client sent an error message echoes, in characters.
pub const ECHO_CHARS: usize = 64;

/// `text` (an id, a path, a parameter) quoted for an error message, cut to its first
/// [`ECHO_CHARS`] characters (see [`crate::text::quoted`]).
pub fn quoted(text: &str) -> String {
    crate::text::quoted(text, ECHO_CHARS)
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"code": "unknown_problem", "message": "unknown problem \"wifi\" for service \"tiktok\"", "details": {"allowed": ["app", "login"]}}))]
pub struct ErrorBody {
    /// Stable, machine-readable error code (see the list in each response).
    #[schema(example = "unknown_problem")]
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structured context for some codes (e.g. the allowed problems).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// An error answer: status, stable code, message and optional details.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// The JSON body of this error.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }

    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                details: None,
            },
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.body.details = Some(details);
        self
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.body.code
    }

    /// 404 `not_found`: no such route.
    pub fn route_not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {}", quoted(path)),
        )
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not accept that method",
        )
    }

    /// 404 `unknown_service`.
    pub fn unknown_service(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_service",
            format!(
                "unknown service {}; GET /v1/services lists them",
                quoted(id)
            ),
        )
    }

    /// 422 `unknown_problem`, listing the allowed ones.
    pub fn unknown_problem(service: &crate::catalog::Service, problem: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_problem",
            format!(
                "unknown problem {} for service {:?}",
                quoted(problem),
                service.id.as_str()
            ),
        )
        .with_details(json!({ "allowed": service.problems }))
    }

    /// 422 `unknown_region`.
    pub fn unknown_region(message: String) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_region", message)
    }

    /// 422 `invalid_coordinates`.
    pub fn invalid_coordinates(message: String) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_coordinates",
            message,
        )
    }

    /// 422 `location_outside_regions`: valid coordinates in no country (e.g. the ocean).
    pub fn location_outside_regions(lat: f64, lon: f64) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "location_outside_regions",
            format!(
                "the location ({}, {}) is in no known country; send \"region\" instead",
                crate::regions::degrees(lat),
                crate::regions::degrees(lon)
            ),
        )
    }

    /// 422 `invalid_report`: well-formed JSON of the wrong shape.
    pub fn invalid_report(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_report", message)
    }

    /// 400 `malformed_json`.
    pub fn malformed_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    /// 400 `invalid_query`.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// 408 `request_timeout`: the body did not arrive in time.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {limit:?}"),
        )
    }

    /// 415 `unsupported_media_type`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with Content-Type: application/json",
        )
    }

    /// 415 `unsupported_media_type`, for a body sent with a content coding (RFC 9110
    /// §15.5.16): reports are a few dozen bytes and are read as they come.
    pub fn unsupported_content_encoding(encoding: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "the body must not be encoded (Content-Encoding: {}); send plain JSON",
                quoted(encoding)
            ),
        )
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    }

    /// 404 `unknown_incident`: no incident with that id (or it has expired).
    pub fn unknown_incident(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_incident",
            format!("unknown incident {}", quoted(id)),
        )
    }

    /// 400 `invalid_last_event_id`: a `Last-Event-ID` that is not a stream id.
    pub fn invalid_last_event_id(value: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_last_event_id",
            format!(
                "Last-Event-ID {} is not an event id (<milliseconds>-<sequence>, as sent \
                 in each event's id: field, or 0 for every retained event)",
                quoted(value)
            ),
        )
    }

    /// 503 `too_many_subscribers`: the process serves as many event streams as it allows.
    pub fn too_many_subscribers(max: usize) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!("this server already streams events to {max} subscribers; retry shortly"),
        )
    }

    /// 429 `too_many_streams`: the client's address already follows the event feed on as
    /// many connections as one address may.
    pub fn too_many_streams(per_address: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "this address already follows the event feed on {per_address} connections, the \
                 most one address may; close one, or retry later"
            ),
        )
    }

    /// 503 `unavailable`: the store failed or was too slow.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store is unavailable; retry shortly",
        )
    }

    /// 503 `unavailable`: the replica has not read the store's clock yet.
    pub fn clock_unsettled() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this replica has not read the store's clock yet; retry shortly",
        )
    }

    /// 503 `overloaded`: the ingest queue is full.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many reports are waiting to be written; retry shortly",
        )
    }

    /// 503 `overloaded`: this process reads as many stored buckets as it allows at once
    /// (see [`super::budget`]).
    pub fn reads_overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "this server is busy with other large reads of stored counts; retry shortly, or \
             ask for a shorter range or a coarser resolution",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status, self.body.code, self.body.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        let retry_after = match self.status {
            StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
            StatusCode::TOO_MANY_REQUESTS => Some(LIMITED_RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        response.json(&self.body)
    }
}

/// An example error body for the OpenAPI spec.
pub fn example(code: &str, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

/// The `404 unknown_service` answer of the endpoints that take a service id, for their
/// `responses(...)` in the spec.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 404,
    description = "`unknown_service`: no such service.",
    example = json!({"code": "unknown_service", "message": "unknown service \"myspace\"; GET /v1/services lists them"})
)]
pub struct UnknownService(
    #[expect(
        dead_code,
        reason = "names the body's schema for the spec; never built"
    )]
    ErrorBody,
);

/// The 503 answers of the endpoints that read stored counts (see [`super::budget`]), for
/// their `responses(...)` in the spec.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "`unavailable`: the store failed or was slow; or `overloaded`: this replica is already reading as many stored buckets as it allows at once (for reads of over 2,000 buckets, two of the largest series; for smaller ones, 30,000 buckets in all) and this request waited a second for its turn, without reading any counts. Retry after `Retry-After` seconds.",
    headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
    examples(
        ("unavailable" = (value = json!({"code": "unavailable", "message": "the store is unavailable; retry shortly"}))),
        ("overloaded" = (value = json!({"code": "overloaded", "message": "this server is busy with other large reads of stored counts; retry shortly, or ask for a shorter range or a coarser resolution"}))),
    )
)]
pub struct ReadsUnavailable(
    #[expect(
        dead_code,
        reason = "names the body's schema for the spec; never built"
    )]
    ErrorBody,
);

/// The `503 unavailable` answer of every endpoint that reads the store, for their
/// `responses(...)` in the spec.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "`unavailable`: the store failed or was slow.",
    headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
    example = json!({"code": "unavailable", "message": "the store is unavailable; retry shortly"})
)]
pub struct StoreUnavailable(
    #[expect(
        dead_code,
        reason = "names the body's schema for the spec; never built"
    )]
    ErrorBody,
);
