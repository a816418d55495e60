//! Kubernetes defaulting for the kinds in the registry: what the apiserver fills in when a
//! client leaves a field out, following `pkg/apis/core/v1/defaults.go` and
//! `pkg/apis/apps/v1/defaults.go`.
//!
//! Invariants (each has a test below):
//! - a value the client set is never overwritten;
//! - defaulting is idempotent: applying it twice gives the same object as applying it once;
//! - a pod template inside a ReplicaSet or Deployment gets the same spec defaults as a pod,
//!   minus the pod-only ones (`enableServiceLinks`, requests copied from limits, `status.phase`).
//!
//! A missing `spec` of a pod or Service is defaulted as an empty one,
//! as Kubernetes (where `spec` is never absent) does.
//!
//! Not promised: every Kubernetes default. Left out, among others: ephemeral containers,
//! volume sources other than `configMap` and `secret`, pod-level resources, and the
//! defaults Kubernetes sets outside defaulting (a service's `clusterIP` and `ipFamilies`
//! come from the apiserver's allocators, not from here).
//!
//! Kubernetes also sets a pod's `status.phase: Pending` in the pod strategy's
//! `PrepareForCreate`; here [`default_pod`] does it when the phase is missing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Container, ContainerPort, Endpoints, Namespace, Node, Pod, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, Service, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The `terminationGracePeriodSeconds` Kubernetes gives a pod that does not set one.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// The scheduler a pod goes to when it names none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Where a container's termination message is read from by default.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// How long a `ClientIP` session affinity sticks by default (3 hours).
pub const DEFAULT_CLIENT_IP_SERVICE_AFFINITY_SECONDS: i32 = 10800;
/// File mode of `configMap` and `secret` volume files by default (0644).
pub const DEFAULT_VOLUME_FILE_MODE: i32 = 0o644;

fn set_if_none<T>(field: &mut Option<T>, value: impl FnOnce() -> T) {
    if field.is_none() {
        *field = Some(value());
    }
}

/// The `imagePullPolicy` Kubernetes picks for `image`: `Always` when the tag is `latest` or
/// there is neither tag nor digest, `IfNotPresent` otherwise (an empty image included).
pub fn default_image_pull_policy(image: &str) -> &'static str {
    if image.is_empty() {
        return "IfNotPresent";
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let last_component = name.rsplit('/').next().unwrap_or(name);
    let tag = match last_component.split_once(':') {
        Some((_, tag)) => tag,
        None if digest.is_some() => "",
        None => "latest",
    };
    if tag == "latest" { "Always" } else { "IfNotPresent" }
}

/// Container defaults: `imagePullPolicy`, `terminationMessagePath`,
/// `terminationMessagePolicy`, port protocols and probe settings.
pub fn default_container(container: &mut Container) {
    if container.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        let image = container.image.as_deref().unwrap_or_default();
        container.image_pull_policy = Some(default_image_pull_policy(image).to_string());
    }
    set_if_none(&mut container.termination_message_path, || DEFAULT_TERMINATION_MESSAGE_PATH.to_string());
    set_if_none(&mut container.termination_message_policy, || "File".to_string());
    for port in container.ports.iter_mut().flatten() {
        default_container_port(port);
    }
    for env in container.env.iter_mut().flatten() {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|from| from.field_ref.as_mut()) {
            set_if_none(&mut field_ref.api_version, || "v1".to_string());
        }
    }
    for probe in [&mut container.liveness_probe, &mut container.readiness_probe, &mut container.startup_probe]
        .into_iter()
        .flatten()
    {
        default_probe(probe);
    }
}

/// A container port's `protocol` defaults to `TCP`.
pub fn default_container_port(port: &mut ContainerPort) {
    set_if_none(&mut port.protocol, || "TCP".to_string());
}

/// Probe defaults: timeout 1s, period 10s, success threshold 1, failure threshold 3, and for
/// an HTTP probe path `/` and scheme `HTTP`.
pub fn default_probe(probe: &mut Probe) {
    set_if_none(&mut probe.timeout_seconds, || 1);
    set_if_none(&mut probe.period_seconds, || 10);
    set_if_none(&mut probe.success_threshold, || 1);
    set_if_none(&mut probe.failure_threshold, || 3);
    if let Some(http) = probe.http_get.as_mut() {
        set_if_none(&mut http.path, || "/".to_string());
        set_if_none(&mut http.scheme, || "HTTP".to_string());
    }
}

/// Pod spec defaults, shared by pods and the pod templates of ReplicaSets and Deployments:
/// `restartPolicy: Always`, `terminationGracePeriodSeconds: 30`, `dnsPolicy: ClusterFirst`,
/// `schedulerName: default-scheduler`, an empty `securityContext`, host ports on the host
/// network, volume file modes, and every container's and init container's defaults.
pub fn default_pod_spec(spec: &mut PodSpec) {
    set_if_none(&mut spec.restart_policy, || "Always".to_string());
    set_if_none(&mut spec.termination_grace_period_seconds, || DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    set_if_none(&mut spec.dns_policy, || "ClusterFirst".to_string());
    set_if_none(&mut spec.scheduler_name, || DEFAULT_SCHEDULER_NAME.to_string());
    set_if_none(&mut spec.security_context, PodSecurityContext::default);
    let host_network = spec.host_network.unwrap_or(false);
    for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        default_container(container);
        if host_network {
            // On the host network a container port is a host port.
            for port in container.ports.iter_mut().flatten() {
                if port.host_port.unwrap_or(0) == 0 {
                    port.host_port = Some(port.container_port);
                }
            }
        }
    }
    for volume in spec.volumes.iter_mut().flatten() {
        if let Some(config_map) = volume.config_map.as_mut() {
            set_if_none(&mut config_map.default_mode, || DEFAULT_VOLUME_FILE_MODE);
        }
        if let Some(secret) = volume.secret.as_mut() {
            set_if_none(&mut secret.default_mode, || DEFAULT_VOLUME_FILE_MODE);
        }
    }
}

/// Pod template defaults: the spec's, when there is a spec.
pub fn default_pod_template(template: &mut PodTemplateSpec) {
    if let Some(spec) = template.spec.as_mut() {
        default_pod_spec(spec);
    }
}

/// Pod defaults: [`default_pod_spec`] plus what only pods get: `enableServiceLinks: true`,
/// each container's resource requests copied from its limits where missing, and
/// `status.phase: Pending` when the phase is missing.
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    default_pod_spec(spec);
    set_if_none(&mut spec.enable_service_links, || true);
    for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        let Some(resources) = container.resources.as_mut() else { continue };
        let Some(limits) = resources.limits.as_ref().filter(|l| !l.is_empty()) else { continue };
        let requests = resources.requests.get_or_insert_with(BTreeMap::new);
        for (name, quantity) in limits {
            requests.entry(name.clone()).or_insert_with(|| quantity.clone());
        }
    }
    let status = pod.status.get_or_insert_with(Default::default);
    set_if_none(&mut status.phase, || "Pending".to_string());
}

/// ReplicaSet defaults: `replicas: 1` and the template's pod spec defaults.
pub fn default_replica_set(replica_set: &mut ReplicaSet) {
    let spec = &mut replica_set.spec;
    set_if_none(&mut spec.replicas, || 1);
    if let Some(template) = spec.template.as_mut() {
        default_pod_template(template);
    }
}

/// Deployment defaults (apps/v1): `replicas: 1`, a `RollingUpdate` strategy with
/// `maxSurge` and `maxUnavailable` of `25%`, `revisionHistoryLimit: 10`,
/// `progressDeadlineSeconds: 600`, and the template's pod spec defaults.
pub fn default_deployment(deployment: &mut Deployment) {
    let spec = &mut deployment.spec;
    set_if_none(&mut spec.replicas, || 1);
    let strategy = spec.strategy.get_or_insert_with(DeploymentStrategy::default);
    if strategy.type_.as_deref().is_none_or(str::is_empty) {
        strategy.type_ = Some("RollingUpdate".to_string());
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy.rolling_update.get_or_insert_with(RollingUpdateDeployment::default);
        set_if_none(&mut rolling.max_unavailable, || IntOrString::String("25%".to_string()));
        set_if_none(&mut rolling.max_surge, || IntOrString::String("25%".to_string()));
    }
    set_if_none(&mut spec.revision_history_limit, || 10);
    set_if_none(&mut spec.progress_deadline_seconds, || 600);
    default_pod_template(&mut spec.template);
}

/// Service defaults: `type: ClusterIP`, `sessionAffinity: None` (or a 3-hour `ClientIP`
/// timeout), port protocol `TCP`, `targetPort` equal to `port` when missing, and the
/// traffic policies (`internalTrafficPolicy: Cluster`; `externalTrafficPolicy: Cluster` for
/// externally reachable services; `allocateLoadBalancerNodePorts: true` for load balancers).
pub fn default_service(service: &mut Service) {
    let spec = service.spec.get_or_insert_with(Default::default);
    if spec.session_affinity.as_deref().is_none_or(str::is_empty) {
        spec.session_affinity = Some("None".to_string());
    }
    match spec.session_affinity.as_deref() {
        Some("None") => spec.session_affinity_config = None,
        Some("ClientIP") => {
            let config = spec.session_affinity_config.get_or_insert_with(SessionAffinityConfig::default);
            let client_ip = config.client_ip.get_or_insert_with(ClientIPConfig::default);
            set_if_none(&mut client_ip.timeout_seconds, || DEFAULT_CLIENT_IP_SERVICE_AFFINITY_SECONDS);
        }
        _ => {}
    }
    if spec.type_.as_deref().is_none_or(str::is_empty) {
        spec.type_ = Some("ClusterIP".to_string());
    }
    for port in spec.ports.iter_mut().flatten() {
        set_if_none(&mut port.protocol, || "TCP".to_string());
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(n)) => *n == 0,
            Some(IntOrString::String(s)) => s.is_empty(),
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    let service_type = spec.type_.as_deref().unwrap_or_default();
    let externally_reachable = matches!(service_type, "LoadBalancer" | "NodePort")
        || (service_type == "ClusterIP" && spec.external_ips.as_ref().is_some_and(|ips| !ips.is_empty()));
    if externally_reachable && spec.external_traffic_policy.as_deref().is_none_or(str::is_empty) {
        spec.external_traffic_policy = Some("Cluster".to_string());
    }
    if matches!(service_type, "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_if_none(&mut spec.internal_traffic_policy, || "Cluster".to_string());
    }
    if service_type == "LoadBalancer" {
        set_if_none(&mut spec.allocate_load_balancer_node_ports, || true);
    }
}

/// Endpoints defaults: each port's `protocol` is `TCP`.
pub fn default_endpoints(endpoints: &mut Endpoints) {
    for subset in endpoints.subsets.iter_mut().flatten() {
        for port in subset.ports.iter_mut().flatten() {
            set_if_none(&mut port.protocol, || "TCP".to_string());
        }
    }
}

/// Namespace defaults: `status.phase: Active` when the phase is missing.
pub fn default_namespace(namespace: &mut Namespace) {
    let status = namespace.status.get_or_insert_with(Default::default);
    set_if_none(&mut status.phase, || "Active".to_string());
}

/// Node defaults: `status.allocatable` is a copy of `status.capacity` when missing.
pub fn default_node(node: &mut Node) {
    if let Some(status) = node.status.as_mut()
        && status.allocatable.is_none()
    {
        status.allocatable = status.capacity.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("valid pod")
    }

    #[test]
    fn image_pull_policy_is_always_only_for_latest_or_untagged_images() {
        assert_eq!(default_image_pull_policy("nginx"), "Always");
        assert_eq!(default_image_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_image_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(default_image_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_image_pull_policy("localhost:5000/nginx:1.27"), "IfNotPresent");
        assert_eq!(default_image_pull_policy("nginx@sha256:abcd"), "IfNotPresent");
        assert_eq!(default_image_pull_policy("nginx:latest@sha256:abcd"), "Always");
    }

    #[test]
    fn a_bare_pod_gets_the_kubernetes_defaults() {
        let mut p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}
        }));
        default_pod(&mut p);
        let v = serde_json::to_value(&p).expect("encodes");
        assert_eq!(v["spec"]["restartPolicy"], "Always");
        assert_eq!(v["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(v["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(v["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(v["spec"]["securityContext"], json!({}));
        assert_eq!(v["spec"]["enableServiceLinks"], true);
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(v["status"]["phase"], "Pending");
    }

    #[test]
    fn defaulting_never_overwrites_what_the_client_set() {
        let mut p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "dnsPolicy": "Default",
                "schedulerName": "mine", "enableServiceLinks": false,
                "containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Never",
                                "ports": [{"containerPort": 53, "protocol": "UDP"}]}]
            },
            "status": {"phase": "Running"}
        }));
        let before = serde_json::to_value(&p).expect("encodes");
        default_pod(&mut p);
        let after = serde_json::to_value(&p).expect("encodes");
        for pointer in [
            "/spec/restartPolicy",
            "/spec/terminationGracePeriodSeconds",
            "/spec/dnsPolicy",
            "/spec/schedulerName",
            "/spec/enableServiceLinks",
            "/spec/containers/0/imagePullPolicy",
            "/spec/containers/0/ports/0/protocol",
            "/status/phase",
        ] {
            assert_eq!(before.pointer(pointer), after.pointer(pointer), "{pointer}");
        }
    }

    #[test]
    fn defaulting_twice_is_the_same_as_defaulting_once() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}
        }))
        .expect("valid deployment");
        default_deployment(&mut d);
        let once = d.clone();
        default_deployment(&mut d);
        assert_eq!(once, d);

        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}));
        default_pod(&mut p);
        let once = p.clone();
        default_pod(&mut p);
        assert_eq!(once, p);
    }

    #[test]
    fn deployment_gets_replicas_strategy_and_limits() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}
        }))
        .expect("valid deployment");
        default_deployment(&mut d);
        let v = serde_json::to_value(&d).expect("encodes");
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(
            v["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(v["spec"]["progressDeadlineSeconds"], 600);
        let template = &v["spec"]["template"]["spec"];
        assert_eq!(template["restartPolicy"], "Always");
        assert_eq!(template["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(template.get("enableServiceLinks").is_none(), "pod-only default leaked into a template");
    }

    #[test]
    fn recreate_deployment_gets_no_rolling_update_parameters() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"selector": {}, "strategy": {"type": "Recreate"}, "template": {}}
        }))
        .expect("valid deployment");
        default_deployment(&mut d);
        let strategy = d.spec.strategy.expect("strategy kept");
        assert!(strategy.rolling_update.is_none());
    }

    #[test]
    fn replica_set_gets_one_replica_and_template_defaults() {
        let mut rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "rs"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }))
        .expect("valid replicaset");
        default_replica_set(&mut rs);
        let v = serde_json::to_value(&rs).expect("encodes");
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(v["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn service_ports_get_tcp_and_target_port_equal_to_port() {
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}
        }))
        .expect("valid service");
        default_service(&mut svc);
        let v = serde_json::to_value(&svc).expect("encodes");
        assert_eq!(v["spec"]["type"], "ClusterIP");
        assert_eq!(v["spec"]["sessionAffinity"], "None");
        assert_eq!(v["spec"]["internalTrafficPolicy"], "Cluster");
        assert!(v["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(v["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(v["spec"]["ports"][1]["targetPort"], "https");
    }

    #[test]
    fn pod_requests_default_to_limits_but_template_requests_do_not() {
        let mut p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "x",
                                     "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]}
        }));
        default_pod(&mut p);
        let v = serde_json::to_value(&p).expect("encodes");
        assert_eq!(v["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "500m", "memory": "1Gi"}));
    }

    #[test]
    fn namespace_phase_defaults_to_active_and_node_allocatable_to_capacity() {
        let mut ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "n"}})).expect("valid namespace");
        default_namespace(&mut ns);
        assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Active"));

        let mut node: Node = serde_json::from_value(
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4", "pods": "110"}}}),
        )
        .expect("valid node");
        default_node(&mut node);
        let status = node.status.expect("status kept");
        assert_eq!(status.allocatable, status.capacity);
    }

    #[test]
    fn host_network_pods_expose_container_ports_on_the_host() {
        let mut p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}]}
        }));
        default_pod(&mut p);
        let v = serde_json::to_value(&p).expect("encodes");
        assert_eq!(v["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
    }
}
