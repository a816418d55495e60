//! Client-side rate limit: a token bucket shared by every request of one [`Client`](crate::Client).
//!
//! The bucket holds at most `burst` tokens and refills at `qps` tokens per second; it starts
//! full. Each request takes one token; when there is none, the request reserves the next one
//! and sleeps (asynchronously) until it is due. client-go calls this
//! `flowcontrol.NewTokenBucketRateLimiter(qps, burst)`.
//!
//! What this keeps true: over any window of `t` seconds at most `burst + qps * t` requests
//! start, and waiters are served in the order they arrived (each reserves its own slot). Not
//! promised: fairness between clones of a client and separate clients; each `Client::new`
//! has its own bucket.

use std::sync::Mutex;
use std::time::Duration;

use std::time::Instant;

/// A token bucket; see the module docs.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    qps: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens available at `at`; negative when waiters have reserved tokens not yet refilled.
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A bucket of `burst` tokens (at least one) refilled at `qps` per second. `qps <= 0` (or
    /// not finite) means no limit.
    pub(crate) fn new(qps: f32, burst: u32) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter { qps: f64::from(qps), burst, state: Mutex::new(Bucket { tokens: burst, at: Instant::now() }) }
    }

    fn unlimited(&self) -> bool {
        !(self.qps.is_finite() && self.qps > 0.0)
    }

    /// Takes one token at time `now` and returns how long the caller must wait before using
    /// it. Pure bookkeeping (the clock is passed in), so the tests need no sleeping.
    fn reserve_at(&self, now: Instant) -> Duration {
        if self.unlimited() {
            return Duration::ZERO;
        }
        // A poisoned lock only means another request panicked mid-update of two numbers; the
        // bucket is still usable.
        let mut bucket = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.qps).min(self.burst);
        bucket.at = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-bucket.tokens / self.qps) }
    }

    /// Waits until this request may go.
    pub(crate) async fn acquire(&self) {
        let wait = self.reserve_at(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limiter_at(qps: f32, burst: u32) -> (RateLimiter, Instant) {
        let limiter = RateLimiter::new(qps, burst);
        let t0 = limiter.state.lock().unwrap().at;
        (limiter, t0)
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(10)
    }

    #[test]
    fn a_full_bucket_lets_a_burst_through_at_once() {
        let (limiter, t0) = limiter_at(5.0, 3);
        for _ in 0..3 {
            assert_eq!(limiter.reserve_at(t0), Duration::ZERO);
        }
        assert!(close(limiter.reserve_at(t0), 200 * MS));
    }

    #[test]
    fn after_the_burst_requests_are_spaced_by_one_over_qps() {
        // qps=5, burst=1: six requests at once are due at 0, 200, 400, 600, 800 and 1000 ms.
        let (limiter, t0) = limiter_at(5.0, 1);
        let waits: Vec<Duration> = (0..6).map(|_| limiter.reserve_at(t0)).collect();
        for (i, wait) in waits.iter().enumerate() {
            assert!(close(*wait, 200 * MS * i as u32), "{waits:?}");
        }
    }

    #[test]
    fn a_waiter_that_arrives_later_waits_less() {
        let (limiter, t0) = limiter_at(10.0, 1);
        assert_eq!(limiter.reserve_at(t0), Duration::ZERO);
        assert!(close(limiter.reserve_at(t0 + 40 * MS), 60 * MS));
        assert!(close(limiter.reserve_at(t0 + 50 * MS), 150 * MS));
    }

    #[test]
    fn an_idle_bucket_refills_but_never_beyond_burst() {
        let (limiter, t0) = limiter_at(10.0, 2);
        limiter.reserve_at(t0);
        limiter.reserve_at(t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limiter.reserve_at(later), Duration::ZERO);
        assert_eq!(limiter.reserve_at(later), Duration::ZERO);
        assert!(close(limiter.reserve_at(later), 100 * MS));
    }

    #[test]
    fn zero_qps_means_no_limit() {
        let (limiter, t0) = limiter_at(0.0, 0);
        for _ in 0..1000 {
            assert_eq!(limiter.reserve_at(t0), Duration::ZERO);
        }
    }

    #[tokio::test]
    async fn acquire_really_waits() {
        let limiter = RateLimiter::new(20.0, 1);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() >= 99 * MS, "{:?}", start.elapsed());
    }
}
