//! The detector in the server: one leader at a time ticks the [`Engine`] over the store.
//!
//! Every replica runs this task; each tick it tries to take or renew the lease in the store
//! (`SET NX PX`). The holder continues from the saved state (so a restart or a new leader
//! does not relearn: each service's state is restored from its latest save and replays the
//! few buckets since, see [`Detector::checkpoint`]), ticks the engine with the store as
//! count source, and commits the states due with the events atomically and fenced by the
//! lease: a leader that lost its lease cannot write, so a takeover never duplicates an
//! incident. A replica that is not the holder drops its copy of the state and reloads it
//! when it becomes the holder.
//!
//! With no saved state at all (a new deployment), the leader first replays the history the
//! store holds (`warmup`, e.g. imported with `downradar import`) with its events muted, then
//! announces the incidents still open at that point.
//!
//! Each tick is measured for `/metrics`: whether this replica leads, how long the tick took,
//! how far the detector is behind the clock, the incidents open and the events committed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buckets::align;
use crate::catalog::{Catalog, ServiceId};
use crate::clock::Clock;
use crate::store::{DetectorCommit, IncidentQuery, Store, StoreError};

use super::{Detector, DetectorConfig, Engine, EventType, Incident, IncidentEvent, IncidentStatus};

/// Buckets processed between two lease renewals (and commits) while catching up.
const STEP_BUCKETS: i64 = 60;
/// How often a long catch-up logs its progress.
const CATCH_UP_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The live detector of one replica.
pub struct LiveDetector {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    catalog: Catalog,
    config: DetectorConfig,
    /// This replica's lease identity.
    holder: String,
    lease: Duration,
    warmup: Duration,
    /// The engine while this replica leads.
    engine: Option<Engine>,
    /// The cursor of the saved state the engine continues from (`None`: none was saved).
    saved: Option<i64>,
    /// Services whose saved states the next commit deletes (they left the catalog).
    forget: Vec<ServiceId>,
    /// The open incidents as this engine's commits last wrote their records, by id: an
    /// incident's figures move every bucket, its events come only with changes of
    /// attribution, so the commits refresh the records in between (see
    /// [`DetectorCommit::refreshed`]).
    written: HashMap<String, Incident>,
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq)]
pub enum TickOutcome {
    /// Another replica holds the lease.
    Follower,
    /// This replica leads; the events committed this tick.
    Leader(Vec<IncidentEvent>),
}

impl LiveDetector {
    /// A detector for `catalog` over `store`; `lease` is how long the lease lasts without
    /// renewal (tick at most a third of it), `warmup` how much history a first start replays.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        catalog: Catalog,
        config: DetectorConfig,
        lease: Duration,
        warmup: Duration,
    ) -> Self {
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        Self {
            store,
            clock,
            catalog,
            config,
            holder: format!("{}-{}", std::process::id(), crate::reporter::hex(&id)),
            lease,
            warmup,
            engine: None,
            saved: None,
            forget: Vec::new(),
            written: HashMap::new(),
        }
    }

    /// This replica's lease identity.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// One tick: lease, catch up on closed buckets, commit. A long catch-up (after downtime)
    /// goes in steps of [`STEP_BUCKETS`], each committed and each after renewing the lease,
    /// so it never outlasts the lease and yields to the runtime in between.
    pub async fn tick(&mut self) -> Result<TickOutcome, StoreError> {
        let mut committed = Vec::new();
        // A replica that has not read the store's clock yet would read buckets by its own,
        // and save a cursor that far off: it leaves the detector to others until then.
        if !self.clock.settled() {
            return Ok(TickOutcome::Follower);
        }
        loop {
            if !self.store.acquire_lease(&self.holder, self.lease).await? {
                if self.engine.take().is_some() {
                    tracing::info!(holder = %self.holder, "lost the detector lease");
                }
                return Ok(if committed.is_empty() {
                    TickOutcome::Follower
                } else {
                    TickOutcome::Leader(committed)
                });
            }
            let now = self.clock.now().unix_timestamp();
            let mut events = Vec::new();
            // A new leader commits at once: a warm-up's days of learning must not wait for the
            // next bucket to close (an hour, with `--bucket 1h`) to become durable.
            let resumed = self.engine.is_none();
            if resumed {
                // What the store holds is not known: every open record is refreshed.
                self.written.clear();
                let engine = self.resume(now, &mut events).await?;
                self.reconcile(&engine, &mut events).await?;
                self.engine = Some(engine);
            }
            let Some(engine) = self.engine.as_mut() else {
                return Ok(TickOutcome::Follower);
            };
            let width = self.config.bucket.secs();
            let settle = super::SETTLE.as_secs() as i64;
            let before = engine.cursor();
            let step_now = now.min(before + STEP_BUCKETS * width + width + settle);
            if let Err(e) = engine
                .tick(step_now, self.store.as_ref(), &mut events)
                .await
            {
                // The engine may have advanced past buckets whose events are not committed:
                // start again from the last commit.
                self.engine = None;
                return Err(e);
            }
            if resumed || engine.cursor() != before || !events.is_empty() {
                self.commit(&events).await?;
                committed.extend(events);
            }
            let caught_up = self
                .engine
                .as_ref()
                .is_none_or(|e| e.cursor() >= align(now - settle, width));
            if caught_up {
                return Ok(TickOutcome::Leader(committed));
            }
            tokio::task::yield_now().await;
        }
    }

    /// Commits the engine's cursor, the states due (see [`Detector::checkpoint`]) and
    /// `events`, fenced by the lease.
    async fn commit(&mut self, events: &[IncidentEvent]) -> Result<(), StoreError> {
        let Some(engine) = self.engine.as_mut() else {
            return Ok(());
        };
        let changed: Vec<&ServiceId> = events.iter().map(|e| &e.incident.service).collect();
        let states = engine.checkpoint(&changed);
        // An open incident's record as this commit leaves it: its last event's, or else as
        // written before. (A catch-up's step covers many buckets, so even an incident with
        // an event in it may have moved on since.)
        let open = engine.detector().open_incidents();
        let mut written: HashMap<&str, &Incident> = self
            .written
            .iter()
            .map(|(id, incident)| (id.as_str(), incident))
            .collect();
        for event in events {
            written.insert(&event.incident.id, &event.incident);
        }
        let refreshed: Vec<Incident> = open
            .iter()
            .filter(|incident| written.get(incident.id.as_str()) != Some(incident))
            .cloned()
            .collect();
        let commit = DetectorCommit {
            holder: &self.holder,
            continues_from: self.saved,
            cursor: engine.cursor(),
            states: &states,
            forget: &self.forget,
            gaps: engine.detector().gap_decisions(),
            events,
            refreshed: &refreshed,
        };
        match self.store.commit_detector(commit).await {
            Ok(_) => {
                self.saved = Some(engine.cursor());
                self.forget.clear();
                self.written = open
                    .into_iter()
                    .map(|incident| (incident.id.clone(), incident))
                    .collect();
                for event in events {
                    metrics::counter!("downradar_incident_events_total", "type" => event.kind.as_str())
                        .increment(1);
                    tracing::info!(
                        kind = event.kind.as_str(),
                        incident = %event.incident.id,
                        scope = ?event.incident.scope,
                        "incident event"
                    );
                }
                Ok(())
            }
            Err(e) => {
                // Not committed (or not known to be), or the saved state moved on without
                // this engine: reload from the store next time.
                self.engine = None;
                Err(e)
            }
        }
    }

    /// The `at` of what a new leader decides on taking over (a warm-up's announcements,
    /// reconcile's resolutions): the end of the last bucket its engine took, or the saved
    /// cursor when that is later (a warm-up after a `--bucket` change starts up to a bucket
    /// before it), so that no event comes before those already on the stream.
    fn resumed_at(&self, engine: &Engine) -> time::OffsetDateTime {
        let decided = engine.decided_at();
        self.saved
            .map_or(decided, |cursor| super::instant(cursor).max(decided))
    }

    /// Squares a new leader's engine with the incidents the store holds open. The engine
    /// drops the state of a service that left the catalog, or no longer fits it (another
    /// bucket width), and with it any incident it had open: that incident
    /// is resolved (see [`LiveDetector::resumed_at`] for when), or it would stay open in the
    /// store (and on the status page) for good. A warm-up's announcement of an incident the
    /// store already holds open (the same service and start) is not made twice; and where the
    /// engine's attribution of such an incident differs from the stored one (a warm-up
    /// relearned it), an `incident.updated` says so, so that the record (refreshed with the
    /// engine's view, see [`DetectorCommit::refreshed`]) never changes without an event.
    async fn reconcile(
        &self,
        engine: &Engine,
        events: &mut Vec<IncidentEvent>,
    ) -> Result<(), StoreError> {
        let stored = self
            .store
            .incidents(&IncidentQuery {
                active_only: true,
                limit: usize::MAX,
                ..IncidentQuery::default()
            })
            .await?;
        if stored.is_empty() {
            return Ok(());
        }
        events.retain(|event| {
            event.kind != EventType::Opened || stored.iter().all(|i| i.id != event.incident.id)
        });
        let engine_open = engine.detector().open_incidents();
        for incident in &engine_open {
            let differs = stored
                .iter()
                .any(|i| i.id == incident.id && !same_attribution(i, incident));
            let announced = events.iter().any(|e| e.incident.id == incident.id);
            if differs && !announced {
                events.push(IncidentEvent {
                    kind: EventType::Updated,
                    at: self.resumed_at(engine),
                    incident: incident.clone(),
                });
            }
        }
        let open: HashSet<String> = engine_open
            .into_iter()
            .map(|incident| incident.id)
            .collect();
        // (A replay of the buckets since a state was saved resolves nothing the store holds
        // open unless reports for them came late; such a resolution is not made twice.)
        let resolved: HashSet<String> = events
            .iter()
            .filter(|e| e.kind == EventType::Resolved)
            .map(|e| e.incident.id.clone())
            .collect();
        for mut incident in stored
            .into_iter()
            .filter(|i| !open.contains(&i.id) && !resolved.contains(&i.id))
        {
            tracing::warn!(
                incident = %incident.id,
                "resolving an open incident whose service's detector state was not kept"
            );
            let at = self.resumed_at(engine).max(incident.started_at);
            incident.status = IncidentStatus::Resolved;
            incident.resolved_at = Some(at);
            events.push(IncidentEvent {
                kind: EventType::Resolved,
                at,
                incident,
            });
        }
        Ok(())
    }

    /// The engine of a new leader: restored from the saved states and replayed from the
    /// oldest save to the saved cursor, or warmed up on the store's history (either in
    /// steps, renewing the lease between them).
    async fn resume(
        &mut self,
        now: i64,
        announce: &mut Vec<IncidentEvent>,
    ) -> Result<Engine, StoreError> {
        let width = self.config.bucket.secs();
        let snapshot = self.store.load_detector().await?;
        self.saved = snapshot.as_ref().map(|s| s.cursor);
        if let Some(mut snapshot) = snapshot {
            // States of services that left the catalog are deleted with the next commit; kept,
            // they would decide the saved bucket width long after (see `saved_width`).
            let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut snapshot.services)
                .into_iter()
                .partition(|saved| self.catalog.get(saved.service.as_str()).is_some());
            snapshot.services = kept;
            self.forget = gone.into_iter().map(|saved| saved.service).collect();
            if !self.forget.is_empty() {
                tracing::info!(services = ?self.forget, "forgetting the detector state of services no longer in the catalog");
            }
            let saved_width = Detector::saved_width(&snapshot.services);
            if snapshot.cursor.rem_euclid(width) == 0 && saved_width.is_none_or(|w| w == width) {
                let (detector, errors) = Detector::restore(
                    &self.catalog,
                    self.config,
                    &snapshot.services,
                    &snapshot.gaps,
                );
                for error in errors {
                    tracing::warn!(%error, "detector state");
                }
                // States saved before the cursor take the buckets since (at most
                // a checkpoint period's), so every service is at the cursor again.
                let from = detector
                    .oldest_saved()
                    .map_or(snapshot.cursor, |oldest| oldest.min(snapshot.cursor));
                let mut engine = Engine::new(detector, from);
                self.catch_up(&mut engine, snapshot.cursor, Some(announce))
                    .await?;
                tracing::info!(
                    holder = %self.holder,
                    cursor = snapshot.cursor,
                    replayed = (snapshot.cursor - from) / width,
                    "leading the detector, continuing from the saved state"
                );
                return Ok(engine);
            }
            // Made with another `--bucket`: its baselines do not fit, and its cursor would
            // never meet a bucket start again (the detector would read nothing, ever).
            tracing::warn!(
                saved_width,
                width,
                cursor = snapshot.cursor,
                "the saved detector state was made with another bucket width; starting afresh"
            );
        }
        let settle = super::SETTLE.as_secs() as i64;
        let warmup = i64::try_from(self.warmup.as_secs()).unwrap_or(0);
        let mut engine = Engine::new(
            Detector::new(&self.catalog, self.config),
            align(now - warmup, width),
        );
        tracing::info!(
            holder = %self.holder,
            warmup = %humantime::format_duration(self.warmup),
            "leading the detector with no saved state: learning from the stored history"
        );
        // What a warm-up decides is history, not news: only what is open at its end is
        // announced, as decided at the end of the last bucket it learned (the next step's
        // events come at the ends of later buckets; the wall clock after a warm-up of minutes
        // would come after some of them), or at the saved cursor (see `resumed_at`).
        self.catch_up(&mut engine, align(now - settle, width), None)
            .await?;
        let at = self.resumed_at(&engine);
        announce.extend(
            engine
                .detector()
                .open_incidents()
                .into_iter()
                .map(|incident| IncidentEvent {
                    kind: EventType::Opened,
                    at,
                    incident,
                }),
        );
        Ok(engine)
    }

    /// Runs `engine` through the buckets before `until` (a bucket start) in steps of
    /// [`STEP_BUCKETS`], renewing the lease after each, and adds their events to `events`
    /// (`None`: drops them).
    async fn catch_up(
        &self,
        engine: &mut Engine,
        until: i64,
        mut events: Option<&mut Vec<IncidentEvent>>,
    ) -> Result<(), StoreError> {
        let width = self.config.bucket.secs();
        let settle = super::SETTLE.as_secs() as i64;
        let mut dropped = Vec::new();
        // A long catch-up (a first leader's warm-up on days of history) shows its progress.
        let (from, started) = (engine.cursor(), Instant::now());
        let mut shown = started;
        while engine.cursor() < until {
            let step_until = until.min(engine.cursor() + STEP_BUCKETS * width + width);
            let sink = match events.as_deref_mut() {
                Some(events) => events,
                None => {
                    dropped.clear();
                    &mut dropped
                }
            };
            engine
                .tick(step_until + settle, self.store.as_ref(), sink)
                .await?;
            if !self.store.acquire_lease(&self.holder, self.lease).await? {
                return Err(StoreError::LeaseLost);
            }
            if shown.elapsed() >= CATCH_UP_PROGRESS_EVERY {
                shown = Instant::now();
                let done = (engine.cursor() - from) as f64 / (until - from).max(1) as f64;
                tracing::info!(
                    buckets = (engine.cursor() - from) / width,
                    of = (until - from) / width,
                    "detector catching up: {:.0}% after {:.0?}",
                    100.0 * done.min(1.0),
                    started.elapsed()
                );
            }
            tokio::task::yield_now().await;
        }
        if until > from {
            tracing::info!(
                buckets = (until - from) / width,
                "detector caught up in {:.1?}",
                started.elapsed()
            );
        }
        Ok(())
    }

    /// Gives the lease up (on shutdown), so another replica takes over at once.
    pub async fn release(&mut self) {
        self.engine = None;
        if let Err(e) = self.store.release_lease(&self.holder).await {
            tracing::warn!(error = %e, "could not release the detector lease");
        }
    }

    /// Ticks every `interval` until `stop` fires (which also cuts a tick short), then
    /// releases the lease.
    pub async fn run(mut self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => break,
            }
            // A tick (a first leader's warm-up on days of history, above all) gives way to
            // shutdown. Dropping it mid-way loses nothing: each commit is atomic, and the
            // next leader continues from the last one.
            let started = Instant::now();
            tokio::select! {
                result = self.tick() => self.measure(&result, started.elapsed()),
                _ = stop.changed() => break,
            }
        }
        self.release().await;
    }

    /// Publishes what a tick did to `/metrics` (and logs a failure). A follower reports no
    /// lag and no incidents, so that summing or taking the maximum over replicas gives the
    /// leader's figures.
    fn measure(&self, result: &Result<TickOutcome, StoreError>, took: Duration) {
        let outcome = match result {
            Ok(TickOutcome::Leader(_)) => "leader",
            Ok(TickOutcome::Follower) => "follower",
            Err(e) => {
                tracing::warn!(error = %e, "detector tick failed; retrying next tick");
                "error"
            }
        };
        metrics::counter!("downradar_detector_ticks_total", "outcome" => outcome).increment(1);
        metrics::histogram!("downradar_detector_tick_seconds").record(took.as_secs_f64());
        let leading = self.engine.as_ref().filter(|_| outcome == "leader");
        metrics::gauge!("downradar_detector_leader").set(if leading.is_some() { 1.0 } else { 0.0 });
        let (lag, open) = leading.map_or((0.0, 0.0), |engine| {
            let now = self.clock.now().unix_timestamp();
            (
                (now - engine.cursor()).max(0) as f64,
                engine.detector().open_count() as f64,
            )
        });
        metrics::gauge!("downradar_detector_lag_seconds").set(lag);
        metrics::gauge!("downradar_incidents_open").set(open);
    }
}

/// Whether two records of an incident say the same of it: scope, regions, problems and cause
/// (what an `incident.updated` announces), whatever their figures.
fn same_attribution(a: &Incident, b: &Incident) -> bool {
    a.scope == b.scope
        && a.regions == b.regions
        && a.partial == b.partial
        && a.problems == b.problems
        && a.caused_by == b.caused_by
}
