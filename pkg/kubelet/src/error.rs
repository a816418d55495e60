//! The kubelet's error type: one variant per step that can fail.

use crate::runtime::RuntimeError;

/// Why a kubelet step failed. Inside the loops every one of these is logged, counted and
/// retried; only [`crate::run`]'s start-up returns them to `main`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The flags or config do not make sense (e.g. a malformed `--pod-cidr`).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Creating or updating this node's Node object failed.
    #[error("registering node {node}: {source}")]
    RegisterNode {
        /// The node name.
        node: String,
        /// What the apiserver answered.
        #[source]
        source: rkube_client::Error,
    },
    /// Writing the Node's status failed.
    #[error("updating node status: {0}")]
    NodeStatus(#[source] rkube_client::Error),
    /// Renewing (or creating) the node's Lease failed.
    #[error("renewing the node lease: {0}")]
    Lease(#[source] rkube_client::Error),
    /// Writing a pod's status failed.
    #[error("writing pod status: {0}")]
    PodStatus(#[source] rkube_client::Error),
    /// Removing a terminated pod from the API failed.
    #[error("deleting pod: {0}")]
    DeletePod(#[source] rkube_client::Error),
    /// A pod's configMap, secret, downwardAPI or projected volume could not be written.
    #[error("preparing the volumes of pod {pod}: {message}")]
    Volumes {
        /// The pod's key.
        pod: rkube_informer::ObjectKey,
        /// Which volume and why.
        message: String,
    },
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Setting up the pod informer failed.
    #[error("pod informer: {0}")]
    Informer(#[source] rkube_informer::Error),
    /// Registering the kubelet's metrics failed.
    #[error("metrics: {0}")]
    Metrics(#[source] prometheus::Error),
}

/// `Result` with the kubelet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
