//! What a pod asks for and what a node offers, in numbers: CPU (millicores), memory (bytes) and
//! the pod count.
//!
//! A pod's request is what Kubernetes calls its "effective request": the sum over its
//! containers, or the largest init container if that is more (init containers run one at a
//! time, before the others). A node offers `status.allocatable` (or `status.capacity` when
//! allocatable is missing). A quantity that cannot be read counts as zero and is logged once per
//! object by the caller; it never stops scheduling.
//!
//! Not modelled: pod overhead, extended resources, ephemeral storage, sidecar init containers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{parse_milli, parse_units};

/// CPU a container without a CPU request is assumed to use when *scoring* (not filtering),
/// as Kubernetes does (`DefaultMilliCPURequest`), so that many request-less pods still spread.
pub const DEFAULT_SCORING_MILLI_CPU: i64 = 100;
/// Memory a container without a memory request is assumed to use when scoring (200 MB).
pub const DEFAULT_SCORING_MEMORY: i64 = 200 * 1024 * 1024;

/// An amount of the three resources the scheduler accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores (`1` CPU = 1000).
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    /// `self + other`, saturating.
    #[must_use]
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory: self.memory.saturating_add(other.memory),
            pods: self.pods.saturating_add(other.pods),
        }
    }

    /// `self - other`, saturating.
    #[must_use]
    pub fn minus(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.saturating_sub(other.milli_cpu),
            memory: self.memory.saturating_sub(other.memory),
            pods: self.pods.saturating_sub(other.pods),
        }
    }
}

/// Reads `cpu` and `memory` out of a resource list (requests or allocatable). A quantity that
/// cannot be parsed counts as zero.
fn read_list(list: Option<&BTreeMap<String, Quantity>>) -> (Option<i64>, Option<i64>, Option<i64>) {
    let Some(list) = list else { return (None, None, None) };
    let cpu = list.get("cpu").map(|q| parse_milli(&q.0).unwrap_or(0));
    let memory = list.get("memory").map(|q| parse_units(&q.0).unwrap_or(0));
    let pods = list.get("pods").map(|q| parse_units(&q.0).unwrap_or(0));
    (cpu, memory, pods)
}

/// What a pod requests, for filtering (`for_scoring == false`: missing requests are zero) or
/// for scoring (`true`: missing CPU and memory requests count as the defaults above).
/// The pod count is always 1.
pub fn pod_requests(pod: &Pod, for_scoring: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources { pods: 1, ..Resources::default() } };
    let container = |c: &k8s_openapi::api::core::v1::Container| {
        let (cpu, memory, _) = read_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
        if for_scoring {
            (cpu.unwrap_or(DEFAULT_SCORING_MILLI_CPU), memory.unwrap_or(DEFAULT_SCORING_MEMORY))
        } else {
            (cpu.unwrap_or(0), memory.unwrap_or(0))
        }
    };
    let (mut cpu, mut memory) = (0i64, 0i64);
    for (c, m) in spec.containers.iter().map(container) {
        cpu = cpu.saturating_add(c);
        memory = memory.saturating_add(m);
    }
    for (c, m) in spec.init_containers.iter().flatten().map(container) {
        cpu = cpu.max(c);
        memory = memory.max(m);
    }
    Resources { milli_cpu: cpu, memory, pods: 1 }
}

/// What a node offers to pods: `status.allocatable`, falling back to `status.capacity` per
/// resource. A missing resource is zero (so a node that reports no `pods` allocatable takes no
/// pods, as in Kubernetes).
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let (a_cpu, a_mem, a_pods) = read_list(status.and_then(|s| s.allocatable.as_ref()));
    let (c_cpu, c_mem, c_pods) = read_list(status.and_then(|s| s.capacity.as_ref()));
    Resources {
        milli_cpu: a_cpu.or(c_cpu).unwrap_or(0),
        memory: a_mem.or(c_mem).unwrap_or(0),
        pods: a_pods.or(c_pods).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn requests_add_up_over_containers_and_init_containers_take_the_max() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}}]}}));
        assert_eq!(pod_requests(&p, false), Resources { milli_cpu: 1000, memory: 128 << 20, pods: 1 });
    }

    #[test]
    fn missing_requests_are_zero_for_filtering_and_defaults_for_scoring() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(pod_requests(&p, false), Resources { milli_cpu: 0, memory: 0, pods: 1 });
        assert_eq!(
            pod_requests(&p, true),
            Resources { milli_cpu: DEFAULT_SCORING_MILLI_CPU, memory: DEFAULT_SCORING_MEMORY, pods: 1 }
        );
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "3500m"}}}))
        .unwrap();
        assert_eq!(node_allocatable(&node), Resources { milli_cpu: 3500, memory: 8 << 30, pods: 110 });
    }
}
