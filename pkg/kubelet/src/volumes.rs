//! The volumes whose content the kubelet writes: `configMap`, `secret`, `downwardAPI` and
//! `projected` (those sources plus `serviceAccountToken`), as Kubernetes' volume manager
//! and its `AtomicWriter` do.
//!
//! Before a pod's containers are started, and again on every sync of the pod,
//! [`VolumeManager::prepare`] computes each such volume's files and writes them into
//! `<pod dir>/volumes/<name>/`, which the runtime bind-mounts read-only. The layout is
//! Kubernetes': the files live in a timestamped directory `..<time>`, `..data` is a symlink to
//! it, and each visible name is a symlink through `..data`. An update writes a new timestamped
//! directory and swaps `..data` with one `rename`, so a container never reads half an update
//! and sees changed ConfigMaps and Secrets without a restart. Nothing is rewritten when the
//! content is unchanged.
//!
//! A `persistentVolumeClaim` volume is resolved here too: the claim must be bound, and its
//! PersistentVolume's `hostPath` (created when its type is `DirectoryOrCreate`) or `local`
//! path becomes a symlink `<pod dir>/volumes/<name>`, which the runtime bind-mounts. Until
//! the claim is bound the pod does not start (the error says so and the sync is retried).
//!
//! Tokens (`serviceAccountToken`) come from the TokenRequest API, bound to the pod, and are
//! refreshed once 80% of their lifetime has passed (Kubernetes' rule), not on every sync.
//!
//! Paths come from the pod spec (`items[].path`): each must be relative, without `..`; a bad
//! one, a missing ConfigMap, Secret or key (unless `optional`) fails the pod's start with a
//! message that never contains a Secret's value.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, ServiceAccountTokenProjection, Volume};
use serde_json::json;

use crate::envvars::{ObjectSource, PodFacts, Values, field_value, resource_value};
use crate::runtime::containerd::pod_dir;

/// The files of one volume: relative path → (content, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// The mode of a file when the volume names none (Kubernetes' 0644).
const DEFAULT_MODE: u32 = 0o644;
/// A token's lifetime when the projection names none.
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// Writes the content volumes of the pods of this node (see the module docs).
pub struct VolumeManager {
    source: ObjectSource,
    root_dir: PathBuf,
    host_ip: String,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

struct CachedToken {
    token: String,
    refresh_at: Instant,
}

/// Whether `volume` is one the kubelet fills (rather than a directory or host path).
pub fn has_content(volume: &Volume) -> bool {
    volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

impl VolumeManager {
    /// A manager reading through `source`, writing under `root_dir`; `host_ip` answers the
    /// downward API's `status.hostIP`.
    pub fn new(source: ObjectSource, root_dir: PathBuf, host_ip: String) -> VolumeManager {
        VolumeManager { source, root_dir, host_ip, tokens: Mutex::new(HashMap::new()) }
    }

    /// Writes every content volume of `pod` (see the module docs).
    ///
    /// # Errors
    /// The first volume that cannot be filled, named, with why.
    pub async fn prepare(&self, pod: &Pod) -> Result<(), String> {
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        let content: Vec<&Volume> = volumes.into_iter().flatten().filter(|v| has_content(v)).collect();
        let claims: Vec<&Volume> =
            volumes.into_iter().flatten().filter(|v| v.persistent_volume_claim.is_some()).collect();
        if content.is_empty() && claims.is_empty() {
            return Ok(());
        }
        let (namespace, name) = (pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref());
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let dir = pod_dir(&self.root_dir, namespace, name.unwrap_or_default(), uid).join("volumes");
        for volume in claims {
            let claim = volume.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()).unwrap_or_default();
            let (path, create) =
                self.source.claim_path(namespace, claim).await.map_err(|e| format!("volume {:?}: {e}", volume.name))?;
            link_claim(&dir.join(&volume.name), Path::new(&path), create)
                .map_err(|e| format!("volume {:?}: {path}: {e}", volume.name))?;
        }
        for volume in content {
            let files = self.files(pod, volume).await.map_err(|e| format!("volume {:?}: {e}", volume.name))?;
            let target = dir.join(&volume.name);
            write_atomically(&target, &files)
                .map_err(|e| format!("volume {:?}: writing {}: {e}", volume.name, target.display()))?;
        }
        Ok(())
    }

    /// Forgets the tokens of pod `uid` (it is gone).
    pub fn forget(&self, uid: &str) {
        let prefix = format!("{uid}/");
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner).retain(|key, _| !key.starts_with(&prefix));
    }

    /// The files `volume` of `pod` holds now.
    async fn files(&self, pod: &Pod, volume: &Volume) -> Result<Files, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let facts = PodFacts {
            host_ip: self.host_ip.clone(),
            pod_ip: pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        };
        let mut files = Files::new();
        if let Some(cm) = &volume.config_map {
            let values = self.source.values(false, namespace, &cm.name, cm.optional.unwrap_or(false)).await?;
            project(&mut files, &values, cm.items.as_deref(), cm.default_mode, cm.optional.unwrap_or(false))?;
        } else if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            let values = self.source.values(true, namespace, &name, secret.optional.unwrap_or(false)).await?;
            project(
                &mut files,
                &values,
                secret.items.as_deref(),
                secret.default_mode,
                secret.optional.unwrap_or(false),
            )?;
        } else if let Some(downward) = &volume.downward_api {
            let items = downward.items.as_deref().unwrap_or_default();
            downward_files(&mut files, pod, items, downward.default_mode, &facts)?;
        } else if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                let mode = projected.default_mode;
                if let Some(cm) = &source.config_map {
                    let values = self.source.values(false, namespace, &cm.name, cm.optional.unwrap_or(false)).await?;
                    project(&mut files, &values, cm.items.as_deref(), mode, cm.optional.unwrap_or(false))?;
                } else if let Some(secret) = &source.secret {
                    let values =
                        self.source.values(true, namespace, &secret.name, secret.optional.unwrap_or(false)).await?;
                    project(&mut files, &values, secret.items.as_deref(), mode, secret.optional.unwrap_or(false))?;
                } else if let Some(downward) = &source.downward_api {
                    downward_files(&mut files, pod, downward.items.as_deref().unwrap_or_default(), mode, &facts)?;
                } else if let Some(token) = &source.service_account_token {
                    let value = self.token(pod, &volume.name, token).await?;
                    let mode = u32::try_from(mode.unwrap_or(0o644)).unwrap_or(DEFAULT_MODE) & 0o777;
                    files.insert(checked_path(&token.path)?, (value.into_bytes(), mode));
                }
            }
        }
        Ok(files)
    }

    /// A token for the pod's ServiceAccount, bound to the pod: the cached one until 80% of its
    /// lifetime has passed, then a new one from the TokenRequest API.
    async fn token(
        &self,
        pod: &Pod,
        volume: &str,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = format!("{uid}/{volume}/{}", projection.path);
        if let Some(cached) = self.tokens.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let account = pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
        let seconds = projection.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
        let mut spec = json!({
            "expirationSeconds": seconds,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.metadata.name, "uid": uid},
        });
        if let Some(audience) = projection.audience.as_ref().filter(|a| !a.is_empty()) {
            spec["audiences"] = json!([audience]);
        }
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token");
        let request = http::Request::post(&path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| e.to_string())?;
        let reply = self
            .source
            .client()
            .request_json(request)
            .await
            .map_err(|e| format!("requesting a token for serviceaccount {namespace}/{account}: {e}"))?;
        let token = reply
            .pointer("/status/token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| format!("the token request for {namespace}/{account} returned no token"))?
            .to_string();
        let lifetime = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
        let refresh_at = Instant::now() + lifetime.mul_f64(0.8);
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, CachedToken { token: token.clone(), refresh_at });
        Ok(token)
    }
}

/// Checks a path from the pod spec: relative, not empty, no `..` element.
fn checked_path(path: &str) -> Result<String, String> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.split('/').any(|part| part.is_empty() || part == ".." || part.starts_with(".."));
    if bad {
        return Err(format!("invalid path {path:?}: must be relative, without '..'"));
    }
    Ok(path.to_string())
}

fn mode_of(item: Option<i32>, default: Option<i32>) -> u32 {
    u32::try_from(item.or(default).unwrap_or(0o644)).unwrap_or(DEFAULT_MODE) & 0o777
}

/// Adds a ConfigMap's or Secret's `values` to `files`: every key, or only `items` (each a
/// key that must exist unless the source is `optional`).
fn project(
    files: &mut Files,
    values: &Values,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match values.get(&item.key) {
                    Some(value) => {
                        files.insert(checked_path(&item.path)?, (value.clone(), mode_of(item.mode, default_mode)));
                    }
                    None if optional => {}
                    None => return Err(format!("key {:?} not found", item.key)),
                }
            }
        }
        _ => {
            for (key, value) in values {
                files.insert(checked_path(key)?, (value.clone(), mode_of(None, default_mode)));
            }
        }
    }
    Ok(())
}

/// Adds the downward API `items` to `files`.
fn downward_files(
    files: &mut Files,
    pod: &Pod,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    facts: &PodFacts,
) -> Result<(), String> {
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            field_value(pod, &field.field_path, facts)?
        } else if let Some(resource) = &item.resource_field_ref {
            let name = resource.container_name.as_deref().unwrap_or_default();
            let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
            let container = containers
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| format!("{:?}: no container named {name:?}", item.path))?;
            resource_value(container, resource)?
        } else {
            return Err(format!("{:?}: neither fieldRef nor resourceFieldRef", item.path));
        };
        files.insert(checked_path(&item.path)?, (value.into_bytes(), mode_of(item.mode, default_mode)));
    }
    Ok(())
}

/// What `dir/..data` holds now, if it is a complete earlier write.
fn current_files(dir: &Path) -> Option<Files> {
    let data = dir.join("..data");
    let mut files = Files::new();
    let mut stack = vec![(data.canonicalize().ok()?, String::new())];
    while let Some((path, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&path).ok()? {
            let entry = entry.ok()?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                stack.push((entry.path(), format!("{name}/")));
            } else {
                files.insert(name, (std::fs::read(entry.path()).ok()?, meta.permissions().mode() & 0o777));
            }
        }
    }
    Some(files)
}

/// Makes `link` a symlink to a claim's directory `target` (created first when `create`),
/// replacing a link to elsewhere.
fn link_claim(link: &Path, target: &Path, create: bool) -> std::io::Result<()> {
    if create {
        std::fs::create_dir_all(target)?;
    } else if !target.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the volume's directory does not exist on this node",
        ));
    }
    if std::fs::read_link(link).is_ok_and(|current| current == target) {
        return Ok(());
    }
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let fresh = link.with_extension("linking");
    let _ = std::fs::remove_file(&fresh);
    std::os::unix::fs::symlink(target, &fresh)?;
    std::fs::rename(&fresh, link)
}

/// Makes `dir` show exactly `files`, with the `..data` swap of the module docs; does nothing
/// when it already does.
///
/// # Errors
/// When the filesystem refuses a step.
pub fn write_atomically(dir: &Path, files: &Files) -> std::io::Result<()> {
    if current_files(dir).as_ref() == Some(files) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let stamp = jiff::Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.%f").to_string();
    let fresh = dir.join(&stamp);
    std::fs::create_dir(&fresh)?;
    for (path, (content, mode)) in files {
        let file = fresh.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, content)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let staged = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(&stamp, &staged)?;
    std::fs::rename(&staged, dir.join("..data"))?;
    // The visible names: one symlink per top-level entry, through ..data.
    let tops: std::collections::BTreeSet<&str> =
        files.keys().map(|path| path.split('/').next().unwrap_or(path)).collect();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(name.as_str()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for top in tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        std::fs::remove_dir_all(dir.join(old))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str, u32)]) -> Files {
        entries.iter().map(|(p, c, m)| ((*p).to_string(), (c.as_bytes().to_vec(), *m))).collect()
    }

    #[test]
    fn an_update_swaps_all_files_at_once_and_drops_removed_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let volume = dir.path().join("creds");
        write_atomically(&volume, &files(&[("user", "admin", 0o644), ("conf/app.ini", "a=1", 0o600)])).expect("first");
        assert_eq!(std::fs::read_to_string(volume.join("user")).expect("user"), "admin");
        assert_eq!(std::fs::read_to_string(volume.join("conf/app.ini")).expect("ini"), "a=1");
        let mode = std::fs::metadata(volume.join("conf/app.ini")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = std::fs::read_link(volume.join("..data")).expect("..data");

        // The same content: nothing is rewritten.
        write_atomically(&volume, &files(&[("user", "admin", 0o644), ("conf/app.ini", "a=1", 0o600)])).expect("same");
        assert_eq!(std::fs::read_link(volume.join("..data")).expect("..data"), first);

        write_atomically(&volume, &files(&[("user", "root", 0o644)])).expect("update");
        assert_eq!(std::fs::read_to_string(volume.join("user")).expect("user"), "root");
        assert!(!volume.join("conf").exists(), "a removed key disappears");
        assert!(!volume.join(&first).exists(), "the old generation is removed");
    }

    #[test]
    fn paths_from_the_spec_stay_inside_the_volume() {
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "..data"] {
            assert!(checked_path(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(checked_path("conf/app.ini").as_deref(), Ok("conf/app.ini"));
    }

    #[test]
    fn items_pick_keys_and_a_missing_key_fails_unless_optional() {
        let values: Values = [("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())].into();
        let mut all = Files::new();
        project(&mut all, &values, None, Some(0o400), false).expect("all keys");
        assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(all["a"].1, 0o400);
        let items = [KeyToPath { key: "b".into(), path: "dir/b.txt".into(), ..KeyToPath::default() }];
        let mut some = Files::new();
        project(&mut some, &values, Some(&items), None, false).expect("items");
        assert_eq!(some.keys().collect::<Vec<_>>(), ["dir/b.txt"]);
        let missing = [KeyToPath { key: "c".into(), path: "c".into(), ..KeyToPath::default() }];
        assert!(project(&mut Files::new(), &values, Some(&missing), None, false).is_err());
        assert!(project(&mut Files::new(), &values, Some(&missing), None, true).is_ok());
    }
}
