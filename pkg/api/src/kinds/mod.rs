//! One module per kind rkube serves: its registry entry ([`crate::ResourceDef`]), its
//! [`Strategy`](crate::Strategy) (defaults, what create resets, validation, what an update
//! may not change, deletion rules) and its Table columns. Adding a kind is a new module
//! here plus one line in the registry's list (docs/adding-a-kind.md).
//!
//! Rules several kinds share (names, metadata, labels, selectors, ports, pod templates)
//! come from [`crate::validation`] and [`crate::defaulting`].
//!
//! Invariants (each has a test below): the registry's scope of every kind agrees with the
//! scope k8s-openapi gives the type; a minimal manifest of each kind, once defaulted, is
//! valid; what create resets is reset.

pub mod configmap;
pub mod controllerrevision;
pub mod cronjob;
pub mod customresourcedefinition;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod event;
pub mod job;
pub mod lease;
pub mod limitrange;
pub mod namespace;
pub mod node;
pub mod persistentvolume;
pub mod persistentvolumeclaim;
pub mod pod;
pub mod poddisruptionbudget;
pub mod priorityclass;
pub mod rbac;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod secret;
pub mod service;
pub mod serviceaccount;
pub mod statefulset;
pub mod storageclass;

#[cfg(test)]
mod tests {
    use std::any::TypeId;

    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{
        ConfigMap, Endpoints, Event, LimitRange, Namespace, Node, Pod, ResourceQuota, Secret, Service, ServiceAccount,
    };
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    use serde_json::{Value, json};

    use crate::registry::{lookup, resources};
    use crate::strategy::StrategyError;

    fn scope_is_namespaced<K: k8s_openapi::Resource>() -> (&'static str, bool)
    where
        K::Scope: 'static,
    {
        (K::KIND, TypeId::of::<K::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>())
    }

    fn create(group: &str, plural: &str, body: Value) -> Result<Value, StrategyError> {
        let def = lookup(group, "v1", plural).expect("registered");
        def.strategy.create(body).map(|d| d.object)
    }

    fn field_errors(result: Result<Value, StrategyError>) -> Vec<String> {
        match result {
            Err(StrategyError::Invalid(errs)) => errs.iter().map(ToString::to_string).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn registry_scope_agrees_with_the_scope_kubernetes_gives_each_kind() {
        let scopes = [
            scope_is_namespaced::<Namespace>(),
            scope_is_namespaced::<Pod>(),
            scope_is_namespaced::<Node>(),
            scope_is_namespaced::<Service>(),
            scope_is_namespaced::<Endpoints>(),
            scope_is_namespaced::<Event>(),
            scope_is_namespaced::<k8s_openapi::api::events::v1::Event>(),
            scope_is_namespaced::<k8s_openapi::api::discovery::v1::EndpointSlice>(),
            scope_is_namespaced::<ConfigMap>(),
            scope_is_namespaced::<ReplicaSet>(),
            scope_is_namespaced::<Deployment>(),
            scope_is_namespaced::<k8s_openapi::api::batch::v1::Job>(),
            scope_is_namespaced::<k8s_openapi::api::core::v1::ReplicationController>(),
            scope_is_namespaced::<k8s_openapi::api::apps::v1::DaemonSet>(),
            scope_is_namespaced::<k8s_openapi::api::apps::v1::StatefulSet>(),
            scope_is_namespaced::<k8s_openapi::api::apps::v1::ControllerRevision>(),
            scope_is_namespaced::<k8s_openapi::api::batch::v1::CronJob>(),
            scope_is_namespaced::<Lease>(),
            scope_is_namespaced::<Secret>(),
            scope_is_namespaced::<ServiceAccount>(),
            scope_is_namespaced::<Role>(),
            scope_is_namespaced::<ClusterRole>(),
            scope_is_namespaced::<RoleBinding>(),
            scope_is_namespaced::<ClusterRoleBinding>(),
            scope_is_namespaced::<PriorityClass>(),
            scope_is_namespaced::<ResourceQuota>(),
            scope_is_namespaced::<LimitRange>(),
            scope_is_namespaced::<PodDisruptionBudget>(),
            scope_is_namespaced::<k8s_openapi::api::core::v1::PersistentVolume>(),
            scope_is_namespaced::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(),
            scope_is_namespaced::<k8s_openapi::api::storage::v1::StorageClass>(),
            scope_is_namespaced::<
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            >(),
        ];
        assert_eq!(scopes.len(), resources().len());
        for (kind, namespaced) in scopes {
            for def in resources().iter().filter(|r| r.kind == kind) {
                assert_eq!(def.namespaced, namespaced, "{kind}");
            }
        }
    }

    #[test]
    fn a_minimal_manifest_of_each_kind_is_valid_once_defaulted() {
        let ns = json!({"name": "x", "namespace": "default"});
        let cases = [
            ("", "namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})),
            ("", "nodes", json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1.example"}})),
            (
                "",
                "pods",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": ns,
                       "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
            ),
            (
                "",
                "services",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": ns,
                       "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
            ),
            (
                "",
                "endpoints",
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": ns,
                       "subsets": [{"addresses": [{"ip": "10.1.0.5"}], "ports": [{"port": 80}]}]}),
            ),
            (
                "",
                "events",
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "x.17a", "namespace": "default"},
                       "involvedObject": {"kind": "Pod", "name": "x"}}),
            ),
            (
                "",
                "configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": ns, "data": {"a.conf": "1"}}),
            ),
            (
                "apps",
                "replicasets",
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": ns,
                       "spec": {"selector": {"matchLabels": {"app": "x"}},
                                "template": {"metadata": {"labels": {"app": "x"}},
                                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            ),
            (
                "apps",
                "deployments",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": ns,
                       "spec": {"selector": {"matchLabels": {"app": "x"}},
                                "template": {"metadata": {"labels": {"app": "x"}},
                                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            ),
            (
                "batch",
                "jobs",
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": ns,
                       "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                       "containers": [{"name": "c", "image": "perl"}]}}}}),
            ),
            (
                "batch",
                "cronjobs",
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": ns,
                       "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                           "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "perl"}]}}}}}}),
            ),
            (
                "apps",
                "daemonsets",
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": ns,
                       "spec": {"selector": {"matchLabels": {"app": "x"}},
                                "template": {"metadata": {"labels": {"app": "x"}},
                                             "spec": {"containers": [{"name": "c", "image": "agent"}]}}}}),
            ),
            (
                "apps",
                "controllerrevisions",
                json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": ns, "revision": 1,
                       "data": {"spec": {"template": {}}}}),
            ),
            (
                "",
                "replicationcontrollers",
                json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": ns,
                       "spec": {"template": {"metadata": {"labels": {"app": "x"}},
                                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            ),
            (
                "apps",
                "statefulsets",
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": ns,
                       "spec": {"selector": {"matchLabels": {"app": "x"}},
                                "template": {"metadata": {"labels": {"app": "x"}},
                                             "spec": {"containers": [{"name": "c", "image": "db"}]}}}}),
            ),
            (
                "",
                "persistentvolumeclaims",
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": ns,
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
            ),
            (
                "",
                "persistentvolumes",
                json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv0"},
                       "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                "hostPath": {"path": "/srv/pv0"}}}),
            ),
            (
                "storage.k8s.io",
                "storageclasses",
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"},
                       "provisioner": "rkube.io/local-path"}),
            ),
            (
                "",
                "secrets",
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": ns, "stringData": {"password": "s3cret"}}),
            ),
            (
                "coordination.k8s.io",
                "leases",
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": ns,
                       "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
            ),
            ("", "serviceaccounts", json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": ns})),
            (
                "rbac.authorization.k8s.io",
                "roles",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": ns,
                       "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            ),
            (
                "rbac.authorization.k8s.io",
                "clusterroles",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                       "metadata": {"name": "system:reader"},
                       "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
            ),
            (
                "rbac.authorization.k8s.io",
                "rolebindings",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": ns,
                       "roleRef": {"kind": "Role", "name": "x"}, "subjects": [{"kind": "User", "name": "alice"}]}),
            ),
            (
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                       "metadata": {"name": "x"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
                       "subjects": [{"kind": "Group", "name": "devs"}]}),
            ),
            (
                "scheduling.k8s.io",
                "priorityclasses",
                json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"},
                       "value": 1000}),
            ),
            (
                "",
                "resourcequotas",
                json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": ns, "spec": {"hard": {"pods": "10"}}}),
            ),
            (
                "",
                "limitranges",
                json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": ns,
                       "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}}),
            ),
            (
                "policy",
                "poddisruptionbudgets",
                json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": ns,
                       "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}}),
            ),
            (
                "discovery.k8s.io",
                "endpointslices",
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": ns,
                       "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.5"]}], "ports": [{"port": 80}]}),
            ),
            (
                "events.k8s.io",
                "events",
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": ns,
                       "eventTime": "2026-12-06T10:00:00.000000Z", "reportingController": "example.com/op",
                       "reportingInstance": "op-0", "action": "Reconcile", "reason": "Done", "type": "Normal"}),
            ),
            (
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                       "metadata": {"name": "widgets.example.com"},
                       "spec": {"group": "example.com", "scope": "Namespaced",
                                "names": {"plural": "widgets", "kind": "Widget"},
                                "versions": [{"name": "v1", "served": true, "storage": true,
                                              "schema": {"openAPIV3Schema": {"type": "object"}}}]}}),
            ),
        ];
        assert_eq!(cases.len(), resources().len());
        for (group, plural, body) in cases {
            let result = create(group, plural, body);
            assert!(result.is_ok(), "{plural}: {result:?}");
        }
    }

    #[test]
    fn strategy_create_stores_the_defaulted_pod() {
        let pod = create(
            "",
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}),
        )
        .expect("valid pod");
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["status"]["phase"], "Pending");
    }

    #[test]
    fn namespaced_kinds_need_a_namespace_and_cluster_scoped_kinds_refuse_one() {
        let errs = field_errors(create(
            "",
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        ));
        assert_eq!(errs, vec!["metadata.namespace: Required value"]);
        let errs = field_errors(create(
            "",
            "nodes",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "default"}}),
        ));
        assert_eq!(errs, vec!["metadata.namespace: Forbidden: not allowed on this type"]);
    }

    #[test]
    fn service_and_namespace_names_are_labels_not_subdomains() {
        let errs = field_errors(create(
            "",
            "services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1st", "namespace": "default"},
                   "spec": {"ports": [{"port": 80}]}}),
        ));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("metadata.name: Invalid value: \"1st\": a DNS-1035 label"), "{errs:?}");
        let errs = field_errors(create(
            "",
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}),
        ));
        assert_eq!(errs, vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]);
    }

    #[test]
    fn pod_update_may_change_the_image_but_not_the_restart_policy() {
        let pods = lookup("", "v1", "pods").expect("registered");
        let old = create(
            "",
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}),
        )
        .expect("valid pod");
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(pods.strategy.update(new.clone(), &old).is_ok());
        new["spec"]["restartPolicy"] = json!("Never");
        let errs = field_errors(pods.strategy.update(new, &old).map(|d| d.object));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than"), "{errs:?}");
    }

    #[test]
    fn deployment_update_may_not_change_the_selector() {
        let deployments = lookup("apps", "v1", "deployments").expect("registered");
        let body = |app: &str| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
                   "spec": {"selector": {"matchLabels": {"app": app}},
                            "template": {"metadata": {"labels": {"app": app}},
                                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
        };
        let old = create("apps", "deployments", body("a")).expect("valid deployment");
        let errs = field_errors(deployments.strategy.update(body("b"), &old).map(|d| d.object));
        assert_eq!(errs, vec!["spec.selector: Invalid value: \"app=b\": field is immutable"]);
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(deployments.strategy.update(scaled, &old).is_ok());
    }

    #[test]
    fn create_resets_what_clients_may_not_set() {
        let pod = create(
            "",
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                   "status": {"phase": "Running", "podIP": "10.0.0.9"}}),
        )
        .expect("valid pod");
        assert_eq!(pod["status"], json!({"phase": "Pending"}));
        let deployment = create(
            "apps",
            "deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
                   "spec": {"selector": {"matchLabels": {"app": "x"}},
                            "template": {"metadata": {"labels": {"app": "x"}},
                                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
                   "status": {"readyReplicas": 3}}),
        )
        .expect("valid deployment");
        assert_eq!(deployment["status"], json!({}));
        let service = create(
            "",
            "services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"},
                   "spec": {"ports": [{"port": 80}]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
        )
        .expect("valid service");
        assert_eq!(service["status"], json!({"loadBalancer": {}}));
        let namespace =
            create("", "namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}))
                .expect("valid namespace");
        assert_eq!(namespace["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(namespace["status"], json!({"phase": "Active"}));
    }

    #[test]
    fn only_a_bound_running_pod_is_deleted_gracefully() {
        let pods = lookup("", "v1", "pods").expect("registered");
        let pod = |node: &str, phase: &str| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                   "spec": {"nodeName": node, "terminationGracePeriodSeconds": 12,
                            "containers": [{"name": "c", "image": "nginx"}]},
                   "status": {"phase": phase}})
        };
        assert_eq!(pods.strategy.deletion_grace_period(&pod("n1", "Running"), None), 12);
        assert_eq!(pods.strategy.deletion_grace_period(&pod("n1", "Running"), Some(3)), 3);
        assert_eq!(pods.strategy.deletion_grace_period(&pod("", "Pending"), None), 0);
        assert_eq!(pods.strategy.deletion_grace_period(&pod("n1", "Succeeded"), None), 0);
        let configmaps = lookup("", "v1", "configmaps").expect("registered");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
        assert_eq!(configmaps.strategy.deletion_grace_period(&cm, Some(30)), 0);
    }

    #[test]
    fn a_namespace_marked_for_deletion_terminates_and_awaits_its_cleanup() {
        let namespaces = lookup("", "v1", "namespaces").expect("registered");
        let old = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"},
                         "status": {"phase": "Active"}});
        assert!(!namespaces.strategy.awaits_finalization(&old));
        let marked = namespaces.strategy.prepare_for_delete(old).expect("namespace");
        assert_eq!(marked["status"]["phase"], "Terminating");
        assert_eq!(marked["spec"]["finalizers"], json!(["kubernetes"]));
        assert!(namespaces.strategy.awaits_finalization(&marked));
    }
}
