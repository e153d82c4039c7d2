//! A budget of bucket reads for the endpoints that read stored counts (report series, incident
//! evidence, the map and problem breakdowns).
//!
//! One series request may read 30,000 buckets ([`MAX_BUCKETS_READ`]): on Redis about 0.1 s of
//! this process's time and 0.04 s of Redis's. Unbounded, 32 clients asking for such a series
//! at once held the store's attention for seconds, and each other's answers with it. So each
//! request first takes its bucket reads from a budget of [`READ_BUDGET`] per process (two of
//! the largest reads at once, or many small ones), queueing in arrival order; one that cannot
//! start within [`QUEUE_WAIT`] is answered 503 `overloaded` with `Retry-After`, without
//! reading anything.

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::error::ApiError;
use super::reports::MAX_BUCKETS_READ;

/// Bucket reads in flight at once in one process.
pub const READ_BUDGET: u32 = 2 * MAX_BUCKETS_READ as u32;
/// How long a read waits for room in the budget before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// The bucket reads this process may have in flight (see the module's documentation).
pub struct ReadBudget {
    permits: Semaphore,
    refused: metrics::Counter,
}

impl ReadBudget {
    pub fn new() -> Self {
        Self {
            permits: Semaphore::new(READ_BUDGET as usize),
            refused: metrics::counter!("downradar_reads_refused_total"),
        }
    }

    /// Room for `buckets` reads (at least one, at most the whole budget), held until the
    /// permit is dropped; 503 `overloaded` when it is not free within [`QUEUE_WAIT`].
    pub async fn take(&self, buckets: i64) -> Result<SemaphorePermit<'_>, ApiError> {
        let reads = buckets.clamp(1, i64::from(READ_BUDGET)) as u32;
        match tokio::time::timeout(QUEUE_WAIT, self.permits.acquire_many(reads)).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a timeout is the one way here.
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
        // Nothing is left: a small read waits, and is refused after the wait.
        let started = tokio::time::Instant::now();
        let refused = budget.take(10).await.unwrap_err();
        assert_eq!(
            refused.status_code(),
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(refused.body().code, "overloaded");
        assert_eq!(started.elapsed(), QUEUE_WAIT);
        // Room comes back when the first read ends; zero buckets still take one read.
        drop(whole);
        let a = budget.take(MAX_BUCKETS_READ).await.unwrap();
        let b = budget.take(MAX_BUCKETS_READ - 1).await.unwrap();
        let c = budget.take(0).await.unwrap();
        assert_eq!(budget.permits.available_permits(), 0);
        drop((a, b, c));
        assert_eq!(budget.permits.available_permits(), READ_BUDGET as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_read_starts_when_room_is_freed() {
        let budget = std::sync::Arc::new(ReadBudget::new());
        let whole = budget.take(i64::from(READ_BUDGET)).await.unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.take(100).await.map(drop).is_ok() })
        };
        tokio::time::sleep(QUEUE_WAIT / 2).await;
        drop(whole);
        assert!(waiting.await.unwrap());
    }
}
