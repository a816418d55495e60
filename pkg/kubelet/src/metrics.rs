//! The kubelet's Prometheus metrics (named like the Kubernetes kubelet's where one exists).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the kubelet exports, registered once in the process's registry.
pub struct Metrics {
    /// `kubelet_pod_worker_duration_seconds`: how long one sync of one pod took.
    pub pod_worker_duration: Histogram,
    /// `kubelet_pod_sync_errors_total`: pod syncs that failed (and were retried).
    pub pod_sync_errors: IntCounter,
    /// `kubelet_pod_status_writes_total`: pod statuses written (only changes are written).
    pub pod_status_writes: IntCounter,
    /// `kubelet_running_pods`: pods with a worker.
    pub running_pods: IntGauge,
    /// `kubelet_node_status_updates_total{result}`: Node status writes, `success` or `error`.
    pub node_status_updates: IntCounterVec,
    /// `kubelet_lease_renewals_total{result}`: Lease renewals, `success` or `error`.
    pub lease_renewals: IntCounterVec,
    /// Image pulls from registries (handed to the containerd runtime).
    pub image_pulls: PullMetrics,
    /// Container starts (handed to the containerd runtime).
    pub container_starts: StartMetrics,
    /// `prober_probe_total{probe_type,result}`: probes run, by type (`Readiness`, `Liveness`,
    /// `Startup`) and result (`successful`, `failed`).
    pub probes: IntCounterVec,
    /// `kubelet_pleg_relist_duration_seconds`: how long listing everything the runtime runs
    /// took (every `--sync-frequency`, to find orphaned pods).
    pub relist_duration: Histogram,
}

/// The metrics of container starts, cheap to clone: the containerd runtime keeps a copy.
#[derive(Clone)]
pub struct StartMetrics {
    /// `kubelet_started_containers_total{container_type}`: containers started (`container` or
    /// `init_container`), restarts included.
    pub started: IntCounterVec,
    /// `kubelet_started_containers_errors_total{container_type,code}`: starts that failed, by
    /// the container's waiting reason (`ErrImagePull`, `RunContainerError`, ...).
    pub errors: IntCounterVec,
}

impl std::fmt::Debug for StartMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartMetrics").finish_non_exhaustive()
    }
}

/// The metrics of image pulls, cheap to clone: the containerd runtime's puller keeps a copy.
#[derive(Clone)]
pub struct PullMetrics {
    /// `kubelet_image_pulls_total{result}`: pulls from a registry by result, `success` or
    /// `error` (a pull of policy `Always` that found the image unchanged counts as a success).
    pub pulls: IntCounterVec,
    /// `kubelet_image_pull_duration_seconds`: how long one pull took, failed ones included.
    pub duration: Histogram,
}

impl std::fmt::Debug for PullMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullMetrics").finish_non_exhaustive()
    }
}

impl PullMetrics {
    /// Creates the pull metrics (not registered anywhere: [`Metrics::register`] does that).
    ///
    /// # Errors
    /// When a name or label is invalid (never for these).
    pub fn new() -> prometheus::Result<PullMetrics> {
        Ok(PullMetrics {
            pulls: IntCounterVec::new(
                Opts::new("kubelet_image_pulls_total", "Image pulls from a registry by result (success, error)."),
                &["result"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_image_pull_duration_seconds",
                    "Duration of one image pull from a registry (manifest, blobs and unpack), failed ones included.",
                )
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
            )?,
        })
    }
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// When they are already registered there.
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let metrics = Metrics {
            pod_worker_duration: Histogram::with_opts(HistogramOpts::new(
                "kubelet_pod_worker_duration_seconds",
                "Duration of one sync of one pod by its pod worker.",
            ))?,
            pod_sync_errors: IntCounter::new(
                "kubelet_pod_sync_errors_total",
                "Pod syncs that failed and were retried.",
            )?,
            pod_status_writes: IntCounter::new(
                "kubelet_pod_status_writes_total",
                "Pod statuses written through pods/status (unchanged statuses are not written).",
            )?,
            running_pods: IntGauge::new("kubelet_running_pods", "Pods that have a pod worker on this node.")?,
            node_status_updates: IntCounterVec::new(
                Opts::new("kubelet_node_status_updates_total", "Node status writes by result."),
                &["result"],
            )?,
            lease_renewals: IntCounterVec::new(
                Opts::new("kubelet_lease_renewals_total", "Node lease renewals by result."),
                &["result"],
            )?,
            image_pulls: PullMetrics::new()?,
            container_starts: StartMetrics {
                started: IntCounterVec::new(
                    Opts::new("kubelet_started_containers_total", "Containers started, by container type."),
                    &["container_type"],
                )?,
                errors: IntCounterVec::new(
                    Opts::new(
                        "kubelet_started_containers_errors_total",
                        "Container starts that failed, by container type and waiting reason.",
                    ),
                    &["container_type", "code"],
                )?,
            },
            probes: IntCounterVec::new(
                Opts::new("prober_probe_total", "Probes run, by probe type and result."),
                &["probe_type", "result"],
            )?,
            relist_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_pleg_relist_duration_seconds",
                    "Duration of listing every container the runtime runs (the periodic relist).",
                )
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            )?,
        };
        registry.register(Box::new(metrics.pod_worker_duration.clone()))?;
        registry.register(Box::new(metrics.pod_sync_errors.clone()))?;
        registry.register(Box::new(metrics.pod_status_writes.clone()))?;
        registry.register(Box::new(metrics.running_pods.clone()))?;
        registry.register(Box::new(metrics.node_status_updates.clone()))?;
        registry.register(Box::new(metrics.lease_renewals.clone()))?;
        registry.register(Box::new(metrics.image_pulls.pulls.clone()))?;
        registry.register(Box::new(metrics.image_pulls.duration.clone()))?;
        registry.register(Box::new(metrics.container_starts.started.clone()))?;
        registry.register(Box::new(metrics.container_starts.errors.clone()))?;
        registry.register(Box::new(metrics.probes.clone()))?;
        registry.register(Box::new(metrics.relist_duration.clone()))?;
        Ok(metrics)
    }
}
