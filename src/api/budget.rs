//! A budget of bucket reads for the endpoints that read stored counts (report series, incident
//! evidence, the map and problem breakdowns, a service's status).
//!
//! One series request may read 30,000 buckets ([`MAX_BUCKETS_READ`]): on Redis about 0.1 s of
//! this process's time and 0.04 s of Redis's. Unbounded, 32 clients asking for such a series
//! at once held the store's attention for seconds, and each other's answers with it. So each
//! request first takes its bucket reads from a budget per process, queueing in arrival order;
//! one that cannot start within [`QUEUE_WAIT`] is answered 503 `overloaded` with
//! `Retry-After`, before it reads any counts. Reads of at most [`SMALL_READ`] buckets (a
//! status, a map, a day's problems, most series) have a lane of their own, [`SMALL_BUDGET`],
//! so that they never wait behind the largest series, whose lane is [`LARGE_BUDGET`].

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::error::ApiError;
use super::reports::MAX_BUCKETS_READ;

/// The most buckets a read of the small lane reads.
pub const SMALL_READ: i64 = 2_000;
/// Bucket reads of the small lane in flight at once in one process.
pub const SMALL_BUDGET: u32 = 30_000;
/// Bucket reads of the large lane in flight at once in one process: two of the largest.
pub const LARGE_BUDGET: u32 = 2 * MAX_BUCKETS_READ as u32;
/// How long a read waits for room in the budget before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// The bucket reads this process may have in flight (see the module's documentation).
pub struct ReadBudget {
    small: Semaphore,
    large: Semaphore,
    refused: metrics::Counter,
}

impl ReadBudget {
    pub fn new() -> Self {
        Self {
            small: Semaphore::new(SMALL_BUDGET as usize),
            large: Semaphore::new(LARGE_BUDGET as usize),
            refused: metrics::counter!("downradar_reads_refused_total"),
        }
    }

    /// Room for `buckets` reads (at least one, at most the whole of its lane), held until the
    /// permit is dropped; 503 `overloaded` when it is not free within [`QUEUE_WAIT`].
    pub async fn take(&self, buckets: i64) -> Result<SemaphorePermit<'_>, ApiError> {
        let (lane, capacity) = if buckets <= SMALL_READ {
            (&self.small, SMALL_BUDGET)
        } else {
            (&self.large, LARGE_BUDGET)
        };
        let reads = buckets.clamp(1, i64::from(capacity)) as u32;
        match tokio::time::timeout(QUEUE_WAIT, lane.acquire_many(reads)).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphores are never closed; a timeout is the one way here.
            _ => {
                self.refused.increment(1);
                Err(ApiError::reads_overloaded())
            }
        }
    }
}

impl Default for ReadBudget {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;

    #[tokio::test(start_paused = true)]
    async fn a_read_waits_its_turn_and_is_refused_past_the_wait() {
        let budget = ReadBudget::new();
        let whole = budget.take(i64::MAX).await.unwrap();
        // Nothing is left in the large lane: a large read waits, and is refused after the wait.
        let started = tokio::time::Instant::now();
        let refused = budget.take(SMALL_READ + 1).await.unwrap_err();
        assert_eq!(
            refused.status_code(),
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(refused.body().code, "overloaded");
        assert_eq!(started.elapsed(), QUEUE_WAIT);
        // A small read has its own lane, and does not wait.
        let small = budget.take(SMALL_READ).await.unwrap();
        assert_eq!(started.elapsed(), QUEUE_WAIT);
        drop(small);
        // Room comes back when the first read ends; zero buckets still take one read.
        drop(whole);
        let a = budget.take(MAX_BUCKETS_READ).await.unwrap();
        let b = budget.take(MAX_BUCKETS_READ - 1).await.unwrap();
        assert_eq!(budget.large.available_permits(), 1);
        let c = budget.take(0).await.unwrap();
        assert_eq!(budget.small.available_permits(), SMALL_BUDGET as usize - 1);
        drop((a, b, c));
        assert_eq!(budget.large.available_permits(), LARGE_BUDGET as usize);
        assert_eq!(budget.small.available_permits(), SMALL_BUDGET as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_read_starts_when_room_is_freed() {
        let budget = std::sync::Arc::new(ReadBudget::new());
        let whole = budget.take(i64::from(LARGE_BUDGET)).await.unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.take(SMALL_READ + 1).await.map(drop).is_ok() })
        };
        tokio::time::sleep(QUEUE_WAIT / 2).await;
        drop(whole);
        assert!(waiting.await.unwrap());
    }
}
