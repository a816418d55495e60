//! The scheduler's Prometheus metrics (served on `/metrics`). Names follow kube-scheduler's,
//! with the `rkube_scheduler_` prefix:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `rkube_scheduler_schedule_attempts_total{result}` | counter | attempts by result: `scheduled`, `unschedulable`, `error` |
//! | `rkube_scheduler_e2e_scheduling_duration_seconds` | histogram | from taking a pod off the queue to its binding being accepted |
//! | `rkube_scheduler_pending_pods{queue}` | gauge | pods waiting in `active`, `backoff`, `unschedulable` |
//! | `rkube_scheduler_plugin_duration_seconds{plugin}` | histogram | time one plugin took over all nodes in one attempt |
//! | `rkube_scheduler_api_calls_total{call}` | counter | requests the scheduler sent: `bind`, `status`, `event` (informers count theirs in `rkube_informer_*`) |

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The metrics; cheap to clone (handles to the same series).
#[derive(Clone, Debug)]
pub struct SchedulerMetrics {
    /// `rkube_scheduler_schedule_attempts_total{result}`.
    pub attempts: IntCounterVec,
    /// `rkube_scheduler_e2e_scheduling_duration_seconds`.
    pub e2e_duration: Histogram,
    /// `rkube_scheduler_scheduling_cycle_duration_seconds`.
    pub cycle_duration: Histogram,
    /// `rkube_scheduler_pending_pods{queue}`.
    pub pending: IntGaugeVec,
    /// `rkube_scheduler_plugin_duration_seconds{plugin}`.
    pub plugin_duration: HistogramVec,
    /// `rkube_scheduler_api_calls_total{call}`.
    pub api_calls: IntCounterVec,
}

impl SchedulerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<SchedulerMetrics> {
        let attempts = IntCounterVec::new(
            Opts::new(
                "rkube_scheduler_schedule_attempts_total",
                "Scheduling attempts by result (scheduled, unschedulable, error).",
            ),
            &["result"],
        )?;
        let e2e_duration = Histogram::with_opts(
            HistogramOpts::new(
                "rkube_scheduler_e2e_scheduling_duration_seconds",
                "Time from taking a pod off the queue to its binding being accepted.",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
        )?;
        let cycle_duration = Histogram::with_opts(
            HistogramOpts::new(
                "rkube_scheduler_scheduling_cycle_duration_seconds",
                "Time the scheduling loop spent on one pod, from taking it off the queue to handing its \
                 binding off (or marking it unschedulable). Cycles run one after another, so one over \
                 the mean bounds the pods per second on any number of cores.",
            )
            .buckets(prometheus::exponential_buckets(0.00005, 2.0, 16)?),
        )?;
        let pending = IntGaugeVec::new(
            Opts::new("rkube_scheduler_pending_pods", "Pending pods by queue (active, backoff, unschedulable)."),
            &["queue"],
        )?;
        let plugin_duration = HistogramVec::new(
            HistogramOpts::new(
                "rkube_scheduler_plugin_duration_seconds",
                "Time one plugin took over all candidate nodes in one scheduling attempt.",
            )
            .buckets(prometheus::exponential_buckets(0.00001, 4.0, 10)?),
            &["plugin"],
        )?;
        let api_calls = IntCounterVec::new(
            Opts::new(
                "rkube_scheduler_api_calls_total",
                "API requests sent by the scheduler loop (bind, status, event).",
            ),
            &["call"],
        )?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(e2e_duration.clone()))?;
        registry.register(Box::new(cycle_duration.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(plugin_duration.clone()))?;
        registry.register(Box::new(api_calls.clone()))?;
        for result in ["scheduled", "unschedulable", "error"] {
            attempts.with_label_values(&[result]);
        }
        for queue in ["active", "backoff", "unschedulable"] {
            pending.with_label_values(&[queue]);
        }
        for call in ["bind", "status", "event"] {
            api_calls.with_label_values(&[call]);
        }
        Ok(SchedulerMetrics { attempts, e2e_duration, cycle_duration, pending, plugin_duration, api_calls })
    }
}
