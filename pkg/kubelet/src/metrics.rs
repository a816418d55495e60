//! The kubelet's Prometheus metrics (named like the Kubernetes kubelet's where one exists).

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Kubernetes' buckets for pod start-up (`podStartupDurationBuckets` in the kubelet's
/// metrics.go), in seconds.
pub const POD_STARTUP_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0,
    600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// Buckets for one step of a pod's start-up (rkube's own metric): fine below a second, where
/// the steps are.
pub const STEP_BUCKETS: [f64; 20] =
    [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0];

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
    /// Pod start-up: the SLI, the total, each step, and the runtime's operations
    /// ([`crate::startup`]).
    pub startup: StartupMetrics,
}

/// The metrics of pod start-up, cheap to clone: the start-up tracker ([`crate::startup`])
/// keeps a copy, and the containerd runtime times its operations with it.
#[derive(Clone)]
pub struct StartupMetrics {
    /// `kubelet_pod_start_sli_duration_seconds`: from the pod's `creationTimestamp` to the
    /// kubelet's watch showing it Running, less the time spent pulling images (Kubernetes'
    /// pod start-up SLI; the timestamp has whole seconds, as on Kubernetes).
    pub sli: Histogram,
    /// `kubelet_pod_start_duration_seconds`: from the kubelet first seeing the pod to its
    /// Running status being written.
    pub total: Histogram,
    /// `kubelet_pod_start_step_duration_seconds{step}`: one step of a pod's start-up (see
    /// [`crate::startup::Step`]), observed while the pod has not yet been seen Running.
    pub steps: HistogramVec,
    /// `kubelet_runtime_operations_duration_seconds{operation_type}`: one call to the runtime
    /// (`run_podsandbox`, `image_status`, `create_container`, `start_container`,
    /// `list_containers`, ...), named after the CRI calls Kubernetes' kubelet counts.
    pub operations: HistogramVec,
}

impl std::fmt::Debug for StartupMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartupMetrics").finish_non_exhaustive()
    }
}

impl StartupMetrics {
    /// Creates the start-up metrics (not registered anywhere: [`Metrics::register`] does that).
    ///
    /// # Errors
    /// When a name or label is invalid (never for these).
    pub fn new() -> prometheus::Result<StartupMetrics> {
        Ok(StartupMetrics {
            sli: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_pod_start_sli_duration_seconds",
                    "Duration in seconds to start a pod, excluding time to pull images, measured from pod creation \
                     timestamp to when it is observed Running via watch.",
                )
                .buckets(POD_STARTUP_BUCKETS.to_vec()),
            )?,
            total: Histogram::with_opts(
                HistogramOpts::new(
                    "kubelet_pod_start_duration_seconds",
                    "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run.",
                )
                .buckets(POD_STARTUP_BUCKETS.to_vec()),
            )?,
            steps: HistogramVec::new(
                HistogramOpts::new(
                    "kubelet_pod_start_step_duration_seconds",
                    "Duration in seconds of one step of a pod's start-up, by step.",
                )
                .buckets(STEP_BUCKETS.to_vec()),
                &["step"],
            )?,
            operations: HistogramVec::new(
                HistogramOpts::new(
                    "kubelet_runtime_operations_duration_seconds",
                    "Duration in seconds of runtime operations. Broken down by operation type.",
                )
                .buckets(prometheus::exponential_buckets(0.005, 2.5, 14)?),
                &["operation_type"],
            )?,
        })
    }

    /// Observes `took` for runtime operation `operation`.
    pub fn operation(&self, operation: &str, took: std::time::Duration) {
        self.operations.with_label_values(&[operation]).observe(took.as_secs_f64());
    }
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
            startup: StartupMetrics::new()?,
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
        registry.register(Box::new(metrics.startup.sli.clone()))?;
        registry.register(Box::new(metrics.startup.total.clone()))?;
        registry.register(Box::new(metrics.startup.steps.clone()))?;
        registry.register(Box::new(metrics.startup.operations.clone()))?;
        Ok(metrics)
    }
}
