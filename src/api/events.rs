//! `GET /v1/events`: the live incident feed as Server-Sent Events.
//!
//! Each incident event goes out exactly as the contract of DESIGN.md says, as the `data:` of
//! an SSE message whose `event:` is the event type and whose `id:` is its id on the store's
//! event stream. A client that reconnects with `Last-Event-ID` (browsers' `EventSource` does
//! so by itself) gets every event after that id from the stream, then the live ones, with no
//! gap and no duplicate; an id the stream no longer covers gets an `event: resync` instead,
//! telling the client to refetch the current state. Comments keep idle connections alive.
//!
//! Live events come from this process's [`Fanout`](crate::fanout::Fanout); replays read the
//! store directly.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use actix_web::http::{ConnectionType, StatusCode, Version, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ErrorBody, UnknownService};
use crate::catalog::ServiceId;
use crate::detector::{EventType, IncidentEvent};
use crate::fanout::{Fanout, Next, Published, Refused, Subscription, resync_frame};
use crate::regions::RegionCode;
use crate::store::{Store, StreamId, parse_stream_id};

/// The reconnection delay suggested to clients (`retry:`), in milliseconds.
pub const RETRY_MS: u64 = 3000;
/// Events read from the store per replayed page.
const REPLAY_PAGE: usize = 200;

/// Filters of the event feed.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events of this service's incidents, e.g. `tiktok`.
    #[param(value_type = Option<String>)]
    pub service: Option<String>,
    /// Only events of incidents that named this country (ISO 3166-1 alpha-2), e.g. `US`:
    /// every event of one from the first naming it on, so that the update taking the country
    /// out of a regional incident, and its resolution, are sent too.
    #[param(value_type = Option<String>)]
    pub region: Option<String>,
    /// Only these event types, comma-separated: `incident.opened`, `incident.updated`,
    /// `incident.resolved`; e.g. `incident.opened,incident.resolved`.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<String>)]
    pub kind: Option<String>,
    /// Where to resume, for clients that cannot send the `Last-Event-ID` header (which wins
    /// when both are given), e.g. `1795262580000-0`.
    #[param(value_type = Option<String>)]
    pub last_event_id: Option<String>,
}

/// Which events a subscriber wants.
#[derive(Debug, Default)]
struct Filter {
    service: Option<ServiceId>,
    region: Option<RegionCode>,
    kinds: Option<BTreeSet<&'static str>>,
}

impl Filter {
    fn parse(state: &AppState, query: &EventsQuery) -> Result<Self, ApiError> {
        let service = match &query.service {
            Some(id) => Some(state.service(id)?.id.clone()),
            None => None,
        };
        let region = super::region_filter(query.region.as_deref())?;
        let kinds = query
            .kind
            .as_deref()
            .map(|list| {
                list.split(',')
                    .map(|name| {
                        [EventType::Opened, EventType::Updated, EventType::Resolved]
                            .into_iter()
                            .map(EventType::as_str)
                            .find(|known| *known == name.trim())
                            .ok_or_else(|| {
                                ApiError::invalid_query(format!(
                                    "unknown event type {}; use incident.opened, \
                                     incident.updated or incident.resolved, comma-separated",
                                    super::error::quoted(name)
                                ))
                            })
                    })
                    .collect::<Result<BTreeSet<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            service,
            region,
            kinds,
        })
    }
}

/// Follow incident events (Server-Sent Events).
///
/// A `text/event-stream` of incident events, as they happen. Each message has `id:` (the
/// event's id on the stream, `<milliseconds>-<sequence>`), `event:` (its type) and `data:` (the
/// event JSON, the `IncidentEvent` schema). Reconnect with `Last-Event-ID` (or
/// `?last_event_id=`) to resume after the last event received: every later event is replayed,
/// none twice. `Last-Event-ID: 0` replays every event still retained (the server keeps them
/// for `--event-retention`, 24 h by default). When the id is older than what is retained (or
/// unknown to the stream), the stream starts with `event: resync` (its `data` says why): the
/// client may have missed events and should refetch `GET /v1/incidents?active=true`; live
/// events follow. An open stream gets the same `event: resync`, whatever its filters, when the
/// store loses the event stream (Redis restarted without its data) or its last events (Redis
/// restarted from an older snapshot), and so does an id the stream no longer holds for that
/// reason. Without an id (or with an empty one), the stream starts with live events only,
/// and its opening carries the `id:` it starts after, so that a client reconnecting before
/// its first event misses nothing.
///
/// The stream begins with a `retry:` hint; a comment (`: heartbeat`) comes every 15 s (`--sse-heartbeat`)
/// when nothing else does, carrying the `id:` of the last event the filters passed over, so a
/// resume skips them. A client that cannot keep up is disconnected and should reconnect with
/// its `Last-Event-ID`; one that stops reading altogether is disconnected once what was sent
/// to it has waited unread for `--client-stall-timeout` (60 s). One client address may hold
/// at most `--max-subscribers-per-address` (64) streams at once (429 `too_many_streams`).
/// Before a stream is refused for lack of room, every stream (the address's own, when the
/// address is at its limit) gets a heartbeat, 250 ms apart, up to four times until there is
/// a place for every stream waiting, so that places held by clients that have left are
/// freed: a refusal takes up to 3 s, and reconnects are not refused for the places they
/// just left.
/// When the stream cannot be served for now (503 or 429), a client that accepts
/// `text/event-stream` gets a 200 stream with a `retry:` delay and an `event: unavailable`
/// that ends at once, since a browser's `EventSource` never reconnects after an answer other
/// than 200.
///
/// Swagger UI's "Try it out" waits for the end of the answer, which a stream never reaches:
/// follow it with `curl -N` or an `EventSource` instead.
#[utoipa::path(
    tag = "incidents",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id, e.g. `1795262580000-0` (`0`: replay everything retained)."),
    ),
    responses(
        (status = 200, description = "The event stream (never ends by itself). Each `data:` is an `IncidentEvent`; `event: resync` carries `{\"reason\": …, \"last_event_id\": …}`.",
            content_type = "text/event-stream", body = IncidentEvent,
            headers(
                ("Cache-Control" = String, description = "`no-cache`"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies must not buffer the stream"),
            ),
            example = json!("retry: 3000\nid: 1795262400000-0\n: downradar incident events\n\nid: 1795262580000-0\nevent: incident.opened\ndata: {\"type\":\"incident.opened\",\"at\":\"2026-11-21T12:03:00Z\",\"incident\":{\"id\":\"tiktok-1795262460\",\"service\":\"tiktok\",\"status\":\"open\",\"scope\":\"regional\",\"regions\":[\"US\"],\"partial\":true,\"problems\":[\"app\",\"login\"],\"caused_by\":[],\"started_at\":\"2026-11-21T12:01:00Z\",\"resolved_at\":null,\"expected_per_min\":4.2,\"observed_per_min\":61.0}}\n\n: heartbeat\n\n")),
        (status = 400, description = "`invalid_query` (a bad region or event type) or `invalid_last_event_id`.", body = ErrorBody,
            example = json!({"code": "invalid_last_event_id", "message": "Last-Event-ID \"abc\" is not an event id (<milliseconds>-<sequence>, as sent in each event's id: field, or 0 for every retained event)"})),
        UnknownService,
        (status = 503, description = "`unavailable` (the store failed while looking up `Last-Event-ID`, the server has not reached the store since it started, or it is shutting down) or `too_many_subscribers`. A client that accepts `text/event-stream` (a browser's `EventSource`, which would give up for good on a 503) gets instead a 200 stream of `retry: 3000`, `event: unavailable` and this error as `data`, which ends at once: it reconnects by itself, with its `Last-Event-ID`, after the delay.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
            example = json!({"code": "too_many_subscribers", "message": "this server already streams events to 10000 subscribers; retry shortly"})),
        (status = 429, description = "`too_many_streams`: the client's address (the peer's, or the one a trusted proxy forwarded; an IPv6 /64 counts as one, or the prefix `--ipv6-limit-prefix` gives) already holds `--max-subscribers-per-address` streams. A client that accepts `text/event-stream` gets instead the 200 stream of `event: unavailable` described under 503.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying")),
            example = json!({"code": "too_many_streams", "message": "this address already follows the event feed on 64 connections, the most one address may; close one, or retry later"})),
    )
)]
#[get("/v1/events")]
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    match open(&state, &req, query.into_inner()).await {
        // A browser's EventSource gives up for good on any answer but 200 (it ignores
        // Retry-After): it gets a stream that says "retry later" and ends, and reconnects by
        // itself, with its Last-Event-ID, once the delay is over.
        Err(error)
            if matches!(
                actix_web::ResponseError::status_code(&error),
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
            ) && accepts_event_stream(&req) =>
        {
            let data = serde_json::to_string(error.body()).unwrap_or_default();
            Ok(HttpResponse::Ok()
                .content_type("text/event-stream")
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .body(format!(
                    "retry: {RETRY_MS}\nevent: unavailable\ndata: {data}\n\n"
                )))
        }
        result => result,
    }
}

/// Whether the client asked for an event stream by name (as `EventSource` does), and not
/// with `q=0` (which refuses it).
fn accepts_event_stream(req: &HttpRequest) -> bool {
    use actix_web::HttpMessage;
    req.get_header::<header::Accept>().is_some_and(|accept| {
        accept.iter().any(|item| {
            item.item
                .essence_str()
                .eq_ignore_ascii_case("text/event-stream")
                && item.quality > header::Quality::ZERO
        })
    })
}

/// The stream of `GET /v1/events`, or why there is none.
async fn open(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    query: EventsQuery,
) -> Result<HttpResponse, ApiError> {
    let filter = Filter::parse(state, &query)?;
    // An empty id is no id (some clients send the header empty before their first event).
    let resume = req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned())
        .filter(|id| !id.trim().is_empty())
        .or(query.last_event_id.filter(|id| !id.trim().is_empty()));
    let resume = resume
        .map(|id| parse_stream_id(id.trim()).ok_or_else(|| ApiError::invalid_last_event_id(&id)))
        .transpose()?;
    // A HEAD gets the stream's headers (or the GET's refusal of its filters or its id), not
    // a subscription nobody will read: the connection would stay open, holding its place
    // among the subscribers, until shutdown. So it is never refused for want of a place.
    if super::is_head(req) {
        // With a streamed (empty) body, so its framing headers are the GET's too.
        return Ok(stream_head()
            .streaming(futures_util::stream::empty::<Result<Bytes, actix_web::Error>>()));
    }
    // Subscribe before looking at the stream, so that nothing added meanwhile is missed.
    let address = state.limited_address(state.client_addr(req));
    let subscribed = match state.fanout.subscribe(address) {
        // The places may be held by clients that have left unnoticed (a reconnect from the
        // same address, typically): reclaim them and try once more.
        Err(refused @ (Refused::Full | Refused::AddressFull)) => {
            let of = (refused == Refused::AddressFull).then_some(address);
            state.fanout.reclaim(of).await;
            state.fanout.subscribe(address)
        }
        subscribed => subscribed,
    };
    let (subscription, position) = subscribed.map_err(|refused| match refused {
        Refused::Closed => ApiError::unavailable(),
        Refused::Full => ApiError::too_many_subscribers(state.fanout.max_subscribers()),
        Refused::AddressFull => ApiError::too_many_streams(state.fanout.per_address()),
    })?;
    // Until the fan-out knows where the stream ends (the store was down at start), live
    // events cannot be matched to a position: retry shortly.
    let Some(position) = position else {
        return Err(ApiError::unavailable());
    };
    let mut head = format!("retry: {RETRY_MS}\n: downradar incident events\n\n");
    let phase = match resume {
        None => {
            // Where the subscription starts, as an id (`0` on an empty stream: everything
            // added later): a client that reconnects before its first event resumes from
            // here instead of missing what came in between.
            let id = match position {
                (0, 0) => "0".to_owned(),
                (ms, seq) => format!("{ms}-{seq}"),
            };
            head = format!("retry: {RETRY_MS}\nid: {id}\n: downradar incident events\n\n");
            Phase::Live {
                skip_through: Some(position),
            }
        }
        Some(id) => {
            // Looked up for `0` too: a store that does not answer gets its 503 (or
            // `event: unavailable`) now, not a 200 stream that ends before its first event.
            let bounds = state
                .store
                .stream_bounds()
                .await
                .map_err(|e| super::incidents::unavailable("events", &e))?;
            let lost = id != (0, 0)
                && id >= bounds.trimmed_through
                && id <= bounds.last
                && bounds.lost(
                    id,
                    state
                        .store
                        .holds_event(id)
                        .await
                        .map_err(|e| super::incidents::unavailable("events", &e))?,
                );
            if id == (0, 0) {
                Phase::Replay { after: id }
            } else if id < bounds.trimmed_through || id > bounds.last || lost {
                let reason = if id > bounds.last {
                    "the event stream does not know this id (it was reset)"
                } else if lost {
                    "the event stream no longer holds this id (the store went back to an older state)"
                } else {
                    "events after this id are no longer retained (trimmed, or the stream was reset)"
                };
                head.push_str(&resync_frame(bounds.last, reason, id));
                Phase::Live {
                    skip_through: Some(bounds.last),
                }
            } else {
                Phase::Replay { after: id }
            }
        }
    };
    let every = state.fanout.heartbeat();
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        store: state.store.clone(),
        fanout: state.fanout.clone(),
        subscription,
        filter,
        phase,
        heartbeat,
        passed_over: None,
        named: HashMap::new(),
    };
    let head = futures_util::stream::once(async move { Ok(Bytes::from(head)) });
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next_chunk().await?;
        Some((Ok::<_, actix_web::Error>(chunk), feed))
    });
    let mut response = stream_head().streaming(futures_util::StreamExt::chain(head, body));
    if req.version() < Version::HTTP_11 {
        // HTTP/1.0 has no chunked transfer coding (actix would use it anyway, and a 1.0
        // client, or a proxy speaking 1.0 upstream as nginx does by default, would read its
        // chunk sizes as part of the events): the stream is the rest of the connection.
        response.head_mut().no_chunking(true);
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

/// The head of an event stream's answer: the type, and no caching or buffering on the way.
fn stream_head() -> actix_web::HttpResponseBuilder {
    let mut head = HttpResponse::Ok();
    head.content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"));
    head
}

enum Phase {
    /// Sending the stored events after `after`.
    Replay { after: StreamId },
    /// Sending live events, except those up to `skip_through` (already sent, or covered by a
    /// resync).
    Live { skip_through: Option<StreamId> },
}

/// One subscriber's stream.
struct Feed {
    store: Arc<dyn Store>,
    fanout: Arc<Fanout>,
    subscription: Subscription,
    filter: Filter,
    phase: Phase,
    heartbeat: tokio::time::Interval,
    /// The newest event the filters passed over since the last message sent.
    passed_over: Option<StreamId>,
    /// With a region filter, the incidents this stream has seen events of, and whether one
    /// of them named the region (see [`Feed::passes`]).
    named: HashMap<String, bool>,
}

impl Feed {
    /// Whether the stream sends `event`. With a region filter, an incident's events are sent
    /// from the first that names the region on, whatever the later ones name: the client
    /// learns that the region left a regional incident, and that the incident resolved.
    /// (Filtered on each event's own regions, a client following a country kept an outage
    /// there open for good once an update took the country out.) An incident first seen
    /// after its opening (open when the stream began, or replayed from the middle) is looked
    /// up in its record, once per event for all streams (see [`Fanout::named_before`]);
    /// should that fail, the event is sent, and the next looked up again.
    async fn passes(&mut self, event: &Published) -> bool {
        if self
            .filter
            .service
            .as_ref()
            .is_some_and(|s| *s != event.service)
        {
            return false;
        }
        // Tracked whatever its type: an update the type filter leaves out still names the
        // region.
        self.track_region(event).await
            && self
                .filter
                .kinds
                .as_ref()
                .is_none_or(|k| k.contains(event.kind.as_str()))
    }

    /// Whether `event`'s incident named the filter's region in this event or one before
    /// (true without a region filter), remembered for the events that follow.
    async fn track_region(&mut self, event: &Published) -> bool {
        let Some(region) = self.filter.region else {
            return true;
        };
        let known = match self.named.get(&event.incident) {
            Some(&named) => named,
            None if event.kind == EventType::Opened => false,
            None => match self.fanout.named_before(self.store.as_ref(), event).await {
                Some(named) => named.contains(&region),
                // Should the store not tell, the client gets the event, and the incident's
                // next one is looked up again.
                None => return true,
            },
        };
        let named = known || event.regions.contains(&region);
        if event.kind == EventType::Resolved {
            self.named.remove(&event.incident);
        } else {
            self.named.insert(event.incident.clone(), named);
        }
        named
    }

    /// The next bytes to send; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            match self.phase {
                Phase::Replay { after } => {
                    let from = format!("{}-{}", after.0, after.1);
                    let page = tokio::select! {
                        page = self.store.events_after(&from, REPLAY_PAGE) => page,
                        () = self.subscription.closed() => return None,
                    };
                    let page = match page {
                        Ok(page) => page,
                        Err(e) => {
                            // The client resumes from what it got.
                            tracing::warn!(error = %e, "ending an event stream: the store failed during a replay");
                            return None;
                        }
                    };
                    let mut chunk = Vec::new();
                    let mut last = after;
                    for event in &page {
                        if let Some(published) = Published::render(event) {
                            last = published.id;
                            if self.passes(&published).await {
                                chunk.extend_from_slice(&published.frame);
                            }
                        }
                    }
                    self.phase = if page.len() < REPLAY_PAGE {
                        Phase::Live {
                            skip_through: Some(last),
                        }
                    } else {
                        Phase::Replay { after: last }
                    };
                    if !chunk.is_empty() {
                        self.passed_over = None;
                        self.heartbeat.reset();
                        return Some(Bytes::from(chunk));
                    }
                    if last > after {
                        self.passed_over = Some(last);
                    }
                }
                Phase::Live { skip_through } => {
                    let next = tokio::select! {
                        next = self.subscription.next() => next,
                        // A heartbeat is due.
                        _ = self.heartbeat.tick() => Next::Probe,
                    };
                    match next {
                        Next::Probe => {
                            return Some(match self.passed_over.take() {
                                Some((ms, seq)) => {
                                    Bytes::from(format!("id: {ms}-{seq}\n: heartbeat\n\n"))
                                }
                                None => Bytes::from_static(b": heartbeat\n\n"),
                            });
                        }
                        Next::Event(event) => {
                            if skip_through.is_some_and(|s| event.id <= s) {
                                continue;
                            }
                            if self.passes(&event).await {
                                self.passed_over = None;
                                self.heartbeat.reset();
                                return Some(event.frame.clone());
                            }
                            self.passed_over = Some(event.id);
                        }
                        Next::Reset(frame) => {
                            // Whatever the filters: what the client knows may be gone.
                            self.phase = Phase::Live { skip_through: None };
                            self.passed_over = None;
                            self.named.clear();
                            self.heartbeat.reset();
                            return Some(frame);
                        }
                        Next::Lagged => {
                            metrics::counter!("downradar_sse_lagged_total").increment(1);
                            return None;
                        }
                        Next::Closed => return None,
                    }
                }
            }
        }
    }
}
