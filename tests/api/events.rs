//! `GET /v1/events`: the SSE feed, read by a real HTTP client. Events are written to the store
//! as the detector's leader writes them (a commit under the lease, or an `XADD` by another
//! process), so the tests control exactly what is on the stream.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use downradar::catalog::{Problem, ServiceId};
use downradar::detector::{EventType, Incident, IncidentEvent, IncidentStatus, Scope};
use downradar::regions::RegionCode;
use downradar::store::Store;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use time::OffsetDateTime;

use crate::helpers::{Backend, RedisServer, header, spawn_app_with, start_binary, test_epoch};
use crate::on_both_stores;

/// One SSE message (the lines up to a blank line).
#[derive(Debug, Default, Clone, PartialEq)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comments: Vec<String>,
}

impl Message {
    fn is_event(&self) -> bool {
        self.data.is_some()
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<actix_web::web::Bytes>> + Send>>;

/// A connected SSE client.
struct Sse {
    body: Body,
    buffer: String,
    ready: VecDeque<Message>,
    /// The stream's first message (its `retry:`, and the `id:` it starts after).
    opening: Message,
}

impl Sse {
    /// Connects; panics unless the answer is a 200 event stream with the headers that keep
    /// proxies from buffering.
    async fn connect(url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("GET /v1/events");
        assert_eq!(response.status(), 200, "{url}");
        let header = |name: &str| header(&response, name);
        assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
        assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
        assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
        let mut sse = Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            ready: VecDeque::new(),
            opening: Message::default(),
        };
        sse.opening = sse
            .next(Duration::from_secs(5))
            .await
            .expect("a first message");
        assert_eq!(sse.opening.retry, Some(3000), "{:?}", sse.opening);
        sse
    }

    /// The next message within `wait`, or `None`.
    async fn next(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Some(message);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??
                .expect("stream chunk");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = Message::default();
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if let Some(comment) = line.strip_prefix(':') {
                        message.comments.push(comment.trim().to_owned());
                        continue;
                    }
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "id" => message.id = Some(value.to_owned()),
                        "event" => message.event = Some(value.to_owned()),
                        "data" => message.data = Some(value.to_owned()),
                        "retry" => message.retry = value.parse().ok(),
                        other => panic!("unexpected SSE field {other:?} in {block:?}"),
                    }
                }
                self.ready.push_back(message);
            }
        }
    }

    /// The next event (skipping heartbeats) within `wait`.
    async fn next_event(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.next(left).await?;
            if message.is_event() {
                return Some(message);
            }
        }
    }

    /// The next `n` events, each within 10 s.
    async fn events(&mut self, n: usize) -> Vec<Message> {
        let mut out = Vec::new();
        for i in 0..n {
            let message = self
                .next_event(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("event {i} of {n} did not come; got {out:?}"));
            out.push(message);
        }
        out
    }

    /// Asserts that no further event comes within a short while.
    async fn assert_quiet(&mut self) {
        if let Some(extra) = self.next_event(Duration::from_millis(500)).await {
            panic!("unexpected event {extra:?}");
        }
    }
}

pub(crate) fn event(kind: EventType, service: &str, start: i64, regions: &[&str]) -> IncidentEvent {
    let started_at = OffsetDateTime::from_unix_timestamp(start).unwrap();
    let service = ServiceId::parse(service).unwrap();
    let resolved = kind == EventType::Resolved;
    IncidentEvent {
        kind,
        at: started_at + Duration::from_secs(180),
        incident: Incident {
            id: Incident::id_for(&service, start),
            service,
            status: if resolved {
                IncidentStatus::Resolved
            } else {
                IncidentStatus::Open
            },
            scope: Scope::Regional,
            regions: regions
                .iter()
                .map(|r| RegionCode::parse(r).unwrap())
                .collect(),
            partial: false,
            problems: vec![Problem::parse("app").unwrap()],
            caused_by: vec![],
            started_at,
            resolved_at: resolved.then(|| started_at + Duration::from_secs(1200)),
            expected_per_min: 2.0,
            observed_per_min: 40.0,
        },
    }
}

/// Commits `events` as the detector's leader would; returns their stream ids.
pub(crate) async fn commit(store: &dyn Store, events: &[IncidentEvent]) -> Vec<String> {
    assert!(
        store
            .acquire_lease("test-leader", Duration::from_secs(3600))
            .await
            .unwrap()
    );
    crate::store::commit_events(store, "test-leader", events)
        .await
        .unwrap()
}

/// Asserts that `message` carries `event` with stream id `id`, exactly as the contract says.
fn assert_carries(message: &Message, id: &str, event: &IncidentEvent) {
    assert_eq!(message.id.as_deref(), Some(id), "{message:?}");
    assert_eq!(message.event.as_deref(), Some(event.kind.as_str()));
    let data: Value = serde_json::from_str(message.data.as_deref().unwrap()).unwrap();
    assert_eq!(data, serde_json::to_value(event).unwrap());
}

/// Asserts that a client accepting `text/event-stream` (a browser's `EventSource`, which gives
/// up for good on any status but 200) is answered with a 200 stream that tells it to retry,
/// carrying the error `code`, and ends.
async fn assert_told_to_retry(app: &crate::helpers::TestApp, url: &str, code: &str) {
    let browser = app
        .client
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 200);
    assert_eq!(
        header(&browser, "content-type").as_deref(),
        Some("text/event-stream")
    );
    let body = tokio::time::timeout(Duration::from_secs(5), browser.text())
        .await
        .expect("it ends")
        .unwrap();
    assert!(
        body.starts_with("retry: 3000\nevent: unavailable\ndata: {"),
        "{body}"
    );
    assert!(
        body.contains(&format!("\"code\":\"{code}\"")) && body.ends_with("\n\n"),
        "{body}"
    );
}

/// Waits (at most 10 s) until a stream is accepted at `url`, answered `refused` until then.
async fn wait_for_a_place(app: &crate::helpers::TestApp, url: &str, refused: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.client.get(url).send().await.unwrap();
        if response.status() == 200 {
            return;
        }
        assert_eq!(response.status(), refused);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_stores! {
    /// Live events, a resume with no gap and no duplicate, replays of everything, filters,
    /// an unknown id, and the errors.
    async fn events_are_streamed_and_resumed(app, "--no-detector") {
        let url = app.url("/v1/events");
        let mut live = Sse::connect(&url, None).await;
        let start = test_epoch().unix_timestamp() - 600;
        let first = [
            event(EventType::Opened, "tiktok", start, &["US"]),
            event(EventType::Updated, "tiktok", start, &["CA", "US"]),
            event(EventType::Opened, "netflix", start + 60, &["DE"]),
        ];
        let ids = commit(app.store.as_ref(), &first).await;
        for ((message, id), event) in live.events(3).await.iter().zip(&ids).zip(&first) {
            assert_carries(message, id, event);
        }

        // Resuming after the first event replays the two after it, then goes on live.
        let mut resumed = Sse::connect(&url, Some(&ids[0])).await;
        let replayed = resumed.events(2).await;
        assert_carries(&replayed[0], &ids[1], &first[1]);
        assert_carries(&replayed[1], &ids[2], &first[2]);
        let resolved = event(EventType::Resolved, "tiktok", start, &["CA", "US"]);
        let last = commit(app.store.as_ref(), std::slice::from_ref(&resolved)).await;
        assert_carries(&resumed.events(1).await[0], &last[0], &resolved);
        assert_carries(&live.events(1).await[0], &last[0], &resolved);
        resumed.assert_quiet().await;
        live.assert_quiet().await;

        // `0` replays everything; filters apply to replays and live events alike.
        let mut everything = Sse::connect(&url, Some("0")).await;
        let all: Vec<Option<String>> = everything.events(4).await.into_iter().map(|m| m.id).collect();
        assert_eq!(all, [&ids[..], &last[..]].concat().into_iter().map(Some).collect::<Vec<_>>());
        let mut netflix = Sse::connect(&app.url("/v1/events?service=netflix&last_event_id=0"), None).await;
        assert_carries(&netflix.events(1).await[0], &ids[2], &first[2]);
        netflix.assert_quiet().await;
        let mut us_resolutions =
            Sse::connect(&app.url("/v1/events?region=US&type=incident.resolved,incident.opened"), Some("0")).await;
        let got: Vec<Option<String>> = us_resolutions.events(2).await.into_iter().map(|m| m.id).collect();
        assert_eq!(got, [Some(ids[0].clone()), Some(last[0].clone())]);

        // An id the stream never made: resync, then live events.
        let mut reset = Sse::connect(&url, Some("99999999999999-0")).await;
        let resync = reset.next_event(Duration::from_secs(5)).await.unwrap();
        assert_eq!(resync.event.as_deref(), Some("resync"));
        assert_eq!(resync.id.as_deref(), Some(last[0].as_str()));
        let data: Value = serde_json::from_str(resync.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["last_event_id"], "99999999999999-0");
        let again = event(EventType::Opened, "tiktok", start + 1800, &["US"]);
        let again_id = commit(app.store.as_ref(), std::slice::from_ref(&again)).await;
        assert_carries(&reset.events(1).await[0], &again_id[0], &again);

        // Errors are the JSON errors of every route.
        let bad_id = app
            .client
            .get(&url)
            .header("Last-Event-ID", "yesterday")
            .send()
            .await
            .unwrap();
        let bad_id = crate::helpers::Answer::from(bad_id).await;
        assert_eq!((bad_id.status, bad_id.error_code().as_str()), (400, "invalid_last_event_id"));
        // A HEAD is refused as its GET is, not told the stream is fine.
        for head in [
            app.client.head(&url).header("Last-Event-ID", "yesterday"),
            app.client.head(app.url("/v1/events?last_event_id=yesterday")),
            app.client.head(app.url("/v1/events?service=myspace")),
        ] {
            let status = head.send().await.unwrap().status().as_u16();
            assert!(status == 400 || status == 404, "{status}");
        }
        let unknown = app.get("/v1/events?service=myspace").await;
        assert_eq!((unknown.status, unknown.error_code().as_str()), (404, "unknown_service"));
        let bad_type = app.get("/v1/events?type=incident.exploded").await;
        assert_eq!((bad_type.status, bad_type.error_code().as_str()), (400, "invalid_query"));
        let bad_region = app.get("/v1/events?region=XX").await;
        assert_eq!(bad_region.status, 400);
    }

    /// A stream opened without an id (or an empty one) starts by saying where it starts, so
    /// a client that reconnects before its first event misses nothing.
    async fn a_new_stream_says_where_it_starts(app, "--no-detector") {
        let url = app.url("/v1/events");
        // On an empty stream: `0`, everything added later (once the fan-out has looked).
        let mut opening = None;
        for _ in 0..50 {
            opening = Sse::connect(&url, None).await.opening.id;
            if opening.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(opening.as_deref(), Some("0"));
        let early = Sse::connect(&url, Some("")).await;
        assert_eq!(early.opening.id.as_deref(), Some("0"), "an empty id is no id");
        drop(early);
        let start = test_epoch().unix_timestamp();
        let missed = event(EventType::Opened, "tiktok", start, &["US"]);
        let ids = commit(app.store.as_ref(), std::slice::from_ref(&missed)).await;
        // Reconnecting from the opening id gets what came while it was away.
        let mut back = Sse::connect(&url, Some("0")).await;
        assert_carries(&back.events(1).await[0], &ids[0], &missed);

        // Once there are events, a new stream starts after the newest.
        let mut live = Sse::connect(&app.url("/v1/events?last_event_id="), None).await;
        assert_eq!(live.opening.id.as_deref(), Some(ids[0].as_str()));
        live.assert_quiet().await;
        let next = event(EventType::Resolved, "tiktok", start, &["US"]);
        let next_id = commit(app.store.as_ref(), std::slice::from_ref(&next)).await;
        assert_carries(&live.events(1).await[0], &next_id[0], &next);
    }

    /// Idle streams get heartbeats, which carry the id of events the filters passed over.
    async fn idle_streams_get_heartbeats(app, "--no-detector", "--sse-heartbeat", "1s") {
        let mut netflix = Sse::connect(&app.url("/v1/events?service=netflix"), None).await;
        let beat = netflix.next(Duration::from_secs(3)).await.expect("a heartbeat");
        assert_eq!((beat.comments.as_slice(), beat.id.as_deref()), (&["heartbeat".to_owned()][..], None));
        let start = test_epoch().unix_timestamp();
        let ids = commit(app.store.as_ref(), &[event(EventType::Opened, "tiktok", start, &["US"])]).await;
        let beat = netflix.next(Duration::from_secs(3)).await.expect("a heartbeat");
        assert!(!beat.is_event());
        assert_eq!(beat.id.as_deref(), Some(ids[0].as_str()), "{beat:?}");
    }

    /// A server streams to at most --max-subscribers clients; a place frees when one leaves.
    async fn subscribers_are_limited(app, "--no-detector", "--max-subscribers", "1", "--sse-heartbeat", "1s") {
        let url = app.url("/v1/events");
        let first = Sse::connect(&url, None).await;
        // A HEAD takes no place, and gets the GET's headers: no length, as for a stream.
        let head = app.client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(header(&head, "content-type").as_deref(), Some("text/event-stream"));
        assert_eq!(header(&head, "content-length"), None);
        let refused = app.get("/v1/events").await;
        assert_eq!((refused.status, refused.error_code().as_str()), (503, "too_many_subscribers"));
        assert!(refused.retry_after.is_some());
        // A browser's EventSource would give up for good on a 503: it is told to retry.
        assert_told_to_retry(&app, &url, "too_many_subscribers").await;
        // As is any client that names the stream among what it accepts, but not one that
        // refuses it (`q=0`), which gets the JSON 503.
        for (accept, status) in [
            ("application/json;q=0.5, Text/Event-Stream", 200),
            ("text/event-stream;q=0, application/json", 503),
        ] {
            let answer = app.client.get(&url).header("accept", accept).send().await.unwrap();
            assert_eq!(answer.status().as_u16(), status, "{accept}");
        }
        drop(first);
        wait_for_a_place(&app, &url, 503).await;
    }
}

on_both_stores! {
    /// One client address holds at most --max-subscribers-per-address streams; another
    /// client behind a trusted proxy is not counted with the proxy.
    async fn streams_are_limited_per_address(app, "--no-detector", "--max-subscribers-per-address", "2", "--trusted-proxies", "127.0.0.1", "--sse-heartbeat", "1s") {
        let url = app.url("/v1/events");
        let first = Sse::connect(&url, None).await;
        let _second = Sse::connect(&url, None).await;
        let refused = app.get("/v1/events").await;
        assert_eq!((refused.status, refused.error_code().as_str()), (429, "too_many_streams"));
        assert_eq!(refused.retry_after.as_deref(), Some("3"));
        // EventSource is told to retry, as for a 503.
        assert_told_to_retry(&app, &url, "too_many_streams").await;
        // A client behind the trusted proxy (the peer) is another address.
        let behind = app.client.get(&url).header("x-forwarded-for", "203.0.113.9").send().await.unwrap();
        assert_eq!(behind.status(), 200);
        drop(first);
        wait_for_a_place(&app, &url, 429).await;
    }

    /// With `--ipv6-limit-prefix 48`, a client's /64s within one /48 share its allowance.
    async fn streams_may_be_limited_per_48(app, "--no-detector", "--max-subscribers-per-address", "2", "--trusted-proxies", "127.0.0.1", "--ipv6-limit-prefix", "48") {
        let url = app.url("/v1/events");
        let from = |address: &'static str| {
            let request = app.client.get(&url).header("x-forwarded-for", address);
            async move { request.send().await.unwrap() }
        };
        let a = from("2001:db8:1:1::1").await;
        let b = from("2001:db8:1:2::1").await;
        assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
        let refused = from("2001:db8:1:ffff::1").await;
        assert_eq!(refused.status().as_u16(), 429, "a third /64 of the /48");
        let other = from("2001:db8:2::1").await;
        assert_eq!(other.status().as_u16(), 200, "another /48");
    }
}

on_both_stores! {
    /// A client that closed its stream is noticed only when a write to it fails, a heartbeat
    /// or two later (15 s each here, the default): its reconnect from the same address, or
    /// another client's, must not be refused meanwhile for the place it left.
    async fn a_client_that_left_gives_its_place_to_the_next_at_once(app, "--no-detector", "--max-subscribers", "2", "--max-subscribers-per-address", "1", "--trusted-proxies", "127.0.0.1") {
        let url = app.url("/v1/events");
        let first = Sse::connect(&url, None).await;
        drop(first);
        let again = Sse::connect(&url, None).await;
        // A client still there keeps its place.
        let refused = app.get("/v1/events").await;
        assert_eq!((refused.status, refused.error_code().as_str()), (429, "too_many_streams"));
        // The same for the places of the whole process: two other addresses behind the proxy.
        let other = |last: u8| {
            app.client
                .get(&url)
                .header("x-forwarded-for", format!("203.0.113.{last}"))
                .send()
        };
        let second = other(1).await.unwrap();
        assert_eq!(second.status(), 200);
        drop(again);
        drop(second);
        assert_eq!(other(2).await.unwrap().status(), 200);
    }
}

on_both_stores! {
    /// HTTP/1.0 has no chunked transfer coding: a 1.0 client (or a proxy speaking 1.0
    /// upstream, nginx's default) gets the events as the rest of the connection, with no
    /// chunk sizes among them, and the connection is not kept alive after it.
    async fn an_http_1_0_client_gets_the_stream_unchunked(app, "--no-detector") {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = app.address.trim_start_matches("http://").to_owned();
        let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        let request = format!("GET /v1/events HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        // Reads until `done` holds of all that was received.
        let mut received = Vec::new();
        let mut read_until = async |done: &dyn Fn(&str) -> bool| {
            while !done(&String::from_utf8_lossy(&received)) {
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
                    .await
                    .unwrap_or_else(|_| panic!("timed out with {:?}", String::from_utf8_lossy(&received)))
                    .unwrap();
                assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&received));
                received.extend_from_slice(&chunk[..n]);
            }
            String::from_utf8(received.clone()).unwrap()
        };
        read_until(&|text| text.contains("retry: 3000")).await;
        let start = test_epoch().unix_timestamp();
        let sent = event(EventType::Opened, "tiktok", start, &["US"]);
        let ids = commit(app.store.as_ref(), std::slice::from_ref(&sent)).await;
        // The whole message: its id, then everything up to the blank line that ends it.
        let id = format!("id: {}\n", ids[0]);
        let text = read_until(&|text| text.split_once(&id).is_some_and(|(_, rest)| rest.contains("\n\n"))).await;
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        let head = head.to_ascii_lowercase();
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert!(!head.contains("keep-alive"), "the stream ends with the connection: {head}");
        assert!(body.starts_with("retry: 3000\n"), "{body:?}");
        for line in body.lines().filter(|l| !l.is_empty()) {
            assert!(
                ["retry: ", "id: ", "event: ", "data: ", ":"].iter().any(|field| line.starts_with(field)),
                "not an SSE line: {line:?} in {body:?}"
            );
        }
        let data = body.lines().find_map(|l| l.strip_prefix("data: ")).expect("the event's data");
        let got: IncidentEvent = serde_json::from_str(data).unwrap();
        assert_eq!(got, sent);
    }
}

/// A client that stops reading its stream is disconnected once what was sent to it has waited
/// unread for --client-stall-timeout, and its place is freed: its stream is not polled, so it
/// never learns that it lagged, and would hold the place until shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_gives_up_its_place() {
    let app = spawn_app_with(
        Backend::Memory,
        &[
            "--no-detector",
            "--max-subscribers",
            "1",
            "--sse-heartbeat",
            "1s",
            "--client-stall-timeout",
            "2s",
        ],
    )
    .await;
    let host = app.address.trim_start_matches("http://").to_owned();
    // A client with a small receive buffer that never reads.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address: std::net::SocketAddr = host.parse().unwrap();
    socket.connect(&address.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let stalled = tokio::net::TcpStream::from_std(socket.into()).unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /v1/events HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut stalled = stalled;
    stalled.write_all(request.as_bytes()).await.unwrap();
    // It reads the stream's opening (so it has subscribed), then no more.
    let mut opening = Vec::new();
    while !String::from_utf8_lossy(&opening).contains("retry: 3000") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut chunk))
            .await
            .expect("the stream's opening")
            .unwrap();
        assert!(n > 0, "the server closed the stream");
        opening.extend_from_slice(&chunk[..n]);
    }
    // Fill its receive window and the server's send buffer, well within the fan-out's ring
    // (a lagging subscriber would be let go when next polled, which a stalled one is not).
    let start = test_epoch().unix_timestamp();
    let events: Vec<IncidentEvent> = (0..300)
        .map(|i| {
            event(
                EventType::Opened,
                "tiktok",
                start + 60 * i,
                &["US", "DE", "FR", "GB"],
            )
        })
        .collect();
    commit(app.store.as_ref(), &events).await;
    let stalled_at = tokio::time::Instant::now();
    // It holds the one place.
    let refused = app.client.get(app.url("/v1/events")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    loop {
        let response = app.client.get(app.url("/v1/events")).send().await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(
            stalled_at.elapsed() < Duration::from_secs(20),
            "the stalled client still holds its place"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Not before the timeout: it was the kernel's timeout that freed the place.
    assert!(
        stalled_at.elapsed() >= Duration::from_secs(1),
        "{:?}",
        stalled_at.elapsed()
    );
    drop(stalled);
}

/// An id older than what the stream retains gets a resync; the id of the last trimmed event
/// does not (nothing after it was lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_past_the_retention_gets_a_resync() {
    let app = spawn_app_with(
        Backend::Memory,
        &["--no-detector", "--event-retention", "1h"],
    )
    .await;
    let start = test_epoch().unix_timestamp();
    let old = commit(
        app.store.as_ref(),
        &[
            event(EventType::Opened, "tiktok", start, &["US"]),
            event(EventType::Updated, "tiktok", start, &["US", "CA"]),
        ],
    )
    .await;
    app.clock.advance(Duration::from_secs(7200));
    let newer = event(EventType::Resolved, "tiktok", start, &["US", "CA"]);
    let new = commit(app.store.as_ref(), std::slice::from_ref(&newer)).await;

    let url = app.url("/v1/events");
    let mut lost = Sse::connect(&url, Some(&old[0])).await;
    let resync = lost.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(resync.event.as_deref(), Some("resync"));
    assert_eq!(resync.id.as_deref(), Some(new[0].as_str()));
    lost.assert_quiet().await;

    let mut whole = Sse::connect(&url, Some(&old[1])).await;
    assert_carries(&whole.events(1).await[0], &new[0], &newer);
}

/// Appends `event` to the event stream as a detector commit does.
fn xadd(redis: &RedisServer, event: &IncidentEvent) -> String {
    xadd_as(redis, "*", event)
}

/// Adds `event` to a stream emptied since `old` was its last id, under the id a millisecond
/// after `old`: `*` gives `old` itself again within the same millisecond, and a client that
/// had read up to `old` is then up to date with the new stream as far as ids can tell.
fn xadd_after_reset(redis: &RedisServer, event: &IncidentEvent, old: &str) -> String {
    let ms: u64 = old.split('-').next().unwrap().parse().unwrap();
    xadd_as(redis, &format!("{}-0", ms + 1), event)
}

/// Appends `event` to the event stream under `id` (`*`: one Redis picks).
fn xadd_as(redis: &RedisServer, id: &str, event: &IncidentEvent) -> String {
    let mut conn = redis.connection().unwrap();
    redis::cmd("XADD")
        .arg("dr:events")
        .arg(id)
        .arg("event")
        .arg(serde_json::to_string(event).unwrap())
        .query(&mut conn)
        .unwrap()
}

/// A live stream is told when the store loses the event stream (Redis restarted without its
/// data): `event: resync`, whatever its filters, before the events of the new stream; its
/// client had kept an incident open that the store no longer knew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_told_when_the_store_loses_the_stream() {
    let app = spawn_app_with(Backend::Redis, &["--no-detector"]).await;
    let redis = app.redis.as_ref().unwrap();
    let mut all = Sse::connect(&app.url("/v1/events"), None).await;
    let mut netflix = Sse::connect(&app.url("/v1/events?service=netflix"), None).await;
    let start = test_epoch().unix_timestamp();
    let old = commit(
        app.store.as_ref(),
        &[event(EventType::Opened, "tiktok", start, &["US"])],
    )
    .await;
    let got = all.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.id.as_deref(), Some(old[0].as_str()));
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut redis.connection().unwrap())
        .unwrap();
    let new = xadd_after_reset(
        redis,
        &event(EventType::Opened, "netflix", start, &["DE"]),
        &old[0],
    );
    for sse in [&mut all, &mut netflix] {
        let resync = sse.next_event(Duration::from_secs(10)).await.unwrap();
        assert_eq!(resync.event.as_deref(), Some("resync"), "{resync:?}");
        let data: Value = serde_json::from_str(resync.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["last_event_id"], old[0].as_str(), "{data}");
        let next = sse.next_event(Duration::from_secs(5)).await.unwrap();
        assert_eq!(next.id.as_deref(), Some(new.as_str()), "{next:?}");
        assert_eq!(next.event.as_deref(), Some("incident.opened"));
    }
    // A stream that connects now starts on the new stream, with nothing to resync.
    let mut fresh = Sse::connect(&app.url("/v1/events"), Some(&new)).await;
    fresh.assert_quiet().await;
}

/// A store that went back to an older state (Redis restarted from a snapshot) has lost the
/// last events its readers had, and adds new ones after them, under new ids: the detector
/// deciding again what it had decided. A live stream is told to resync before any of them,
/// and so is a client resuming after a lost id. (Before, they got the repeats as new events,
/// some with an earlier `at`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_told_when_the_store_goes_back_to_an_older_state() {
    let app = spawn_app_with(Backend::Redis, &["--no-detector"]).await;
    let redis = app.redis.as_ref().unwrap();
    let mut live = Sse::connect(&app.url("/v1/events"), None).await;
    let start = test_epoch().unix_timestamp();
    let had = commit(
        app.store.as_ref(),
        &[
            event(EventType::Opened, "tiktok", start, &["US"]),
            event(EventType::Updated, "tiktok", start, &["US", "CA"]),
        ],
    )
    .await;
    let got = live.events(2).await;
    assert_eq!(got[1].id.as_deref(), Some(had[1].as_str()));
    // The snapshot held the first event only; the second is decided again, anew.
    let _: u64 = redis::cmd("XDEL")
        .arg("dr:events")
        .arg(&had[1])
        .query(&mut redis.connection().unwrap())
        .unwrap();
    let again = xadd(
        redis,
        &event(EventType::Updated, "tiktok", start, &["US", "CA"]),
    );
    let resync = live.next_event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(resync.event.as_deref(), Some("resync"), "{resync:?}");
    assert_eq!(resync.id.as_deref(), Some(again.as_str()));
    let data: Value = serde_json::from_str(resync.data.as_deref().unwrap()).unwrap();
    assert_eq!(data["last_event_id"], had[1].as_str(), "{data}");
    let next = event(EventType::Resolved, "tiktok", start, &["US", "CA"]);
    let next_id = xadd(redis, &next);
    assert_carries(&live.events(1).await[0], &next_id, &next);

    let mut resumed = Sse::connect(&app.url("/v1/events"), Some(&had[1])).await;
    let resync = resumed.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(resync.event.as_deref(), Some("resync"), "{resync:?}");
    resumed.assert_quiet().await;
    // An id it still holds resumes as ever.
    let mut whole = Sse::connect(&app.url("/v1/events"), Some(&had[0])).await;
    assert_eq!(whole.events(1).await[0].id.as_deref(), Some(again.as_str()));
}

/// An entry on the stream that is not an event (another version's type, or written by hand)
/// is passed over once: the reader neither reads it again and again nor stops at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_are_not_events_are_passed_over() {
    let app = spawn_app_with(Backend::Redis, &["--no-detector"]).await;
    let redis = app.redis.as_ref().unwrap();
    let mut sse = Sse::connect(&app.url("/v1/events"), None).await;
    let mut conn = redis.connection().unwrap();
    let _: String = redis::cmd("XADD")
        .arg("dr:events")
        .arg("*")
        .arg("event")
        .arg(r#"{"type":"incident.merged"}"#)
        .query(&mut conn)
        .unwrap();
    let xreads = |conn: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
        info.lines()
            .find_map(|l| {
                l.strip_prefix("cmdstat_xread:calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    // The reader blocks for seconds per read when there is nothing new; spinning on the
    // entry, it read it tens of thousands of times a second.
    let before = xreads(&mut conn);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reads = xreads(&mut conn) - before;
    assert!(reads < 20, "{reads} XREADs in a second");

    let start = test_epoch().unix_timestamp();
    let next = event(EventType::Opened, "tiktok", start, &["US"]);
    let id = xadd(redis, &next);
    assert_carries(&sse.events(1).await[0], &id, &next);
}

/// Two server processes on one Redis: a subscriber on the process that does not lead the
/// detector gets every event; one that disconnects and resumes loses nothing and gets nothing
/// twice; a Redis restart interrupts nothing but the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_streams_every_event() {
    let mut redis = RedisServer::start();
    let (mut a, url_a) = start_binary(&redis, &["--detector-interval", "1s"]).await;
    let (mut b, url_b) = start_binary(&redis, &["--detector-interval", "1s"]).await;
    // Which one leads: the lease holder's id starts with its process id.
    let mut conn = redis.connection().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let leader = loop {
        let holder: Option<String> = redis::cmd("GET")
            .arg("dr:detector:lease")
            .query(&mut conn)
            .unwrap();
        if let Some(pid) = holder.and_then(|h| h.split('-').next().map(str::to_owned)) {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nobody took the lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let follower = if leader == a.id().to_string() {
        url_b.clone()
    } else {
        assert_eq!(leader, b.id().to_string());
        url_a.clone()
    };
    let mut on_follower = Sse::connect(&format!("{follower}/v1/events"), None).await;

    // The leader's commits reach the stream as entries with the event JSON; write some so.
    let start = test_epoch().unix_timestamp();
    let events: Vec<IncidentEvent> = (0..6)
        .map(|i| event(EventType::Opened, "tiktok", start + i * 60, &["US"]))
        .collect();
    let ids: Vec<String> = events[..3].iter().map(|e| xadd(&redis, e)).collect();
    let got = on_follower.events(3).await;
    for ((message, id), event) in got.iter().zip(&ids).zip(&events) {
        assert_carries(message, id, event);
    }

    // Disconnect; three more events; resume.
    drop(on_follower);
    let more: Vec<String> = events[3..].iter().map(|e| xadd(&redis, e)).collect();
    let mut resumed = Sse::connect(&format!("{follower}/v1/events"), Some(&ids[2])).await;
    for ((message, id), event) in resumed.events(3).await.iter().zip(&more).zip(&events[3..]) {
        assert_carries(message, id, event);
    }
    resumed.assert_quiet().await;

    // Redis dies and comes back (its data on disk): the stream goes on.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    let after_restart = event(EventType::Resolved, "tiktok", start, &["US"]);
    let id = xadd(&redis, &after_restart);
    assert_carries(&resumed.events(1).await[0], &id, &after_restart);

    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
}

/// Resuming needs the store: while it is down, `Last-Event-ID: 0` (replay everything) is
/// refused like any other id, with a 503 and `Retry-After` (a browser: a 200 that says
/// `event: unavailable`), not answered with a stream that ends before its first event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_while_the_store_is_down_is_refused() {
    let mut redis = RedisServer::start();
    let (mut server, base) = start_binary(&redis, &["--no-detector"]).await;
    let url = format!("{base}/v1/events");
    let client = reqwest::Client::new();
    // Once a stream opens, the server knows where the event stream ends.
    let mut opened = false;
    for _ in 0..100 {
        if client.get(&url).send().await.unwrap().status() == 200 {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(opened, "a stream opens while Redis is up");
    redis.kill();
    for id in ["0", "1795262580000-0"] {
        let refused = client
            .get(&url)
            .header("last-event-id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 503, "Last-Event-ID: {id}");
        assert!(
            header(&refused, "retry-after").is_some(),
            "Last-Event-ID: {id}"
        );
        let browser = client
            .get(format!("{url}?last_event_id={id}"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(browser.status(), 200);
        let body = tokio::time::timeout(Duration::from_secs(5), browser.text())
            .await
            .expect("it ends")
            .unwrap();
        assert!(
            body.starts_with("retry: 3000\nevent: unavailable\ndata: {")
                && body.contains("\"code\":\"unavailable\""),
            "Last-Event-ID: {id}: {body}"
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// A server started while Redis is down cannot tell subscribers where the event stream ends,
/// so it asks them to retry (a browser gets a 200 with `retry:`); once Redis is up, a stream
/// starts with its position, and an event added before any subscriber came is not lost to a
/// client that resumes from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_without_redis_asks_subscribers_to_retry() {
    let mut redis = RedisServer::start();
    redis.kill();
    let (mut server, base) = start_binary(&redis, &["--no-detector"]).await;
    let url = format!("{base}/v1/events");
    let client = reqwest::Client::new();
    let early = client.get(&url).send().await.unwrap();
    assert_eq!(early.status(), 503);
    let browser = client
        .get(&url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 200);
    let body = browser.text().await.unwrap();
    assert!(
        body.starts_with("retry: 3000\nevent: unavailable\n"),
        "{body}"
    );

    redis.restart();
    let mut opening = None;
    for _ in 0..100 {
        let response = client.get(&url).send().await.unwrap();
        if response.status() == 200 {
            drop(response);
            opening = Sse::connect(&url, None).await.opening.id;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        opening.as_deref(),
        Some("0"),
        "a stream with a position once Redis is up"
    );
    let start = test_epoch().unix_timestamp();
    let first = event(EventType::Opened, "tiktok", start, &["US"]);
    let id = xadd(&redis, &first);
    let mut resumed = Sse::connect(&url, Some("0")).await;
    assert_carries(&resumed.events(1).await[0], &id, &first);
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A Redis that lost its data (restarted without persistence, or flushed) starts a new event
/// stream: a client resuming from an id of the old one gets a resync, since what it knew (the
/// incidents it saw open) is gone, not a silent replay of the new stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_across_a_reset_stream_gets_a_resync() {
    let app = spawn_app_with(Backend::Redis, &["--no-detector"]).await;
    let redis = app.redis.as_ref().unwrap();
    let start = test_epoch().unix_timestamp();
    let old = commit(
        app.store.as_ref(),
        &[event(EventType::Opened, "tiktok", start, &["US"])],
    )
    .await;
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut redis.connection().unwrap())
        .unwrap();
    let after_reset = event(EventType::Opened, "netflix", start, &["DE"]);
    let new = xadd_after_reset(redis, &after_reset, &old[0]);

    let mut resumed = Sse::connect(&app.url("/v1/events"), Some(&old[0])).await;
    let resync = resumed.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(resync.event.as_deref(), Some("resync"), "{resync:?}");
    assert_eq!(resync.id.as_deref(), Some(new.as_str()));
    resumed.assert_quiet().await;
}

/// Each subscriber holds a file descriptor. Under a low open-file limit the server takes
/// fewer subscribers than `--max-subscribers` (and says so), so that reports and health
/// checks still find a descriptor: with `ulimit -n 256` and 250 subscribers, it failed to
/// accept any connection until they left. Where only the soft limit is low, it raises it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_leave_room_under_the_open_file_limit() {
    let start = |ulimit: &str| {
        let port = crate::helpers::free_port();
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit {ulimit} && exec \"$0\" serve --listen 127.0.0.1:{port} --no-detector \
                 --max-subscribers-per-address 1000"
            ))
            .arg(env!("CARGO_BIN_EXE_downradar"))
            .env("DOWNRADAR_REPORTER_SECRET", "s")
            .env_remove("DOWNRADAR_MAX_SUBSCRIBERS")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start downradar under sh");
        (
            crate::helpers::Process(child),
            format!("http://127.0.0.1:{port}"),
        )
    };
    let client = reqwest::Client::new();
    let ready = |base: String| {
        let client = client.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while client.get(format!("{base}/healthz")).send().await.is_err() {
                assert!(tokio::time::Instant::now() < deadline, "no answer");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Soft and hard limit 256: half of it is kept for everything else.
    let (mut child, base) = start("-n 256");
    ready(base.clone()).await;
    let url = format!("{base}/v1/events");
    let mut streams = Vec::new();
    for _ in 0..128 {
        streams.push(Sse::connect(&url, None).await);
    }
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "too_many_subscribers");
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let report = client
        .post(format!("{base}/v1/services/tiktok/reports"))
        .json(&serde_json::json!({"problem": "login", "region": "DE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 202);
    drop(streams);
    child.kill().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("--max-subscribers is more than the open-file limit leaves room for"),
        "{log}"
    );

    // A soft limit under the hard one is raised to it.
    let (child, base) = start("-S -n 256");
    ready(base).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    drop(child);
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    // "Max open files <soft> <hard> files"
    assert_eq!(open_files[3], open_files[4], "{limits}");
}

on_both_stores! {
    /// A stream filtered on a country gets an incident's events from the first that names
    /// the country on, whatever the later ones name: the update that takes the country out
    /// of a regional incident and its resolution reach the client, replayed or live, and so
    /// they do for a stream that began while the incident was open. (Filtered on each
    /// event's own countries, the client kept the outage open there for good.)
    async fn a_country_stream_hears_the_end_of_what_it_was_told(app, "--no-detector") {
        let start = test_epoch().unix_timestamp() - 3600;
        let at = |mut e: IncidentEvent, minutes: u64| {
            e.at += Duration::from_secs(60 * minutes);
            e
        };
        let spotify = [
            at(event(EventType::Opened, "spotify", start, &["US"]), 0),
            at(event(EventType::Updated, "spotify", start, &["AU", "US"]), 1),
            at(event(EventType::Updated, "spotify", start, &["US"]), 2),
            at(event(EventType::Resolved, "spotify", start, &["US"]), 3),
        ];
        let other = [
            at(event(EventType::Opened, "github", start + 60, &["US"]), 0),
            at(event(EventType::Resolved, "github", start + 60, &["US"]), 2),
        ];
        let url = app.url("/v1/events?region=AU");
        let mut live = Sse::connect(&url, None).await;
        let mut ids = commit(app.store.as_ref(), &[spotify[0].clone(), other[0].clone(), spotify[1].clone()]).await;
        let got = |messages: Vec<Message>| -> Vec<String> {
            messages.into_iter().map(|m| m.id.unwrap()).collect()
        };
        // (Once this process has read those events: a stream opened before would get them.)
        assert_eq!(got(live.events(1).await), [ids[2].clone()]);
        // A stream that begins now, while the incident is open and names AU.
        let mut joined = Sse::connect(&url, None).await;
        ids.extend(commit(app.store.as_ref(), &[spotify[2].clone(), other[1].clone(), spotify[3].clone()]).await);
        let of = |i: &[usize]| -> Vec<String> { i.iter().map(|&i| ids[i].clone()).collect() };
        let told = of(&[2, 3, 5]);
        assert_eq!(got(live.events(2).await), of(&[3, 5]));
        live.assert_quiet().await;
        assert_eq!(got(joined.events(2).await), of(&[3, 5]));
        joined.assert_quiet().await;
        // Replayed from the start, and from the middle of the incident.
        let mut replayed = Sse::connect(&url, Some("0")).await;
        assert_eq!(got(replayed.events(3).await), told);
        replayed.assert_quiet().await;
        let mut resumed = Sse::connect(&url, Some(&ids[2])).await;
        assert_eq!(got(resumed.events(2).await), of(&[3, 5]));
        resumed.assert_quiet().await;
        // The type filter applies on top: the resolution alone.
        let resolutions = app.url("/v1/events?region=AU&type=incident.resolved");
        let mut ends = Sse::connect(&resolutions, Some("0")).await;
        assert_eq!(got(ends.events(1).await), of(&[5]));
        ends.assert_quiet().await;
    }
}
