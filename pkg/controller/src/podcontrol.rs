//! Pod control: creating and deleting a controller's pods the way every controller here must
//! (Kubernetes' `PodControl`), so that the [`Expectations`] and the Events are never forgotten
//! or done twice.
//!
//! - [`PodControl::create`] expects the creations first, then creates every pod at once; a
//!   create that failed is ticked off at once, one whose outcome is unknown (the connection
//!   broke) is left to expire soon ([`Expectations::creation_uncertain`]). Each pod gets a
//!   `SuccessfulCreate` (`Created pod: <name>`) or `FailedCreate` Event on its owner.
//! - [`PodControl::delete`] expects the deletions first, then deletes; a failed delete is ticked
//!   off at once, a pod already gone is not an error. Each deleted pod gets a
//!   `SuccessfulDelete` Event.

use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube_core::ResourceExt;
use rkube_client::events::{EventRecorder, EventType};
use rkube_client::{Api, Client, DeleteParams, PostParams};
use rkube_informer::ObjectKey;

use crate::Error;
use crate::expectations::Expectations;

/// A write whose outcome is unknown: the request may have been applied.
pub fn outcome_unknown(error: &rkube_client::Error) -> bool {
    matches!(error, rkube_client::Error::Transport(_) | rkube_client::Error::Timeout(_))
}

/// Creates and deletes the pods of one controller; see the module docs.
pub struct PodControl {
    client: Client,
    expectations: Arc<Expectations>,
    events: EventRecorder,
}

impl PodControl {
    /// Pod control writing through `client`, counting in `expectations`, recording with `events`.
    pub fn new(client: Client, expectations: Arc<Expectations>, events: EventRecorder) -> PodControl {
        PodControl { client, expectations, events }
    }

    /// Creates `pods` (in `owner`'s namespace) for the controller key `key`; the first error
    /// is returned after all were tried.
    pub async fn create(&self, key: &ObjectKey, owner: &ObjectReference, pods: &[Pod]) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), owner.namespace.as_deref().unwrap_or_default());
        self.expectations.expect_creations(key, pods.len());
        let params = PostParams::default();
        let results = join_all(pods.iter().map(|pod| api.create(&params, pod))).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(pod) => {
                    let message = format!("Created pod: {}", pod.name_any());
                    self.events.record(owner, EventType::Normal, "SuccessfulCreate", "Create", message);
                }
                Err(error) => {
                    if outcome_unknown(&error) {
                        self.expectations.creation_uncertain(key);
                    } else {
                        self.expectations.creation_observed(key);
                    }
                    let message = format!("Error creating: {error}");
                    self.events.record(owner, EventType::Warning, "FailedCreate", "Create", message);
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(source) => Err(Error::CreatePods { key: key.clone(), source }),
            None => Ok(()),
        }
    }

    /// Deletes `victims` for the controller key `key`; the first error is returned after all
    /// were tried.
    pub async fn delete(&self, key: &ObjectKey, owner: &ObjectReference, victims: &[Arc<Pod>]) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), owner.namespace.as_deref().unwrap_or_default());
        self.expectations.expect_deletions(key, victims.iter().map(|pod| ObjectKey::of(pod.as_ref())));
        let results = join_all(victims.iter().map(|pod| async {
            (ObjectKey::of(pod.as_ref()), api.delete(&pod.name_any(), &DeleteParams::default()).await)
        }))
        .await;
        let mut first_error = None;
        for (pod_key, result) in results {
            match result {
                Ok(_) => {
                    let message = format!("Deleted pod: {}", pod_key.name());
                    self.events.record(owner, EventType::Normal, "SuccessfulDelete", "Delete", message);
                }
                Err(error) => {
                    self.expectations.deletion_observed(key, &pod_key);
                    if !error.is_not_found() {
                        first_error.get_or_insert(error);
                    }
                }
            }
        }
        match first_error {
            Some(source) => Err(Error::DeletePods { key: key.clone(), source }),
            None => Ok(()),
        }
    }
}
