//! Retrying a read-modify-write when another writer got there first.
//!
//! Optimistic concurrency: an update carries the `resourceVersion` it read, and the server
//! answers 409 Conflict if the object changed since. The fix is to read again, re-apply the
//! change and write again. [`retry_on_conflict`] does that loop, exactly like client-go's
//! `retry.RetryOnConflict(retry.DefaultRetry, fn)`: at most 5 attempts, 10ms apart plus up to
//! 10% jitter, and only [`Error::Conflict`] is retried.
//!
//! The closure must do the whole read-modify-write (get, change, replace); retrying only the
//! write would send the same stale resourceVersion again. After the last attempt the last
//! Conflict is returned: this is for a few racing writers, not for a hot spot.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// Attempts [`retry_on_conflict`] makes (client-go `DefaultRetry.Steps`).
const DEFAULT_RETRY_STEPS: u32 = 5;
/// Pause between attempts before jitter (client-go `DefaultRetry.Duration`).
const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(10);
/// Up to this fraction of the pause is added at random (client-go `DefaultRetry.Jitter`).
const DEFAULT_RETRY_JITTER: f64 = 0.1;

/// Runs `f` until it returns something other than [`Error::Conflict`], at most 5 times, pausing
/// 10ms (plus up to 10% jitter) between attempts: client-go's `retry.DefaultRetry`. The closure
/// must do the whole read-modify-write; after the fifth conflict, that conflict is returned.
///
/// ```no_run
/// # async fn demo(api: rkube_client::Api<k8s_openapi::api::core::v1::ConfigMap>) -> rkube_client::Result<()> {
/// use rkube_client::{retry_on_conflict, PostParams};
/// retry_on_conflict(|| async {
///     let mut cm = api.get("counter").await?;
///     let n: u64 = cm.data.as_ref().and_then(|d| d.get("n")).and_then(|n| n.parse().ok()).unwrap_or(0);
///     cm.data.get_or_insert_with(Default::default).insert("n".into(), (n + 1).to_string());
///     api.replace("counter", &PostParams::default(), &cm).await
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn retry_on_conflict<T, F, Fut>(f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_with(DEFAULT_RETRY_STEPS, DEFAULT_RETRY_DELAY, DEFAULT_RETRY_JITTER, f).await
}

async fn retry_with<T, F, Fut>(steps: u32, delay: Duration, jitter: f64, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(Error::Conflict(status)) if attempt < steps => {
                tracing::debug!(attempt, message = ?status.message, "conflict, retrying");
                attempt += 1;
                let pause = delay.mul_f64(1.0 + jitter * rand::random::<f64>());
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn conflict() -> Error {
        Error::Conflict(Box::new(Status { code: Some(409), ..Status::default() }))
    }

    #[tokio::test]
    async fn conflicts_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = retry_on_conflict(|| async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 { Err(conflict()) } else { Ok("done") }
        })
        .await;
        assert_eq!(result.unwrap(), "done");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn after_five_attempts_the_last_conflict_is_returned() {
        let calls = AtomicU32::new(0);
        let start = std::time::Instant::now();
        let result: Result<()> = retry_on_conflict(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(conflict())
        })
        .await;
        assert!(result.unwrap_err().is_conflict());
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        // Four pauses of at least 10ms.
        assert!(start.elapsed() >= Duration::from_millis(40), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<()> = retry_on_conflict(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::Unavailable("down".into()))
        })
        .await;
        assert!(matches!(result, Err(Error::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
