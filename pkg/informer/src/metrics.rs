//! Prometheus metrics of the reflectors, labelled by resource (`resource="pods"`).
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `rkube_informer_lists_total` | counter | complete LISTs (all pages) that succeeded |
//! | `rkube_informer_watches_total` | counter | watch streams started |
//! | `rkube_informer_reconnects_total` | counter | watches started again from a known resourceVersion after one ended or failed (no relist) |
//! | `rkube_informer_events_total{type}` | counter | watch events received, by `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR` |
//! | `rkube_informer_relists_total` | counter | relists because the resourceVersion expired (410) |
//! | `rkube_informer_last_resource_version` | gauge | the last resourceVersion the reflector saw (list, event or bookmark) |
//! | `rkube_informer_watch_duration_seconds` | histogram | how long each watch stream lasted |
//! | `rkube_informer_backoff_seconds` | gauge | the delay the reflector is waiting before its next attempt; 0 while a watch runs |
//!
//! The metrics are registered into a registry the caller passes in (no globals), once per
//! registry: a second [`InformerMetrics::register`] on the same registry fails. Informers of the
//! same resource (say, pods in two namespaces) share one set of series; the gauges then show
//! whichever reflector wrote last.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Watch event types, as the `type` label of `rkube_informer_events_total` spells them.
pub const EVENT_TYPES: [&str; 5] = ["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"];

/// The informer metric families, registered in one registry.
#[derive(Clone, Debug)]
pub struct InformerMetrics {
    lists: IntCounterVec,
    watches: IntCounterVec,
    reconnects: IntCounterVec,
    events: IntCounterVec,
    relists: IntCounterVec,
    last_resource_version: IntGaugeVec,
    watch_duration: HistogramVec,
    backoff: GaugeVec,
}

impl InformerMetrics {
    /// Creates the metric families and registers them in `registry`.
    ///
    /// Fails when they are already registered there (one `InformerMetrics` per registry; clone
    /// it to share).
    pub fn register(registry: &Registry) -> Result<InformerMetrics, prometheus::Error> {
        let by_resource = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["resource"]);
        let metrics = InformerMetrics {
            lists: by_resource("rkube_informer_lists_total", "Complete LISTs (all pages) that succeeded.")?,
            watches: by_resource("rkube_informer_watches_total", "Watch streams started.")?,
            reconnects: by_resource(
                "rkube_informer_reconnects_total",
                "Watches started again from a known resourceVersion after one ended or failed.",
            )?,
            events: IntCounterVec::new(
                Opts::new("rkube_informer_events_total", "Watch events received, by type."),
                &["resource", "type"],
            )?,
            relists: by_resource("rkube_informer_relists_total", "Relists because the resourceVersion expired (410).")?,
            last_resource_version: IntGaugeVec::new(
                Opts::new("rkube_informer_last_resource_version", "The last resourceVersion the reflector saw."),
                &["resource"],
            )?,
            watch_duration: HistogramVec::new(
                HistogramOpts::new("rkube_informer_watch_duration_seconds", "How long each watch stream lasted.")
                    .buckets(vec![0.1, 1.0, 5.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0]),
                &["resource"],
            )?,
            backoff: GaugeVec::new(
                Opts::new(
                    "rkube_informer_backoff_seconds",
                    "The delay the reflector waits before its next attempt; 0 while a watch runs.",
                ),
                &["resource"],
            )?,
        };
        registry.register(Box::new(metrics.lists.clone()))?;
        registry.register(Box::new(metrics.watches.clone()))?;
        registry.register(Box::new(metrics.reconnects.clone()))?;
        registry.register(Box::new(metrics.events.clone()))?;
        registry.register(Box::new(metrics.relists.clone()))?;
        registry.register(Box::new(metrics.last_resource_version.clone()))?;
        registry.register(Box::new(metrics.watch_duration.clone()))?;
        registry.register(Box::new(metrics.backoff.clone()))?;
        Ok(metrics)
    }

    /// The series of one resource (its plural, e.g. `"pods"`), ready to update.
    pub fn resource(&self, resource: &str) -> ResourceMetrics {
        let labels = [resource];
        ResourceMetrics {
            lists: self.lists.with_label_values(&labels),
            watches: self.watches.with_label_values(&labels),
            reconnects: self.reconnects.with_label_values(&labels),
            events: EVENT_TYPES.map(|kind| self.events.with_label_values(&[resource, kind])),
            relists: self.relists.with_label_values(&labels),
            last_resource_version: self.last_resource_version.with_label_values(&labels),
            watch_duration: self.watch_duration.with_label_values(&labels),
            backoff: self.backoff.with_label_values(&labels),
        }
    }
}

/// The metric series of one resource; cheap to clone.
#[derive(Clone, Debug)]
pub struct ResourceMetrics {
    pub(crate) lists: IntCounter,
    pub(crate) watches: IntCounter,
    pub(crate) reconnects: IntCounter,
    /// Indexed like [`EVENT_TYPES`].
    events: [IntCounter; 5],
    pub(crate) relists: IntCounter,
    last_resource_version: IntGauge,
    pub(crate) watch_duration: Histogram,
    pub(crate) backoff: Gauge,
}

impl ResourceMetrics {
    /// Series registered in a registry of their own, for reflectors whose metrics nobody reads
    /// (and for tests).
    pub fn unregistered(resource: &str) -> Result<ResourceMetrics, prometheus::Error> {
        Ok(InformerMetrics::register(&Registry::new())?.resource(resource))
    }

    /// Counts one watch event of `kind` (one of [`EVENT_TYPES`]).
    pub(crate) fn event(&self, kind: &str) {
        if let Some(index) = EVENT_TYPES.iter().position(|known| *known == kind) {
            self.events[index].inc();
        }
    }

    /// Records the last resourceVersion seen, when it is a number (etcd revisions are).
    pub(crate) fn resource_version(&self, resource_version: &str) {
        if let Ok(value) = resource_version.parse::<i64>() {
            self.last_resource_version.set(value);
        }
    }
}
