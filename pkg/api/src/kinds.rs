//! [`Object`](crate::Object) for each kind in the registry: which defaulting and
//! validation rules apply to it.
//!
//! - `set_defaults` runs the kind's defaulter from [`crate::defaulting`].
//! - `validate_create` checks metadata (scope taken from the registry: namespaced kinds need
//!   a namespace, cluster-scoped ones may not have one) and the kind's rules from
//!   [`crate::validation`].
//! - `validate_update` adds the rules about what may not change: a pod's spec beyond images,
//!   deadlines and tolerations; ReplicaSet and Deployment selectors; an allocated cluster IP;
//!   a node's pod CIDRs and provider ID; the data of an immutable ConfigMap.
//!
//! Name formats follow Kubernetes: namespaces are DNS-1123 labels, services DNS-1035 labels
//! (they become DNS names and environment variables), everything else DNS-1123 subdomains.
//! Events get metadata checks only.
//!
//! Invariants (each has a test below): the registry's scope of every kind agrees with the
//! scope k8s-openapi gives the type; a minimal manifest of each kind, once defaulted, is valid.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Event, Namespace, Node, Pod, Service};

use crate::defaulting;
use crate::object::{FieldError, Object};
use crate::validation::{self, NameFormat};

/// The metadata errors of `object`, namespaced or not as the registry serves its kind.
fn metadata_errors<K: Object>(object: &K, format: NameFormat) -> Vec<FieldError> {
    // Every kind that implements Object is registered (tested below); were one not, treating
    // it as namespaced is the stricter choice.
    let namespaced = crate::registry::by_kind(K::GROUP, K::KIND).is_none_or(|r| r.namespaced);
    validation::validate_object_meta(object.metadata(), namespaced, format)
}

impl Object for Namespace {
    fn set_defaults(&mut self) {
        defaulting::default_namespace(self);
    }

    fn validate_create(&self) -> Vec<FieldError> {
        metadata_errors(self, NameFormat::Dns1123Label)
    }
}

impl Object for Pod {
    fn set_defaults(&mut self) {
        defaulting::default_pod(self);
    }

    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = metadata_errors(self, NameFormat::Dns1123Subdomain);
        errs.extend(validation::validate_pod_spec(&self.spec.clone().unwrap_or_default(), "spec"));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate_create();
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        errs.extend(validation::validate_pod_spec_update(&new_spec, &old_spec));
        errs
    }
}

impl Object for Node {
    fn set_defaults(&mut self) {
        defaulting::default_node(self);
    }

    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = metadata_errors(self, NameFormat::Dns1123Subdomain);
        errs.extend(validation::validate_node_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate_create();
        errs.extend(validation::validate_node_update(
            &self.spec.clone().unwrap_or_default(),
            &old.spec.clone().unwrap_or_default(),
        ));
        errs
    }
}

impl Object for Service {
    fn set_defaults(&mut self) {
        defaulting::default_service(self);
    }

    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = metadata_errors(self, NameFormat::Dns1035Label);
        errs.extend(validation::validate_service_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate_create();
        errs.extend(validation::validate_service_update(
            &self.spec.clone().unwrap_or_default(),
            &old.spec.clone().unwrap_or_default(),
        ));
        errs
    }
}

impl Object for Endpoints {
    fn set_defaults(&mut self) {
        defaulting::default_endpoints(self);
    }

    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = metadata_errors(self, NameFormat::Dns1123Subdomain);
        errs.extend(validation::validate_endpoint_subsets(self.subsets.as_deref().unwrap_or_default()));
        errs
    }
}

impl Object for Event {
    fn validate_create(&self) -> Vec<FieldError> {
        metadata_errors(self, NameFormat::Dns1123Subdomain)
    }
}

impl Object for ConfigMap {
    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = metadata_errors(self, NameFormat::Dns1123Subdomain);
        errs.extend(validation::validate_config_map_data(self));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate_create();
        errs.extend(validation::validate_config_map_update(self, old));
        errs
    }
}

impl Object for ReplicaSet {
    fn set_defaults(&mut self) {
        defaulting::default_replica_set(self);
    }

    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = metadata_errors(self, NameFormat::Dns1123Subdomain);
        errs.extend(validation::validate_replica_set_spec(&self.spec));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate_create();
        errs.extend(validation::validate_selector_update(&self.spec.selector, &old.spec.selector));
        errs
    }
}

impl Object for Deployment {
    fn set_defaults(&mut self) {
        defaulting::default_deployment(self);
    }

    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = metadata_errors(self, NameFormat::Dns1123Subdomain);
        errs.extend(validation::validate_deployment_spec(&self.spec));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = self.validate_create();
        errs.extend(validation::validate_selector_update(&self.spec.selector, &old.spec.selector));
        errs
    }
}

impl Object for Lease {
    fn validate_create(&self) -> Vec<FieldError> {
        let mut errs = metadata_errors(self, NameFormat::Dns1123Subdomain);
        errs.extend(validation::validate_lease_spec(&self.spec.clone().unwrap_or_default()));
        errs
    }
}

#[cfg(test)]
mod tests {
    use std::any::TypeId;

    use super::*;
    use crate::registry::{CodecError, lookup, resources};
    use serde_json::{Value, json};

    fn scope_is_namespaced<K: k8s_openapi::Resource>() -> (&'static str, bool)
    where
        K::Scope: 'static,
    {
        (K::KIND, TypeId::of::<K::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>())
    }

    fn create(group: &str, plural: &str, body: Value) -> Result<Value, CodecError> {
        let def = lookup(group, "v1", plural).expect("registered");
        def.codec.create(body).map(|d| d.object)
    }

    fn field_errors(result: Result<Value, CodecError>) -> Vec<String> {
        match result {
            Err(CodecError::Invalid(errs)) => errs.iter().map(ToString::to_string).collect(),
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
            scope_is_namespaced::<ConfigMap>(),
            scope_is_namespaced::<ReplicaSet>(),
            scope_is_namespaced::<Deployment>(),
            scope_is_namespaced::<Lease>(),
        ];
        assert_eq!(scopes.len(), resources().len());
        for (kind, namespaced) in scopes {
            let def = resources().iter().find(|r| r.kind == kind).expect("kind registered");
            assert_eq!(def.namespaced, namespaced, "{kind}");
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
                "coordination.k8s.io",
                "leases",
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": ns,
                       "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
            ),
        ];
        assert_eq!(cases.len(), resources().len());
        for (group, plural, body) in cases {
            let result = create(group, plural, body);
            assert!(result.is_ok(), "{plural}: {result:?}");
        }
    }

    #[test]
    fn codec_create_stores_the_defaulted_pod() {
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
        assert!(pods.codec.update(new.clone(), &old).is_ok());
        new["spec"]["restartPolicy"] = json!("Never");
        let errs = field_errors(pods.codec.update(new, &old).map(|d| d.object));
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
        let errs = field_errors(deployments.codec.update(body("b"), &old).map(|d| d.object));
        assert_eq!(errs, vec!["spec.selector: Invalid value: \"app=b\": field is immutable"]);
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(deployments.codec.update(scaled, &old).is_ok());
    }
}
