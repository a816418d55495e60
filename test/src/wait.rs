//! Polling with a deadline, for behaviour that is promised to happen eventually (namespace
//! cleanup, etcd coming back), never as a substitute for a promise of "at once".

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] probes.
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
