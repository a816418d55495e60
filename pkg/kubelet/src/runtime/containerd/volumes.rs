//! A pod's volumes as bind mounts: `emptyDir` (a directory the kubelet makes for the pod,
//! shared by its containers, removed with the pod), `hostPath` (a path on the node),
//! `persistentVolumeClaim` (the directory of the claim's volume, which [`crate::volumes`]
//! linked into the pod's directory once the claim was bound), and
//! the content volumes `configMap`, `secret`, `downwardAPI` and `projected`, whose
//! directories [`crate::volumes`] has written before the containers start (always mounted
//! read-only, as Kubernetes does). Other volume types are refused with a clear error rather
//! than silently left out.
//!
//! Not supported yet: `emptyDir.medium: Memory` (tmpfs), size limits, and the other
//! volume types (nfs, csi, ...).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container as PodContainer, Pod};
use serde_json::{Value, json};

/// Where the kubelet keeps a pod's `emptyDir` volumes.
pub(super) fn pod_volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// The OCI bind mounts of `container`'s volumeMounts, creating what must exist
/// (emptyDir directories, `DirectoryOrCreate` host paths, subPaths). An error names the
/// mount and why.
pub(super) fn mounts(pod: &Pod, container: &PodContainer, pod_dir: &Path) -> Result<Vec<Value>, String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).map(Vec::as_slice).unwrap_or_default();
    let mut out = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| format!("volumeMount {:?} names no volume of the pod", mount.name))?;
        let mut read_only_claim = false;
        let mut source = if volume.empty_dir.is_some() {
            let dir = pod_volumes_dir(pod_dir).join(&volume.name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating emptyDir {}: {e}", dir.display()))?;
            dir
        } else if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            match host.type_.as_deref().unwrap_or_default() {
                "DirectoryOrCreate" => {
                    std::fs::create_dir_all(&path).map_err(|e| format!("creating hostPath {}: {e}", path.display()))?;
                }
                "" => {}
                "Directory" if !path.is_dir() => return Err(format!("hostPath {} is not a directory", path.display())),
                "File" if !path.is_file() => return Err(format!("hostPath {} is not a file", path.display())),
                _ if !path.exists() => return Err(format!("hostPath {} does not exist", path.display())),
                _ => {}
            }
            path
        } else if let Some(claim) = &volume.persistent_volume_claim {
            let link = pod_volumes_dir(pod_dir).join(&volume.name);
            let dir = std::fs::read_link(&link).map_err(|_| {
                format!("volume {:?}: claim {:?} has not been resolved yet", volume.name, claim.claim_name)
            })?;
            if claim.read_only.unwrap_or(false) {
                read_only_claim = true;
            }
            dir
        } else if crate::volumes::has_content(volume) {
            let dir = pod_volumes_dir(pod_dir).join(&volume.name);
            if !dir.join("..data").exists() {
                return Err(format!("volume {:?} has not been written yet", volume.name));
            }
            dir
        } else {
            return Err(format!(
                "volume {:?}: only emptyDir, hostPath, persistentVolumeClaim, configMap, secret, downwardAPI and projected volumes are supported",
                volume.name
            ));
        };
        let content = crate::volumes::has_content(volume);
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if Path::new(sub).is_absolute() || sub.split('/').any(|part| part == "..") {
                return Err(format!("subPath {sub:?} must be a relative path without '..'"));
            }
            if content {
                // A key of a written volume: its file (through the ..data link), which must exist.
                let root = source.canonicalize().map_err(|e| format!("volume {}: {e}", source.display()))?;
                let file = source.join(sub).canonicalize().map_err(|_| format!("subPath {sub:?} does not exist"))?;
                if !file.starts_with(&root) {
                    return Err(format!("subPath {sub:?} leaves its volume"));
                }
                source = file;
            } else {
                source = source.join(sub);
                std::fs::create_dir_all(&source).map_err(|e| format!("creating subPath {}: {e}", source.display()))?;
            }
        }
        let mode = if mount.read_only.unwrap_or(false) || content || read_only_claim { "ro" } else { "rw" };
        out.push(json!({
            "destination": mount.mount_path,
            "type": "bind",
            "source": source,
            "options": ["rbind", mode],
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(volumes: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "volumes": volumes}}))
            .unwrap()
    }

    fn container(mounts: Value) -> PodContainer {
        serde_json::from_value(json!({"name": "c", "volumeMounts": mounts})).unwrap()
    }

    #[test]
    fn empty_dirs_are_made_per_pod_and_bound_read_write_or_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let pod = pod(json!([{"name": "data", "emptyDir": {}}]));
        let c = container(
            json!([{"name": "data", "mountPath": "/data"}, {"name": "data", "mountPath": "/ro", "readOnly": true, "subPath": "x"}]),
        );
        let mounts = mounts(&pod, &c, dir.path()).unwrap();
        let source = dir.path().join("volumes").join("data");
        assert!(source.is_dir());
        assert_eq!(
            mounts[0],
            json!({"destination": "/data", "type": "bind", "source": source, "options": ["rbind", "rw"]})
        );
        assert_eq!(mounts[1]["source"], json!(source.join("x")));
        assert_eq!(mounts[1]["options"], json!(["rbind", "ro"]));
    }

    #[test]
    fn written_content_volumes_are_mounted_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("volumes").join("creds");
        let files = [("token".to_string(), (b"t".to_vec(), 0o644))].into();
        crate::volumes::write_atomically(&volume, &files).unwrap();
        let secret = pod(json!([{"name": "creds", "secret": {"secretName": "x"}}]));
        let asked = container(
            json!([{"name": "creds", "mountPath": "/creds"}, {"name": "creds", "mountPath": "/t", "subPath": "token"}]),
        );
        let mounts = mounts(&secret, &asked, dir.path()).unwrap();
        assert_eq!(
            mounts[0],
            json!({"destination": "/creds", "type": "bind", "source": volume, "options": ["rbind", "ro"]})
        );
        let file = volume.join("token").canonicalize().unwrap();
        assert_eq!(mounts[1]["source"], json!(file), "a subPath is the key's file");
        let missing = container(json!([{"name": "creds", "mountPath": "/x", "subPath": "nope"}]));
        assert!(super::mounts(&secret, &missing, dir.path()).is_err());
    }

    #[test]
    fn unknown_volumes_types_and_escaping_sub_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let nfs = pod(json!([{"name": "s", "nfs": {"server": "x", "path": "/"}}]));
        assert!(mounts(&nfs, &container(json!([{"name": "s", "mountPath": "/s"}])), dir.path()).is_err());
        let unwritten = pod(json!([{"name": "s", "secret": {"secretName": "x"}}]));
        assert!(mounts(&unwritten, &container(json!([{"name": "s", "mountPath": "/s"}])), dir.path()).is_err());
        let empty = pod(json!([{"name": "d", "emptyDir": {}}]));
        assert!(mounts(&empty, &container(json!([{"name": "nope", "mountPath": "/n"}])), dir.path()).is_err());
        assert!(
            mounts(&empty, &container(json!([{"name": "d", "mountPath": "/d", "subPath": "../up"}])), dir.path())
                .is_err()
        );
        let host = pod(json!([{"name": "h", "hostPath": {"path": "/definitely/missing", "type": "Directory"}}]));
        assert!(mounts(&host, &container(json!([{"name": "h", "mountPath": "/h"}])), dir.path()).is_err());
    }
}
