//! Time, injectable. The server runs on [`SystemClock`]; tests (and later the backtest) drive
//! a [`ManualClock`], so nothing in the product needs a `sleep` to be tested. Replicas that
//! share a Redis run on a [`StoreClock`]: their own clock set to Redis's, so they all stamp
//! buckets and close them on one timeline.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// Whether [`now`](Clock::now) is the time to work by yet: false only for a
    /// [`StoreClock`] that has not read the store's clock once. Until then a replica is not
    /// ready and does not run the detector.
    fn settled(&self) -> bool {
        true
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The store's clock, read locally: a local clock plus the offset of the store's time (Redis
/// `TIME`) from it, measured now and then by [`StoreClock::sync`].
///
/// Every replica stamps the reports it takes with the bucket of *its* now, and the detector's
/// leader reads a bucket shortly after it ends by *its* now. On their own clocks a replica
/// a few seconds behind the leader writes into buckets the leader has already read (the
/// reports then show in the series but never reach detection), and one ahead into buckets
/// not yet begun. On the store's clock they agree to within half a round trip to it.
///
/// Between measurements the local clock is checked against the monotonic clock: when the
/// two part by more than [`StoreClock::MAX_STEP`] (NTP stepping the host's clock at boot; or
/// the host suspended, which stops the monotonic clock), the time follows the monotonic
/// clock from the last measurement, and [`StoreClock::needs_sync`] asks for a measurement,
/// which the server takes within a second.
pub struct StoreClock {
    local: Arc<dyn Clock>,
    anchor: RwLock<Option<Anchor>>,
    /// The local clock was seen to step since the last measurement.
    stepped: AtomicBool,
}

/// The last measurement.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// The store's time minus the local clock's.
    offset: time::Duration,
    /// The local clock, and the monotonic clock, when it was taken.
    local: OffsetDateTime,
    mono: Instant,
}

/// One measurement of the offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offset {
    /// The store's time minus the local clock's.
    pub offset: time::Duration,
    /// The round trip of the reading it rests on: the offset is right to within half of it.
    pub round_trip: Duration,
}

impl StoreClock {
    /// Readings with a longer round trip than this are not trusted.
    pub const MAX_ROUND_TRIP: Duration = Duration::from_secs(1);
    /// A difference this large between how far the local clock and the monotonic clock have
    /// moved since the last measurement is the local clock being set, not time passing.
    pub const MAX_STEP: Duration = Duration::from_secs(1);

    /// The local clock, not yet synchronised: it reads the local time, and is not
    /// [`settled`](Clock::settled).
    pub fn new(local: Arc<dyn Clock>) -> Self {
        Self {
            local,
            anchor: RwLock::new(None),
            stepped: AtomicBool::new(false),
        }
    }

    fn anchor(&self) -> Option<Anchor> {
        *self.anchor.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The store's time minus the local clock's, as last measured; `None` before the first
    /// measurement.
    pub fn offset(&self) -> Option<time::Duration> {
        self.anchor().map(|a| a.offset)
    }

    /// Whether a measurement is due now: none has succeeded yet, or the local clock has been
    /// set since the last.
    pub fn needs_sync(&self) -> bool {
        self.anchor().is_none() || self.stepped.load(Ordering::Relaxed)
    }

    /// Measures the offset with up to `samples` readings of the store's time, each between two
    /// readings of the local clock; the reading with the shortest round trip is taken to have
    /// been made at the middle of it (as NTP does), and sets the offset. Readings that take
    /// longer than [`Self::MAX_ROUND_TRIP`] are passed over, and a reading that fails ends the
    /// measurement (the store is away: more readings would only wait for it). With no reading
    /// to go by, the offset is kept and the error (or `too_slow`) returned. Before the first
    /// measurement has succeeded, each better reading is used at once, so a measurement cut
    /// short (a deadline at start-up) still leaves the best reading it had.
    pub async fn sync<F, Fut, E>(
        &self,
        samples: usize,
        mut store_time: F,
        too_slow: impl FnOnce() -> E,
    ) -> Result<Offset, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<OffsetDateTime, E>>,
    {
        let first = self.anchor().is_none();
        let mut best: Option<(Offset, Anchor)> = None;
        let mut error = None;
        for _ in 0..samples.max(1) {
            let before = self.local.now();
            let store = match store_time().await {
                Ok(t) => t,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            let after = self.local.now();
            let mono = Instant::now();
            let Ok(round_trip) = Duration::try_from(after - before) else {
                continue; // the local clock went back: no telling when the reading was made
            };
            if round_trip > Self::MAX_ROUND_TRIP {
                continue;
            }
            if best.is_some_and(|(b, _)| b.round_trip <= round_trip) {
                continue;
            }
            let offset = store - (before + (after - before) / 2);
            let anchor = Anchor {
                offset,
                local: after,
                mono,
            };
            best = Some((Offset { offset, round_trip }, anchor));
            if first {
                self.set(anchor);
            }
        }
        match best {
            Some((found, anchor)) => {
                self.set(anchor);
                Ok(found)
            }
            None => Err(error.unwrap_or_else(too_slow)),
        }
    }

    fn set(&self, anchor: Anchor) {
        *self.anchor.write().unwrap_or_else(|e| e.into_inner()) = Some(anchor);
        self.stepped.store(false, Ordering::Relaxed);
    }
}

impl Clock for StoreClock {
    fn now(&self) -> OffsetDateTime {
        let local = self.local.now();
        let Some(anchor) = self.anchor() else {
            return local;
        };
        // Where the local clock should be by the monotonic clock; if it is not, it was set.
        let expected = anchor.local + anchor.mono.elapsed();
        let local = if (local - expected).abs() > Self::MAX_STEP {
            self.stepped.store(true, Ordering::Relaxed);
            expected
        } else {
            local
        };
        local + anchor.offset
    }

    fn settled(&self) -> bool {
        self.anchor().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
    }

    /// A store whose clock is `skew` ahead of `local`; each reading takes `legs` (there, back)
    /// of local time, in turn per call.
    async fn sync_against(
        local: &Arc<ManualClock>,
        clock: &StoreClock,
        skew: Duration,
        legs: &[(u64, u64)],
    ) -> Result<Offset, &'static str> {
        let mut calls = legs.iter().copied();
        clock
            .sync(
                legs.len(),
                || {
                    let (there, back) = calls.next().unwrap();
                    local.advance(Duration::from_millis(there));
                    let reading = local.now() + skew;
                    local.advance(Duration::from_millis(back));
                    async move { Ok(reading) }
                },
                || "too slow",
            )
            .await
    }

    #[tokio::test]
    async fn it_takes_the_store_time_from_the_quickest_reading() {
        let local = Arc::new(ManualClock::new(epoch()));
        let clock = StoreClock::new(local.clone());
        assert_eq!(clock.now(), epoch());
        assert!(!clock.settled() && clock.needs_sync());
        // Five minutes ahead; the slow readings are lopsided (40 ms out, 0 back), the quick
        // one even (1 ms each way), so only the quick one gives the offset exactly.
        let skew = Duration::from_secs(300);
        let found = sync_against(&local, &clock, skew, &[(40, 0), (1, 1), (0, 30)])
            .await
            .unwrap();
        assert_eq!(found.offset, time::Duration::seconds(300));
        assert_eq!(found.round_trip, Duration::from_millis(2));
        // Within the microseconds of real time the test takes.
        let lag = (local.now() + skew) - clock.now();
        assert!(lag.abs() < time::Duration::milliseconds(100), "{lag}");
        assert!(clock.settled() && !clock.needs_sync());
    }

    #[tokio::test]
    async fn a_step_of_the_local_clock_is_not_followed() {
        let local = Arc::new(ManualClock::new(epoch()));
        let clock = StoreClock::new(local.clone());
        sync_against(&local, &clock, Duration::from_secs(3), &[(1, 1)])
            .await
            .unwrap();
        let before = clock.now();
        // The host's clock is set two minutes ahead (the monotonic clock has hardly moved).
        local.advance(Duration::from_secs(120));
        let after = clock.now();
        assert!(
            (after - before).abs() < time::Duration::milliseconds(100),
            "{before} {after}"
        );
        assert!(clock.needs_sync());
        // The next measurement takes the new local time as it is.
        let found = sync_against(&local, &clock, Duration::from_secs(3), &[(1, 1)])
            .await
            .unwrap();
        assert_eq!(found.offset, time::Duration::seconds(3));
        assert!(!clock.needs_sync());
    }

    #[tokio::test]
    async fn a_first_measurement_cut_short_keeps_its_best_reading() {
        let local = Arc::new(ManualClock::new(epoch()));
        let clock = StoreClock::new(local.clone());
        let mut calls = 0;
        let cut = tokio::time::timeout(
            Duration::from_millis(200),
            clock.sync(
                5,
                || {
                    calls += 1;
                    let reading = local.now() + Duration::from_secs(60);
                    let first = calls == 1;
                    async move {
                        if !first {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, &str>(reading)
                    }
                },
                || "too slow",
            ),
        )
        .await;
        assert!(cut.is_err(), "the measurement was cut short");
        assert_eq!(clock.offset(), Some(time::Duration::seconds(60)));
        assert!(clock.settled());
    }

    #[tokio::test]
    async fn slow_or_failed_readings_leave_the_offset_alone() {
        let local = Arc::new(ManualClock::new(epoch()));
        let clock = StoreClock::new(local.clone());
        sync_against(&local, &clock, Duration::from_secs(3), &[(1, 1)])
            .await
            .unwrap();
        let err = sync_against(&local, &clock, Duration::from_secs(60), &[(600, 600)]).await;
        assert_eq!(err, Err("too slow"));
        let failed = clock
            .sync(
                2,
                || async { Err::<OffsetDateTime, _>("down") },
                || "too slow",
            )
            .await;
        assert_eq!(failed, Err("down"));
        assert_eq!(clock.offset(), Some(time::Duration::seconds(3)));
    }
}
