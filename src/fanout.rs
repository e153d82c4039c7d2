//! The event fan-out: one reader of the store's event stream per process, and any number of
//! local subscribers (the SSE connections of `GET /v1/events`).
//!
//! The reader follows the stream with [`Store::wait_events`] (in Redis an `XREAD BLOCK` on a
//! connection of its own), renders each event once as an SSE frame and broadcasts it. Every
//! replica runs its own reader, so a subscriber sees every event whichever replica leads the
//! detector. Subscribers share one bounded ring ([`tokio::sync::broadcast`]): a subscriber
//! that falls a whole ring behind is told so ([`Next::Lagged`]) and is disconnected by its
//! connection (it resumes with `Last-Event-ID`), so a slow client never holds up the others
//! and never makes the process buffer for it.
//!
//! Places are limited twice: at most `max_subscribers` subscribers in all, and at most
//! `per_address` from one client address (its keyed fingerprint, as for reporters), so one
//! client cannot take every place. A client that stops reading altogether is not polled, so it
//! never sees that it lagged; its connection is closed by the kernel instead, once the data
//! sent to it has waited unread for `--client-stall-timeout` (see [`crate::startup`]), and its
//! place is freed with it.
//!
//! A client that has closed its connection is noticed only when a write to it fails (actix
//! does not watch an idle streaming connection for its peer leaving, actix-web#1313): the
//! second heartbeat after the close, up to twice `--sse-heartbeat`, during which its place
//! stays taken and the client's own reconnect from the same address could be refused. So a
//! subscription refused for lack of room first [reclaims](Fanout::reclaim) places: every
//! stream (of the client's address, when that is what is full) sends a heartbeat, and again
//! a round trip later, up to four times until a place is free, which ends the streams of
//! peers that are gone, and the subscription is tried once more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::web::Bytes;
use tokio::sync::{broadcast, watch};

use crate::catalog::ServiceId;
use crate::detector::{EventType, IncidentEvent};
use crate::regions::RegionCode;
use crate::reporter::Fingerprint;
use crate::store::{Store, StreamEvent, StreamId, parse_stream_id};

/// How long one wait on the store lasts before it is renewed (it returns at once on an event).
const WAIT: Duration = Duration::from_secs(5);
/// Most events read from the store at once.
const BATCH: usize = 500;
/// Between the heartbeats of a reclaim, and after the last: long enough for a gone peer's
/// reset to come back on the way a client's connection takes.
const RECLAIM_GAP: Duration = Duration::from_millis(250);
/// Most heartbeats of one reclaim. Two free the places of gone peers on an idle machine; a
/// busy one may take longer to get the reset back and end the stream (a test's reconnect
/// was refused one CI run in several with two).
const RECLAIM_PROBES: usize = 4;
/// Reclaims start at least this far apart (each writes to every stream).
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// One event as subscribers get it: what filters look at, and the rendered SSE frame.
#[derive(Debug)]
pub struct Published {
    pub id: StreamId,
    pub kind: EventType,
    pub service: ServiceId,
    /// The incident's id, and when the event was decided (its `at`, Unix seconds).
    pub incident: String,
    pub at: i64,
    pub regions: Vec<RegionCode>,
    /// `id: …\nevent: …\ndata: …\n\n`.
    pub frame: Bytes,
}

impl Published {
    /// Renders a stream event; `None` (logged) if its id is not a stream id.
    pub fn render(event: &StreamEvent) -> Option<Self> {
        let Some(id) = parse_stream_id(&event.id) else {
            tracing::warn!(
                id = event.id,
                "skipping an event whose id is not a stream id"
            );
            return None;
        };
        let json = match serde_json::to_string(&event.event) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(id = event.id, error = %e, "cannot encode an event");
                return None;
            }
        };
        let IncidentEvent { kind, incident, at } = &event.event;
        Some(Self {
            id,
            kind: *kind,
            service: incident.service.clone(),
            incident: incident.id.clone(),
            at: at.unix_timestamp(),
            regions: incident.regions.clone(),
            frame: Bytes::from(format!(
                "id: {}\nevent: {}\ndata: {json}\n\n",
                event.id,
                kind.as_str()
            )),
        })
    }
}

/// The `event: resync` message (its `id:` is `id`): the client may have missed events after
/// `last_seen`, for `reason`, and should refetch the incidents that are open.
pub fn resync_frame(id: StreamId, reason: &str, last_seen: StreamId) -> String {
    let data = serde_json::json!({
        "reason": format!("{reason}; refetch the state from GET /v1/incidents?active=true"),
        "last_event_id": format!("{}-{}", last_seen.0, last_seen.1),
    });
    format!("id: {}-{}\nevent: resync\ndata: {data}\n\n", id.0, id.1)
}

/// What the reader sends every subscriber.
#[derive(Debug, Clone)]
enum Broadcast {
    Event(Arc<Published>),
    /// The stream was reset: this `event: resync` message, for every subscriber.
    Reset(Bytes),
}

/// What a subscriber gets next.
#[derive(Debug)]
pub enum Next {
    Event(Arc<Published>),
    /// The store lost the event stream (restarted without its data): send this
    /// `event: resync` message, whatever the filters, and go on with the new stream.
    Reset(Bytes),
    /// The subscriber fell too far behind and missed events.
    Lagged,
    /// Places are being reclaimed: send something, so that a gone peer is noticed.
    Probe,
    /// The process is shutting down.
    Closed,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The process is shutting down.
    Closed,
    /// The process already has `max_subscribers` subscribers.
    Full,
    /// This client address already has `per_address` subscriptions.
    AddressFull,
}

/// The fan-out of one process.
pub struct Fanout {
    events: broadcast::Sender<Broadcast>,
    /// How far the reader has published the stream (`None` until it knows where the stream
    /// ends). Publishing and subscribing hold this lock, so a subscriber gets exactly the
    /// events after the position it is given.
    position: Mutex<Option<StreamId>>,
    closed: watch::Sender<bool>,
    subscribers: AtomicUsize,
    max_subscribers: usize,
    /// Subscriptions per client address (only addresses that have one).
    by_address: Mutex<HashMap<Fingerprint, usize>>,
    per_address: usize,
    heartbeat: Duration,
    /// Sent to make every stream (or those of one address) send a heartbeat (see
    /// [`Fanout::reclaim`]).
    probe: watch::Sender<Option<Fingerprint>>,
    /// When the last reclaim started, and of which streams; held while one runs.
    last_reclaim: tokio::sync::Mutex<Option<(tokio::time::Instant, Option<Fingerprint>)>>,
    /// The calls of [`Fanout::reclaim`] not yet answered, in all and per client address (of
    /// those refused for their address's limit): a reclaim goes on until there is room for
    /// them all.
    waiting: Mutex<Waiting>,
    /// Per event (its incident, `at` and type), the countries its incident's events before it
    /// named, read once for every stream that asks (see [`Fanout::named_before`]).
    named: Mutex<HashMap<EventKey, Arc<NamedBefore>>>,
}

/// An event by its incident's id, its `at` (Unix seconds) and its type.
type EventKey = (String, i64, &'static str);

/// The countries an incident's events before one named, once read.
type NamedBefore = tokio::sync::OnceCell<Vec<RegionCode>>;

/// Events whose [`Fanout::named_before`] is kept (all are forgotten past it: a stream asks
/// about an event while it is new).
const NAMED_KEPT: usize = 1024;

/// The calls of [`Fanout::reclaim`] waiting (the `waiting` field of [`Fanout`]).
#[derive(Debug, Default)]
struct Waiting {
    all: usize,
    by_address: HashMap<Fingerprint, usize>,
}

/// One call of [`Fanout::reclaim`] counted among the waiting until it returns or is dropped.
struct Waiter<'a> {
    fanout: &'a Fanout,
    of: Option<Fingerprint>,
}

impl<'a> Waiter<'a> {
    fn new(fanout: &'a Fanout, of: Option<Fingerprint>) -> Self {
        let mut waiting = fanout.waiting();
        waiting.all += 1;
        if let Some(address) = of {
            *waiting.by_address.entry(address).or_default() += 1;
        }
        Self { fanout, of }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiting = self.fanout.waiting();
        waiting.all -= 1;
        if let Some(address) = self.of
            && let Some(n) = waiting.by_address.get_mut(&address)
        {
            *n -= 1;
            if *n == 0 {
                waiting.by_address.remove(&address);
            }
        }
    }
}

/// A subscription; it counts as a subscriber until dropped.
pub struct Subscription {
    fanout: Arc<Fanout>,
    address: Fingerprint,
    events: broadcast::Receiver<Broadcast>,
    closed: watch::Receiver<bool>,
    probe: watch::Receiver<Option<Fingerprint>>,
}

impl Fanout {
    /// A fan-out whose subscribers may each fall `ring` events behind, for at most
    /// `max_subscribers` subscribers at once and `per_address` from one client address, whose
    /// idle streams get a heartbeat every `heartbeat`.
    pub fn new(
        ring: usize,
        max_subscribers: usize,
        per_address: usize,
        heartbeat: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            events: broadcast::channel(ring.max(1)).0,
            position: Mutex::new(None),
            closed: watch::channel(false).0,
            subscribers: AtomicUsize::new(0),
            max_subscribers,
            by_address: Mutex::new(HashMap::new()),
            per_address,
            heartbeat,
            probe: watch::channel(None).0,
            last_reclaim: tokio::sync::Mutex::new(None),
            waiting: Mutex::new(Waiting::default()),
            named: Mutex::new(HashMap::new()),
        })
    }

    /// The countries that the events of `event`'s incident before it named, from the
    /// incident's record in `store`; `None` when the store cannot tell. Read once per event
    /// for all of the process's streams: those filtered on a country that did not see the
    /// incident begin ask when its next event comes, all at once.
    pub async fn named_before(
        &self,
        store: &dyn Store,
        event: &Published,
    ) -> Option<Vec<RegionCode>> {
        let cell = {
            let mut named = self.named.lock().unwrap_or_else(|e| e.into_inner());
            if named.len() >= NAMED_KEPT {
                named.clear();
            }
            let key = (event.incident.clone(), event.at, event.kind.as_str());
            named.entry(key).or_default().clone()
        };
        // A failure is not kept: the next stream to ask reads again.
        cell.get_or_try_init(|| async {
            let record = store.incident(&event.incident).await.map_err(|e| {
                tracing::debug!(error = %e, incident = event.incident, "cannot read an incident's earlier events");
            })?;
            let mut named = Vec::new();
            let earlier = record.iter().flat_map(|r| &r.events).take_while(|e| {
                !(e.kind == event.kind && e.at.unix_timestamp() == event.at)
            });
            for e in earlier {
                for &region in &e.incident.regions {
                    if !named.contains(&region) {
                        named.push(region);
                    }
                }
            }
            Ok::<_, ()>(named)
        })
        .await
        .ok()
        .cloned()
    }

    /// How often an idle stream gets a heartbeat.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    fn position(&self) -> MutexGuard<'_, Option<StreamId>> {
        self.position.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn by_address(&self) -> MutexGuard<'_, HashMap<Fingerprint, usize>> {
        self.by_address.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new subscriber from the client `address`, receiving every event published after the
    /// stream id it is given with it (`None` while the reader does not yet know where the
    /// stream ends); or why there is none.
    pub fn subscribe(
        self: &Arc<Self>,
        address: Fingerprint,
    ) -> Result<(Subscription, Option<StreamId>), Refused> {
        if *self.closed.borrow() {
            return Err(Refused::Closed);
        }
        {
            let mut by_address = self.by_address();
            let held = by_address.entry(address).or_default();
            if *held >= self.per_address {
                return Err(Refused::AddressFull);
            }
            let taken = self
                .subscribers
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.max_subscribers).then_some(n + 1)
                });
            if taken.is_err() {
                if *held == 0 {
                    by_address.remove(&address);
                }
                return Err(Refused::Full);
            }
            *held += 1;
        }
        metrics::gauge!("downradar_sse_subscribers").increment(1.0);
        let position = self.position();
        let subscription = Subscription {
            fanout: self.clone(),
            address,
            events: self.events.subscribe(),
            closed: self.closed.subscribe(),
            probe: self.probe.subscribe(),
        };
        Ok((subscription, *position))
    }

    /// Frees the places of subscribers whose peers had gone, unnoticed, when it was called
    /// (see the module documentation): every stream (with `of`, only those of that client
    /// address) sends a heartbeat, and again [`RECLAIM_GAP`] later, when a gone peer has
    /// answered the first with a reset and the write fails; and so on, up to
    /// [`RECLAIM_PROBES`] heartbeats, until there are places for every call still waiting
    /// [`RECLAIM_GAP`] after one (for one place, two clients reconnecting at once from an
    /// address at its limit had one of them refused).
    /// Reclaims start at least [`RECLAIM_EVERY`] apart (a client hammering at its address's
    /// limit makes its own streams beat, no one else's); a call is answered by a reclaim of
    /// its streams that started after it was made. A call returns within 3 s: one that has
    /// waited [`RECLAIM_EVERY`] for the reclaims of others gives up.
    pub async fn reclaim(&self, of: Option<Fingerprint>) {
        let called = tokio::time::Instant::now();
        let _waiter = Waiter::new(self, of);
        // Calls for many addresses queue: past a while, a call gives up (and is refused).
        let Ok(mut last) = tokio::time::timeout(RECLAIM_EVERY, self.last_reclaim.lock()).await
        else {
            return;
        };
        if let Some((at, last_of)) = *last {
            if at >= called && (last_of.is_none() || last_of == of) {
                return;
            }
            tokio::time::sleep_until(at + RECLAIM_EVERY).await;
        }
        let started = tokio::time::Instant::now();
        for probe in 1..=RECLAIM_PROBES {
            self.probe.send_replace(of);
            tokio::time::sleep(RECLAIM_GAP).await;
            if probe >= 2 && self.has_room_for_the_waiting(of) {
                break;
            }
        }
        // Only a reclaim that ran to its end answers the calls waiting (a call dropped
        // halfway, its client gone, does not).
        *last = Some((started, of));
    }

    /// Whether every call of [`reclaim`](Self::reclaim) still waiting would find a place:
    /// any (`None`), or those of the client address `of` one of that address.
    fn has_room_for_the_waiting(&self, of: Option<Fingerprint>) -> bool {
        let waiting = self.waiting();
        let address_room = of.is_none_or(|address| {
            let held = self.by_address().get(&address).copied().unwrap_or(0);
            let wanted = waiting.by_address.get(&address).copied().unwrap_or(0);
            held + wanted <= self.per_address
        });
        address_room && self.subscribers() + waiting.all <= self.max_subscribers
    }

    /// The most subscribers at once.
    pub fn max_subscribers(&self) -> usize {
        self.max_subscribers
    }

    /// The most subscribers at once from one client address.
    pub fn per_address(&self) -> usize {
        self.per_address
    }

    /// Whether the process is shutting down (no new subscriptions).
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// How many subscribers there are.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }

    /// Ends every subscription (at shutdown): their connections finish.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Publishes `event` to every subscriber.
    fn publish(&self, event: Arc<Published>) {
        let mut position = self.position();
        *position = Some(event.id.max(position.unwrap_or_default()));
        // No subscribers is not an error.
        let _ = self.events.send(Broadcast::Event(event));
    }

    /// The stream was made anew (see [`crate::store::StreamBounds::reset_since`]): every
    /// subscriber gets an `event: resync`, and the stream is followed again from `through`
    /// (before its first entry), which new subscribers start after.
    fn reset(&self, through: StreamId, last_seen: StreamId) {
        let mut position = self.position();
        *position = Some(through);
        metrics::counter!("downradar_sse_resets_total").increment(1);
        let frame = resync_frame(
            through,
            "the event stream was reset (the store lost its data)",
            last_seen,
        );
        let _ = self.events.send(Broadcast::Reset(Bytes::from(frame)));
    }

    /// The reader has read the stream through `id` (events or entries passed over).
    fn read_through(&self, id: StreamId) {
        let mut position = self.position();
        *position = Some(id.max(position.unwrap_or_default()));
    }

    /// Learns where the store's event stream ends. Until the fan-out knows, subscribers
    /// cannot be told where they start.
    pub async fn locate(&self, store: &dyn Store) -> Result<StreamId, crate::store::StoreError> {
        let last = store.stream_bounds().await?.last;
        self.read_through(last);
        Ok(last)
    }

    /// Follows the store's event stream from where it ends (or from where [`Fanout::locate`]
    /// found it ending) and publishes every event, until `stop` turns true. Store failures
    /// are logged and retried with a growing pause (up to 1.6 s); the reader then continues
    /// where it was, so nothing is skipped.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        let located = *self.position();
        let mut after = if let Some(position) = located {
            position
        } else {
            loop {
                let located = tokio::select! {
                    located = self.locate(store.as_ref()) => located,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match located {
                    Ok(last) => break last,
                    Err(e) => {
                        backoff.failed("cannot read where the event stream ends", &e);
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.pause()) => {},
                            _ = stop.wait_for(|s| *s) => return,
                        }
                    }
                }
            }
        };
        loop {
            let from = format!("{}-{}", after.0, after.1);
            let read = tokio::select! {
                read = store.wait_events(&from, BATCH, WAIT) => read,
                _ = stop.wait_for(|s| *s) => return,
            };
            match read {
                Ok(read) => {
                    backoff.succeeded();
                    // A store restarted without its data has made the stream anew: what the
                    // subscribers know is gone, and they are told so before its new events.
                    // One restarted from an older snapshot has lost the last entries they
                    // read, and added new ones (the detector deciding again what it had
                    // decided, under new ids): they are told so, and go on from its end.
                    let bounds = match store.stream_bounds().await {
                        Ok(bounds) if !read.events.is_empty() && !bounds.reset_since(after) => {
                            store
                                .holds_event(after)
                                .await
                                .map(|holds| (bounds.lost(after, holds), bounds))
                        }
                        other => other.map(|bounds| (false, bounds)),
                    };
                    match bounds {
                        Ok((_, bounds)) if bounds.reset_since(after) => {
                            let through = bounds.trimmed_through.min(bounds.last);
                            tracing::warn!(
                                last_read = %format!("{}-{}", after.0, after.1),
                                "the event stream was made anew (the store lost its data): \
                                 subscribers are told to resync"
                            );
                            self.reset(through, after);
                            after = through;
                            continue;
                        }
                        Ok((true, bounds)) => {
                            tracing::warn!(
                                last_read = %format!("{}-{}", after.0, after.1),
                                "the event stream lost the last events read (the store went \
                                 back to an older state): subscribers are told to resync"
                            );
                            self.reset(bounds.last, after);
                            after = bounds.last;
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            // Read again once the store answers.
                            backoff.failed("cannot read where the event stream stands", &e);
                            tokio::select! {
                                _ = tokio::time::sleep(backoff.pause()) => {},
                                _ = stop.wait_for(|s| *s) => return,
                            }
                            continue;
                        }
                    }
                    for event in &read.events {
                        if let Some(published) = Published::render(event) {
                            after = published.id;
                            metrics::counter!("downradar_sse_events_total").increment(1);
                            self.publish(Arc::new(published));
                        }
                    }
                    // Past entries that are not events too: read again, they would come back
                    // at once, and the reader would spin on them.
                    after = after.max(read.through.unwrap_or_default());
                    self.read_through(after);
                }
                Err(e) => {
                    backoff.failed("cannot read the event stream", &e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.pause()) => {},
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }
}

impl Subscription {
    /// The next event, or why there is none.
    pub async fn next(&mut self) -> Next {
        if *self.closed.borrow() {
            return Next::Closed;
        }
        loop {
            tokio::select! {
                received = self.events.recv() => return match received {
                    Ok(Broadcast::Event(event)) => Next::Event(event),
                    Ok(Broadcast::Reset(frame)) => Next::Reset(frame),
                    Err(broadcast::error::RecvError::Lagged(_)) => Next::Lagged,
                    Err(broadcast::error::RecvError::Closed) => Next::Closed,
                },
                _ = self.closed.wait_for(|c| *c) => return Next::Closed,
                Ok(()) = self.probe.changed() => {
                    let of = *self.probe.borrow_and_update();
                    if of.is_none_or(|a| a == self.address) {
                        return Next::Probe;
                    }
                }
            }
        }
    }

    /// Resolves once the process is shutting down.
    pub async fn closed(&mut self) {
        let _ = self.closed.wait_for(|c| *c).await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        {
            let mut by_address = self.fanout.by_address();
            if let Some(held) = by_address.get_mut(&self.address) {
                *held -= 1;
                if *held == 0 {
                    by_address.remove(&self.address);
                }
            }
        }
        self.fanout.subscribers.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("downradar_sse_subscribers").decrement(1.0);
    }
}

/// Pauses between failed store reads: 100 ms doubling to 1.6 s; logs the first failure of a run
/// as a warning and the rest at debug level.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn failed(&mut self, what: &str, error: &crate::store::StoreError) {
        if self.failures == 0 {
            tracing::warn!(error = %error, "{what}; retrying");
        } else {
            tracing::debug!(error = %error, failures = self.failures, "{what}; retrying");
        }
        self.failures = self.failures.saturating_add(1);
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!("reading the event stream again");
        }
        self.failures = 0;
    }

    fn pause(&self) -> Duration {
        Duration::from_millis(100 << self.failures.clamp(1, 5).saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(secret: &crate::reporter::ReporterSecret, last: u8) -> Fingerprint {
        secret.fingerprint(std::net::IpAddr::from([192, 0, 2, last]), None)
    }

    #[tokio::test]
    async fn places_are_limited_in_all_and_per_address() {
        let secret = crate::reporter::ReporterSecret::from_config("test");
        let (a, b, c) = (
            address(&secret, 1),
            address(&secret, 2),
            address(&secret, 3),
        );
        let fanout = Fanout::new(8, 3, 2, Duration::from_secs(15));
        let a1 = fanout.subscribe(a).expect("first of a");
        let a2 = fanout.subscribe(a).expect("second of a");
        assert_eq!(fanout.subscribe(a).err(), Some(Refused::AddressFull));
        let b1 = fanout.subscribe(b).expect("first of b");
        assert_eq!(fanout.subscribe(c).err(), Some(Refused::Full));
        // A refusal for lack of room holds nothing for its address.
        assert!(!fanout.by_address().contains_key(&c));
        assert_eq!(fanout.subscribers(), 3);
        drop(a1);
        assert_eq!(fanout.subscribers(), 2);
        let c1 = fanout.subscribe(c).expect("c, once a place is free");
        assert_eq!(fanout.subscribe(a).err(), Some(Refused::Full));
        drop((a2, b1, c1));
        assert_eq!(fanout.subscribers(), 0);
        assert!(
            fanout.by_address().is_empty(),
            "no address is remembered after it leaves"
        );
        fanout.close();
        assert_eq!(fanout.subscribe(a).err(), Some(Refused::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reclaim_makes_the_streams_it_is_for_beat() {
        let secret = crate::reporter::ReporterSecret::from_config("test");
        let (a, b) = (address(&secret, 1), address(&secret, 2));
        let fanout = Fanout::new(8, 4, 2, Duration::from_secs(15));
        let (mut of_a, _) = fanout.subscribe(a).expect("a");
        let (mut of_b, _) = fanout.subscribe(b).expect("b");
        // A reclaim for an address at its limit: its streams beat, no one else's.
        let reclaim = tokio::spawn({
            let fanout = fanout.clone();
            async move { fanout.reclaim(Some(a)).await }
        });
        assert!(matches!(of_a.next().await, Next::Probe));
        let quiet = tokio::time::timeout(Duration::from_millis(600), of_b.next()).await;
        assert!(quiet.is_err(), "b's stream was not probed");
        reclaim.await.unwrap();
        // A reclaim for the whole process, at least a second after the last: every stream.
        let started = tokio::time::Instant::now();
        let reclaim = tokio::spawn({
            let fanout = fanout.clone();
            async move { fanout.reclaim(None).await }
        });
        assert!(matches!(of_b.next().await, Next::Probe));
        assert!(matches!(of_a.next().await, Next::Probe));
        reclaim.await.unwrap();
        assert!(started.elapsed() <= Duration::from_millis(1500));
    }

    /// Two clients reconnecting at once from an address at its limit, whose old streams
    /// notice that their clients left on different heartbeats: the reclaim goes on until
    /// there is a place for each (it stopped at the first, and one was refused).
    #[tokio::test(start_paused = true)]
    async fn a_reclaim_frees_a_place_for_every_call_waiting() {
        let secret = crate::reporter::ReporterSecret::from_config("test");
        let a = address(&secret, 1);
        let fanout = Fanout::new(8, 4, 2, Duration::from_secs(15));
        // Streams whose clients left: each learns it on its `beats`-th heartbeat.
        for beats in [2, 3] {
            let (mut gone, _) = fanout.subscribe(a).expect("a place");
            tokio::spawn(async move {
                for _ in 0..beats {
                    assert!(matches!(gone.next().await, Next::Probe));
                }
            });
        }
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let fanout = fanout.clone();
                tokio::spawn(async move { fanout.reclaim(Some(a)).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        let first = fanout.subscribe(a);
        let second = fanout.subscribe(a);
        assert!(first.is_ok() && second.is_ok(), "{:?}", second.err());
        let waiting = fanout.waiting();
        assert!(
            waiting.by_address.is_empty() && waiting.all == 0,
            "{waiting:?}"
        );
    }

    #[test]
    fn backoff_grows_to_two_seconds() {
        let mut b = Backoff::default();
        let error = crate::store::StoreError::Backend("down".into());
        b.failed("x", &error);
        assert_eq!(b.pause(), Duration::from_millis(100));
        for _ in 0..10 {
            b.failed("x", &error);
        }
        assert_eq!(b.pause(), Duration::from_millis(1600));
        b.succeeded();
        b.failed("x", &error);
        assert_eq!(b.pause(), Duration::from_millis(100));
    }
}
