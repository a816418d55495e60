//! What a pod has besides its containers (the Kubernetes kubelet calls this the pod sandbox):
//! its network namespace ([`crate::cni`], with a pod CIDR), its parent cgroup
//! `/rkube/pod<uid>`, and its `emptyDir` volumes.
//!
//! What it keeps true: setting up the network of a pod that has one already changes nothing
//! ([`crate::cni`] keeps that promise); clean-up runs after every container of the pod is gone
//! and tolerates what is missing, so it may run again.
//!
//! Not promised: a cgroup or volume directory that cannot be removed is logged and left
//! behind; the pod's removal does not fail for it.

use std::path::Path;

use super::{CGROUP_PARENT, ContainerdRuntime, operation, volumes};
use crate::runtime::RuntimeError;

impl ContainerdRuntime {
    /// Sets up pod `uid`'s network namespace (nothing without a pod CIDR).
    pub(super) async fn set_up_network(&self, uid: &str) -> Result<(), RuntimeError> {
        let Some(network) = self.config.network.clone() else { return Ok(()) };
        let pod_uid = uid.to_string();
        let set_up = tokio::task::spawn_blocking(move || network.set_up(&pod_uid));
        // Timed as an operation only when there is a sandbox to make (not at every resync).
        let set_up = if crate::cni::netns_path(uid).exists() {
            set_up.await
        } else {
            operation(self, "run_podsandbox", set_up).await
        };
        set_up.map_err(|error| RuntimeError::Io {
            what: "pod network set-up".into(),
            source: std::io::Error::other(error),
        })??;
        Ok(())
    }

    /// Frees what pod `uid` held besides its containers (which are gone): its cgroup, its
    /// `emptyDir` volumes, and its network namespace and IP.
    pub(super) async fn remove_sandbox(&self, uid: &str) -> Result<(), RuntimeError> {
        remove_pod_cgroups(uid);
        remove_pod_volumes(&self.config.root_dir, uid);
        self.tear_down_network(uid).await
    }

    /// Tears down pod `uid`'s network namespace and releases its IP (nothing without a pod CIDR).
    async fn tear_down_network(&self, uid: &str) -> Result<(), RuntimeError> {
        let Some(network) = self.config.network.clone() else { return Ok(()) };
        let pod_uid = uid.to_string();
        tokio::task::spawn_blocking(move || network.tear_down(&pod_uid)).await.map_err(|error| {
            RuntimeError::Io { what: "pod network tear-down".into(), source: std::io::Error::other(error) }
        })??;
        Ok(())
    }
}

/// Removes the pod's cgroup directory `/rkube/pod<uid>` in every v1 hierarchy (runc removed
/// the containers' own). Missing directories are fine.
fn remove_pod_cgroups(uid: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for hierarchy in hierarchies.filter_map(std::result::Result::ok) {
        let dir = hierarchy.path().join(CGROUP_PARENT).join(format!("pod{uid}"));
        if dir.is_dir()
            && let Err(error) = std::fs::remove_dir(&dir)
        {
            tracing::debug!(dir = %dir.display(), %error, "cannot remove pod cgroup");
        }
    }
}

/// Removes the `emptyDir` volumes of pod `uid` (its containers are gone).
fn remove_pod_volumes(root_dir: &Path, uid: &str) {
    let Ok(pods) = std::fs::read_dir(root_dir.join("pods")) else { return };
    for dir in pods.filter_map(std::result::Result::ok) {
        if dir.file_name().to_string_lossy().ends_with(&format!("_{uid}")) {
            let volumes = volumes::pod_volumes_dir(&dir.path());
            if volumes.exists()
                && let Err(error) = std::fs::remove_dir_all(&volumes)
            {
                tracing::warn!(dir = %volumes.display(), %error, "cannot remove the pod's emptyDir volumes");
            }
        }
    }
}
