//! Periodic etcd compaction, as the Kubernetes apiserver does it: every interval, discard
//! the history older than the revision seen one interval ago. Watches and paged lists
//! then keep working for at least one interval; older resourceVersions get 410 Expired,
//! and clients relist.

use std::sync::Arc;
use std::time::Duration;

use crate::ApiState;

/// Runs until shutdown, compacting every `every`.
pub async fn run(state: Arc<ApiState>, every: Duration) {
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let current = match state.store.current_revision().await {
            Ok(rev) => rev,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the current revision; compaction skipped");
                continue;
            }
        };
        if let Some(target) = previous.filter(|p| *p > 1) {
            match state.store.compact(target).await {
                Ok(()) => tracing::info!(revision = target, "compacted etcd history"),
                Err(e) => tracing::warn!(error = %e, revision = target, "compaction failed"),
            }
        }
        previous = Some(current);
    }
}
