//! The HTTP API: routes, their OpenAPI documentation (from the same registration), and the
//! shared state handlers see.
//!
//! Routes are registered once, through `utoipa-actix-web`, so a route cannot exist without its
//! OpenAPI entry. [`openapi`] builds the spec without starting a server (`downradar openapi`
//! and the drift test use it); the running server serves the same spec at `/openapi.json`
//! and Swagger UI at `/docs`.

pub mod budget;
pub mod cache;
mod docs;
pub mod error;
pub mod events;
pub mod feeds;
pub mod incidents;
pub mod ops;
pub mod overview;
pub mod regions;
pub mod reports;
pub mod services;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use actix_web::{App, HttpRequest, HttpResponse, Responder, web};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::SwaggerUi;

use crate::catalog::{Catalog, Service};
use crate::clock::Clock;
use crate::fanout::Fanout;
use crate::ingest::Ingestor;
use crate::regions::RegionCode;
use crate::reporter::{AllowedOrigins, Fingerprint, ReporterSecret, TrustedProxies};
use crate::store::{Store, StoreSettings};
use error::ApiError;

/// What every handler can reach. (The [`Ingestor`] is registered separately: each worker
/// thread has its own.)
pub struct AppState {
    pub catalog: Catalog,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub secret: ReporterSecret,
    pub trusted_proxies: TrustedProxies,
    /// Web origins whose pages may send reports (`--allowed-origins`).
    pub allowed_origins: AllowedOrigins,
    /// The IPv6 prefix by which the limits per address count a client
    /// (`--ipv6-limit-prefix`).
    pub ipv6_limit_prefix: u8,
    pub settings: StoreSettings,
    /// This process's incident event fan-out (for `GET /v1/events`).
    pub fanout: Arc<Fanout>,
    /// The stored buckets this process may be reading at once.
    pub reads: Arc<budget::ReadBudget>,
    /// The settled part of the report series read lately.
    pub series_cache: cache::SeriesCache,
}

impl AppState {
    /// The catalog entry for a path's service id, or the 404 every service route answers.
    pub fn service(&self, id: &str) -> Result<&Service, ApiError> {
        self.catalog
            .get(id)
            .ok_or_else(|| ApiError::unknown_service(id))
    }

    /// The client's address: the peer's, or the one a trusted proxy forwarded.
    pub fn client_addr(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .map(|v| v.as_bytes());
        self.trusted_proxies.client_addr(peer, forwarded)
    }

    /// The fingerprint by which the limits per address count the client of `addr`.
    pub fn limited_address(&self, addr: IpAddr) -> Fingerprint {
        self.secret.address(addr, self.ipv6_limit_prefix)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "downradar",
        description = "Crowd-sourced outage detection. People (or apps and bots on their behalf) report \
that a service is not working for them, with a problem category and a country; downradar counts \
distinct reporters per service, country and problem in time buckets, compares them with \
seasonal baselines and declares incidents: global or regional, partial or not, and caused by an \
upstream service's outage or not.\n\nEvery error has the same \
JSON shape, `ErrorBody`, with a stable `code`. A 503 or a 429 carries `Retry-After`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "reports", description = "Submit reports and read their counts."),
        (name = "services", description = "The catalog of watched services."),
        (name = "incidents", description = "Outages the detector declared, and each service's status."),
        (name = "feeds", description = "Atom feeds of incidents and status badges, for feed readers and READMEs."),
        (name = "regions", description = "The countries reports are counted in."),
        (name = "operations", description = "Health, readiness and metrics."),
    ),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

/// A `region` query filter: absent, or a known country code (400 `invalid_query` if not).
pub(crate) fn region_filter(region: Option<&str>) -> Result<Option<RegionCode>, ApiError> {
    region
        .map(RegionCode::parse)
        .transpose()
        .map_err(|e| ApiError::invalid_query(e.to_string()))
}

/// Deserializes an optional query parameter `name` from its text with `parse`, refusing a
/// value it rejects with a message that names the parameter, the value and what it takes
/// (`expected`); serde's own messages name neither ("invalid digit found in string").
pub(crate) fn query_param<'de, D, T>(
    deserializer: D,
    name: &str,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let Some(text) = <Option<String> as serde::Deserialize>::deserialize(deserializer)? else {
        return Ok(None);
    };
    parse(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{name} must be {expected}, not {}",
            error::quoted(&text)
        ))
    })
}

/// Registers every documented route.
fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(reports::create_report)
        .service(reports::read_reports)
        .service(services::list_services)
        .service(services::get_service)
        .service(incidents::service_status)
        .service(overview::service_problems)
        .service(overview::service_map)
        .service(overview::outages_now)
        .service(incidents::list_incidents)
        .service(incidents::get_incident)
        .service(events::events)
        .service(feeds::incidents_feed)
        .service(feeds::service_feed)
        .service(feeds::service_badge)
        .service(regions::list_regions)
        .service(ops::healthz)
        .service(ops::readyz)
        .service(ops::prometheus_metrics);
}

/// The OpenAPI 3.1 document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes)
        .split_for_parts();
    refine(api)
}

/// What the route annotations cannot say: every `region` (query parameter or report field)
/// is one of the built-in country codes, listed as an enum (the server also takes them in
/// lower case); the service feed takes its service from the path, not from a `service`
/// parameter.
fn refine(api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use serde_json::{Value, json};
    let codes: Vec<Value> = crate::regions::Regions::builtin()
        .countries()
        .iter()
        .map(|c| json!(c.code.as_str()))
        .collect();
    let Ok(mut doc) = serde_json::to_value(&api) else {
        return api;
    };
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut() {
                let Some(parameters) = operation["parameters"].as_array_mut() else {
                    continue;
                };
                if path == "/v1/services/{id}/incidents.atom" {
                    parameters.retain(|p| !(p["name"] == "service" && p["in"] == "query"));
                }
                for parameter in parameters.iter_mut() {
                    if parameter["name"] == "region" && parameter["in"] == "query" {
                        parameter["schema"] = json!({"type": "string", "enum": codes});
                    }
                }
            }
        }
    }
    let region = &mut doc["components"]["schemas"]["NewReport"]["properties"]["region"];
    if region.is_object() {
        let mut nullable = codes.clone();
        nullable.push(Value::Null);
        region["enum"] = Value::Array(nullable);
    }
    serde_json::from_value(doc).unwrap_or(api)
}

/// The message of a query the deserializer refused, in the API's words where its own are a
/// library's: a parameter given twice (the deserializer's "duplicate field") says which,
/// and that it is taken once.
fn query_message(message: &str) -> String {
    match message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        Some(name) => format!("{name} is given more than once; give it once"),
        None => message.to_owned(),
    }
}

/// Registers state, this worker's ingest handle, routes, docs and the JSON error handlers.
pub fn configure(
    state: web::Data<AppState>,
    ingestor: Ingestor,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let api = openapi();
        cfg.app_data(state)
            .app_data(web::Data::new(ingestor))
            .app_data(web::Data::new(reports::ReportOutcomes::register()))
            .app_data(web::QueryConfig::default().error_handler(|err, _req| {
                // The deserializer's own message, without actix's prefix (the parameters
                // that can fail name themselves: see `query_param`).
                let message = match err {
                    actix_web::error::QueryPayloadError::Deserialize(e) => {
                        query_message(&e.to_string())
                    }
                    other => other.to_string(),
                };
                ApiError::invalid_query(crate::text::tamed(&message, error::ECHO_CHARS)).into()
            }))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|err, _req| ApiError::invalid_query(err.to_string()).into()),
            )
            .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", api))
            .route(
                "/docs",
                web::get().to(|| async {
                    HttpResponse::PermanentRedirect()
                        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
                        .finish()
                }),
            );
        let mut docs_cfg = ServiceConfig::new(cfg);
        routes(&mut docs_cfg);
        cfg.default_service(web::to(not_found));
    }
}

/// Middleware: a `HEAD` request is routed as the `GET` it stands for (RFC 9110 §9.3.2: a
/// server MUST take `HEAD` wherever it takes `GET`; feed validators and link checkers use it).
/// The answer is the `GET`'s headers without its body: the HTTP layer decided at decoding
/// that a `HEAD`'s answer carries no body, whatever the route. A handler whose body never
/// ends (the event stream) asks [`is_head`] and makes none (and, taking no place among the
/// subscribers, is never refused for want of one, where its `GET` may be).
pub async fn head_as_get(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
        actix_web::HttpMessage::extensions_mut(&req).insert(Head);
    }
    next.call(req).await
}

/// Middleware: cross-origin reads and reports (CORS). Whatever downradar answers to a `GET` is public,
/// so a web page on any origin may read it, `Access-Control-Allow-Origin: *`: a status
/// dashboard elsewhere can fetch the API, follow the event stream and revalidate with
/// `If-None-Match` (whose preflight is answered here). Reports are open only to the origins
/// of `--allowed-origins`: a page on another site could otherwise make each of its visitors'
/// browsers file a report, from as many addresses, and fake an outage. A report needs a JSON
/// body, which a browser sends across origins only after a preflight, and a preflight for
/// anything but a read gets no CORS headers unless it is a report's from an allowed origin,
/// so the browser never sends the report. Nor is `/metrics`, which is for the operator's
/// scraper: a page visited from inside a private network must not read it.
pub async fn cors(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::http::{Method, StatusCode, header};
    let method = req.method().clone();
    // The path as routed, percent-decoded: `/%6detrics` is `/metrics` too.
    if req.match_info().as_str() == "/metrics" {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let requested = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .cloned();
    let preflight = method == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && requested
            .as_ref()
            .is_some_and(|m| m == "GET" || m == "HEAD");
    // A report from a page of an allowed origin: its preflight and the report itself (reads
    // need no look at the list).
    let reporter = matches!(method, Method::POST | Method::OPTIONS)
        .then(|| req.headers().get(header::ORIGIN))
        .flatten()
        .and_then(|o| o.to_str().ok())
        .filter(|origin| {
            req.app_data::<web::Data<AppState>>()
                .is_some_and(|state| state.allowed_origins.allows(origin))
        })
        .map(str::to_owned);
    let report_preflight = method == Method::OPTIONS
        && reporter.is_some()
        && requested.as_ref().is_some_and(|m| m == "POST");
    let mut response = next.call(req).await?.map_into_boxed_body();
    let takes = |response: &actix_web::dev::ServiceResponse<_>, method: &str| {
        response
            .headers()
            .get(header::ALLOW)
            .and_then(|allow| allow.to_str().ok())
            .is_some_and(|allow| allow.split(',').any(|m| m.trim() == method))
    };
    let not_allowed = response.status() == StatusCode::METHOD_NOT_ALLOWED;
    if let Some(origin) = reporter.as_deref() {
        if report_preflight && not_allowed && takes(&response, "POST") {
            let answer = HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type"))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
                .insert_header((header::VARY, "Origin"))
                .finish();
            return Ok(response.into_response(answer));
        }
        if method == Method::POST {
            let headers = response.headers_mut();
            if let Ok(origin) = header::HeaderValue::from_str(origin) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                header::HeaderValue::from_static("Retry-After"),
            );
            headers.append(header::VARY, header::HeaderValue::from_static("Origin"));
            return Ok(response);
        }
    }
    if preflight && not_allowed && takes(&response, "GET") {
        // The route exists and takes reads: the router's 405 becomes the preflight's answer.
        let answer = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "If-None-Match, Last-Event-ID",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
            .finish();
        return Ok(response.into_response(answer));
    }
    if method == Method::GET || method == Method::HEAD {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::HeaderValue::from_static("ETag, Retry-After"),
        );
    }
    Ok(response)
}

/// Middleware: a connection whose request was answered before its chunked body ended is
/// closed. The HTTP layer (actix-http 3.20) reads the rest of a chunked body the handler
/// dropped before it takes the next request on the connection, without a time limit, so a
/// body that never ends held the connection open for good: a report refused at once (an
/// unknown service, a wrong content type) or after its 10 seconds (408) left it open for as
/// long as the client liked, which any client could use to hold the server's sockets. The
/// layer closes the connection instead (after a second's linger) when the body is still
/// held as the response goes out, so the body is handed on through a handle that the
/// response keeps. A body read to its end changes nothing: the connection stays open for
/// the next request. (A `Content-Length` body the handler left unread is closed for already.)
pub async fn close_after_unread_chunked_body(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use std::cell::RefCell;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::task::{Context, Poll};

    use actix_web::HttpMessage;
    use actix_web::body::{BodySize, BoxBody, MessageBody};
    use actix_web::dev::Payload;
    use actix_web::web::Bytes;
    use futures_util::Stream;

    /// A response body that holds the request's body until it has been sent.
    struct Holding {
        body: BoxBody,
        _unread: Rc<RefCell<Payload>>,
    }

    impl MessageBody for Holding {
        type Error = <BoxBody as MessageBody>::Error;

        fn size(&self) -> BodySize {
            self.body.size()
        }

        fn poll_next(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Bytes, Self::Error>>> {
            Pin::new(&mut self.body).poll_next(cx)
        }
    }

    let chunked = req
        .headers()
        .get(actix_web::http::header::TRANSFER_ENCODING)
        .is_some();
    if !chunked {
        return next.call(req).await.map(|r| r.map_into_left_body());
    }
    let unread = Rc::new(RefCell::new(req.take_payload()));
    let handed = unread.clone();
    let stream =
        futures_util::stream::poll_fn(move |cx| Pin::new(&mut *handed.borrow_mut()).poll_next(cx));
    req.set_payload(Payload::Stream {
        payload: Box::pin(stream),
    });
    let response = next.call(req).await?;
    Ok(response
        .map_into_boxed_body()
        .map_body(|_, body| Holding {
            body,
            _unread: unread,
        })
        .map_into_right_body())
}

/// Middleware: headers for browsers, and the Swagger UI's files. No answer may be taken by a
/// browser for another type than it says (`X-Content-Type-Options: nosniff`; the answers to
/// CORS preflights, made outside this, have no body to sniff): a JSON error
/// that echoes a path is never run as a page or a script. The Swagger UI's pages under
/// `/docs/` may not be framed by another site (`X-Frame-Options: DENY`,
/// `frame-ancestors 'none'`): its "Try it out" forms come filled in, so a page framing them
/// could have its visitors file reports from this origin with a click, which CORS keeps other
/// pages from doing. Its files are compressed and revalidated (see [`docs`]); and a file it
/// does not have, which it answers with a bare, empty 404, gets the JSON error of every
/// other unknown route.
pub async fn browser_headers(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::http::header;
    // The path as routed, percent-decoded (`/%64ocs/` is routed here too).
    let path = req.match_info().as_str();
    let docs = path == "/docs" || path.starts_with("/docs/");
    let docs_path = docs.then(|| path.to_owned());
    let mut response = next.call(req).await?;
    if docs {
        let headers = response.headers_mut();
        headers.insert(
            header::X_FRAME_OPTIONS,
            header::HeaderValue::from_static("DENY"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    let bare = response.status() == actix_web::http::StatusCode::NOT_FOUND
        && docs
        && !response.headers().contains_key(header::CONTENT_TYPE);
    let mut response = if bare {
        let path = response.request().path().to_owned();
        let error = actix_web::ResponseError::error_response(&ApiError::route_not_found(&path));
        response.into_response(error)
    } else if let Some(path) = docs_path {
        docs::serve(response.map_into_boxed_body(), &path).await?
    } else {
        response.map_into_boxed_body()
    };
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// A digest of `bytes` for a strong `ETag`: the first 16 bytes of their SHA-256, in hex, the
/// same from every replica.
pub(crate) fn digest_tag(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::reporter::hex(&sha2::Sha256::digest(bytes)[..16])
}

/// Whether `req`'s `If-None-Match` holds `etag`, so that the client's copy is current and a
/// `GET` is answered `304 Not Modified` (weak comparison, RFC 9110 §13.1.2). A malformed
/// header is taken as absent.
pub(crate) fn not_modified(req: &HttpRequest, etag: &actix_web::http::header::EntityTag) -> bool {
    match actix_web::HttpMessage::get_header::<actix_web::http::header::IfNoneMatch>(req) {
        Some(actix_web::http::header::IfNoneMatch::Any) => true,
        Some(actix_web::http::header::IfNoneMatch::Items(tags)) => {
            tags.iter().any(|tag| tag.weak_eq(etag))
        }
        None => false,
    }
}

/// Marks a request that came as `HEAD` (see [`head_as_get`]).
#[derive(Clone, Copy)]
struct Head;

/// Whether `req` came as `HEAD` and is routed as `GET`.
pub(crate) fn is_head(req: &HttpRequest) -> bool {
    actix_web::HttpMessage::extensions(req)
        .get::<Head>()
        .is_some()
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // A known path with the wrong method is 405, not 404, and says which methods it takes.
    // The path as routed: percent-decoded where the router decodes it (`/v1/%73ervices`).
    let path = req.match_info().as_str();
    let known_path = req.resource_map().has_resource(path);
    if known_path {
        let allow = allowed_methods(path);
        Ok(
            actix_web::ResponseError::error_response(&ApiError::method_not_allowed())
                .customize()
                .insert_header((actix_web::http::header::ALLOW, allow))
                .respond_to(&req)
                .map_into_boxed_body(),
        )
    } else {
        Err(ApiError::route_not_found(req.path()))
    }
}

/// The methods the documented route matching `path` takes (`GET, HEAD` for the undocumented
/// ones: the docs and the spec), as an `Allow` header value.
fn allowed_methods(path: &str) -> String {
    use std::sync::OnceLock;
    static ROUTES: OnceLock<Vec<(Vec<String>, String)>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        openapi()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let segments = template.split('/').map(str::to_owned).collect();
                let mut methods = Vec::new();
                for (name, present) in [
                    ("GET", item.get.is_some()),
                    ("HEAD", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ] {
                    if present {
                        methods.push(name);
                    }
                }
                (segments, methods.join(", "))
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    routes
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| {
                    *t == *s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                })
        })
        .map_or_else(|| "GET, HEAD".to_owned(), |(_, methods)| methods.clone())
}
