//! A container's image as the runtime needs it: present in containerd as the container's
//! `imagePullPolicy` asks ([`super::pull`]), then resolved from containerd's content store to
//! an [`ImageInfo`] (the chain ID of its top layer, and the defaults of its config).
//!
//! What it keeps true: the image is read from containerd, never from the registry, so a
//! container runs exactly what containerd has under that name; an index (OCI index, Docker
//! manifest list) is resolved to its `linux/<this machine>` manifest. What a manifest says is
//! read once and kept by its digest (content is immutable): a tag moved to another image has
//! another digest, so only the `images.Get` is repeated per container.
//!
//! Not promised: architectures other than `amd64` and `arm64` are looked up under Rust's own
//! name for them (`std::env::consts::ARCH`).

use containerd_client::services::v1::{GetImageRequest, ReadContentRequest};
use k8s_openapi::api::core::v1::{Container as PodContainer, Pod};
use rkube_informer::ObjectKey;
use tonic::Code;

use super::spec::{ImageInfo, chain_id, normalize_image};
use super::{ContainerdRuntime, container_reference, grpc, operation, pull, registry, req};
use crate::runtime::RuntimeError;
use rkube_client::events::EventType;

impl ContainerdRuntime {
    /// Makes sure `container`'s image is in containerd (pulling it as its policy asks, with
    /// the credentials of `pod`'s `imagePullSecrets` for its registry) and resolves it. Returns the normalized image name and what it says.
    pub(super) async fn ensure_image(
        &self,
        pod: &Pod,
        container: &PodContainer,
    ) -> Result<(String, ImageInfo), RuntimeError> {
        let image = normalize_image(container.image.as_deref().unwrap_or_default());
        let credentials = match registry::Reference::parse(&image) {
            Ok(reference) => self.pull_secrets(pod).await.lookup(&reference.registry),
            Err(_) => None, // the pull says what is wrong with the name
        };
        let record = |kind: EventType, reason: &str, message: String| {
            if let Some(events) = &self.config.events {
                events.record(&container_reference(pod, &container.name), kind, reason, "", message);
            }
        };
        let shown = container.image.as_deref().unwrap_or_default();
        let pulling = || record(EventType::Normal, "Pulling", format!("Pulling image \"{shown}\""));
        match self.puller.ensure(&image, pull::PullPolicy::of(container), credentials, pulling).await {
            Ok(None) => {
                record(EventType::Normal, "Pulled", format!("Container image \"{shown}\" already present on machine"));
            }
            Ok(Some(took)) => {
                if let (Some(tracker), Some(uid)) = (&self.config.startup, pod.metadata.uid.as_deref()) {
                    tracker.pulled(uid, took);
                    tracker.metrics().operation("pull_image", took);
                }
                record(
                    EventType::Normal,
                    "Pulled",
                    format!("Successfully pulled image \"{shown}\" in {:.3}s", took.as_secs_f64()),
                );
            }
            Err(error) => {
                if let RuntimeError::ImagePull { reason: "ImagePullBackOff", .. } = &error {
                    record(EventType::Normal, "BackOff", format!("Back-off pulling image \"{shown}\""));
                } else {
                    record(EventType::Warning, "Failed", format!("Failed to pull image \"{shown}\": {error}"));
                }
                return Err(error);
            }
        }
        let info = operation(self, "image_status", self.image_info(&image)).await?;
        Ok((image, info))
    }

    /// The registry credentials of `pod`'s `imagePullSecrets`. A Secret that is missing,
    /// unreadable or not a Docker config is skipped with a warning, as Kubernetes' kubelet
    /// does: the pull then goes without it (and fails if the registry insists).
    async fn pull_secrets(&self, pod: &Pod) -> registry::Keyring {
        let mut keyring = registry::Keyring::default();
        let (Some(source), Some(spec)) = (&self.config.env_source, pod.spec.as_ref()) else { return keyring };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        for reference in spec.image_pull_secrets.iter().flatten() {
            let added = match source.secret(namespace, &reference.name).await {
                Ok(Some(data)) => keyring.add_secret(&data),
                Ok(None) => Err("not found".to_string()),
                Err(error) => Err(error),
            };
            if let Err(error) = added {
                tracing::warn!(pod = %ObjectKey::of(pod), secret = %reference.name, %error, "imagePullSecret skipped");
            }
        }
        keyring
    }

    /// Resolves `image` (normalized) to what a container needs from it: image record → (index
    /// →) manifest → config.
    async fn image_info(&self, image: &str) -> Result<ImageInfo, RuntimeError> {
        let bad = |message: String| RuntimeError::Image { image: image.into(), message };
        let found = match self.client.images().get(req(GetImageRequest { name: image.into() })).await {
            Ok(response) => response.into_inner().image,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(grpc("images.get")(status)),
        };
        let target = found.and_then(|image| image.target).ok_or_else(|| bad("not present in containerd".into()))?;
        if let Some(info) = self.image_infos().get(&target.digest) {
            return Ok(info.clone());
        }
        let manifest_digest = if target.media_type.contains("index") || target.media_type.contains("manifest.list") {
            self.platform_manifest(image, &target.digest).await?
        } else {
            target.digest.clone()
        };
        let manifest = self.read_json(image, &manifest_digest).await?;
        let config_digest =
            manifest["config"]["digest"].as_str().ok_or_else(|| bad("manifest without config".into()))?.to_string();
        let config = self.read_json(image, &config_digest).await?;
        let info = image_info_of(&config).ok_or_else(|| bad("image has no layers".into()))?;
        self.image_infos().insert(target.digest, info.clone());
        Ok(info)
    }

    /// Resolves `pod`'s images that containerd has already (errors are left for the start to
    /// report), so that a start finds them resolved: done while the pod's network is set up.
    pub(super) async fn resolve_present_images(&self, pod: &Pod) {
        let spec = pod.spec.as_ref();
        let containers = spec.map(|s| s.containers.iter()).into_iter().flatten();
        let init = spec.and_then(|s| s.init_containers.as_ref()).into_iter().flatten();
        let images: std::collections::BTreeSet<String> = containers
            .chain(init)
            .map(|container| normalize_image(container.image.as_deref().unwrap_or_default()))
            .collect();
        for image in images {
            let _ = self.image_info(&image).await;
        }
    }

    /// The resolved images by the digest of their image record's target.
    fn image_infos(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, ImageInfo>> {
        self.image_infos.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The digest of the `linux/<this machine>` manifest in the index `index_digest`.
    async fn platform_manifest(&self, image: &str, index_digest: &str) -> Result<String, RuntimeError> {
        let index = self.read_json(image, index_digest).await?;
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|entry| entry["platform"]["os"] == "linux" && entry["platform"]["architecture"] == arch)
            .and_then(|entry| entry["digest"].as_str())
            .map(str::to_string)
            .ok_or_else(|| RuntimeError::Image {
                image: image.into(),
                message: format!("no linux/{arch} manifest in the index"),
            })
    }

    /// Blob `digest` of `image`, parsed as JSON.
    async fn read_json(&self, image: &str, digest: &str) -> Result<serde_json::Value, RuntimeError> {
        let bytes = self.read_content(digest).await?;
        serde_json::from_slice(&bytes)
            .map_err(|error| RuntimeError::Image { image: image.into(), message: format!("blob {digest}: {error}") })
    }

    /// Blob `digest` from containerd's content store.
    async fn read_content(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let mut stream = self
            .client
            .content()
            .read(req(ReadContentRequest { digest: digest.into(), offset: 0, size: 0 }))
            .await
            .map_err(grpc("content.read"))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(grpc("content.read"))? {
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }
}

/// What an image config says a container runs by default; `None` when it has no layers.
fn image_info_of(config: &serde_json::Value) -> Option<ImageInfo> {
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value.as_array().into_iter().flatten().filter_map(|item| item.as_str().map(String::from)).collect()
    };
    let diff_ids = strings(&config["rootfs"]["diff_ids"]);
    Some(ImageInfo {
        chain_id: chain_id(&diff_ids)?,
        entrypoint: strings(&config["config"]["Entrypoint"]),
        cmd: strings(&config["config"]["Cmd"]),
        env: strings(&config["config"]["Env"]),
        working_dir: config["config"]["WorkingDir"].as_str().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_config_gives_the_top_chain_id_and_the_process_defaults() {
        let config = serde_json::json!({
            "rootfs": {"diff_ids": ["sha256:aa", "sha256:bb"]},
            "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "true"], "Env": ["PATH=/bin"], "WorkingDir": "/app"},
        });
        let info = image_info_of(&config).expect("layers");
        assert_eq!(Some(info.chain_id), chain_id(&["sha256:aa".into(), "sha256:bb".into()]));
        assert_eq!((info.entrypoint, info.cmd), (vec!["/bin/sh".to_string()], vec!["-c".to_string(), "true".into()]));
        assert_eq!((info.env, info.working_dir.as_str()), (vec!["PATH=/bin".to_string()], "/app"));
        assert_eq!(image_info_of(&serde_json::json!({"rootfs": {"diff_ids": []}})), None);
    }
}
