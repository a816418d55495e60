//! Prometheus metrics shared by every controller, labelled by controller name.
//!
//! - `rkube_controller_syncs_total{controller}`: syncs run (one per key taken off the queue);
//! - `rkube_controller_sync_errors_total{controller}`: syncs that failed and were requeued;
//! - `rkube_controller_sync_duration_seconds{controller}`: how long syncs took.
//!
//! Work-queue and informer metrics come from rkube-informer, registered in the same registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The counters every controller's workers update.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    /// Syncs run, by controller.
    pub syncs: IntCounterVec,
    /// Failed syncs, by controller.
    pub errors: IntCounterVec,
    /// Sync duration, by controller.
    pub duration: HistogramVec,
}

impl ControllerMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// When they are already registered there.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let syncs = IntCounterVec::new(
            Opts::new("rkube_controller_syncs_total", "Syncs run, by controller."),
            &["controller"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("rkube_controller_sync_errors_total", "Syncs that failed and were requeued, by controller."),
            &["controller"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("rkube_controller_sync_duration_seconds", "How long one sync took, by controller."),
            &["controller"],
        )?;
        registry.register(Box::new(syncs.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(ControllerMetrics { syncs, errors, duration })
    }
}
