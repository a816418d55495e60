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
        };
        registry.register(Box::new(metrics.pod_worker_duration.clone()))?;
        registry.register(Box::new(metrics.pod_sync_errors.clone()))?;
        registry.register(Box::new(metrics.pod_status_writes.clone()))?;
        registry.register(Box::new(metrics.running_pods.clone()))?;
        registry.register(Box::new(metrics.node_status_updates.clone()))?;
        registry.register(Box::new(metrics.lease_renewals.clone()))?;
        Ok(metrics)
    }
}
