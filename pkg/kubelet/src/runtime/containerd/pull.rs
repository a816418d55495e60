//! Image pulls: from a registry into containerd's content store and overlayfs snapshots, done
//! by the kubelet itself (containerd 1.6 has no transfer service; this is what the Go client's
//! `Pull` and the CRI plugin do).
//!
//! [`Puller::ensure`] applies a container's `imagePullPolicy` the way the Kubernetes kubelet
//! does:
//! - `Never`: the image must be in containerd already, else `ErrImageNeverPull`;
//! - `IfNotPresent`: pulled only when containerd has no image of that name;
//! - `Always`: the manifest is resolved from the registry at every container start; the
//!   image is pulled when its digest changed (an unchanged digest costs one manifest GET). An
//!   unreachable registry fails the start even when the image is present, as in Kubernetes
//!   (which is why the test image is tagged `busybox-local:v1`: untagged it would be `Always`).
//!
//! One pull ([`Puller::pull`]):
//! 1. GET the manifest by tag or digest; for an index (OCI index, Docker manifest list) pick the
//!    `linux/<this machine's architecture>` manifest and GET it by digest;
//! 2. GET the config (small; its `rootfs.diff_ids` give the layers' chain IDs);
//! 3. under a lease (`containerd-lease` on every call, expiring after an hour should the
//!    kubelet die meanwhile), stream each layer missing from the content store into
//!    `content.Write` in chunks of at most 1 MiB (containerd verifies size and digest at commit),
//!    labelled `containerd.io/uncompressed=<diff id>`;
//! 4. unpack: for each layer whose chain ID has no snapshot, `snapshots.Prepare` on the parent,
//!    `diff.Apply` the layer (containerd decompresses; the applied digest must be the diff ID),
//!    `snapshots.Commit` as the chain ID;
//! 5. write config (labelled `containerd.io/gc.ref.snapshot.overlayfs=<top chain ID>`), manifest
//!    (`gc.ref.content.config`, `gc.ref.content.l.<i>`) and index (`gc.ref.content.m.<i>`), so that
//!    the image record alone keeps everything from the garbage collector;
//! 6. create (or update) the image record, pointing at the top-level manifest or index, and
//!    delete the lease.
//!
//! The image record is written last, so an image that exists is fully unpacked.
//!
//! Pulls of one image are serialized (one async mutex per image name): two pod workers
//! starting containers of the same image at once pull it once; the second finds it present.
//! A failed pull puts the image in back-off (10 s, doubling up to 5 min, as the Kubernetes
//! kubelet does); while it lasts, starts fail with `ImagePullBackOff` without asking the
//! registry, and the message repeats the last failure.

use rkube_api::backoff::{Backoff, BackoffConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    AbortRequest, ApplyRequest, CreateImageRequest, CreateRequest as CreateLeaseRequest,
    DeleteRequest as DeleteLeaseRequest, GetImageRequest, Image, Info as ContentInfo, UpdateImageRequest,
    UpdateRequest as UpdateContentRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Container as PodContainer;
use tonic::{Code, Request};

use super::registry::{Credentials, DOCKER_LIST, Fetched, OCI_INDEX, Reference, RegistryClient, RegistryError};
use super::spec::chain_id;
use super::{SNAPSHOTTER, req};
use crate::metrics::PullMetrics;
use crate::runtime::RuntimeError;

/// The largest chunk sent in one `content.Write` message (gRPC messages are limited to 16 MiB).
const CHUNK: usize = 1 << 20;
/// A config blob larger than this is refused (real ones are a few KiB).
const MAX_CONFIG_BYTES: usize = 4 << 20;
/// The first back-off after a failed pull.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long a pull's lease outlives a kubelet that died during the pull.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// A container's `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Resolve the image from the registry at every container start.
    Always,
    /// Pull only when the image is not present.
    IfNotPresent,
    /// Never pull: the image must be present.
    Never,
}

impl PullPolicy {
    /// The policy the pod asks for; without one (a pod not defaulted by the apiserver), the
    /// Kubernetes default: `Always` for `:latest` or no tag, `IfNotPresent` otherwise.
    pub fn of(container: &PodContainer) -> PullPolicy {
        let image = container.image.as_deref().unwrap_or_default();
        let policy = container
            .image_pull_policy
            .as_deref()
            .filter(|policy| !policy.is_empty())
            .unwrap_or_else(|| rkube_api::defaulting::default_image_pull_policy(image));
        match policy {
            "Always" => PullPolicy::Always,
            "Never" => PullPolicy::Never,
            _ => PullPolicy::IfNotPresent,
        }
    }
}

/// Why one pull failed (the message of `ErrImagePull`, after `pulling <image>: `).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry could not be reached, refused, or answered nonsense.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The image's documents are not a usable image (no manifest for this platform, config and
    /// layers that disagree, ...).
    #[error("{0}")]
    Image(String),
    /// A containerd call failed.
    #[error("containerd {step}: {source}")]
    Containerd {
        /// Which call, e.g. `content.write`.
        step: &'static str,
        /// What containerd answered.
        #[source]
        source: Box<tonic::Status>,
    },
}

fn containerd(step: &'static str) -> impl FnOnce(tonic::Status) -> PullError {
    move |status| PullError::Containerd { step, source: Box::new(status) }
}

/// What a successful pull did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pulled {
    /// The registry's digest is the one containerd already has: nothing was downloaded.
    Unchanged,
    /// The image was written (some blobs or snapshots may have been there already).
    Fetched,
}

/// The back-off of one image after failed pulls.
struct ImageBackoff {
    /// The delays: 10 s doubling to 5 min; failures more than 2 × 5 min ago do not count (the
    /// Kubernetes kubelet forgets them then).
    delays: Backoff,
    /// The current delay.
    delay: Duration,
    /// When the last pull failed.
    failed_at: Instant,
    /// Why it failed.
    message: String,
}

/// Pulls images into containerd for the kubelet's containers (see the module docs).
pub struct Puller {
    client: containerd_client::Client,
    registry: RegistryClient,
    /// One lock per image name: pulls of the same image are serialized.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Images whose last pull failed.
    backoff: Mutex<HashMap<String, ImageBackoff>>,
    metrics: Option<PullMetrics>,
}

/// A namespaced request that also holds `lease` (so nothing it creates is collected before
/// the image references it).
fn leased<T>(message: T, lease: &str) -> Request<T> {
    let mut request = req(message);
    if let Ok(value) = lease.parse() {
        request.metadata_mut().insert("containerd-lease", value);
    }
    request
}

/// Whether `media_type` is an index (OCI image index or Docker manifest list).
fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// The architecture as OCI platforms name it.
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A descriptor (`{mediaType, digest, size}`) from a manifest or index, checked.
fn descriptor(value: &serde_json::Value, what: &str) -> Result<Descriptor, PullError> {
    let bad = |why: &str| PullError::Image(format!("{what}: {why}"));
    let digest = value["digest"].as_str().ok_or_else(|| bad("no digest"))?;
    let valid_digest =
        digest.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if !valid_digest {
        return Err(bad(&format!("unsupported digest {digest:?} (only sha256)")));
    }
    let size = value["size"].as_i64().filter(|size| *size >= 0).ok_or_else(|| bad("no size"))?;
    Ok(Descriptor {
        media_type: value["mediaType"].as_str().unwrap_or_default().to_string(),
        digest: digest.to_string(),
        size,
        annotations: HashMap::new(),
    })
}

/// The position and descriptor of the `linux/<arch>` manifest in an index.
fn pick_platform(index: &serde_json::Value) -> Result<(usize, Descriptor), PullError> {
    let arch = oci_architecture();
    let manifests = index["manifests"].as_array().ok_or_else(|| PullError::Image("index without manifests".into()))?;
    let (position, entry) = manifests
        .iter()
        .enumerate()
        .find(|(_, entry)| entry["platform"]["os"] == "linux" && entry["platform"]["architecture"] == arch)
        .ok_or_else(|| PullError::Image(format!("no linux/{arch} image in the index")))?;
    Ok((position, descriptor(entry, "index entry")?))
}

/// The chain IDs of every prefix of `diff_ids` (the snapshot names of layers 0..=i).
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    (1..=diff_ids.len()).filter_map(|n| chain_id(&diff_ids[..n])).collect()
}

fn json(bytes: &[u8], what: &str) -> Result<serde_json::Value, PullError> {
    serde_json::from_slice(bytes).map_err(|error| PullError::Image(format!("{what} is not JSON: {error}")))
}

/// Where a blob's bytes come from.
enum Source<'a> {
    /// Already in memory (manifests, index, config).
    Bytes(&'a [u8]),
    /// Downloaded from the registry of the reference.
    Registry(&'a Reference),
}

impl Puller {
    /// A puller writing into `client`'s containerd (namespace [`super::NAMESPACE`]); `insecure` lists
    /// the registries (`host:port`) reached over plain HTTP besides loopback ones.
    ///
    /// # Errors
    /// [`RuntimeError::Image`] when the HTTP client cannot be built.
    pub fn new(
        client: containerd_client::Client,
        insecure: Vec<String>,
        metrics: Option<PullMetrics>,
    ) -> Result<Puller, RuntimeError> {
        let registry = RegistryClient::new(insecure)
            .map_err(|error| RuntimeError::Image { image: String::new(), message: error.to_string() })?;
        Ok(Puller { client, registry, locks: Mutex::new(HashMap::new()), backoff: Mutex::new(HashMap::new()), metrics })
    }

    /// Makes sure image `image` (normalized) is in containerd as `policy` asks, pulling it if
    /// needed (see the module docs): `on_pull` is called just before a pull starts. Returns
    /// how long the pull took, or `None` when the image was there.
    ///
    /// # Errors
    /// [`RuntimeError::ImagePull`] with reason `ErrImageNeverPull`, `ErrImagePull` or
    /// `ImagePullBackOff`; [`RuntimeError::Containerd`] when containerd cannot say whether the
    /// image is present.
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: Option<Credentials>,
        on_pull: impl FnOnce(),
    ) -> Result<Option<Duration>, RuntimeError> {
        if policy != PullPolicy::Always && self.present(image).await? {
            return Ok(None);
        }
        if policy == PullPolicy::Never {
            return Err(RuntimeError::ImagePull {
                image: image.into(),
                reason: "ErrImageNeverPull",
                message: format!("Container image \"{image}\" is not present with pull policy of Never"),
            });
        }
        let lock =
            Arc::clone(self.locks.lock().unwrap_or_else(PoisonError::into_inner).entry(image.to_string()).or_default());
        let _serialized = lock.lock().await;
        // Another worker may have pulled it while this one waited.
        if policy == PullPolicy::IfNotPresent && self.present(image).await? {
            return Ok(None);
        }
        if let Some((left, message)) = self.backing_off(image) {
            tracing::debug!(%image, ?left, "image pull backing off");
            return Err(RuntimeError::ImagePull {
                image: image.into(),
                reason: "ImagePullBackOff",
                // No countdown in the message: it would change the pod's status at every retry.
                message: format!("Back-off pulling image \"{image}\": {message}"),
            });
        }
        on_pull();
        let started = Instant::now();
        let result = self.pull(image, credentials).await;
        let elapsed = started.elapsed();
        if let Some(metrics) = &self.metrics {
            metrics.duration.observe(elapsed.as_secs_f64());
            metrics.pulls.with_label_values(&[if result.is_ok() { "success" } else { "error" }]).inc();
        }
        match result {
            Ok(pulled) => {
                self.backoff.lock().unwrap_or_else(PoisonError::into_inner).remove(image);
                if pulled == Pulled::Fetched {
                    tracing::info!(%image, ?elapsed, "image pulled");
                }
                Ok(Some(elapsed))
            }
            Err(error) => {
                let message = format!("pulling {image}: {error}");
                let delay = self.fail(image, &message);
                tracing::warn!(%image, %error, back_off = ?delay, "image pull failed");
                Err(RuntimeError::ImagePull { image: image.into(), reason: "ErrImagePull", message })
            }
        }
    }

    /// Whether containerd has an image named `image`.
    async fn present(&self, image: &str) -> Result<bool, RuntimeError> {
        Ok(self
            .image_target(image)
            .await
            .map_err(|status| RuntimeError::Containerd { step: "images.get", source: Box::new(status) })?
            .is_some())
    }

    /// The target of image `image` in containerd, `None` when there is no such image.
    async fn image_target(&self, image: &str) -> Result<Option<Descriptor>, tonic::Status> {
        match self.client.images().get(req(GetImageRequest { name: image.into() })).await {
            Ok(response) => Ok(response.into_inner().image.and_then(|image| image.target)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// How much is left of `image`'s back-off and why it is backing off, if it is.
    fn backing_off(&self, image: &str) -> Option<(Duration, String)> {
        let backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = backoff.get(image)?;
        let left = entry.delay.checked_sub(entry.failed_at.elapsed())?;
        (!left.is_zero()).then(|| (left, entry.message.clone()))
    }

    /// Records a failed pull of `image`; returns the back-off until the next attempt.
    fn fail(&self, image: &str, message: &str) -> Duration {
        let mut backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let entry = backoff.entry(image.into()).or_insert_with(|| ImageBackoff {
            delays: Backoff::new(BackoffConfig::doubling(BACKOFF_INITIAL, BACKOFF_MAX, 2 * BACKOFF_MAX)),
            delay: Duration::ZERO,
            failed_at: now,
            message: String::new(),
        });
        entry.delay = entry.delays.next_delay(now);
        entry.failed_at = now;
        entry.message = message.into();
        entry.delay
    }

    /// Pulls `image` (normalized) from its registry into containerd (see the module docs):
    /// resolve the manifest → read the config → under a lease, write the layers → unpack them
    /// → write config, manifest and index with their GC labels → point the image record at them.
    ///
    /// # Errors
    /// [`PullError`] naming the step that failed; the lease is deleted either way.
    pub async fn pull(&self, image: &str, credentials: Option<Credentials>) -> Result<Pulled, PullError> {
        let mut reference = Reference::parse(image)?;
        reference.credentials = credentials;
        let top = self.registry.manifest(&reference, reference.manifest_ref()).await?;
        let existing = self.image_target(image).await.map_err(containerd("images.get"))?;
        if existing.is_some_and(|target| target.digest == top.digest) {
            return Ok(Pulled::Unchanged);
        }
        let documents = self.fetch_documents(&reference, top).await?;
        let lease = self.create_lease().await?;
        let result = self.store(&lease, &reference, image, &documents).await;
        self.delete_lease(&lease).await;
        result.map(|()| Pulled::Fetched)
    }

    /// Steps 1 and 2: this platform's manifest (through the index when `top` is one), and the
    /// image config, checked against each other.
    async fn fetch_documents(&self, reference: &Reference, top: Fetched) -> Result<ImageDocuments, PullError> {
        let (index, manifest) = if is_index(&top.media_type) {
            let (position, entry) = pick_platform(&json(&top.bytes, "the index")?)?;
            let manifest = self.registry.manifest(reference, &entry.digest).await?;
            (Some((top, position)), manifest)
        } else {
            (None, top)
        };
        if is_index(&manifest.media_type) {
            return Err(PullError::Image("an index inside an index is not supported".into()));
        }
        let (config, layers) = manifest_parts(&manifest)?;
        let config_bytes = self.small_blob(reference, &config).await?;
        let diff_ids: Vec<String> = json(&config_bytes, "the image config")?["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| id.as_str().map(str::to_string))
            .collect();
        if diff_ids.len() != layers.len() || layers.is_empty() {
            return Err(PullError::Image(format!(
                "the manifest has {} layers, the config {} diff_ids",
                layers.len(),
                diff_ids.len()
            )));
        }
        Ok(ImageDocuments { index, manifest, config, config_bytes, layers, diff_ids })
    }

    /// Steps 3 to 6, under `lease`: the layers into the content store, unpacked into
    /// snapshots; then config, manifest and index with the labels that keep everything from
    /// the garbage collector; then the image record `image`, last.
    async fn store(
        &self,
        lease: &str,
        reference: &Reference,
        image: &str,
        documents: &ImageDocuments,
    ) -> Result<(), PullError> {
        let ImageDocuments { index, manifest, config, config_bytes, layers, diff_ids } = documents;
        let chains = chain_ids(diff_ids);
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let labels = [("containerd.io/uncompressed".to_string(), diff_id.clone())].into();
            self.write_blob(lease, layer, labels, Source::Registry(reference)).await?;
        }
        self.unpack(lease, layers, diff_ids, &chains).await?;
        let top_chain = chains.last().cloned().unwrap_or_default();
        let labels = [(format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"), top_chain)].into();
        self.write_blob(lease, config, labels, Source::Bytes(config_bytes)).await?;
        let mut labels: HashMap<String, String> =
            [("containerd.io/gc.ref.content.config".to_string(), config.digest.clone())].into();
        for (i, layer) in layers.iter().enumerate() {
            labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), layer.digest.clone());
        }
        let manifest_descriptor = fetched_descriptor(manifest);
        self.write_blob(lease, &manifest_descriptor, labels, Source::Bytes(&manifest.bytes)).await?;
        let target = match index {
            Some((index, position)) => {
                let labels = [(format!("containerd.io/gc.ref.content.m.{position}"), manifest.digest.clone())].into();
                let index_descriptor = fetched_descriptor(index);
                self.write_blob(lease, &index_descriptor, labels, Source::Bytes(&index.bytes)).await?;
                index_descriptor
            }
            None => manifest_descriptor,
        };
        self.put_image(image, target).await
    }

    /// Downloads a small blob (the config) into memory, checking size and digest.
    async fn small_blob(&self, reference: &Reference, blob: &Descriptor) -> Result<Vec<u8>, PullError> {
        if usize::try_from(blob.size).map_or(true, |size| size > MAX_CONFIG_BYTES) {
            return Err(PullError::Image(format!("config {} too large ({} bytes)", blob.digest, blob.size)));
        }
        let mut body = self.registry.blob(reference, &blob.digest).await?.bytes_stream();
        let mut bytes = Vec::new();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|source| self.registry.blob_error(reference, &blob.digest, source))?;
            bytes.extend_from_slice(&piece);
            if bytes.len() > MAX_CONFIG_BYTES {
                break; // reported below as a size mismatch, without reading on
            }
        }
        let digest = super::registry::sha256_digest(&bytes);
        if digest != blob.digest || i64::try_from(bytes.len()).ok() != Some(blob.size) {
            return Err(PullError::Image(format!(
                "blob {}: the registry sent {} bytes with digest {digest}",
                blob.digest,
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    async fn create_lease(&self) -> Result<String, PullError> {
        let id = format!("rkube-pull-{:016x}", rand::random::<u64>());
        let expire = jiff::Timestamp::now() + LEASE_EXPIRY;
        let labels = [("containerd.io/gc.expire".to_string(), expire.to_string())].into();
        self.client
            .leases()
            .create(req(CreateLeaseRequest { id: id.clone(), labels }))
            .await
            .map_err(containerd("leases.create"))?;
        Ok(id)
    }

    /// Deletes the pull's lease; what it held is referenced by the image by now, or garbage.
    async fn delete_lease(&self, lease: &str) {
        let deleted = self.client.leases().delete(req(DeleteLeaseRequest { id: lease.into(), sync: false })).await;
        if let Err(status) = deleted {
            tracing::warn!(%lease, %status, "cannot delete the pull's lease (it expires on its own)");
        }
    }

    /// Puts blob `blob` into the content store with `labels` (added to the labels it has when
    /// it is there already). The bytes are streamed from `source` in chunks of at most
    /// [`CHUNK`]; containerd checks size and digest at commit.
    async fn write_blob(
        &self,
        lease: &str,
        blob: &Descriptor,
        labels: HashMap<String, String>,
        source: Source<'_>,
    ) -> Result<(), PullError> {
        let reference = format!("rkube-pull-{}-{:08x}", blob.digest, rand::random::<u32>());
        let (mut sender, receiver) = futures::channel::mpsc::channel::<WriteContentRequest>(2);
        let message = |action: WriteAction, offset: i64, data: Vec<u8>| WriteContentRequest {
            action: action as i32,
            r#ref: reference.clone(),
            total: blob.size,
            expected: blob.digest.clone(),
            offset,
            data,
            labels: HashMap::new(),
        };
        let closed = |_| PullError::Image("containerd closed the content write stream".into());
        sender.send(message(WriteAction::Stat, 0, Vec::new())).await.map_err(closed)?;
        let mut responses = match self.client.content().write(leased(receiver, lease)).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::AlreadyExists => return self.label(blob, labels).await,
            Err(status) => return Err(containerd("content.write")(status)),
        };
        match responses.message().await {
            Ok(_) => {}
            Err(status) if status.code() == Code::AlreadyExists => return self.label(blob, labels).await,
            Err(status) => return Err(containerd("content.write")(status)),
        }

        let written = async {
            let mut offset: i64 = 0;
            let mut send = async |chunk: Bytes, offset: i64| -> Result<(), PullError> {
                sender.send(message(WriteAction::Write, offset, chunk.to_vec())).await.map_err(closed)?;
                responses.message().await.map_err(containerd("content.write"))?;
                Ok(())
            };
            match source {
                Source::Bytes(bytes) => {
                    for chunk in bytes.chunks(CHUNK) {
                        send(Bytes::copy_from_slice(chunk), offset).await?;
                        offset += i64::try_from(chunk.len()).unwrap_or(i64::MAX);
                    }
                }
                Source::Registry(image) => {
                    let response = self.registry.blob(image, &blob.digest).await?;
                    let mut body = response.bytes_stream();
                    let mut buffer = BytesMut::with_capacity(CHUNK);
                    while let Some(piece) = body.next().await {
                        let piece = piece.map_err(|source| self.registry.blob_error(image, &blob.digest, source))?;
                        buffer.extend_from_slice(&piece);
                        if offset + i64::try_from(buffer.len()).unwrap_or(i64::MAX) > blob.size {
                            return Err(PullError::Image(format!(
                                "blob {}: the registry sent more than its {} bytes",
                                blob.digest, blob.size
                            )));
                        }
                        while buffer.len() >= CHUNK {
                            let chunk = buffer.split_to(CHUNK).freeze();
                            let length = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
                            send(chunk, offset).await?;
                            offset += length;
                        }
                    }
                    if !buffer.is_empty() {
                        let length = i64::try_from(buffer.len()).unwrap_or(i64::MAX);
                        send(buffer.freeze(), offset).await?;
                        offset += length;
                    }
                }
            }
            let mut commit = message(WriteAction::Commit, offset, Vec::new());
            commit.labels = labels.clone();
            sender.send(commit).await.map_err(closed)?;
            match responses.message().await {
                Ok(_) => Ok(false),
                // Committed meanwhile by another writer (e.g. a layer shared with another image).
                Err(status) if status.code() == Code::AlreadyExists => Ok(true),
                Err(status) => Err(containerd("content.write (commit)")(status)),
            }
        }
        .await;
        drop(sender);
        match written {
            Ok(false) => Ok(()),
            Ok(true) => self.label(blob, labels).await,
            Err(error) => {
                let _ = self.client.content().abort(req(AbortRequest { r#ref: reference })).await;
                Err(error)
            }
        }
    }

    /// Adds `labels` to blob `blob`, which is in the content store already.
    async fn label(&self, blob: &Descriptor, labels: HashMap<String, String>) -> Result<(), PullError> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|key| format!("labels.{key}")).collect();
        let info = ContentInfo { digest: blob.digest.clone(), labels, ..ContentInfo::default() };
        self.client
            .content()
            .update(req(UpdateContentRequest { info: Some(info), update_mask: Some(prost_types::FieldMask { paths }) }))
            .await
            .map_err(containerd("content.update"))?;
        Ok(())
    }

    /// Unpacks `layers` into snapshots named by their chain IDs, skipping those that exist.
    async fn unpack(
        &self,
        lease: &str,
        layers: &[Descriptor],
        diff_ids: &[String],
        chains: &[String],
    ) -> Result<(), PullError> {
        for (i, ((layer, diff_id), chain)) in layers.iter().zip(diff_ids).zip(chains).enumerate() {
            if self.has_snapshot(chain).await? {
                continue;
            }
            let parent = if i == 0 { String::new() } else { chains[i - 1].clone() };
            self.unpack_layer(lease, layer, diff_id, parent, chain).await?;
        }
        Ok(())
    }

    /// Whether the snapshot named `chain` exists.
    async fn has_snapshot(&self, chain: &str) -> Result<bool, PullError> {
        let stat = StatSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: chain.into() };
        match self.client.snapshots().stat(req(stat)).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(containerd("snapshots.stat")(status)),
        }
    }

    /// Unpacks `layer` on snapshot `parent` into the snapshot `chain`: prepare an extraction
    /// snapshot, apply the layer, commit it as `chain`. The extraction snapshot is removed
    /// unless it became `chain`.
    async fn unpack_layer(
        &self,
        lease: &str,
        layer: &Descriptor,
        diff_id: &str,
        parent: String,
        chain: &str,
    ) -> Result<(), PullError> {
        let key = format!("extract-{:016x} {chain}", rand::random::<u64>());
        let prepare = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.clone(),
            parent,
            labels: HashMap::new(),
        };
        let mounts = self
            .client
            .snapshots()
            .prepare(leased(prepare, lease))
            .await
            .map_err(containerd("snapshots.prepare"))?
            .into_inner()
            .mounts;
        let applied = self.apply_and_commit(lease, layer, diff_id, mounts, &key, chain).await;
        if !matches!(applied, Ok(true)) {
            let remove = RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: key.clone() };
            if let Err(status) = self.client.snapshots().remove(req(remove)).await {
                tracing::debug!(%key, %status, "cannot remove an extraction snapshot");
            }
        }
        applied.map(|_| ())
    }

    /// Applies `layer` to the extraction snapshot `key` (mounted at `mounts`), checks it
    /// unpacked to `diff_id`, and commits it as `chain`. Returns false when another pull
    /// committed `chain` meanwhile.
    async fn apply_and_commit(
        &self,
        lease: &str,
        layer: &Descriptor,
        diff_id: &str,
        mounts: Vec<containerd_client::types::Mount>,
        key: &str,
        chain: &str,
    ) -> Result<bool, PullError> {
        let apply = ApplyRequest { diff: Some(layer.clone()), mounts, ..ApplyRequest::default() };
        let response = self.client.diff().apply(leased(apply, lease)).await.map_err(containerd("diff.apply"))?;
        let got = response.into_inner().applied.map(|applied| applied.digest).unwrap_or_default();
        if got != diff_id {
            return Err(PullError::Image(format!(
                "layer {} unpacked to {got}, the config says {diff_id}",
                layer.digest
            )));
        }
        let commit = CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            name: chain.into(),
            key: key.into(),
            labels: [("containerd.io/snapshot.ref".to_string(), chain.into())].into(),
        };
        match self.client.snapshots().commit(leased(commit, lease)).await {
            Ok(_) => Ok(true),
            // Unpacked meanwhile by a pull of another image with the same layers.
            Err(status) if status.code() == Code::AlreadyExists => Ok(false),
            Err(status) => Err(containerd("snapshots.commit")(status)),
        }
    }

    /// Creates image `name` pointing at `target`, or points the existing one at it.
    async fn put_image(&self, name: &str, target: Descriptor) -> Result<(), PullError> {
        let image = Image { name: name.into(), target: Some(target), ..Image::default() };
        let created = self
            .client
            .images()
            .create(req(CreateImageRequest { image: Some(image.clone()), source_date_epoch: None }))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => {
                self.client
                    .images()
                    .update(req(UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask { paths: vec!["target".into()] }),
                        source_date_epoch: None,
                    }))
                    .await
                    .map_err(containerd("images.update"))?;
                Ok(())
            }
            Err(status) => Err(containerd("images.create")(status)),
        }
    }
}

/// An image's documents, fetched and checked; nothing is written yet.
struct ImageDocuments {
    /// The index the name points at (OCI index, Docker manifest list), with the position of
    /// this platform's manifest in it; `None` when the name points at a manifest.
    index: Option<(Fetched, usize)>,
    /// This platform's manifest.
    manifest: Fetched,
    /// The manifest's config descriptor, and the config itself.
    config: Descriptor,
    config_bytes: Vec<u8>,
    /// The manifest's layers, and their diff IDs (from the config), in the same order.
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
}

/// The config and layer descriptors of a manifest, checked.
fn manifest_parts(manifest: &Fetched) -> Result<(Descriptor, Vec<Descriptor>), PullError> {
    let document = json(&manifest.bytes, "the manifest")?;
    let config = descriptor(&document["config"], "manifest config")?;
    let layers = document["layers"]
        .as_array()
        .ok_or_else(|| PullError::Image("manifest without layers".into()))?
        .iter()
        .enumerate()
        .map(|(i, layer)| descriptor(layer, &format!("manifest layer {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((config, layers))
}

/// The descriptor of a fetched manifest or index.
fn fetched_descriptor(fetched: &Fetched) -> Descriptor {
    Descriptor {
        media_type: fetched.media_type.clone(),
        digest: fetched.digest.clone(),
        size: i64::try_from(fetched.bytes.len()).unwrap_or(i64::MAX),
        annotations: HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(image: &str, policy: Option<&str>) -> PodContainer {
        PodContainer {
            name: "main".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(String::from),
            ..PodContainer::default()
        }
    }

    #[test]
    fn the_pods_pull_policy_wins_and_kubernetes_defaults_fill_in() {
        assert_eq!(PullPolicy::of(&container("busybox", Some("Never"))), PullPolicy::Never);
        assert_eq!(PullPolicy::of(&container("busybox:1.36", Some("Always"))), PullPolicy::Always);
        assert_eq!(PullPolicy::of(&container("busybox", None)), PullPolicy::Always);
        assert_eq!(PullPolicy::of(&container("busybox:latest", Some(""))), PullPolicy::Always);
        assert_eq!(PullPolicy::of(&container("127.0.0.1:5000/x:v1", None)), PullPolicy::IfNotPresent);
    }

    #[test]
    fn the_index_entry_for_this_machine_is_picked() {
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({"manifests": [
            {"mediaType": "m", "digest": digest('a'), "size": 1, "platform": {"os": "linux", "architecture": "s390x-not"}},
            {"mediaType": "m", "digest": digest('b'), "size": 2, "platform": {"os": "windows", "architecture": oci_architecture()}},
            {"mediaType": "m", "digest": digest('c'), "size": 3, "platform": {"os": "linux", "architecture": oci_architecture()}},
        ]});
        let (position, picked) = pick_platform(&index).expect("picked");
        assert_eq!((position, picked.digest, picked.size), (2, digest('c'), 3));
        let none = serde_json::json!({"manifests": [{"digest": digest('a'), "size": 1, "platform": {"os": "linux", "architecture": "nope"}}]});
        let error = pick_platform(&none).expect_err("no match").to_string();
        assert!(error.contains(&format!("no linux/{}", oci_architecture())), "{error}");
    }

    #[test]
    fn descriptors_from_the_network_are_checked() {
        let ok = serde_json::json!({"mediaType": "t", "digest": format!("sha256:{}", "0".repeat(64)), "size": 5});
        assert_eq!(descriptor(&ok, "x").expect("valid").size, 5);
        for bad in [
            serde_json::json!({"digest": "sha256:00", "size": 5}),
            serde_json::json!({"digest": format!("sha512:{}", "0".repeat(128)), "size": 5}),
            serde_json::json!({"digest": format!("sha256:{}", "0".repeat(64)), "size": -1}),
            serde_json::json!({"size": 5}),
        ] {
            assert!(descriptor(&bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn chain_ids_name_every_prefix() {
        let ids = vec!["sha256:aa".to_string(), "sha256:bb".to_string()];
        let chains = chain_ids(&ids);
        assert_eq!(chains.len(), 2);
        assert_eq!(chains[0], "sha256:aa");
        assert_eq!(Some(chains[1].clone()), chain_id(&ids));
    }
}
