//! Pod workers: one task per pod, so a slow pod never holds up the others.
//!
//! Each pod (by its [`ObjectKey`]) gets its own worker task the first time the informer
//! reports it. The worker syncs the pod after every change the informer sees, every
//! `resync_interval`, and after a failure with a growing backoff (capped at the resync
//! interval). A sync is level-triggered: it reads the pod from the informer's cache, never from
//! the event, so merged or missed events do not matter. The Kubernetes kubelet calls this
//! `podWorkers` (pkg/kubelet/pod_workers.go), with `SyncPod`, `SyncTerminatingPod` and
//! `SyncTerminatedPod` as the three phases a pod goes through.
//!
//! What it keeps true (`test/tests/kubelet_fake.rs`):
//! - a pod bound to this node is run by the runtime and its status is written
//!   (`bound_pod_becomes_running_and_ready`);
//! - a pod marked for deletion (`deletionTimestamp`) is stopped within its grace period, then
//!   removed from the API with grace period 0 and a uid precondition
//!   (`deleted_pod_is_stopped_and_removed`);
//! - a pod that vanished from the API, or was replaced by another with the same name, has its
//!   old containers killed;
//! - two syncs of one pod never run at once (one task per pod);
//! - a failing sync is logged, counted (`kubelet_pod_sync_errors_total`) and retried; it never
//!   stops the worker.
//!
//! - an update that changed only the pod's status (the worker's own status write, seen back
//!   through the watch) does not sync the pod again ([`needs_sync`]); the next change or resync
//!   does. The Kubernetes kubelet, too, only reconciles on a status-only update.
//!
//! Not promised: an order between different pods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use rkube_api::backoff::{Backoff, BackoffConfig};
use rkube_client::events::{EventRecorder, EventType};
use rkube_client::{Api, Client, DeleteParams, Preconditions};
use rkube_informer::ObjectKey;
use rkube_informer::store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::probes::ProbeManager;
use crate::runtime::Runtime;
use crate::runtime::containerd::container_reference;
use crate::startup::{PodStartTracker, Step, timed};
use crate::status::{StatusManager, generate_pod_status};
use crate::volumes::VolumeManager;

/// The grace period when neither the deletion nor the spec gives one (Kubernetes' default).
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// The first retry delay after a failed sync.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);

/// What a pod worker needs to sync its pod (where to read it, run it, probe it and report
/// it), and to pace and stop its loop.
struct PodSyncer {
    client: Client,
    store: Store<Pod>,
    runtime: Arc<dyn Runtime>,
    status: StatusManager,
    metrics: Arc<Metrics>,
    host_ip: String,
    resync_interval: Duration,
    shutdown: CancellationToken,
    /// Readiness and liveness probes (`None`: none are run, e.g. for the fake runtime).
    probes: Option<ProbeManager>,
    /// Writes configMap/secret/projected volumes (`None`: none are written, e.g. for the fake
    /// runtime).
    volumes: Option<Arc<VolumeManager>>,
    /// `Killing` Events.
    events: Option<EventRecorder>,
    /// Times the steps of pods' start-up (`None`: not timed).
    startup: Option<Arc<PodStartTracker>>,
}

/// A "sync me" signal per pod key; a key is present while its worker runs.
type WorkerSignals = Mutex<HashMap<ObjectKey, watch::Sender<()>>>;

/// How the pod workers run.
#[derive(Clone)]
pub struct Settings {
    /// The node's IP, written to every pod's `status.hostIP`.
    pub host_ip: String,
    /// How often every pod is synced even without a change.
    pub resync_interval: Duration,
    /// Writes the content volumes before containers start (`None`: pods get none).
    pub volumes: Option<Arc<VolumeManager>>,
    /// Records `Killing` Events when pods stop (`None`: none are recorded).
    pub events: Option<EventRecorder>,
    /// Times the steps of pods' start-up ([`crate::startup`]; `None`: not timed).
    pub startup: Option<Arc<PodStartTracker>>,
}

/// The set of pod workers (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct PodWorkers {
    syncer: Arc<PodSyncer>,
    signals: Arc<WorkerSignals>,
}

/// What a sync decided.
enum Next {
    /// The pod lives on: sync again on the next change or resync.
    KeepGoing,
    /// The pod is gone and cleaned up: the worker may end.
    Finished,
}

/// Whether the informer's update from `old` to `new` asks for a sync: anything but the
/// status (and the bookkeeping that comes with every write: `resourceVersion`,
/// `managedFields`) changed. A status-only update is usually the worker's own write coming
/// back; what the runtime must do depends on the spec and metadata only.
pub fn needs_sync(old: &Pod, new: &Pod) -> bool {
    let bare = |pod: &Pod| {
        let mut metadata = pod.metadata.clone();
        metadata.resource_version = None;
        metadata.managed_fields = None;
        metadata
    };
    old.spec != new.spec || bare(old) != bare(new)
}

impl PodWorkers {
    /// Pod workers that read pods from `store`, run them on `runtime` (probing them with
    /// `probes`), and write statuses with the node's IP from `settings`. Workers stop on `shutdown`.
    pub fn new(
        client: Client,
        store: Store<Pod>,
        runtime: Arc<dyn Runtime>,
        metrics: Arc<Metrics>,
        settings: Settings,
        shutdown: CancellationToken,
        probes: Option<ProbeManager>,
    ) -> PodWorkers {
        let Settings { host_ip, resync_interval, volumes, events, startup } = settings;
        let status = StatusManager::new(client.clone(), Arc::clone(&metrics));
        PodWorkers {
            syncer: Arc::new(PodSyncer {
                client,
                store,
                runtime,
                status,
                metrics,
                host_ip,
                resync_interval,
                shutdown,
                probes,
                volumes,
                events,
                startup,
            }),
            signals: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Tells the worker of pod `key` to sync, starting one if there is none.
    pub fn update(&self, key: &ObjectKey) {
        let mut signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(signal) = signals.get(key) {
            signal.send_replace(());
            return;
        }
        let (signal, changed) = watch::channel(());
        signals.insert(key.clone(), signal);
        self.syncer.metrics.running_pods.set(i64::try_from(signals.len()).unwrap_or(i64::MAX));
        drop(signals);
        tokio::spawn(worker(Arc::clone(&self.syncer), Arc::clone(&self.signals), key.clone(), changed));
    }

    /// Kills what the runtime runs for pods that are not in the cache (left over from before a
    /// restart, or deleted while the kubelet was down).
    ///
    /// # Errors
    /// [`Error::Runtime`] when the runtime cannot list or kill.
    pub async fn cleanup_orphans(&self) -> Result<()> {
        let syncer = &self.syncer;
        let known: std::collections::HashSet<String> =
            syncer.store.list().iter().filter_map(|pod| pod.metadata.uid.clone()).collect();
        let started = std::time::Instant::now();
        let uids = syncer.runtime.pod_uids().await?;
        syncer.metrics.relist_duration.observe(started.elapsed().as_secs_f64());
        for uid in uids {
            if !known.contains(&uid) {
                tracing::info!(%uid, "killing an orphaned pod");
                syncer.runtime.kill_pod(&uid, Duration::ZERO).await?;
            }
        }
        Ok(())
    }
}

/// One pod's worker: sync, then wait for a change, the resync timer, or the retry timer.
async fn worker(syncer: Arc<PodSyncer>, signals: Arc<WorkerSignals>, key: ObjectKey, mut changed: watch::Receiver<()>) {
    let mut running_uid: Option<String> = None;
    let config = BackoffConfig::doubling(INITIAL_BACKOFF, syncer.resync_interval, Duration::MAX);
    let mut backoff = Backoff::new(config);
    loop {
        changed.mark_unchanged();
        let started = Instant::now();
        let result = syncer.sync(&key, &mut running_uid).await;
        syncer.metrics.pod_worker_duration.observe(started.elapsed().as_secs_f64());
        let wait = match result {
            Ok(Next::KeepGoing) => {
                backoff.reset();
                syncer.resync_interval
            }
            Ok(Next::Finished) => {
                let mut signals = signals.lock().unwrap_or_else(PoisonError::into_inner);
                if changed.has_changed().unwrap_or(false) {
                    continue; // the pod came back meanwhile: keep this worker
                }
                signals.remove(&key);
                syncer.metrics.running_pods.set(i64::try_from(signals.len()).unwrap_or(i64::MAX));
                return;
            }
            Err(error) => {
                syncer.metrics.pod_sync_errors.inc();
                let wait = backoff.next_delay(tokio::time::Instant::now().into_std());
                tracing::warn!(pod = %key, %error, retry_in = ?wait, "pod sync failed");
                wait
            }
        };
        tokio::select! {
            () = syncer.shutdown.cancelled() => return,
            _ = changed.changed() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

impl PodSyncer {
    /// Makes the runtime and the pod's status match the cached pod, once: kill what ran for a
    /// pod that vanished or was replaced → terminate a pod marked for deletion → run the pod
    /// (unless it is terminal) → report its status.
    async fn sync(&self, key: &ObjectKey, running_uid: &mut Option<String>) -> Result<Next> {
        let pod = self.store.get(key);
        let uid = pod.as_ref().and_then(|pod| pod.metadata.uid.clone());
        self.kill_replaced(key, uid.as_ref(), running_uid).await?;
        let (Some(pod), Some(uid)) = (pod, uid) else { return Ok(Next::Finished) };
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(key, &pod, &uid, running_uid).await;
        }
        // A terminal pod is never started again; the status of its last run stays.
        let phase = pod.status.as_ref().and_then(|status| status.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return Ok(Next::KeepGoing);
        }
        *running_uid = Some(uid.clone());
        let tracker = self.startup.as_deref();
        if let Some(tracker) = tracker {
            tracker.sync_started(&uid, Instant::now());
        }
        let prepared = match &self.volumes {
            Some(volumes) => timed(tracker, &uid, Step::Volumes, volumes.prepare(&pod))
                .await
                .map_err(|message| Error::Volumes { pod: key.clone(), message }),
            None => Ok(()),
        };
        if let Err(error) = prepared {
            if let (Some(events), Error::Volumes { message, .. }) = (&self.events, &error) {
                let reference = rkube_client::events::object_reference(pod.as_ref());
                events.record(
                    &reference,
                    EventType::Warning,
                    "FailedMount",
                    "",
                    format!("MountVolume.SetUp failed for {message}"),
                );
            }
            self.report_status(key, &pod, &uid).await?;
            return Err(error);
        }
        let sync_error = self.runtime.sync_pod(&pod).await.err();
        timed(tracker, &uid, Step::Status, self.report_status(key, &pod, &uid)).await?;
        match sync_error {
            Some(error) => Err(error.into()),
            None => Ok(Next::KeepGoing),
        }
    }

    /// A pod that vanished, or was replaced under the same name (now `uid`): stops what ran for
    /// the old one.
    async fn kill_replaced(
        &self,
        key: &ObjectKey,
        uid: Option<&String>,
        running_uid: &mut Option<String>,
    ) -> Result<()> {
        let Some(old) = running_uid.as_ref() else { return Ok(()) };
        if uid == Some(old) {
            return Ok(());
        }
        tracing::info!(pod = %key, uid = %old, "pod gone from the API; killing its containers");
        self.runtime.kill_pod(old, Duration::ZERO).await?;
        if let Some(volumes) = &self.volumes {
            volumes.forget(old);
        }
        if let Some(probes) = &self.probes {
            probes.forget(old);
        }
        *running_uid = None;
        Ok(())
    }

    /// Reads what the runtime runs for pod `uid`, keeps its probes in step, and writes the
    /// status that follows (when it changed).
    async fn report_status(&self, key: &ObjectKey, pod: &Pod, uid: &str) -> Result<()> {
        let runtime_status = self.runtime.pod_status(uid).await?;
        if let Some(probes) = &self.probes {
            probes.sync(pod, runtime_status.as_ref());
        }
        let readiness = |container: &str, id: &str| self.probes.as_ref().is_none_or(|p| p.is_ready(uid, container, id));
        let status = generate_pod_status(pod, runtime_status.as_ref(), &self.host_ip, Timestamp::now(), &readiness);
        // Only a pod being started needs the written status again (to time its start).
        let starting = self.startup.as_ref().filter(|tracker| tracker.starting(uid)).map(|_| status.clone());
        if self.status.set_status(pod, status).await? {
            tracing::debug!(pod = %key, "pod status written");
            if let (Some(tracker), Some(status)) = (&self.startup, starting) {
                tracker.status_written(uid, &status, Instant::now());
            }
        }
        Ok(())
    }

    /// Stops a pod marked for deletion within its grace period, then removes it from the API.
    async fn terminate(&self, key: &ObjectKey, pod: &Pod, uid: &str, running_uid: &mut Option<String>) -> Result<Next> {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| pod.spec.as_ref().and_then(|spec| spec.termination_grace_period_seconds))
            .map_or(DEFAULT_GRACE_PERIOD, |seconds| Duration::from_secs(u64::try_from(seconds).unwrap_or(0)));
        tracing::info!(pod = %key, ?grace, "stopping pod marked for deletion");
        if let Some(probes) = &self.probes {
            probes.forget(uid);
        }
        if let Some(events) = &self.events {
            let running = pod.status.iter().flat_map(|s| s.container_statuses.iter().flatten());
            for container in running.filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())) {
                let message = format!("Stopping container {}", container.name);
                events.record(&container_reference(pod, &container.name), EventType::Normal, "Killing", "", message);
            }
        }
        self.runtime.kill_pod(uid, grace).await?;
        if let Some(volumes) = &self.volumes {
            volumes.forget(uid);
        }
        *running_uid = None;
        self.delete_from_api(key, pod, uid).await
    }

    /// Deletes the stopped pod `uid` from the API (grace period 0, uid precondition).
    async fn delete_from_api(&self, key: &ObjectKey, pod: &Pod, uid: &str) -> Result<Next> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                tracing::info!(pod = %key, "pod removed from the API");
                Ok(Next::Finished)
            }
            // Gone already, or replaced by a new pod with the same name (uid precondition failed).
            Err(error) if error.is_not_found() || error.is_conflict() => Ok(Next::Finished),
            Err(error) => Err(Error::DeletePod(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(resource_version: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                uid: Some("uid-1".into()),
                resource_version: Some(resource_version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() }),
        }
    }

    #[test]
    fn a_status_only_update_needs_no_sync_but_spec_and_metadata_changes_do() {
        let old = pod("1", "Pending");
        assert!(!needs_sync(&old, &pod("2", "Running")), "the worker's own status write");
        let mut deleted = pod("3", "Running");
        deleted.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(needs_sync(&old, &deleted));
        let mut relabelled = pod("4", "Pending");
        relabelled.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        assert!(needs_sync(&old, &relabelled), "the downward API shows labels");
        let mut debugged = pod("5", "Pending");
        debugged.spec.as_mut().expect("spec").ephemeral_containers = Some(Vec::new());
        assert!(needs_sync(&old, &debugged));
        let mut replaced = pod("6", "Pending");
        replaced.metadata.uid = Some("uid-2".into());
        assert!(needs_sync(&old, &replaced));
    }
}
