//! Publishing for people's tools: Atom 1.0 feeds of incidents (`GET /v1/incidents.atom`,
//! `GET /v1/services/{id}/incidents.atom`) and an SVG status badge
//! (`GET /v1/services/{id}/badge.svg`).
//!
//! Feeds take the filters of `GET /v1/incidents` and page the same way (RFC 5005
//! `rel="next"`). Their absolute links are built from the request's own `Host` (from
//! `X-Forwarded-*`/`Forwarded` only when the peer is a trusted proxy) and only when it is a
//! well-formed authority; every text and attribute is XML-escaped.
//!
//! Feed readers and image proxies poll: every answer carries a strong `ETag` (a digest of
//! its body, the same from every replica), and a request whose `If-None-Match` still holds
//! is answered `304 Not Modified` without a body. There is no `Last-Modified`: no date of
//! the body's own moves forward with every change (an entry leaving a filtered feed, when its
//! incident resolves, makes the newest date go back), and a date that went back would have
//! `If-Modified-Since` answer 304 for a changed feed. An open incident's entry gives its
//! reports per minute as of the detector's last bucket, so while one is listed the body and
//! its `ETag` change every bucket; the entry's `updated` stays its latest event (a change of
//! attribution, which is what a reader is told of).

mod atom;
mod badge;
mod xml;

use std::net::Ipv6Addr;

use actix_web::http::header::{self, CacheControl, CacheDirective, ETag, EntityTag};
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;
use time::OffsetDateTime;

use super::AppState;
use super::error::{ApiError, ErrorBody, StoreUnavailable, UnknownService};
use super::incidents::{
    DEFAULT_LIMIT, IncidentsQuery, StatusLevel, incident_query, level_of, unavailable,
};
use crate::catalog::ServiceId;
use crate::detector::{Incident, IncidentStatus, Scope};
use crate::store::IncidentQuery;

/// The media type of the feeds.
const ATOM: &str = "application/atom+xml; charset=utf-8";
/// The media type of the badge.
const SVG: &str = "image/svg+xml; charset=utf-8";
/// How long clients and caches (GitHub's image proxy among them) may reuse a feed or badge.
const MAX_AGE_SECS: u32 = 60;
/// Longest badge label, in characters.
const MAX_LABEL_CHARS: usize = 64;
/// The project's home page, named as the feeds' generator.
const HOME: &str = "https://github.com/downradar/downradar";

/// A feed of incidents.
///
/// Incidents as an Atom 1.0 feed, newest first: one entry per incident, whose title says the
/// service, scope, countries and problems (and whether it is resolved), and whose summary says
/// when it started and ended and how many reports per minute were observed against how many
/// were expected. Takes the filters of `GET /v1/incidents`; `limit` is the number of entries
/// (default 50), and a `rel="next"` link leads to older ones. A conditional request
/// (`If-None-Match` with the `ETag`) is answered `304 Not Modified` while nothing has
/// changed.
#[utoipa::path(
    tag = "feeds",
    params(
        IncidentsQuery,
        ("If-None-Match" = Option<String>, Header, description = "ETags of copies the client holds: `304 Not Modified` if one is current"),
    ),
    responses(
        (status = 200, description = "An Atom 1.0 feed.", content_type = "application/atom+xml",
            body = String,
            headers(
                ("Cache-Control" = String, description = "`public, max-age=60`"),
                ("ETag" = String, description = "Strong validator of this body, for `If-None-Match`"),
                ("Vary" = String, description = "`Host, Forwarded, X-Forwarded-Host, X-Forwarded-Proto`: the headers the links are built from")
            ),
            example = json!(example_feed(false))),
        (status = 304, description = "Not modified: the client's copy is current (no body).",
            headers(
                ("Cache-Control" = String, description = "`public, max-age=60`"),
                ("ETag" = String, description = "Strong validator of this body, for `If-None-Match`"),
                ("Vary" = String, description = "`Host, Forwarded, X-Forwarded-Host, X-Forwarded-Proto`")
            )),
        (status = 400, description = "`invalid_query`: a bad parameter, limit, time or cursor.", body = ErrorBody,
            example = json!({"code": "invalid_query", "message": "limit must be a whole number from 1 to 200, not \"500\""})),
        (status = 404, description = "`unknown_service`: the `service` filter names no service.", body = ErrorBody,
            example = json!({"code": "unknown_service", "message": "unknown service \"myspace\"; GET /v1/services lists them"})),
        StoreUnavailable,
    )
)]
#[get("/v1/incidents.atom")]
pub async fn incidents_feed(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<IncidentsQuery>,
) -> Result<HttpResponse, ApiError> {
    feed(&req, &state, &query, None).await
}

/// A feed of a service's incidents.
///
/// The service's incidents as an Atom 1.0 feed, newest first, as `GET /v1/incidents.atom`
/// gives them; the filters are the same, and `service`, if given, must name the path's
/// service.
#[utoipa::path(
    tag = "feeds",
    params(
        ("id" = String, Path, description = "Service id", example = "tiktok"),
        IncidentsQuery,
        ("If-None-Match" = Option<String>, Header, description = "ETags of copies the client holds: `304 Not Modified` if one is current"),
    ),
    responses(
        (status = 200, description = "An Atom 1.0 feed.", content_type = "application/atom+xml",
            body = String,
            headers(
                ("Cache-Control" = String, description = "`public, max-age=60`"),
                ("ETag" = String, description = "Strong validator of this body, for `If-None-Match`"),
                ("Vary" = String, description = "`Host, Forwarded, X-Forwarded-Host, X-Forwarded-Proto`: the headers the links are built from")
            ),
            example = json!(example_feed(true))),
        (status = 304, description = "Not modified: the client's copy is current (no body).",
            headers(
                ("Cache-Control" = String, description = "`public, max-age=60`"),
                ("ETag" = String, description = "Strong validator of this body, for `If-None-Match`"),
                ("Vary" = String, description = "`Host, Forwarded, X-Forwarded-Host, X-Forwarded-Proto`")
            )),
        (status = 400, description = "`invalid_query`: a bad parameter, limit, time or cursor, or a `service` that is not the path's.", body = ErrorBody,
            example = json!({"code": "invalid_query", "message": "service=\"github\" contradicts the path's service \"tiktok\""})),
        UnknownService,
        StoreUnavailable,
    )
)]
#[get("/v1/services/{id}/incidents.atom")]
pub async fn service_feed(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<IncidentsQuery>,
) -> Result<HttpResponse, ApiError> {
    let service = state.service(&id)?.id.clone();
    if let Some(other) = query.service.as_deref().filter(|s| *s != service.as_str()) {
        return Err(ApiError::invalid_query(format!(
            "service={} contradicts the path's service {:?}",
            super::error::quoted(other),
            service.as_str()
        )));
    }
    feed(&req, &state, &query, Some(service)).await
}

/// The feed of `query`'s incidents; `path_service` when the path names the service.
async fn feed(
    req: &HttpRequest,
    state: &AppState,
    query: &IncidentsQuery,
    path_service: Option<ServiceId>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let mut store_query = incident_query(state, query)?;
    let in_path = path_service.is_some();
    if path_service.is_some() {
        store_query.service = path_service;
    }
    store_query.limit = limit + 1;
    let mut incidents = state
        .store
        .incidents(&store_query)
        .await
        .map_err(|e| unavailable("feed", &e))?;
    let more = incidents.len() > limit;
    incidents.truncate(limit);
    // Each entry's `updated` is its latest event: read the records together.
    let records = futures_util::future::try_join_all(
        incidents
            .iter()
            .map(|incident| state.store.incident(&incident.id)),
    )
    .await
    .map_err(|e| unavailable("feed", &e))?;
    let entries: Vec<(Incident, OffsetDateTime)> = incidents
        .into_iter()
        .zip(records)
        .map(|(listed, record)| match record {
            Some(record) => {
                let updated = record
                    .events
                    .last()
                    .map(|e| e.at)
                    .unwrap_or_else(|| last_change(&record.incident));
                (record.incident, updated)
            }
            // Expired between the two reads: what the listing said is still true.
            None => {
                let updated = last_change(&listed);
                (listed, updated)
            }
        })
        .collect();

    let base = base_url(req, state);
    let canonical = Canonical::of(&store_query);
    let path = match (&canonical.service, in_path) {
        (Some(id), true) => format!("/v1/services/{id}/incidents.atom"),
        _ => "/v1/incidents.atom".to_owned(),
    };
    let page_query = |cursor: Option<&str>| canonical.query_string(limit, cursor, !in_path);
    let next_href = entries
        .last()
        .filter(|_| more)
        .map(|(last, _)| format!("{base}{path}{}", page_query(Some(&last.id))));
    let cursor = store_query.after.as_ref().map(|(_, id)| id.as_str());
    let service_name = canonical.service.as_deref().map(|id| {
        state
            .catalog
            .get(id)
            .map_or_else(|| id.to_owned(), |s| s.name.clone())
    });
    let feed = atom::Feed {
        id: canonical.feed_id(),
        title: match &service_name {
            Some(name) => format!("downradar: {name} incidents"),
            None => "downradar: incidents".to_owned(),
        },
        subtitle: canonical.description(),
        self_href: format!("{base}{path}{}", page_query(cursor)),
        json_href: format!(
            "{base}/v1/incidents{}",
            canonical.query_string(limit, cursor, true)
        ),
        next_href,
        // A stable value for a feed without entries, so that it never looks changed.
        updated: entries
            .iter()
            .map(|(_, updated)| *updated)
            .max()
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        author: "downradar".to_owned(),
        generator: ("downradar".to_owned(), HOME.to_owned()),
        entries: entries
            .iter()
            .map(|(incident, updated)| entry(state, &base, incident, *updated))
            .collect(),
    };
    let mut response = conditional(req, ATOM, feed.render());
    // The links are built from these headers: a shared cache must not give one client's
    // copy (a forged `X-Forwarded-Host` that a proxy passed on) to another.
    response
        .headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static(LINKS_VARY));
    Ok(response)
}

/// The request headers a feed's links are built from (see [`base_url`]).
const LINKS_VARY: &str = "Host, Forwarded, X-Forwarded-Host, X-Forwarded-Proto";

/// `body` as `content_type`, with its `ETag`, or `304 Not Modified` when the request's
/// `If-None-Match` holds one that is current (RFC 9110 §13.1.2). A malformed condition
/// header is ignored, as if absent.
fn conditional(req: &HttpRequest, content_type: &str, body: String) -> HttpResponse {
    let etag = EntityTag::new_strong(super::digest_tag(body.as_bytes()));
    let fresh = super::not_modified(req, &etag);
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header(cache_control())
        .insert_header(ETag(etag));
    if fresh {
        response.finish()
    } else {
        response.content_type(content_type).body(body)
    }
}

/// When an incident last changed, as far as the incident itself tells.
fn last_change(incident: &Incident) -> OffsetDateTime {
    incident.resolved_at.unwrap_or(incident.started_at)
}

/// The entry of `incident`.
fn entry(
    state: &AppState,
    base: &str,
    incident: &Incident,
    updated: OffsetDateTime,
) -> atom::Entry {
    let name = |id: &str| {
        state
            .catalog
            .get(id)
            .map_or_else(|| id.to_owned(), |s| s.name.clone())
    };
    atom::Entry {
        id: format!("urn:downradar:incident:{}", incident.id),
        title: entry_title(&name(incident.service.as_str()), incident),
        updated,
        published: incident.started_at,
        json_href: format!("{base}/v1/incidents/{}", incident.id),
        categories: vec![
            status_word(incident.status).to_owned(),
            scope_word(incident.scope).to_owned(),
        ],
        summary: entry_summary(&name, incident),
    }
}

fn status_word(status: IncidentStatus) -> &'static str {
    match status {
        IncidentStatus::Open => "open",
        IncidentStatus::Resolved => "resolved",
    }
}

fn scope_word(scope: Scope) -> &'static str {
    match scope {
        Scope::Global => "global",
        Scope::Regional => "regional",
    }
}

/// A rate for people: one decimal, or two significant digits under 0.1, so that a service
/// expected to be near silent does not read "0.0 expected" (0.01 is "0.010").
fn per_min(rate: f64) -> String {
    if rate > 0.0 && rate < 0.1 {
        let decimals = (-rate.log10()).ceil() as usize + 1;
        format!("{rate:.decimals$}")
    } else {
        format!("{rate:.1}")
    }
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// E.g. `TikTok: outage in CA, US (login)`, `TikTok: global outage, resolved`.
fn entry_title(service_name: &str, incident: &Incident) -> String {
    let mut title = format!("{service_name}: ");
    match incident.scope {
        Scope::Global => title.push_str("global outage"),
        Scope::Regional if incident.regions.is_empty() => title.push_str("outage"),
        Scope::Regional => {
            title.push_str("outage in ");
            title.push_str(&join(&incident.regions));
        }
    }
    if incident.partial && !incident.problems.is_empty() {
        title.push_str(&format!(" ({})", join(&incident.problems)));
    }
    if incident.status == IncidentStatus::Resolved {
        title.push_str(", resolved");
    }
    title
}

/// A few plain sentences: where, since when and until when, which problems, how many
/// reports against how many expected, and the upstream cause.
fn entry_summary(name: &dyn Fn(&str) -> String, incident: &Incident) -> String {
    let service = name(incident.service.as_str());
    let mut text = match incident.scope {
        Scope::Global => format!("Global outage of {service}"),
        Scope::Regional => format!("Regional outage of {service}"),
    };
    if !incident.regions.is_empty() {
        let verb = match incident.scope {
            Scope::Global => ", reports elevated in",
            Scope::Regional => " in",
        };
        text.push_str(&format!("{verb} {}", join(&incident.regions)));
    }
    text.push_str(&format!(". Started {}", xml::rfc3339(incident.started_at)));
    match incident.resolved_at {
        Some(end) => text.push_str(&format!(
            ", resolved {} ({} min).",
            xml::rfc3339(end),
            (end - incident.started_at).whole_minutes()
        )),
        None => text.push_str(", still open."),
    }
    if !incident.problems.is_empty() {
        let kind = if incident.partial {
            " (a partial outage)"
        } else {
            ""
        };
        text.push_str(&format!(" Problems: {}{kind}.", join(&incident.problems)));
    }
    text.push_str(&format!(
        " Reports per minute: {} observed, {} expected.",
        per_min(incident.observed_per_min),
        per_min(incident.expected_per_min)
    ));
    if !incident.caused_by.is_empty() {
        let causes: Vec<String> = incident
            .caused_by
            .iter()
            .map(|s| name(s.as_str()))
            .collect();
        text.push_str(&format!(
            " Likely caused by an outage of {}.",
            causes.join(", ")
        ));
    }
    text
}

/// The filters of a feed in one canonical form, from the parsed query: its id, description
/// and links do not depend on how the client spelled them, and echo nothing it sent
/// verbatim.
struct Canonical {
    service: Option<String>,
    /// `(name, value)` of each filter but the service, in a fixed order; the values need no
    /// percent-encoding (booleans, region codes, scopes and UTC times).
    filters: Vec<(&'static str, String)>,
}

impl Canonical {
    fn of(query: &IncidentQuery) -> Self {
        let mut filters = Vec::new();
        let active = if query.active_only {
            Some(true)
        } else if query.filter.status == Some(IncidentStatus::Resolved) {
            Some(false)
        } else {
            None
        };
        if let Some(active) = active {
            filters.push(("active", active.to_string()));
        }
        if let Some(region) = query.filter.region {
            filters.push(("region", region.to_string()));
        }
        if let Some(scope) = query.filter.scope {
            filters.push(("scope", scope_word(scope).to_owned()));
        }
        if let Some(partial) = query.filter.partial {
            filters.push(("partial", partial.to_string()));
        }
        let time = |t: i64| OffsetDateTime::from_unix_timestamp(t).map(xml::rfc3339);
        if let Some(Ok(since)) = query.since.map(time) {
            filters.push(("since", since));
        }
        if let Some(Ok(until)) = query.until.map(time) {
            filters.push(("until", until));
        }
        Self {
            service: query.service.as_ref().map(ToString::to_string),
            filters,
        }
    }

    /// A URN naming the feed of these filters (whichever route serves it).
    fn feed_id(&self) -> String {
        let mut id = "urn:downradar:feed:incidents".to_owned();
        if let Some(service) = &self.service {
            id.push_str(&format!(":service={service}"));
        }
        for (name, value) in &self.filters {
            id.push_str(&format!(":{name}={value}"));
        }
        id
    }

    /// E.g. `Filtered by active=true, region=US.`; `None` without filters.
    fn description(&self) -> Option<String> {
        (!self.filters.is_empty()).then(|| {
            let filters: Vec<String> = self
                .filters
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            format!("Filtered by {}.", filters.join(", "))
        })
    }

    /// `?a=b&...` (or nothing) for a page of `limit` after `cursor`; with the service when
    /// `with_service`.
    fn query_string(&self, limit: usize, cursor: Option<&str>, with_service: bool) -> String {
        let mut pairs: Vec<String> = Vec::new();
        if let Some(service) = self.service.as_ref().filter(|_| with_service) {
            pairs.push(format!("service={service}"));
        }
        pairs.extend(self.filters.iter().map(|(n, v)| format!("{n}={v}")));
        if limit != DEFAULT_LIMIT {
            pairs.push(format!("limit={limit}"));
        }
        if let Some(cursor) = cursor {
            pairs.push(format!("cursor={cursor}"));
        }
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }
}

/// `scheme://authority` clients reach this server by: from `Forwarded`/`X-Forwarded-*` when
/// the peer is a trusted proxy, else from the request's `Host`; and, when that is not a
/// well-formed authority (it goes into documents caches may keep), the listening address.
fn base_url(req: &HttpRequest, state: &AppState) -> String {
    let behind_proxy = req
        .peer_addr()
        .is_some_and(|peer| state.trusted_proxies.contains(peer.ip()));
    let (https, host) = if behind_proxy {
        let info = req.connection_info();
        // Proxies differ in case (`X-Forwarded-Proto: HTTPS`); schemes do not (RFC 3986 §3.1).
        (
            info.scheme().eq_ignore_ascii_case("https"),
            info.host().to_owned(),
        )
    } else {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        (req.app_config().secure(), host)
    };
    let host = if is_authority(&host) {
        host
    } else {
        req.app_config().local_addr().to_string()
    };
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// Whether `s` is `host[:port]` with a DNS name, IPv4 address or bracketed IPv6 address.
fn is_authority(s: &str) -> bool {
    let (host_ok, port) = match s.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => (ip.parse::<Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let (host, port) = s.find(':').map_or((s, ""), |at| s.split_at(at));
            let ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            (ok, port)
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    host_ok && port_ok
}

fn cache_control() -> CacheControl {
    CacheControl(vec![
        CacheDirective::Public,
        CacheDirective::MaxAge(MAX_AGE_SECS),
    ])
}

/// Options of the badge.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BadgeQuery {
    /// The left text, 1 to 64 characters, without control characters (nor U+FFFE, U+FFFF,
    /// nor U+FFFD, which is what bytes that are not UTF-8 decode to).
    /// Default: the service's name. E.g. `TikTok (EU)`.
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    pub label: Option<String>,
}

/// A status badge.
///
/// The service's status as an SVG badge in the shields.io flat style: its name (or `label`)
/// on grey, then `operational` on green, `possible problems` on yellow or `outage` on red.
/// Cached for a minute; `If-None-Match` with its `ETag` is answered `304 Not Modified` while
/// the status is unchanged. Embed it in Markdown as
/// `![TikTok status](https://downradar.example/v1/services/tiktok/badge.svg)`.
#[utoipa::path(
    tag = "feeds",
    params(
        ("id" = String, Path, description = "Service id", example = "tiktok"),
        BadgeQuery,
        ("If-None-Match" = Option<String>, Header, description = "ETags of copies the client holds: `304 Not Modified` if one is current"),
    ),
    responses(
        (status = 200, description = "The badge.", content_type = "image/svg+xml",
            body = String,
            headers(
                ("Cache-Control" = String, description = "`public, max-age=60`"),
                ("ETag" = String, description = "Strong validator of this body, for `If-None-Match`")
            ),
            example = json!(badge::render("TikTok", "outage", badge::RED))),
        (status = 304, description = "Not modified: the client's copy is current (no body).",
            headers(
                ("Cache-Control" = String, description = "`public, max-age=60`"),
                ("ETag" = String, description = "Strong validator of this body, for `If-None-Match`")
            )),
        (status = 400, description = "`invalid_query`: the label is empty, too long, not UTF-8 or has control characters.", body = ErrorBody,
            example = json!({"code": "invalid_query", "message": "label must be 1 to 64 characters of UTF-8 without control characters"})),
        UnknownService,
        StoreUnavailable,
    )
)]
#[get("/v1/services/{id}/badge.svg")]
pub async fn service_badge(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<BadgeQuery>,
) -> Result<HttpResponse, ApiError> {
    let service = state.service(&id)?;
    let label = match &query.label {
        Some(label) => {
            let chars = label.chars().count();
            // Nor U+FFFE and U+FFFF, which XML does not allow either, nor U+FFFD: the query
            // decodes bytes that are not UTF-8 (`%FF`) to it, and the badge drew it.
            let unfit = |c: char| c.is_control() || matches!(c, '\u{fffd}'..='\u{ffff}');
            if !(1..=MAX_LABEL_CHARS).contains(&chars) || label.chars().any(unfit) {
                return Err(ApiError::invalid_query(format!(
                    "label must be 1 to {MAX_LABEL_CHARS} characters of UTF-8 without control \
                     characters"
                )));
            }
            label.clone()
        }
        None => service.name.clone(),
    };
    let (level, _, _) = level_of(&state, &service.id).await?;
    let (message, color) = match level {
        StatusLevel::Operational => ("operational", badge::GREEN),
        StatusLevel::PossibleProblems => ("possible problems", badge::YELLOW),
        StatusLevel::Outage => ("outage", badge::RED),
    };
    Ok(conditional(
        &req,
        SVG,
        badge::render(&label, message, color),
    ))
}

/// The feed the OpenAPI spec shows: written by the same code as the real ones.
fn example_feed(of_service: bool) -> String {
    use time::macros::datetime;
    let incident = Incident {
        id: "tiktok-1795262460".into(),
        service: "tiktok".parse().expect("a valid id"),
        status: IncidentStatus::Resolved,
        scope: Scope::Regional,
        regions: vec![
            "CA".parse().expect("a valid region"),
            "US".parse().expect("a valid region"),
        ],
        partial: true,
        problems: vec!["login".parse().expect("a valid problem")],
        caused_by: vec![],
        started_at: datetime!(2026-11-21 12:01 UTC),
        resolved_at: Some(datetime!(2026-11-21 12:40 UTC)),
        expected_per_min: 4.2,
        observed_per_min: 61.0,
    };
    let base = "https://downradar.example";
    let name = |id: &str| match id {
        "tiktok" => "TikTok".to_owned(),
        other => other.to_owned(),
    };
    let updated = datetime!(2026-11-21 12:56 UTC);
    let (id, title, path) = if of_service {
        (
            "urn:downradar:feed:incidents:service=tiktok",
            "downradar: TikTok incidents",
            "/v1/services/tiktok/incidents.atom",
        )
    } else {
        (
            "urn:downradar:feed:incidents",
            "downradar: incidents",
            "/v1/incidents.atom",
        )
    };
    atom::Feed {
        id: id.to_owned(),
        title: title.to_owned(),
        subtitle: None,
        self_href: format!("{base}{path}"),
        json_href: if of_service {
            format!("{base}/v1/incidents?service=tiktok")
        } else {
            format!("{base}/v1/incidents")
        },
        next_href: None,
        updated,
        author: "downradar".to_owned(),
        generator: ("downradar".to_owned(), HOME.to_owned()),
        entries: vec![atom::Entry {
            id: format!("urn:downradar:incident:{}", incident.id),
            title: entry_title("TikTok", &incident),
            updated,
            published: incident.started_at,
            json_href: format!("{base}/v1/incidents/{}", incident.id),
            categories: vec!["resolved".into(), "regional".into()],
            summary: entry_summary(&name, &incident),
        }],
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_checked() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:80",
            "[::1]:8080",
            "[2001:db8::1]",
            "status.example.org",
        ] {
            assert!(is_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example\"><x",
            "a b",
            "host:",
            "host:80:80",
            "host:123456",
            "[::1",
            "[not-ip]:80",
            "user@host",
            "host/path",
        ] {
            assert!(!is_authority(bad), "{bad}");
        }
    }

    #[test]
    fn example_feed_parses() {
        for of_service in [false, true] {
            let xml = example_feed(of_service);
            roxmltree::Document::parse(&xml).expect("well formed");
        }
    }

    #[test]
    fn titles_say_service_scope_regions_problems_and_state() {
        let xml = example_feed(false);
        assert!(
            xml.contains("<title>TikTok: outage in CA, US (login), resolved</title>"),
            "{xml}"
        );
        assert!(xml.contains("Reports per minute: 61.0 observed, 4.2 expected."));
    }

    #[test]
    fn small_rates_keep_two_significant_digits() {
        let written: Vec<String> = [0.0, 0.01, 0.012, 0.05, 0.099, 0.1, 4.24, 61.0]
            .into_iter()
            .map(per_min)
            .collect();
        assert_eq!(
            written,
            [
                "0.0", "0.010", "0.012", "0.050", "0.099", "0.1", "4.2", "61.0"
            ]
        );
    }
}
