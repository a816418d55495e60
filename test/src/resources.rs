//! The resources the apiserver serves, with their paths and a minimal valid object of each.
//!
//! The table mirrors the Kubernetes API (group, version, kind, plural, scope), not rkube's own
//! registry, so the tests check rkube against Kubernetes rather than against itself.

use serde_json::{Value, json};

/// One served resource type.
#[derive(Clone, Copy, Debug)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version, e.g. `v1`.
    pub version: &'static str,
    /// Kind, e.g. `Pod`.
    pub kind: &'static str,
    /// Plural resource name used in paths, e.g. `pods`.
    pub plural: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

/// core/v1 Namespace.
pub const NAMESPACES: Resource = core("Namespace", "namespaces", false);
/// core/v1 Pod.
pub const PODS: Resource = core("Pod", "pods", true);
/// core/v1 Node.
pub const NODES: Resource = core("Node", "nodes", false);
/// core/v1 Service.
pub const SERVICES: Resource = core("Service", "services", true);
/// core/v1 Endpoints.
pub const ENDPOINTS: Resource = core("Endpoints", "endpoints", true);
/// core/v1 Event.
pub const EVENTS: Resource = core("Event", "events", true);
/// core/v1 ConfigMap.
pub const CONFIG_MAPS: Resource = core("ConfigMap", "configmaps", true);
/// core/v1 Secret.
pub const SECRETS: Resource = core("Secret", "secrets", true);
/// apps/v1 ReplicaSet.
pub const REPLICA_SETS: Resource =
    Resource { group: "apps", version: "v1", kind: "ReplicaSet", plural: "replicasets", namespaced: true };
/// apps/v1 Deployment.
pub const DEPLOYMENTS: Resource =
    Resource { group: "apps", version: "v1", kind: "Deployment", plural: "deployments", namespaced: true };
/// coordination.k8s.io/v1 Lease.
pub const LEASES: Resource =
    Resource { group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases", namespaced: true };

/// core/v1 ServiceAccount.
pub const SERVICE_ACCOUNTS: Resource = core("ServiceAccount", "serviceaccounts", true);
/// rbac.authorization.k8s.io/v1 Role.
pub const ROLES: Resource = rbac("Role", "roles", true);
/// rbac.authorization.k8s.io/v1 ClusterRole.
pub const CLUSTER_ROLES: Resource = rbac("ClusterRole", "clusterroles", false);
/// rbac.authorization.k8s.io/v1 RoleBinding.
pub const ROLE_BINDINGS: Resource = rbac("RoleBinding", "rolebindings", true);
/// rbac.authorization.k8s.io/v1 ClusterRoleBinding.
pub const CLUSTER_ROLE_BINDINGS: Resource = rbac("ClusterRoleBinding", "clusterrolebindings", false);

/// core/v1 ResourceQuota.
pub const RESOURCE_QUOTAS: Resource = core("ResourceQuota", "resourcequotas", true);
/// core/v1 LimitRange.
pub const LIMIT_RANGES: Resource = core("LimitRange", "limitranges", true);
/// scheduling.k8s.io/v1 PriorityClass.
pub const PRIORITY_CLASSES: Resource = Resource {
    group: "scheduling.k8s.io",
    version: "v1",
    kind: "PriorityClass",
    plural: "priorityclasses",
    namespaced: false,
};

/// policy/v1 PodDisruptionBudget.
pub const POD_DISRUPTION_BUDGETS: Resource = Resource {
    group: "policy",
    version: "v1",
    kind: "PodDisruptionBudget",
    plural: "poddisruptionbudgets",
    namespaced: true,
};

/// discovery.k8s.io/v1 EndpointSlice.
pub const ENDPOINT_SLICES: Resource = Resource {
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    namespaced: true,
};

/// batch/v1 Job.
pub const JOBS: Resource = Resource { group: "batch", version: "v1", kind: "Job", plural: "jobs", namespaced: true };

/// batch/v1 CronJob.
pub const CRON_JOBS: Resource =
    Resource { group: "batch", version: "v1", kind: "CronJob", plural: "cronjobs", namespaced: true };

/// apps/v1 DaemonSet.
pub const DAEMON_SETS: Resource =
    Resource { group: "apps", version: "v1", kind: "DaemonSet", plural: "daemonsets", namespaced: true };

/// apps/v1 ControllerRevision.
pub const CONTROLLER_REVISIONS: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "ControllerRevision",
    plural: "controllerrevisions",
    namespaced: true,
};

/// v1 ReplicationController.
pub const REPLICATION_CONTROLLERS: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ReplicationController",
    plural: "replicationcontrollers",
    namespaced: true,
};

/// apps/v1 StatefulSet.
pub const STATEFUL_SETS: Resource =
    Resource { group: "apps", version: "v1", kind: "StatefulSet", plural: "statefulsets", namespaced: true };

/// v1 PersistentVolume.
pub const PERSISTENT_VOLUMES: Resource = core("PersistentVolume", "persistentvolumes", false);
/// v1 PersistentVolumeClaim.
pub const PERSISTENT_VOLUME_CLAIMS: Resource = core("PersistentVolumeClaim", "persistentvolumeclaims", true);
/// storage.k8s.io/v1 StorageClass.
pub const STORAGE_CLASSES: Resource = Resource {
    group: "storage.k8s.io",
    version: "v1",
    kind: "StorageClass",
    plural: "storageclasses",
    namespaced: false,
};

/// Every resource the apiserver must serve.
pub const ALL: &[Resource] = &[
    NAMESPACES,
    PODS,
    NODES,
    SERVICES,
    ENDPOINTS,
    ENDPOINT_SLICES,
    EVENTS,
    CONFIG_MAPS,
    SECRETS,
    SERVICE_ACCOUNTS,
    REPLICA_SETS,
    DEPLOYMENTS,
    JOBS,
    CRON_JOBS,
    DAEMON_SETS,
    STATEFUL_SETS,
    CONTROLLER_REVISIONS,
    REPLICATION_CONTROLLERS,
    LEASES,
    ROLES,
    CLUSTER_ROLES,
    ROLE_BINDINGS,
    CLUSTER_ROLE_BINDINGS,
    RESOURCE_QUOTAS,
    LIMIT_RANGES,
    PRIORITY_CLASSES,
    POD_DISRUPTION_BUDGETS,
    PERSISTENT_VOLUMES,
    PERSISTENT_VOLUME_CLAIMS,
    STORAGE_CLASSES,
];

const fn core(kind: &'static str, plural: &'static str, namespaced: bool) -> Resource {
    Resource { group: "", version: "v1", kind, plural, namespaced }
}

const fn rbac(kind: &'static str, plural: &'static str, namespaced: bool) -> Resource {
    Resource { group: "rbac.authorization.k8s.io", version: "v1", kind, plural, namespaced }
}

impl Resource {
    /// `v1` for the core group, `<group>/<version>` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `/api/v1` or `/apis/<group>/<version>`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection path; `namespace` is ignored for cluster-scoped resources.
    pub fn collection(&self, namespace: &str) -> String {
        if self.namespaced {
            format!("{}/namespaces/{namespace}/{}", self.group_version_path(), self.plural)
        } else {
            format!("{}/{}", self.group_version_path(), self.plural)
        }
    }

    /// The collection path across all namespaces (`/api/v1/pods`).
    pub fn all_namespaces(&self) -> String {
        format!("{}/{}", self.group_version_path(), self.plural)
    }

    /// One object's path.
    pub fn item(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection(namespace))
    }

    /// A minimal valid object of this kind named `name` (and in `namespace` when namespaced).
    pub fn sample(&self, namespace: &str, name: &str) -> Value {
        let mut object = match self.kind {
            "Namespace" => json!({}),
            "Pod" => json!({ "spec": pod_spec() }),
            "Node" => json!({ "spec": {} }),
            "Service" => json!({
                "spec": { "selector": { "app": name }, "ports": [{ "port": 80, "targetPort": 8080, "protocol": "TCP" }] }
            }),
            "EndpointSlice" => json!({
                "addressType": "IPv4",
                "endpoints": [{ "addresses": ["10.0.0.1"], "conditions": { "ready": true } }],
                "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }]
            }),
            "Endpoints" => json!({
                "subsets": [{ "addresses": [{ "ip": "10.0.0.1" }], "ports": [{ "port": 8080, "protocol": "TCP" }] }]
            }),
            "Event" => json!({
                "involvedObject": { "kind": "Pod", "namespace": namespace, "name": "some-pod", "apiVersion": "v1" },
                "reason": "Testing",
                "message": "an event written by a test",
                "type": "Normal",
                "source": { "component": "rkube-tests" }
            }),
            "ConfigMap" => json!({ "data": { "key": "value" } }),
            "Secret" => json!({ "type": "Opaque", "data": { "password": "czNjcmV0" } }),
            "ReplicaSet" => json!({ "spec": workload_spec(name) }),
            "Deployment" => json!({ "spec": workload_spec(name) }),
            "DaemonSet" => {
                let mut spec = workload_spec(name);
                if let Some(spec) = spec.as_object_mut() {
                    spec.remove("replicas");
                }
                json!({ "spec": spec })
            }
            "ReplicationController" => json!({ "spec": { "replicas": 1, "selector": { "app": name },
                "template": { "metadata": { "labels": { "app": name } }, "spec": pod_spec() } } }),
            "StatefulSet" => json!({ "spec": workload_spec(name) }),
            "ControllerRevision" => json!({ "revision": 1, "data": { "spec": { "template": {} } } }),
            "Job" => json!({ "spec": { "template": { "spec": {
                "restartPolicy": "Never", "containers": [{ "name": "app", "image": "registry.example/app:1.0" }] } } } }),
            "CronJob" => {
                json!({ "spec": { "schedule": "*/5 * * * *", "jobTemplate": { "spec": { "template": { "spec": {
                "restartPolicy": "OnFailure", "containers": [{ "name": "app", "image": "registry.example/app:1.0" }] } } } } } })
            }
            "Lease" => json!({ "spec": { "holderIdentity": "holder-1", "leaseDurationSeconds": 40 } }),
            "ServiceAccount" => json!({}),
            "Role" | "ClusterRole" => json!({
                "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"] }]
            }),
            "RoleBinding" => json!({
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
                "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice" }]
            }),
            "ClusterRoleBinding" => json!({
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
                "subjects": [{ "kind": "ServiceAccount", "name": "default", "namespace": namespace }]
            }),
            "ResourceQuota" => json!({ "spec": { "hard": { "pods": "10", "requests.cpu": "4" } } }),
            "LimitRange" => json!({ "spec": { "limits": [{ "type": "Container", "default": { "cpu": "500m" } }] } }),
            "PriorityClass" => json!({ "value": 1000, "description": "a test class" }),
            "PodDisruptionBudget" => {
                json!({ "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": name } } } })
            }
            "PersistentVolume" => json!({ "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                "hostPath": { "path": format!("/srv/{name}") } } }),
            "PersistentVolumeClaim" => json!({ "spec": { "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": "1Gi" } } } }),
            "StorageClass" => json!({ "provisioner": "rkube.io/local-path" }),
            other => panic!("no sample object for kind {other}"),
        };
        let mut metadata = json!({ "name": name });
        if self.namespaced {
            metadata["namespace"] = json!(namespace);
        }
        object["apiVersion"] = json!(self.api_version());
        object["kind"] = json!(self.kind);
        object["metadata"] = metadata;
        object
    }
}

/// A pod spec with one container named `app`.
pub fn pod_spec() -> Value {
    json!({ "containers": [{ "name": "app", "image": "registry.example/app:1.0" }] })
}

/// A pod named `name` in `namespace` with `labels`.
pub fn pod(namespace: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "spec": pod_spec()
    })
}

/// A ConfigMap named `name` in `namespace` with `data`.
pub fn config_map(namespace: &str, name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": namespace },
        "data": data
    })
}

/// A Namespace named `name`.
pub fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

/// A Binding of pod `name` to node `node`, as the scheduler posts it.
pub fn binding(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": name },
        "target": { "apiVersion": "v1", "kind": "Node", "name": node }
    })
}

/// A ReplicaSet/Deployment spec with one replica selecting `app: <name>`.
fn workload_spec(name: &str) -> Value {
    json!({
        "replicas": 1,
        "selector": { "matchLabels": { "app": name } },
        "template": {
            "metadata": { "labels": { "app": name } },
            "spec": pod_spec()
        }
    })
}

/// An object's `metadata.resourceVersion` as a number. rkube promises it is the etcd
/// `mod_revision` of the object's key, so revisions of one store compare numerically.
///
/// # Panics
/// When it is missing or not a decimal number, showing the object.
pub fn resource_version(object: &Value) -> i64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("metadata.resourceVersion must be a decimal string: {object}"))
}

/// The `metadata.name` of each item of a list, in order.
pub fn item_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a list must have an items array: {list}"))
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap_or_default().to_string())
        .collect()
}
