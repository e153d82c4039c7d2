//! `POST /v1/services/{id}/reports` (ingest) and `GET /v1/services/{id}/reports` (series).

use std::time::Instant;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use time::format_description::FormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use super::AppState;
use super::error::{ApiError, ErrorBody, ReadsUnavailable, UnknownService};
use crate::buckets::{ROLLUP_SECS, Resolution, align};
use crate::catalog::Service;
use crate::ingest::{IngestError, Ingestor};
use crate::regions::{Coordinates, RegionCode, Regions};
use crate::reporter::ClientId;
use crate::store::{Cell, CellFilter, Granularity, Recorded, Report, ReportToken};

/// Largest accepted report body, in bytes.
pub const MAX_BODY_BYTES: usize = 4096;

/// Longest a client may take to send a report's body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Most points one series read may return.
pub const MAX_POINTS: i64 = 2000;

/// Most store buckets one series read may touch: 2,000 points of 15 minutes over one-minute
/// buckets. It bounds what one request can make the store do, whatever `--bucket` is.
pub const MAX_BUCKETS_READ: i64 = 30_000;

/// The last second a series may reach: 9999-12-31T23:59:59Z, the end of RFC 3339.
const LATEST: i64 = 253_402_300_799;

/// A report: "this service isn't working for me".
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"problem": "login", "region": "DE"}))]
pub struct NewReport {
    /// One of the service's problem categories (see `GET /v1/services/{id}`).
    #[schema(example = "login")]
    pub problem: String,
    /// ISO 3166-1 alpha-2 country code. Give exactly one of `region` and `location`.
    #[schema(example = "DE")]
    pub region: Option<String>,
    /// Where the reporter is; resolved to a country. Give exactly one of `region` and
    /// `location`.
    #[serde(default, deserialize_with = "object")]
    pub location: Option<Location>,
    /// Opaque id of the reporting app install (1 to 64 characters). Reporters behind one
    /// address are told apart by it; nothing else is derived from it.
    #[schema(
        example = "7f9c2ba4-e88f-11ee-8c90-0242ac120002",
        min_length = 1,
        max_length = 64
    )]
    pub client_id: Option<String>,
}

/// A field that must be a JSON object (or null): serde would also take a struct from an
/// array of its fields in order, and `[13.4, 52.5]` (GeoJSON's order) would be read as a
/// latitude of 13.4. The object's fields go straight to `T`'s own deserializer, which refuses
/// a key given twice as at the top level (read into a map first, the last one was kept:
/// `{"lat": 52.5, "lon": 13.4, "lat": 0}` was counted in Gabon).
fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    use serde::de::value::MapAccessDeserializer;
    use serde::de::{MapAccess, Visitor};

    struct Object<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }
    }
    deserializer.deserialize_option(Object(std::marker::PhantomData))
}

/// A WGS84 position.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude in degrees, -90 to 90.
    #[schema(example = 52.52, minimum = -90, maximum = 90)]
    pub lat: f64,
    /// Longitude in degrees, -180 to 180.
    #[schema(example = 13.40, minimum = -180, maximum = 180)]
    pub lon: f64,
}

/// What happened to an accepted report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportAccepted {
    /// False when this reporter was already counted for this service within the dedup window
    /// (or, when the server limits reporters per address, when its address has reached the
    /// limit).
    pub counted: bool,
    /// The country the report was counted in.
    #[schema(value_type = String, example = "DE")]
    pub region: RegionCode,
    /// Start of the time bucket the report was counted in (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime, example = "2026-11-21T12:03:00Z")]
    #[serde(with = "time::serde::rfc3339")]
    pub bucket: OffsetDateTime,
}

/// Submit a report.
///
/// Reports that `service` is not working for the caller, with a problem category and a
/// country (given directly, or as coordinates resolved to a country). A reporter (the client
/// address, plus `client_id` when given) is counted once per service within the dedup window;
/// later reports in the window are accepted with `counted: false`, as are reports beyond the
/// server's limit of reporters per address, if it sets one. The answer comes only after
/// the report is durably written; if the store is down, the answer is 503 within two seconds.
#[utoipa::path(
    tag = "reports",
    params(("id" = String, Path, description = "Service id", example = "tiktok")),
    request_body(content = NewReport, content_type = "application/json", examples(
        ("country" = (summary = "By country code", value = json!({"problem": "login", "region": "DE"}))),
        ("location" = (summary = "By coordinates", value = json!({"problem": "login", "location": {"lat": 52.52, "lon": 13.40}, "client_id": "app-install-42"})))
    )),
    responses(
        (status = 202, description = "Accepted; `counted` says whether it added to the counts.", body = ReportAccepted,
            example = json!({"counted": true, "region": "DE", "bucket": "2026-11-21T12:03:00Z"})),
        (status = 400, description = "`malformed_json`: the body is not valid JSON.", body = ErrorBody,
            example = json!({"code": "malformed_json", "message": "the body is not valid JSON: EOF while parsing an object at line 1 column 18"})),
        UnknownService,
        (status = 408, description = "`request_timeout`: the body did not arrive within 10 seconds.", body = ErrorBody,
            example = json!({"code": "request_timeout", "message": "the body did not arrive within 10s"})),
        (status = 413, description = "`payload_too_large`: the body is over 4 KiB.", body = ErrorBody,
            example = json!({"code": "payload_too_large", "message": "the body is larger than 4096 bytes"})),
        (status = 415, description = "`unsupported_media_type`: the body is not sent as application/json, or is sent compressed (`Content-Encoding`).", body = ErrorBody,
            example = json!({"code": "unsupported_media_type", "message": "the body must be JSON, sent with Content-Type: application/json"})),
        (status = 422, description = "The report is well-formed JSON but invalid: `unknown_problem` (details list the allowed ones), `unknown_region`, `invalid_coordinates`, `location_outside_regions` (coordinates in no country) or `invalid_report` (not a JSON object, missing or unknown fields, both or neither of region and location, bad client_id, a number too large for any coordinate).", body = ErrorBody,
            examples(
                ("unknown_problem" = (value = json!({"code": "unknown_problem", "message": "unknown problem \"wifi\" for service \"tiktok\"", "details": {"allowed": ["app", "login", "video-upload", "feed", "server-connection"]}}))),
                ("unknown_region" = (value = json!({"code": "unknown_region", "message": "unknown region \"XX\": expected an ISO 3166-1 alpha-2 country code such as \"DE\""}))),
                ("location_outside_regions" = (value = json!({"code": "location_outside_regions", "message": "the location (30, -40) is in no known country; send \"region\" instead"}))),
                ("invalid_report" = (value = json!({"code": "invalid_report", "message": "give exactly one of \"region\" and \"location\""})))
            )),
        (status = 503, description = "`unavailable` (the store failed or was slow, or this replica has not yet read Redis's clock since it started) or `overloaded` (the ingest queue is full, or too many revocations wait for the store). Nothing was counted; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
            example = json!({"code": "unavailable", "message": "the store is unavailable; retry shortly"})),
    )
)]
#[post("/v1/services/{id}/reports")]
pub async fn create_report(
    state: web::Data<AppState>,
    ingestor: web::Data<Ingestor>,
    outcomes: web::Data<ReportOutcomes>,
    req: HttpRequest,
    id: web::Path<String>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let service = state.service(&id)?;
    let body = read_json_body(&req, &mut payload).await?;
    let malformed = |e: serde_json::Error| match e.classify() {
        serde_json::error::Category::Data => {
            // serde quotes what it rejects (a field name, a value) in full: cut it.
            ApiError::invalid_report(crate::text::tamed(&e.to_string(), super::error::ECHO_CHARS))
        }
        // Valid JSON (RFC 8259 sets no limit on numbers) that no coordinate can hold, such
        // as `1e400`: serde files it with the syntax errors.
        _ if e.to_string().starts_with("number out of range") => {
            ApiError::invalid_report(format!("a number in the body is out of range: {e}"))
        }
        _ => ApiError::malformed_json(format!("the body is not valid JSON: {e}")),
    };
    // A body refused as a report is first checked to be JSON at all: one that is not is
    // malformed, whatever else is wrong with it.
    let well_formed = || {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map(drop)
            .map_err(malformed)
    };
    // serde would also take a struct from an array of its fields in order; a report is an
    // object. (Checked by the first byte, so a valid report is parsed once.)
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        well_formed()?;
        return Err(ApiError::invalid_report(
            "a report is a JSON object, such as {\"problem\":\"login\",\"region\":\"DE\"}",
        ));
    }
    let new: NewReport = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(e) => {
            // serde stops at the first thing a report cannot hold (an unknown field in
            // `{"a":`, say), which may come before a body that is not JSON at all breaks
            // off.
            if e.classify() == serde_json::error::Category::Data {
                well_formed()?;
            }
            return Err(malformed(e));
        }
    };

    let (cell, client_id) = validate(service, new)?;
    let addr = state.client_addr(&req);
    // A replica that has not read Redis's clock yet would stamp the report by its own.
    if !state.clock.settled() {
        return Err(ApiError::clock_unsettled());
    }
    let now = state.clock.now();
    let bucket = state.settings.bucket.start_of(now);
    let region = cell.region;
    let report = Report {
        service: service.id.clone(),
        cell,
        reporter: state.secret.fingerprint(addr, client_id.as_ref()),
        address: state
            .settings
            .max_reporters_per_address
            .map(|_| state.limited_address(addr)),
        bucket,
        token: ReportToken::next(),
    };
    let (counter, counted) = match ingestor.submit(report).await {
        Ok(Recorded::Counted) => (&outcomes.counted, Ok(true)),
        Ok(Recorded::Duplicate) => (&outcomes.duplicate, Ok(false)),
        Ok(Recorded::Capped) => (&outcomes.capped, Ok(false)),
        Ok(Recorded::Revoked) | Err(IngestError::Unavailable) => {
            (&outcomes.unavailable, Err(ApiError::unavailable()))
        }
        Err(IngestError::Overloaded) => (&outcomes.overloaded, Err(ApiError::overloaded())),
    };
    counter.increment(1);
    let counted = counted?;
    Ok(HttpResponse::Accepted().json(ReportAccepted {
        counted,
        region,
        bucket: datetime(bucket)?,
    }))
}

/// `downradar_reports_total` by outcome, looked up once per worker rather than per report.
pub struct ReportOutcomes {
    counted: metrics::Counter,
    duplicate: metrics::Counter,
    capped: metrics::Counter,
    unavailable: metrics::Counter,
    overloaded: metrics::Counter,
}

impl ReportOutcomes {
    /// The counters, from the metrics recorder installed now.
    pub fn register() -> Self {
        let counter = |outcome: &'static str| metrics::counter!("downradar_reports_total", "outcome" => outcome);
        Self {
            counted: counter("counted"),
            duplicate: counter("duplicate"),
            capped: counter("capped"),
            unavailable: counter("unavailable"),
            overloaded: counter("overloaded"),
        }
    }
}

/// Whether a `Content-Type` says JSON: `application/json` in any case, with or without
/// parameters and whitespace around them (RFC 9110 §5.6.6). Parameters are ignored: JSON is
/// UTF-8 and its media type defines none, a `charset` included (RFC 8259 §11).
fn is_json(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default();
    essence.trim().eq_ignore_ascii_case("application/json")
}

/// The body of a JSON request: `application/json`, at most [`MAX_BODY_BYTES`], arriving
/// within [`BODY_TIMEOUT`].
async fn read_json_body(
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> Result<web::BytesMut, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json);
    if !is_json {
        return Err(ApiError::unsupported_media_type());
    }
    for encoding in req.headers().get_all(header::CONTENT_ENCODING) {
        let encoding = String::from_utf8_lossy(encoding.as_bytes());
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            return Err(ApiError::unsupported_content_encoding(encoding.trim()));
        }
    }
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    let mut body = web::BytesMut::with_capacity(declared_len.unwrap_or(256));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::malformed_json(format!("could not read the body: {e}")))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::request_timeout(BODY_TIMEOUT))??;
    Ok(body)
}

/// Turns a parsed body into a counter cell, checking it against the catalog and the regions.
fn validate(service: &Service, new: NewReport) -> Result<(Cell, Option<ClientId>), ApiError> {
    let problem = service
        .problems
        .iter()
        .find(|p| p.as_str() == new.problem)
        .ok_or_else(|| ApiError::unknown_problem(service, &new.problem))?
        .clone();
    let region = match (new.region, new.location) {
        (Some(code), None) => {
            RegionCode::parse(&code).map_err(|e| ApiError::unknown_region(e.to_string()))?
        }
        (None, Some(Location { lat, lon })) => {
            let at = Coordinates::new(lat, lon)
                .map_err(|e| ApiError::invalid_coordinates(e.to_string()))?;
            Regions::builtin()
                .locate(at)
                .ok_or_else(|| ApiError::location_outside_regions(lat, lon))?
        }
        _ => {
            return Err(ApiError::invalid_report(
                "give exactly one of \"region\" and \"location\"",
            ));
        }
    };
    let client_id = new
        .client_id
        .map(|id| ClientId::parse(&id))
        .transpose()
        .map_err(ApiError::invalid_report)?;
    Ok((Cell { region, problem }, client_id))
}

/// Query of a series read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// Start of the series (RFC 3339, e.g. `2026-11-21T11:00:00Z`), rounded down to the
    /// resolution. Default: 60 points before `until`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// End of the series (RFC 3339, exclusive), rounded up to the resolution. Default: the end
    /// of the bucket that holds the present moment.
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// Width of each point: `1m`, `5m`, `15m` or `1h`; it must be a whole number of buckets
    /// (`1h` always is). Default: the finest that is (`1m` with the default bucket width).
    #[param(value_type = Option<String>, pattern = "^(1m|5m|15m|1h)$")]
    pub resolution: Option<String>,
    /// Only count reports from this country (ISO 3166-1 alpha-2), e.g. `DE`.
    #[param(value_type = Option<String>)]
    pub region: Option<String>,
    /// Only count reports of this problem category, one of the service's (see
    /// `GET /v1/services/{id}`), e.g. `login`.
    #[param(value_type = Option<String>)]
    pub problem: Option<String>,
}

/// A series of report counts.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "service": "tiktok", "resolution": "5m",
    "since": "2026-11-21T11:50:00Z", "until": "2026-11-21T12:00:00Z",
    "region": "DE", "problem": null, "total": 7,
    "points": [{"bucket": "2026-11-21T11:50:00Z", "count": 3, "expected": 2.4, "upper": 9}, {"bucket": "2026-11-21T11:55:00Z", "count": 4, "expected": 2.5, "upper": 9}]
}))]
pub struct Series {
    #[schema(value_type = String, example = "tiktok")]
    pub service: String,
    /// Width of each point.
    #[schema(value_type = String, example = "5m")]
    pub resolution: String,
    /// Start of the first point.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
    /// End of the last point (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub until: OffsetDateTime,
    /// The region filter; null without one.
    #[schema(value_type = Option<String>, required = true)]
    pub region: Option<String>,
    /// The problem filter; null without one.
    #[schema(value_type = Option<String>, required = true)]
    pub problem: Option<String>,
    /// Sum of all points.
    pub total: u64,
    /// One point per bucket, oldest first, zeros included.
    pub points: Vec<Point>,
}

/// Distinct reporters in one bucket, and what the baseline expects there.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Point {
    /// Start of the bucket.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-21T11:50:00Z")]
    pub bucket: OffsetDateTime,
    /// Distinct reporters counted in it.
    pub count: u64,
    /// Reports the baseline expects in the bucket (for the same region and problem filter):
    /// the detector's current model of the service (seasonal profile, level and shares)
    /// applied to the bucket's time. Absent while the detector has no model of the service,
    /// and for buckets before the service's history began (its first report); a bucket
    /// that holds that moment expects reports from it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 2.4)]
    pub expected: Option<f64>,
    /// Upper edge of the usual range: a count at or above it happens by chance in fewer than
    /// one bucket in 1,000 (negative-binomial tail of the baseline). Absent with `expected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 9)]
    pub upper: Option<u64>,
}

/// The chance, per point, of a count reaching the upper band by chance alone.
const BAND_P: f64 = 1e-3;

/// Expected count and upper band of the series `of` over `[from, until)`.
fn band(
    model: &crate::detector::service::ServiceState,
    of: crate::detector::service::SeriesFilter<'_>,
    from: i64,
    until: i64,
) -> (f64, u64) {
    let (mean, variance) = model.expectation_over(from, until, of);
    let extra = variance - mean;
    let k = if extra > 1e-12 {
        mean * mean / extra
    } else {
        1e9
    };
    (
        super::overview::round2(mean),
        crate::detector::stats::upper_quantile(BAND_P, mean, k),
    )
}

/// Read report counts.
///
/// Distinct reporters per bucket for one service, optionally for one country and one problem,
/// at a resolution of 1m, 5m, 15m or 1h (at most 2,000 points). Empty buckets appear as zero.
/// Once the detector has a model of the service, each point also carries the count the
/// baseline expects and the upper edge of the usual range, for the same filters (from the
/// service's first report on).
/// `1h` reads the hourly roll-up, which is kept longer than the fine buckets.
#[utoipa::path(
    tag = "reports",
    params(("id" = String, Path, description = "Service id", example = "tiktok"), SeriesQuery),
    responses(
        (status = 200, description = "The series.", body = Series,
            example = json!({"service": "tiktok", "resolution": "5m", "since": "2026-11-21T11:50:00Z", "until": "2026-11-21T12:00:00Z", "region": "DE", "problem": null, "total": 7, "points": [{"bucket": "2026-11-21T11:50:00Z", "count": 3, "expected": 2.4, "upper": 9}, {"bucket": "2026-11-21T11:55:00Z", "count": 4, "expected": 2.5, "upper": 9}]})),
        (status = 400, description = "`invalid_query`: a bad timestamp, resolution, region or problem; `since` not before `until`; a range outside 1970 to 9999; more than 2,000 points; or more than 30,000 store buckets to read.", body = ErrorBody,
            example = json!({"code": "invalid_query", "message": "the range holds 2880 points at 1m; at most 2000 are allowed"})),
        UnknownService,
        ReadsUnavailable,
    )
)]
#[get("/v1/services/{id}/reports")]
pub async fn read_reports(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<SeriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let service = state.service(&id)?;
    let query = query.into_inner();
    let fine = state.settings.bucket.secs();
    // A resolution must be a whole number of buckets (`1h` always is: it reads the roll-up).
    let readable = |r: Resolution| r.secs() == ROLLUP_SECS || r.secs() % fine == 0;
    let resolution = match query.resolution.as_deref() {
        None => Resolution::ALL
            .into_iter()
            .find(|&r| readable(r))
            .unwrap_or(Resolution::OneHour),
        Some(r) => Resolution::parse(r).ok_or_else(|| {
            ApiError::invalid_query(format!(
                "unknown resolution {}; use 1m, 5m, 15m or 1h",
                super::error::quoted(r)
            ))
        })?,
    };
    if !readable(resolution) {
        return Err(ApiError::invalid_query(format!(
            "resolution {resolution} is not a whole number of {fine}s buckets; use 1h or a \
             multiple of the bucket width"
        )));
    }
    let step = resolution.secs();
    let granularity = if step == ROLLUP_SECS {
        Granularity::Hourly
    } else {
        Granularity::Fine
    };
    // `until` is exclusive and rounded up; by default the series ends with the bucket that
    // holds the present moment.
    let until_given = query
        .until
        .as_ref()
        .map(|t| parse_time_up("until", t))
        .transpose()?;
    let since_given = query
        .since
        .as_ref()
        .map(|t| parse_time("since", t))
        .transpose()?;
    // Checked as given, before rounding: swapped ends within one point (or one second) are
    // a mistake too.
    if let (Some(since), Some(until)) = (&query.since, &query.until)
        && parse_rfc3339("since", since)? >= parse_rfc3339("until", until)?
    {
        return Err(ApiError::invalid_query("since must be before until"));
    }
    let until = match until_given {
        Some(t) => align(t + step - 1, step),
        None => align(state.clock.now().unix_timestamp(), step) + step,
    };
    let since = match since_given {
        Some(t) => align(t, step),
        None => until - 60 * step,
    };
    if until > LATEST {
        return Err(ApiError::invalid_query(format!(
            "until, rounded up to the end of its {resolution} bucket, is after \
             9999-12-31T23:59:59Z, the last time RFC 3339 can write: the series must end by then"
        )));
    }
    if since < 0 {
        let start = if query.since.is_some() {
            "since"
        } else {
            "since (by default 60 points before until)"
        };
        return Err(ApiError::invalid_query(format!(
            "{start} is before 1970-01-01T00:00:00Z: the series must start then or later"
        )));
    }
    if since >= until {
        return Err(ApiError::invalid_query("since must be before until"));
    }
    let points = (until - since) / step;
    if points > MAX_POINTS {
        return Err(ApiError::invalid_query(format!(
            "the range holds {points} points at {resolution}; at most {MAX_POINTS} are allowed"
        )));
    }
    let width = state.settings.width(granularity);
    let buckets_read = (until - since) / width;
    if buckets_read > MAX_BUCKETS_READ {
        return Err(ApiError::invalid_query(format!(
            "the range spans {buckets_read} buckets of {width}s; at most {MAX_BUCKETS_READ} are \
             read per request: use a coarser resolution or a shorter range"
        )));
    }
    let region = super::region_filter(query.region.as_deref())?;
    if let Some(p) = query.problem.as_deref().filter(|p| !service.has_problem(p)) {
        return Err(ApiError::invalid_query(format!(
            "unknown problem {} for service {:?}",
            super::error::quoted(p),
            service.id.as_str()
        )));
    }

    let of = CellFilter {
        region,
        problem: query.problem.as_deref(),
    };
    // What this process holds of the series (see `cache`), then the rest from the store.
    let unavailable = |e| super::incidents::unavailable("counts", &e);
    // Taken before anything is read: a bucket counts as settled only if it was before the
    // read began.
    let now = (state.clock.now().unix_timestamp(), Instant::now());
    let series = super::cache::SeriesRead {
        service: &service.id,
        granularity,
        filter: of,
        width,
        generation: state
            .store
            .generation(&service.id)
            .await
            .map_err(unavailable)?,
    };
    let plan = state.series_cache.plan(series, (since, until), now.1);
    let mut buckets = plan.held;
    if plan.from < until {
        let reading = state.reads.take((until - plan.from) / width).await?;
        let sums = state
            .store
            .sums(&service.id, granularity, plan.from, until, of)
            .await
            .map_err(unavailable)?;
        drop(reading);
        let mut read = vec![0u64; ((until - plan.from) / width) as usize];
        for (start, sum) in sums {
            if let Some(slot) = read.get_mut(((start - plan.from) / width) as usize) {
                *slot += sum;
            }
        }
        state
            .series_cache
            .keep(series, (since, plan.from), &read, now);
        buckets.extend(read);
    }
    let first_read = buckets
        .iter()
        .position(|&n| n > 0)
        .map(|i| since + i as i64 * width)
        .map(|t| (t, t + width));
    let mut counts = vec![0u64; points as usize];
    for (i, sum) in buckets.into_iter().enumerate() {
        if let Some(slot) = counts.get_mut(i * width as usize / step as usize) {
            *slot += sum;
        }
    }
    let model = super::overview::service_state(&state, &service.id).await?;
    let history = model
        .as_ref()
        .map(|m| (m, super::overview::history_start(m, first_read, since)));
    let of = crate::detector::service::SeriesFilter {
        region,
        problem: query.problem.as_deref(),
    };
    let series = Series {
        service: service.id.to_string(),
        resolution: resolution.to_string(),
        since: datetime(since)?,
        until: datetime(until)?,
        region: region.map(|r| r.to_string()),
        problem: query.problem.clone(),
        total: counts.iter().sum(),
        points: counts
            .into_iter()
            .enumerate()
            .map(|(i, count)| {
                let start = since + i as i64 * step;
                let band = history
                    .filter(|&(_, from)| from < start + step)
                    .map(|(m, from)| band(m, of, from.max(start), start + step));
                Ok(Point {
                    bucket: datetime(start)?,
                    count,
                    expected: band.map(|b| b.0),
                    upper: band.map(|b| b.1),
                })
            })
            .collect::<Result<_, ApiError>>()?,
    };
    Ok(HttpResponse::Ok().json(series))
}

pub(crate) fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    parse_rfc3339(name, value).map(|t| t.unix_timestamp())
}

/// Like [`parse_time`], but a fraction of a second counts as the whole next second: for an
/// exclusive end, so that `…:00.5Z` still takes the bucket that began at `…:00Z`, and for an
/// inclusive start of whole seconds, so that `…:00.5Z` leaves out what began at `…:00Z`.
pub(crate) fn parse_time_up(name: &str, value: &str) -> Result<i64, ApiError> {
    parse_rfc3339(name, value).map(|t| t.unix_timestamp() + i64::from(t.nanosecond() > 0))
}

/// `2026-11-21`: a date alone, named in the error for one.
const DATE: &[FormatItem<'_>] = format_description!("[year]-[month]-[day]");
/// `2026-11-21T12:00:00`: a date and time without an offset, named in the error for one.
const LOCAL_DATE_TIME: &[FormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

/// An RFC 3339 time that is also one in UTC (years 0000 to 9999): every time the API
/// answers with, a feed's id and links among them, is written in UTC.
fn parse_rfc3339(name: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    let t = OffsetDateTime::parse(value, &Rfc3339).map_err(|e| {
        // The likely slips, said outright: a `+` sent bare in a URL's query arrives as a
        // space, and Unix seconds, a bare date or a time without its offset are no
        // timestamps here. Each hint is given only when the value is that slip.
        let parses = |v: String| OffsetDateTime::parse(&v, &Rfc3339).is_ok();
        let hint = if value.contains(' ') && parses(value.replace(' ', "+")) {
            " (a `+` in a query means a space: send an offset's `+` as %2B)"
        } else if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            " (Unix seconds are not taken)"
        } else if Date::parse(value, DATE).is_ok() {
            " (a date needs a time and an offset as well)"
        } else if PrimitiveDateTime::parse(value, LOCAL_DATE_TIME).is_ok() {
            " (a time needs its offset: Z for UTC, or such as %2B02:00)"
        } else {
            ""
        };
        ApiError::invalid_query(format!(
            "{name}={} is not an RFC 3339 timestamp such as 2026-11-21T12:00:00Z{hint}: {e}",
            super::error::quoted(value)
        ))
    })?;
    match t.checked_to_offset(time::UtcOffset::UTC) {
        Some(utc) if utc.year() >= 0 => Ok(t),
        _ => Err(ApiError::invalid_query(format!(
            "{name}={} is outside 0000-01-01T00:00:00Z to 9999-12-31T23:59:59Z in UTC",
            super::error::quoted(value)
        ))),
    }
}

/// A Unix time as a UTC date-time. Callers pass times already checked to lie in RFC 3339's
/// range (or the clock's own), so a failure here is reported, never papered over.
pub(crate) fn datetime(t: i64) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::from_unix_timestamp(t)
        .map_err(|e| ApiError::invalid_query(format!("time {t} is out of range: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;

    fn tiktok() -> Service {
        Catalog::builtin().get("tiktok").unwrap().clone()
    }

    fn report(body: serde_json::Value) -> NewReport {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn region_or_location_but_not_both() {
        let s = tiktok();
        assert!(validate(&s, report(json!({"problem": "login", "region": "de"}))).is_ok());
        let both = report(
            json!({"problem": "login", "region": "DE", "location": {"lat": 52.5, "lon": 13.4}}),
        );
        assert_eq!(validate(&s, both).unwrap_err().code(), "invalid_report");
        let neither = report(json!({"problem": "login"}));
        assert_eq!(validate(&s, neither).unwrap_err().code(), "invalid_report");
    }

    #[test]
    fn location_resolves_to_a_country() {
        let (cell, _) = validate(
            &tiktok(),
            report(json!({"problem": "app", "location": {"lat": 35.6762, "lon": 139.6503}})),
        )
        .unwrap();
        assert_eq!(cell.region.as_str(), "JP");
        let ocean = report(json!({"problem": "app", "location": {"lat": 30.0, "lon": -40.0}}));
        assert_eq!(
            validate(&tiktok(), ocean).unwrap_err().code(),
            "location_outside_regions"
        );
        let off_earth = report(json!({"problem": "app", "location": {"lat": 91.0, "lon": 0.0}}));
        assert_eq!(
            validate(&tiktok(), off_earth).unwrap_err().code(),
            "invalid_coordinates"
        );
    }

    #[test]
    fn unknown_problem_lists_the_allowed_ones() {
        let err = validate(
            &tiktok(),
            report(json!({"problem": "wifi", "region": "DE"})),
        )
        .unwrap_err();
        assert_eq!(err.code(), "unknown_problem");
    }
}
