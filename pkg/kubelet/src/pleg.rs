//! Pod lifecycle events: a pod whose containers changed on their own (a process exited, a
//! probe result flipped) is synced at once, not at its next resync.
//!
//! What it keeps true:
//! - every event of the runtime ([`Runtime::events`](crate::runtime::Runtime::events)) and
//!   every probe result change names a pod uid; each cached pod with that uid is handed to its
//!   pod worker ([`PodWorkers::update`]);
//! - when the runtime's events lagged (some were lost), every cached pod is synced, so a lost
//!   event costs a sync, never a missed exit;
//! - it stops on shutdown, or when the runtime's event channel closes.
//!
//! Not promised: an event for a pod that is not (yet, or any more) in the cache is dropped; the
//! pod workers' resync and the orphan clean-up cover those.
//!
//! The Kubernetes kubelet's PLEG (pkg/kubelet/pleg) relists the runtime every second and
//! compares; here the runtime pushes its events, and the relist is the periodic orphan
//! clean-up ([`PodWorkers::cleanup_orphans`]).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use rkube_informer::ObjectKey;
use rkube_informer::store::Store;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::podworkers::PodWorkers;

/// Where pod lifecycle events come from.
pub struct Events {
    /// The runtime's events: the uid of a pod one of whose containers exited.
    pub runtime: broadcast::Receiver<String>,
    /// Probe results: the uid of a pod one of whose probe results changed.
    pub probes: mpsc::UnboundedReceiver<String>,
}

/// Hands the pods named by `events` (looked up in `pods`, the informer's cache) to `workers`
/// until `shutdown` or until the runtime's event channel closes (see the module docs).
pub async fn run(pods: Store<Pod>, workers: PodWorkers, mut events: Events, shutdown: CancellationToken) {
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.runtime.recv() => event,
            Some(uid) = events.probes.recv() => Ok(uid),
        };
        let Some(keys) = pods_to_sync(&pods.list(), &event) else { return };
        for key in keys {
            workers.update(&key);
        }
    }
}

/// The keys of the cached `pods` that `event` names: the pods with its uid, or every pod when
/// events were lost. `None` when the runtime's event channel closed.
fn pods_to_sync(pods: &[Arc<Pod>], event: &Result<String, RecvError>) -> Option<Vec<ObjectKey>> {
    let named = |pod: &&Arc<Pod>| match event {
        Ok(uid) => pod.metadata.uid.as_ref() == Some(uid),
        Err(_) => true,
    };
    match event {
        Err(RecvError::Closed) => None,
        Ok(_) | Err(RecvError::Lagged(_)) => {
            Some(pods.iter().filter(named).map(|pod| ObjectKey::of(pod.as_ref())).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Some("default"), name)
    }

    fn pod(name: &str, uid: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        })
    }

    #[test]
    fn an_event_syncs_the_pods_with_its_uid_and_lost_events_sync_every_pod() {
        let pods = [pod("a", "uid-a"), pod("b", "uid-b")];
        assert_eq!(pods_to_sync(&pods, &Ok("uid-b".into())), Some(vec![key("b")]));
        assert_eq!(pods_to_sync(&pods, &Ok("uid-gone".into())), Some(Vec::new()));
        let every = pods_to_sync(&pods, &Err(RecvError::Lagged(3)));
        assert_eq!(every, Some(vec![key("a"), key("b")]));
        assert_eq!(pods_to_sync(&pods, &Err(RecvError::Closed)), None);
    }
}
