//! Subresources: `<resource>/<name>/<subresource>` paths that read or change one part of an
//! object, or act on it. `status` has no module here: it is the generic update limited to
//! `.status` ([`crate::rest::prepare_update`]) for every resource that lists it.
//!
//! - [`scale`]: the `Scale` view of `spec.replicas` (ReplicaSets, Deployments);
//! - [`binding`]: assigns a pod to a node (the scheduler's write);
//! - [`log`]: a container's log, proxied from the pod's kubelet;
//! - [`exec`]: a command in a container, relayed over WebSocket to the pod's kubelet;
//! - [`token`]: a ServiceAccount token (TokenRequest);
//! - [`eviction`]: a pod's deletion that its PodDisruptionBudget allows (`kubectl drain`).

pub mod binding;
pub mod eviction;
pub mod exec;
pub mod log;
pub mod scale;
pub mod token;
