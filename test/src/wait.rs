//! Waiting in tests without fixed sleeps.
//!
//! - [`eventually`]: polling with a deadline, for behaviour that is promised to happen
//!   eventually (namespace cleanup, etcd coming back), never as a substitute for a promise of
//!   "at once".
//! - [`stays_true`]: a negative assertion ("X does not happen") over a bounded observation
//!   window, polled through the whole window so that a violation fails at once.
//!
//! A window proves nothing unless it is long enough for the thing it rules out to have
//! happened: each caller derives it from the setting that bounds that thing (a resync period,
//! a lease duration) and says so where it calls.

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] and [`stays_true`] probe.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `probe` until it returns `Some`, and returns that value.
///
/// # Panics
/// When `limit` passes first, naming `what` was awaited.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Asserts that `holds` stays true for the whole of `window`: probes it at once, then every
/// [`POLL_INTERVAL`] until `window` has passed, and returns how many probes it made (at least
/// one). No probe starts after the window, so a change that is allowed once the window is over
/// cannot fail it.
///
/// This is a negative assertion bounded in time: it shows that what `holds` rules out did not
/// happen within `window`, not that it never will. Choose `window` longer than the time the
/// forbidden change would need to show (e.g. a resync period, a lease duration plus a retry).
///
/// # Panics
/// At the first probe that returns false, naming `what` and when in the window it failed.
pub async fn stays_true<F, Fut>(window: Duration, what: &str, mut holds: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    let end = start + window;
    let mut probes = 0;
    loop {
        probes += 1;
        if !holds().await {
            panic!("{what}: no longer true after {:?} of a {window:?} window", start.elapsed());
        }
        let now = tokio::time::Instant::now();
        if now >= end {
            return probes;
        }
        tokio::time::sleep(POLL_INTERVAL.min(end - now)).await;
        if tokio::time::Instant::now() >= end {
            return probes;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn stays_true_probes_until_the_window_is_over_and_never_after() {
        let window = Duration::from_millis(350);
        let started = tokio::time::Instant::now();
        let probed_at = Mutex::new(Vec::new());
        let probes = stays_true(window, "always", || async {
            probed_at.lock().expect("lock").push(started.elapsed());
            true
        })
        .await;
        assert!(started.elapsed() >= window, "returned after {:?}", started.elapsed());
        let probed_at = probed_at.into_inner().expect("lock");
        assert_eq!(probes, probed_at.len());
        assert!(probes >= 2, "probed at the start and again within the window: {probed_at:?}");
        assert!(probed_at.iter().all(|at| *at < window), "a probe after the window: {probed_at:?}");
    }

    #[tokio::test]
    #[should_panic(expected = "the flag is up: no longer true after")]
    async fn stays_true_fails_at_the_first_violation() {
        let calls = Mutex::new(0);
        stays_true(Duration::from_secs(60), "the flag is up", || async {
            let mut calls = calls.lock().expect("lock");
            *calls += 1;
            *calls < 3
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 300ms waiting for never")]
    async fn eventually_gives_up_at_its_limit() {
        eventually(Duration::from_millis(300), "never", || async { None::<()> }).await;
    }
}
