//! Prometheus metrics of the apiserver, registered in a registry passed in by the caller.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The apiserver's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Requests by verb, resource and HTTP code.
    pub requests: IntCounterVec,
    /// Request latency by verb and resource (for watches: until the stream starts).
    pub latency: HistogramVec,
    /// Watches currently open, by resource.
    pub open_watches: IntGaugeVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("rkube_apiserver_requests_total", "API requests by verb, resource and HTTP status code."),
            &["verb", "resource", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("rkube_apiserver_request_duration_seconds", "API request latency by verb and resource.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["verb", "resource"],
        )?;
        let open_watches = IntGaugeVec::new(
            Opts::new("rkube_apiserver_open_watches", "Watch streams currently open, by resource."),
            &["resource"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(open_watches.clone()))?;
        Ok(Metrics { requests, latency, open_watches })
    }
}
