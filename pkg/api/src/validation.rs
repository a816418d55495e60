//! Kubernetes validation rules that several kinds share, each error carrying its field
//! path, following `pkg/apis/core/validation`, `pkg/apis/apps/validation` and apimachinery's
//! `util/validation`: name formats, metadata, labels and selectors, ports and protocols,
//! pod specs and templates (pods, ReplicaSets, Deployments), the workload specs built on
//! them. A kind's own rules live with it in `kinds/<kind>.rs`.
//!
//! Every function returns all the errors it finds (not just the first), as
//! [`FieldError`]s whose paths and messages read like Kubernetes'
//! (`metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of ...`).
//! Functions that take a `path` prefix every field path they report with it, so the same
//! rules check a pod's `spec` and a Deployment's `spec.template.spec`.
//!
//! Invariants (each has a test below):
//! - an object produced by the defaulters from a minimal valid manifest validates cleanly;
//! - a ReplicaSet or Deployment whose selector does not match its template labels is rejected;
//! - a pod update may change images, `activeDeadlineSeconds` (downwards) and add tolerations,
//!   nothing else in the spec; selectors of ReplicaSets and Deployments never change.
//!
//! - a container's requests and limits are valid quantities, not negative, and no request
//!   exceeds its limit.
//!
//! Not promised: the whole of Kubernetes' validation. Left out, among others: probes, security contexts, affinity, topology spread,
//! ephemeral containers, owner references, special-purpose IPs in Endpoints (loopback,
//! link-local), the service IP-family fields, and the apiserver-side immutability of
//! `metadata.name`, `namespace`, `uid` and `creationTimestamp`. Where Kubernetes reports
//! `Not found` (a volume mount naming no volume) this crate has no such error kind and
//! reports `Invalid` instead.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Toleration, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::FieldError;

/// Longest DNS-1123 label (and DNS-1035 label, label value, label name part).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Largest total size of an object's annotations, keys plus values (256 KiB).
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
pub(crate) const PORT_RANGE_ERR: &str = "must be between 1 and 65535, inclusive";
const NON_NEGATIVE_ERR: &str = "must be greater than or equal to 0";
pub(crate) const INVALID_IP_ERR: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const PORT_PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

// ---------------------------------------------------------------------------------------------
// String formats (apimachinery util/validation). Each returns Kubernetes' messages; empty = ok.
// ---------------------------------------------------------------------------------------------

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = String::from(msg);
    if !examples.is_empty() {
        out.push_str(" (e.g. ");
        for (i, example) in examples.iter().enumerate() {
            if i > 0 {
                out.push_str(" or ");
            }
            out.push_str(&format!("'{example}', "));
        }
        out.push_str(&format!("regex used for validation is '{fmt}')"));
    } else {
        out.push_str(&format!(" (regex used for validation is '{fmt}')"));
    }
    out
}

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_label_shaped(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-'),
        _ => false,
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
pub(crate) fn is_qualified_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Whether `value` is a lowercase RFC 1123 subdomain (without the length check).
pub(crate) fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(is_label_shaped)
}

/// Checks a DNS-1123 label (at most 63 lowercase alphanumerics or '-', alphanumeric at both ends).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_label_shaped(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// Checks a DNS-1123 subdomain (at most 253 characters, dot-separated DNS-1123 labels).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Checks a DNS-1035 label: a DNS-1123 label that starts with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !(is_label_shaped(value) && value.starts_with(|c: char| c.is_ascii_lowercase())) {
        errs.push(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// Checks a qualified name (a label or annotation key): an optional DNS-1123 subdomain
/// prefix and `/`, then a name of at most 63 alphanumerics, '-', '_' or '.'.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(DNS1123_LABEL_MAX_LENGTH)));
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// Checks a label value: empty, or at most 63 alphanumerics, '-', '_' or '.',
/// alphanumeric at both ends.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Checks a ConfigMap key: at most 253 alphanumerics, '-', '_' or '.', and not `.`, `..`
/// or starting with `..`.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        errs.push(regex_error(CONFIG_MAP_KEY_ERR, CONFIG_MAP_KEY_FMT, &["key.name", "KEY_NAME", "key-name"]));
    }
    if value == "." {
        errs.push("must not be '.'".to_string());
    } else if value == ".." {
        errs.push("must not be '..'".to_string());
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// Checks a port name (IANA_SVC_NAME): at most 15 lowercase alphanumerics or '-', at least
/// one letter, no `--`, no '-' at either end.
pub fn is_valid_port_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 15 {
        errs.push(max_len_error(15));
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !value.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if value.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if value.starts_with('-') || value.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

pub(crate) fn is_valid_port_num(port: i32) -> bool {
    (1..=65535).contains(&port)
}

/// The format an object's `metadata.name` must have; it depends on the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameFormat {
    /// A DNS-1123 subdomain: most kinds (pods, nodes, ReplicaSets, ConfigMaps, ...).
    Dns1123Subdomain,
    /// A DNS-1123 label: namespaces.
    Dns1123Label,
    /// A DNS-1035 label (a DNS-1123 label starting with a letter): services.
    Dns1035Label,
    /// Any name that is one URL path segment (not `.` or `..`, no `/` or `%`): RBAC roles
    /// and bindings, whose names hold colons (`system:node`).
    PathSegment,
}

impl NameFormat {
    /// Kubernetes' messages for `name` in this format; empty when it fits. With
    /// `prefix` (a `generateName`), a trailing '-' is allowed.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && name.len() > 1 && name.ends_with('-') {
            // Kubernetes' maskTrailingDash: the generated suffix will follow the dash.
            masked = format!("{}a", &name[..name.len() - 2]);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameFormat::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameFormat::Dns1123Label => is_dns1123_label(name),
            NameFormat::Dns1035Label => is_dns1035_label(name),
            NameFormat::PathSegment => is_path_segment_name(name, prefix),
        }
    }
}

/// apimachinery's `path.IsValidPathSegmentName` (and its prefix variant for a
/// `generateName`): a name that can stand as one segment of a URL path.
pub fn is_path_segment_name(value: &str, prefix: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix && (value == "." || value == "..") {
        errs.push(format!("may not be '{value}'"));
    }
    for forbidden in ["/", "%"] {
        if value.contains(forbidden) {
            errs.push(format!("may not contain '{forbidden}'"));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Metadata, labels, annotations, selectors.
// ---------------------------------------------------------------------------------------------

/// Checks a label map: each key a qualified name, each value a label value. Errors name
/// `path` itself, as Kubernetes does (`metadata.labels: Invalid value: "a b": ...`).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels {
        errs.extend(is_qualified_name(key).into_iter().map(|m| FieldError::invalid(path, key, m)));
        errs.extend(is_valid_label_value(value).into_iter().map(|m| FieldError::invalid(path, value, m)));
    }
    errs
}

/// Checks an annotation map: each key a qualified name (case ignored) and the total size of
/// keys and values at most 256 KiB.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (key, value) in annotations {
        errs.extend(is_qualified_name(&key.to_lowercase()).into_iter().map(|m| FieldError::invalid(path, key, m)));
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_BYTES));
    }
    errs
}

/// Checks an object's metadata (at `metadata`): a name in `format` (or a `generateName`
/// the apiserver has not expanded yet), a namespace when and only when `namespaced`, valid
/// labels, annotations and finalizer names.
pub fn validate_object_meta(meta: &ObjectMeta, namespaced: bool, format: NameFormat) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(generate_name) = meta.generate_name.as_deref().filter(|g| !g.is_empty()) {
        errs.extend(
            format
                .check(generate_name, true)
                .into_iter()
                .map(|m| FieldError::invalid("metadata.generateName", generate_name, m)),
        );
    }
    match meta.name.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required("metadata.name", "name or generateName is required")),
        name => {
            errs.extend(format.check(name, false).into_iter().map(|m| FieldError::invalid("metadata.name", name, m)))
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            errs.extend(
                is_dns1123_label(namespace)
                    .into_iter()
                    .map(|m| FieldError::invalid("metadata.namespace", namespace, m)),
            );
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    if let Some(generation) = meta.generation.filter(|g| *g < 0) {
        errs.push(FieldError::invalid("metadata.generation", generation, NON_NEGATIVE_ERR));
    }
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, "metadata.labels"));
    }
    if let Some(annotations) = &meta.annotations {
        errs.extend(validate_annotations(annotations, "metadata.annotations"));
    }
    for finalizer in meta.finalizers.iter().flatten() {
        errs.extend(
            is_qualified_name(finalizer).into_iter().map(|m| FieldError::invalid("metadata.finalizers", finalizer, m)),
        );
    }
    errs.extend(validate_owner_references(meta.owner_references.as_deref().unwrap_or_default()));
    errs
}

/// Checks `metadata.ownerReferences` as Kubernetes does: each names its owner's apiVersion,
/// kind, name and uid, and at most one is the controller. Field paths are Kubernetes' (the
/// list without an index).
pub fn validate_owner_references(
    references: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Vec<FieldError> {
    const AT: &str = "metadata.ownerReferences";
    let mut errs = Vec::new();
    for reference in references {
        let fields = [
            ("apiVersion", &reference.api_version, "version must not be empty"),
            ("kind", &reference.kind, "kind must not be empty"),
            ("name", &reference.name, "name must not be empty"),
            ("uid", &reference.uid, "uid must not be empty"),
        ];
        for (field, value, message) in fields {
            if value.is_empty() {
                errs.push(FieldError::invalid(format!("{AT}.{field}"), value, message));
            }
        }
    }
    let controllers = references.iter().filter(|r| r.controller == Some(true)).count();
    if controllers > 1 {
        errs.push(FieldError::invalid(
            AT,
            format!("{controllers} controllers"),
            "Only one reference can have Controller set to true",
        ));
    }
    errs
}

/// Checks a label selector's syntax: valid `matchLabels`, and `matchExpressions` with a
/// known operator, values exactly when `In`/`NotIn`, valid keys and values.
pub fn validate_label_selector(selector: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(match_labels) = &selector.match_labels {
        errs.extend(validate_labels(match_labels, &format!("{path}.matchLabels")));
    }
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(format!("{at}.operator"), other, "not a valid selector operator")),
        }
        errs.extend(
            is_qualified_name(&requirement.key)
                .into_iter()
                .map(|m| FieldError::invalid(format!("{at}.key"), &requirement.key, m)),
        );
        for (j, value) in values.iter().enumerate() {
            errs.extend(
                is_valid_label_value(value)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{at}.values[{j}]"), value, m)),
            );
        }
    }
    errs
}

fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// Whether `labels` satisfy `selector`; a selector that does not parse matches nothing
/// (its own validation reports why).
fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    crate::selector::LabelSelector::from_meta(selector).is_ok_and(|s| s.matches(labels))
}

/// A selector in kubectl's string form (`app=web,tier in (a,b)`), used as an error's value.
fn selector_string(selector: &LabelSelector) -> String {
    crate::selector::LabelSelector::from_meta(selector).map_or_else(|e| e.to_string(), |s| s.to_string())
}

fn labels_string(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

// ---------------------------------------------------------------------------------------------
// Pods.
// ---------------------------------------------------------------------------------------------

/// Checks a pod's spec at `path` (normally `spec`): containers, volumes, restart and DNS
/// policies, node selector, tolerations and deadlines.
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    pod_spec(spec, path, true)
}

/// Checks a pod template at `path` (e.g. `spec.template`): its labels, annotations and pod
/// spec. As in Kubernetes, a template's containers may leave `image` empty for higher-level
/// tooling to fill in; a pod's may not.
pub fn validate_pod_template(template: &PodTemplateSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(meta) = &template.metadata {
        if let Some(labels) = &meta.labels {
            errs.extend(validate_labels(labels, &format!("{path}.metadata.labels")));
        }
        if let Some(annotations) = &meta.annotations {
            errs.extend(validate_annotations(annotations, &format!("{path}.metadata.annotations")));
        }
    }
    match &template.spec {
        Some(spec) => errs.extend(pod_spec(spec, &format!("{path}.spec"), false)),
        None => errs.push(FieldError::required(format!("{path}.spec.containers"), "")),
    }
    errs
}

fn pod_spec(spec: &PodSpec, path: &str, for_pod: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(spec.volumes.as_deref().unwrap_or_default(), &format!("{path}.volumes"), &mut errs);

    if spec.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for (i, container) in spec.init_containers.iter().flatten().enumerate() {
        validate_container(container, &format!("{path}.initContainers[{i}]"), &volumes, &mut names, for_pod, &mut errs);
    }
    for (i, container) in spec.containers.iter().enumerate() {
        validate_container(container, &format!("{path}.containers[{i}]"), &volumes, &mut names, for_pod, &mut errs);
    }

    match spec.restart_policy.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(format!("{path}.restartPolicy"), "")),
        "Always" | "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    match spec.dns_policy.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(format!("{path}.dnsPolicy"), "")),
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        other => errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    if let Some(deadline) = spec.active_deadline_seconds.filter(|d| !(1..=i64::from(u32::MAX)).contains(d)) {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            deadline,
            format!("must be between 1 and {}, inclusive", u32::MAX),
        ));
    }
    if let Some(node_selector) = &spec.node_selector {
        errs.extend(validate_labels(node_selector, &format!("{path}.nodeSelector")));
    }
    if let Some(node_name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        errs.extend(
            is_dns1123_subdomain(node_name)
                .into_iter()
                .map(|m| FieldError::invalid(format!("{path}.nodeName"), node_name, m)),
        );
    }
    errs.extend(validate_tolerations(spec.tolerations.as_deref().unwrap_or_default(), &format!("{path}.tolerations")));
    errs
}

/// Checks volumes (names unique DNS-1123 labels, exactly one source each) and returns the
/// names of the valid ones, which volume mounts may refer to.
fn validate_volumes(volumes: &[Volume], path: &str, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let mut volume_errs = Vec::new();
        // The volume's source is whichever field other than `name` is set.
        let sources: Vec<String> = match serde_json::to_value(volume) {
            Ok(serde_json::Value::Object(fields)) => fields.keys().filter(|k| *k != "name").cloned().collect(),
            _ => Vec::new(),
        };
        match sources.as_slice() {
            [] => volume_errs.push(FieldError::required(&at, "must specify a volume type")),
            [_] => {}
            [_, extra @ ..] => {
                for source in extra {
                    volume_errs.push(FieldError::forbidden(
                        format!("{at}.{source}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        let name_path = format!("{at}.name");
        if volume.name.is_empty() {
            volume_errs.push(FieldError::required(&name_path, ""));
        } else {
            volume_errs.extend(
                is_dns1123_label(&volume.name).into_iter().map(|m| FieldError::invalid(&name_path, &volume.name, m)),
            );
        }
        if names.contains(&volume.name) {
            volume_errs.push(FieldError::duplicate(&name_path, &volume.name));
        }
        if volume_errs.is_empty() {
            names.insert(volume.name.clone());
        }
        errs.extend(volume_errs);
    }
    names
}

/// A container's requests and limits: valid, non-negative quantities, each request at most
/// its limit (Kubernetes' `ValidateResourceRequirements`).
fn validate_resources(container: &Container, path: &str, errs: &mut Vec<FieldError>) {
    let Some(resources) = &container.resources else { return };
    let read =
        |field: &str, list: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            let mut amounts = BTreeMap::new();
            let mut problems = Vec::new();
            for (name, amount) in list.iter().flatten() {
                let at = format!("{path}.resources.{field}[{name}]");
                match crate::quantity::parse_milli(&amount.0) {
                    Ok(milli) if milli < 0 => {
                        problems.push(FieldError::invalid(at, &amount.0, "must be greater than or equal to 0"))
                    }
                    Ok(milli) => {
                        amounts.insert(name.clone(), (milli, amount.0.clone()));
                    }
                    Err(error) => problems.push(FieldError::invalid(at, &amount.0, error.to_string())),
                }
            }
            (amounts, problems)
        };
    let (requests, mut problems) = read("requests", &resources.requests);
    let (limits, limit_problems) = read("limits", &resources.limits);
    problems.extend(limit_problems);
    for (name, (request, text)) in &requests {
        if let Some((_, limit_text)) = limits.get(name).filter(|(limit, _)| request > limit) {
            problems.push(FieldError::invalid(
                format!("{path}.resources.requests"),
                text,
                format!("must be less than or equal to {name} limit of {limit_text}"),
            ));
        }
    }
    errs.extend(problems);
}

fn validate_container(
    container: &Container,
    path: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    for_pod: bool,
    errs: &mut Vec<FieldError>,
) {
    let name_path = format!("{path}.name");
    if container.name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        errs.extend(
            is_dns1123_label(&container.name).into_iter().map(|m| FieldError::invalid(&name_path, &container.name, m)),
        );
    }
    if !names.insert(container.name.clone()) {
        errs.push(FieldError::duplicate(&name_path, &container.name));
    }

    validate_resources(container, path, errs);
    let image = container.image.as_deref().unwrap_or_default();
    if for_pod {
        if image.is_empty() {
            errs.push(FieldError::required(format!("{path}.image"), ""));
        } else if image.trim() != image {
            errs.push(FieldError::invalid(
                format!("{path}.image"),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
    }

    match container.image_pull_policy.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(format!("{path}.imagePullPolicy"), "")),
        "Always" | "IfNotPresent" | "Never" => {}
        other => errs.push(FieldError::not_supported(
            format!("{path}.imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    match container.termination_message_policy.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(format!("{path}.terminationMessagePolicy"), "")),
        "File" | "FallbackToLogsOnError" => {}
        other => errs.push(FieldError::not_supported(
            format!("{path}.terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }

    let mut port_names = HashSet::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let at = format!("{path}.ports[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(msgs.into_iter().map(|m| FieldError::invalid(format!("{at}.name"), name, m)));
            } else if !port_names.insert(name) {
                errs.push(FieldError::duplicate(format!("{at}.name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(format!("{at}.containerPort"), ""));
        } else if !is_valid_port_num(port.container_port) {
            errs.push(FieldError::invalid(format!("{at}.containerPort"), port.container_port, PORT_RANGE_ERR));
        }
        if let Some(host_port) = port.host_port.filter(|p| *p != 0 && !is_valid_port_num(*p)) {
            errs.push(FieldError::invalid(format!("{at}.hostPort"), host_port, PORT_RANGE_ERR));
        }
        validate_protocol(port.protocol.as_deref(), &format!("{at}.protocol"), errs);
    }

    for (i, env) in container.env.iter().flatten().enumerate() {
        let at = format!("{path}.env[{i}].name");
        if env.name.is_empty() {
            errs.push(FieldError::required(&at, ""));
        } else if env.name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
            errs.push(FieldError::invalid(
                &at,
                &env.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }

    let mut mount_paths = HashSet::new();
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let at = format!("{path}.volumeMounts[{i}]");
        if mount.name.is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        } else if !volumes.contains(&mount.name) {
            errs.push(FieldError::invalid(
                format!("{at}.name"),
                &mount.name,
                "not found: no volume of this name in the pod",
            ));
        }
        if mount.mount_path.is_empty() {
            errs.push(FieldError::required(format!("{at}.mountPath"), ""));
        } else if !mount_paths.insert(mount.mount_path.as_str()) {
            errs.push(FieldError::invalid(format!("{at}.mountPath"), &mount.mount_path, "must be unique"));
        }
    }
}

pub(crate) fn validate_protocol(protocol: Option<&str>, path: &str, errs: &mut Vec<FieldError>) {
    match protocol.unwrap_or_default() {
        "" => errs.push(FieldError::required(path, "")),
        p if PORT_PROTOCOLS.contains(&p) => {}
        other => errs.push(FieldError::not_supported(path, other, PORT_PROTOCOLS)),
    }
}

pub(crate) fn validate_taint_effect(effect: &str, allow_empty: bool, path: &str, errs: &mut Vec<FieldError>) {
    match effect {
        "" if allow_empty => {}
        "" => errs.push(FieldError::required(path, "")),
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
        other => errs.push(FieldError::not_supported(path, other, &["NoSchedule", "PreferNoSchedule", "NoExecute"])),
    }
}

/// Checks tolerations: keys are qualified names, `Exists` has no value and is the only
/// operator allowed without a key, `tolerationSeconds` only with `NoExecute`.
pub fn validate_tolerations(tolerations: &[Toleration], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, toleration) in tolerations.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let key = toleration.key.as_deref().unwrap_or_default();
        let operator = toleration.operator.as_deref().unwrap_or_default();
        let value = toleration.value.as_deref().unwrap_or_default();
        let effect = toleration.effect.as_deref().unwrap_or_default();
        if !key.is_empty() {
            errs.extend(is_qualified_name(key).into_iter().map(|m| FieldError::invalid(format!("{at}.key"), key, m)));
        } else if operator != "Exists" {
            errs.push(FieldError::invalid(
                format!("{at}.operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{at}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "" | "Equal" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(format!("{at}.operator"), value, msgs.join(";")));
                }
            }
            "Exists" if !value.is_empty() => errs.push(FieldError::invalid(
                format!("{at}.operator"),
                value,
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errs.push(FieldError::not_supported(format!("{at}.operator"), other, &["Equal", "Exists"])),
        }
        validate_taint_effect(effect, true, &format!("{at}.effect"), &mut errs);
    }
    errs
}

/// Checks that `new` is an allowed update of the pod spec `old` (at `spec`): only container
/// and init container images, `activeDeadlineSeconds` (set, or lowered), added tolerations
/// (existing ones may only change `tolerationSeconds`), removed scheduling gates, and a
/// negative grace period raised to 1 may change. Everything else, `nodeName` included
/// (binding goes through its own subresource), is `Forbidden`.
pub fn validate_pod_spec_update(new: &PodSpec, old: &PodSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (new.active_deadline_seconds, old.active_deadline_seconds) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                n,
                format!("must be between 0 and {}, inclusive", i32::MAX),
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            "null",
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }

    let new_tolerations = new.tolerations.as_deref().unwrap_or_default();
    for existing in old.tolerations.iter().flatten() {
        let kept = new_tolerations
            .iter()
            .any(|t| Toleration { toleration_seconds: t.toleration_seconds, ..existing.clone() } == *t);
        if !kept {
            errs.push(FieldError::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }

    let mut munged = new.clone();
    for (container, old_container) in munged.containers.iter_mut().zip(&old.containers) {
        container.image.clone_from(&old_container.image);
    }
    if let (Some(init), Some(old_init)) = (munged.init_containers.as_mut(), old.init_containers.as_ref()) {
        for (container, old_container) in init.iter_mut().zip(old_init) {
            container.image.clone_from(&old_container.image);
        }
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    munged.tolerations.clone_from(&old.tolerations);
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0) && new.termination_grace_period_seconds == Some(1) {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    let old_gates = old.scheduling_gates.as_deref().unwrap_or_default();
    if new.scheduling_gates.iter().flatten().all(|gate| old_gates.contains(gate)) {
        munged.scheduling_gates.clone_from(&old.scheduling_gates);
    }
    if munged != *old {
        let changed = changed_fields(&munged, old);
        let detail = if changed.is_empty() {
            POD_UPDATE_FORBIDDEN.to_string()
        } else {
            format!("{POD_UPDATE_FORBIDDEN}\n(changed: {})", changed.join(", "))
        };
        errs.push(FieldError::forbidden("spec", detail));
    }
    errs
}

/// The top-level fields of a pod spec that differ between `a` and `b`, as `spec.<field>`.
fn changed_fields(a: &PodSpec, b: &PodSpec) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| format!("spec.{k}")).collect()
}

// ---------------------------------------------------------------------------------------------
// ReplicaSets and Deployments.
// ---------------------------------------------------------------------------------------------

pub(crate) fn non_negative(value: Option<i32>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(v) = value.filter(|v| *v < 0) {
        errs.push(FieldError::invalid(path, v, NON_NEGATIVE_ERR));
    }
}

/// Checks the selector and template that ReplicaSets and Deployments share: a non-empty
/// valid selector that matches the template's labels, a template whose pods restart
/// `Always` and carry no `activeDeadlineSeconds`.
fn validate_selector_and_template(
    selector: &LabelSelector,
    template: Option<&PodTemplateSpec>,
    errs: &mut Vec<FieldError>,
) {
    validate_controller_template(selector, template, &["Always"], errs);
}

/// Checks a workload controller's selector and template: a non-empty valid selector that
/// matches the template's labels, and a template whose `restartPolicy` is one of
/// `restart_policies` (`Always` for ReplicaSets, `OnFailure` or `Never` for Jobs); a template
/// of pods that restart `Always` may not have `activeDeadlineSeconds`.
pub(crate) fn validate_controller_template(
    selector: &LabelSelector,
    template: Option<&PodTemplateSpec>,
    restart_policies: &[&str],
    errs: &mut Vec<FieldError>,
) {
    if selector_is_empty(selector) {
        if selector.match_labels.is_none() && selector.match_expressions.is_none() {
            errs.push(FieldError::required("spec.selector", ""));
        } else {
            errs.push(FieldError::invalid("spec.selector", "", "empty selector is invalid for deployment"));
        }
    } else {
        errs.extend(validate_label_selector(selector, "spec.selector"));
    }
    let Some(template) = template else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    if !selector_is_empty(selector) && !selector_matches(selector, &labels) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels_string(&labels),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(validate_pod_template(template, "spec.template"));
    if let Some(spec) = &template.spec {
        // pod_spec already reported a missing or unknown policy; report a known but wrong one.
        if let Some(other @ ("Always" | "OnFailure" | "Never")) = spec.restart_policy.as_deref()
            && !restart_policies.contains(&other)
        {
            errs.push(FieldError::not_supported("spec.template.spec.restartPolicy", other, restart_policies));
        }
        if restart_policies == ["Always"] && spec.active_deadline_seconds.is_some() {
            errs.push(FieldError::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in ReplicaSet is not Supported",
            ));
        }
    }
}

/// Checks a ReplicaSet's spec: replicas and minReadySeconds non-negative, selector and
/// template as for every pod controller.
pub fn validate_replica_set_spec(spec: &ReplicaSetSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    non_negative(spec.replicas, "spec.replicas", &mut errs);
    non_negative(spec.min_ready_seconds, "spec.minReadySeconds", &mut errs);
    validate_selector_and_template(&spec.selector, spec.template.as_ref(), &mut errs);
    errs
}

pub(crate) fn int_or_percent(value: &IntOrString, path: &str, errs: &mut Vec<FieldError>) -> Option<i64> {
    match value {
        IntOrString::Int(n) => {
            if *n < 0 {
                errs.push(FieldError::invalid(path, n, NON_NEGATIVE_ERR));
            }
            Some(i64::from(*n))
        }
        IntOrString::String(s) => {
            let parsed = s.strip_suffix('%').filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match parsed.and_then(|d| d.parse::<i64>().ok()) {
                Some(percent) => Some(percent),
                None => {
                    errs.push(FieldError::invalid(path, s, "must be an integer or percentage (e.g '5%')"));
                    None
                }
            }
        }
    }
}

fn validate_strategy(strategy: Option<&DeploymentStrategy>, errs: &mut Vec<FieldError>) {
    let strategy_type = strategy.and_then(|s| s.type_.as_deref()).unwrap_or_default();
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    match strategy_type {
        "Recreate" => {
            if rolling.is_some() {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let Some(rolling) = rolling else {
                errs.push(FieldError::required(
                    "spec.strategy.rollingUpdate",
                    "this should be defaulted and never be nil",
                ));
                return;
            };
            let path = "spec.strategy.rollingUpdate";
            let unavailable = rolling
                .max_unavailable
                .as_ref()
                .map(|v| (int_or_percent(v, &format!("{path}.maxUnavailable"), errs), v));
            let surge = rolling.max_surge.as_ref().map(|v| int_or_percent(v, &format!("{path}.maxSurge"), errs));
            let unavailable_value = unavailable.as_ref().and_then(|(n, _)| *n).unwrap_or(0);
            let surge_value = surge.flatten().unwrap_or(0);
            if unavailable_value == 0 && surge_value == 0 {
                let shown = match unavailable.map(|(_, v)| v) {
                    Some(IntOrString::Int(n)) => n.to_string(),
                    Some(IntOrString::String(s)) => s.clone(),
                    None => "null".to_string(),
                };
                errs.push(FieldError::invalid(
                    format!("{path}.maxUnavailable"),
                    shown,
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            if let Some((Some(percent), IntOrString::String(s))) = unavailable
                && percent > 100
            {
                errs.push(FieldError::invalid(format!("{path}.maxUnavailable"), s, "must not be greater than 100%"));
            }
        }
        other => errs.push(FieldError::not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"])),
    }
}

/// Checks a Deployment's spec: the ReplicaSet rules plus the strategy (`RollingUpdate` with
/// `maxSurge` and `maxUnavailable` not both 0, or `Recreate`), a non-negative
/// `revisionHistoryLimit`, and a `progressDeadlineSeconds` above `minReadySeconds`.
pub fn validate_deployment_spec(spec: &DeploymentSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    non_negative(spec.replicas, "spec.replicas", &mut errs);
    non_negative(spec.min_ready_seconds, "spec.minReadySeconds", &mut errs);
    validate_selector_and_template(&spec.selector, Some(&spec.template), &mut errs);
    validate_strategy(spec.strategy.as_ref(), &mut errs);
    non_negative(spec.revision_history_limit, "spec.revisionHistoryLimit", &mut errs);
    if let Some(deadline) = spec.progress_deadline_seconds {
        non_negative(Some(deadline), "spec.progressDeadlineSeconds", &mut errs);
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// Checks that a controller's selector did not change (`spec.selector: Invalid value: ...:
/// field is immutable`).
pub fn validate_selector_update(new: &LabelSelector, old: &LabelSelector) -> Vec<FieldError> {
    if new == old {
        Vec::new()
    } else {
        vec![FieldError::invalid("spec.selector", selector_string(new), "field is immutable")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaulting;
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    fn defaulted_pod(spec: serde_json::Value) -> Pod {
        let mut pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}))
                .expect("valid pod");
        defaulting::default_pod(&mut pod);
        pod
    }

    fn deployment(value: serde_json::Value) -> Deployment {
        let mut d: Deployment = serde_json::from_value(value).expect("valid deployment");
        defaulting::default_deployment(&mut d);
        d
    }

    fn web_deployment() -> serde_json::Value {
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        })
    }

    #[test]
    fn name_formats_report_kubernetes_messages() {
        assert!(is_dns1123_subdomain("example.com").is_empty());
        assert_eq!(
            is_dns1123_subdomain("Example"),
            vec![
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(
            is_dns1123_label("my_name"),
            vec![
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
        assert!(!is_dns1035_label("1abc").is_empty());
        assert!(is_dns1035_label("abc-1").is_empty());
    }

    #[test]
    fn label_keys_take_an_optional_subdomain_prefix() {
        assert!(is_qualified_name("app").is_empty());
        assert!(is_qualified_name("example.com/App_1.x").is_empty());
        assert_eq!(is_qualified_name("/app"), vec!["prefix part must be non-empty"]);
        assert!(is_qualified_name("Example.com/app")[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
        assert!(is_qualified_name("-app")[0].starts_with("name part must consist of"));
        assert!(is_valid_label_value("").is_empty());
        assert!(!is_valid_label_value("a b").is_empty());
    }

    #[test]
    fn metadata_requires_a_name_and_a_namespace_only_for_namespaced_kinds() {
        let meta = ObjectMeta { namespace: Some("default".into()), ..Default::default() };
        let errs = validate_object_meta(&meta, false, NameFormat::Dns1123Subdomain);
        assert_eq!(errs[0].to_string(), "metadata.name: Required value: name or generateName is required");
        assert_eq!(errs[1].to_string(), "metadata.namespace: Forbidden: not allowed on this type");

        let meta = ObjectMeta { name: Some("Bad_Name".into()), ..Default::default() };
        let errs = validate_object_meta(&meta, true, NameFormat::Dns1123Subdomain);
        assert_eq!(fields(&errs), vec!["metadata.name", "metadata.namespace"]);
        assert!(
            errs[0]
                .to_string()
                .starts_with("metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")
        );
    }

    #[test]
    fn generate_name_may_end_with_a_dash() {
        let meta =
            ObjectMeta { name: Some("web-x7k2p".into()), generate_name: Some("web-".into()), ..Default::default() };
        assert!(validate_object_meta(&meta, false, NameFormat::Dns1123Subdomain).is_empty());
    }

    #[test]
    fn bad_labels_and_oversized_annotations_are_rejected() {
        let meta = ObjectMeta {
            name: Some("x".into()),
            labels: Some(BTreeMap::from([("bad key".to_string(), "-bad".to_string())])),
            annotations: Some(BTreeMap::from([("big".to_string(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES))])),
            ..Default::default()
        };
        let errs = validate_object_meta(&meta, false, NameFormat::Dns1123Subdomain);
        assert_eq!(fields(&errs), vec!["metadata.labels", "metadata.labels", "metadata.annotations"]);
        assert_eq!(errs[2].to_string(), "metadata.annotations: Too long: must have at most 262144 bytes");
    }

    #[test]
    fn a_defaulted_minimal_pod_is_valid() {
        let pod =
            defaulted_pod(json!({"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}));
        let spec = pod.spec.expect("spec");
        assert_eq!(validate_pod_spec(&spec, "spec"), Vec::<FieldError>::new());
    }

    #[test]
    fn requests_may_not_exceed_limits_and_amounts_must_be_quantities() {
        let pod = defaulted_pod(json!({"containers": [{"name": "c", "image": "nginx", "resources": {
            "requests": {"cpu": "2", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "lots"}}}]}));
        let errs = validate_pod_spec(&pod.spec.expect("spec"), "spec");
        let messages: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            fields(&errs),
            ["spec.containers[0].resources.limits[memory]", "spec.containers[0].resources.requests"]
        );
        assert!(messages[1].ends_with("must be less than or equal to cpu limit of 500m"), "{messages:?}");
    }

    #[test]
    fn a_pod_without_containers_is_rejected() {
        let pod = defaulted_pod(json!({"containers": []}));
        let errs = validate_pod_spec(&pod.spec.expect("spec"), "spec");
        assert_eq!(errs.iter().map(ToString::to_string).collect::<Vec<_>>(), vec!["spec.containers: Required value"]);
    }

    #[test]
    fn container_names_are_unique_across_init_and_regular_containers() {
        let pod = defaulted_pod(json!({
            "initContainers": [{"name": "setup", "image": "busybox"}],
            "containers": [{"name": "setup", "image": "nginx"}, {"name": "Web", "image": ""}]
        }));
        let errs = validate_pod_spec(&pod.spec.expect("spec"), "spec");
        assert_eq!(
            errs.iter().map(ToString::to_string).take(1).collect::<Vec<_>>(),
            vec!["spec.containers[0].name: Duplicate value: \"setup\""]
        );
        assert_eq!(fields(&errs)[1..], ["spec.containers[1].name", "spec.containers[1].image"]);
    }

    #[test]
    fn restart_policy_ports_and_env_are_checked() {
        let mut pod = defaulted_pod(json!({"containers": [{
            "name": "c", "image": "nginx",
            "ports": [{"containerPort": 70000}, {"containerPort": 80, "protocol": "HTTP"}],
            "env": [{"name": ""}, {"name": "A=B"}]
        }]}));
        if let Some(spec) = pod.spec.as_mut() {
            spec.restart_policy = Some("Sometimes".into());
        }
        let errs = validate_pod_spec(&pod.spec.expect("spec"), "spec");
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: \"70000\": must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].env[0].name: Required value",
                "spec.containers[0].env[1].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
    }

    #[test]
    fn volume_names_are_unique_and_mounts_must_name_a_volume() {
        let pod = defaulted_pod(json!({
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}, {"name": "none"}],
            "containers": [{"name": "c", "image": "nginx",
                            "volumeMounts": [{"name": "data", "mountPath": "/d"}, {"name": "missing", "mountPath": "/d"}]}]
        }));
        let errs = validate_pod_spec(&pod.spec.expect("spec"), "spec");
        assert_eq!(
            fields(&errs),
            vec![
                "spec.volumes[1].name",
                "spec.volumes[2]",
                "spec.containers[0].volumeMounts[1].name",
                "spec.containers[0].volumeMounts[1].mountPath",
            ]
        );
        assert_eq!(errs[1].to_string(), "spec.volumes[2]: Required value: must specify a volume type");
    }

    #[test]
    fn pod_updates_may_change_only_images_deadline_and_tolerations() {
        let old = defaulted_pod(json!({"containers": [{"name": "c", "image": "nginx:1"}], "nodeName": "n1",
                                       "tolerations": [{"key": "k", "operator": "Exists"}]}))
        .spec
        .expect("spec");
        let mut new = old.clone();
        new.containers[0].image = Some("nginx:2".into());
        new.active_deadline_seconds = Some(30);
        new.tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration { operator: Some("Exists".into()), ..Default::default() });
        assert_eq!(validate_pod_spec_update(&new, &old), Vec::<FieldError>::new());

        let mut moved = old.clone();
        moved.node_name = Some("n2".into());
        let errs = validate_pod_spec_update(&moved, &old);
        assert_eq!(fields(&errs), vec!["spec"]);
        assert!(errs[0].to_string().starts_with("spec: Forbidden: pod updates may not change fields other than"));
        assert!(errs[0].detail.ends_with("(changed: spec.nodeName)"));

        let mut dropped = old.clone();
        dropped.tolerations = None;
        assert_eq!(fields(&validate_pod_spec_update(&dropped, &old)), vec!["spec.tolerations"]);
    }

    #[test]
    fn active_deadline_may_only_go_down_on_update() {
        let mut old = defaulted_pod(json!({"containers": [{"name": "c", "image": "x"}]})).spec.expect("spec");
        old.active_deadline_seconds = Some(10);
        let mut new = old.clone();
        new.active_deadline_seconds = Some(20);
        let errs = validate_pod_spec_update(&new, &old);
        assert_eq!(
            errs[0].to_string(),
            "spec.activeDeadlineSeconds: Invalid value: \"20\": must be less than or equal to previous value"
        );
    }

    #[test]
    fn a_defaulted_minimal_deployment_is_valid() {
        let d = deployment(web_deployment());
        assert_eq!(validate_deployment_spec(&d.spec), Vec::<FieldError>::new());
    }

    #[test]
    fn selector_must_match_template_labels() {
        let mut value = web_deployment();
        value["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let errs = validate_deployment_spec(&deployment(value).spec);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "spec.template.metadata.labels: Invalid value: \"app=other\": `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn match_expressions_take_part_in_template_matching() {
        let mut value = web_deployment();
        value["spec"]["selector"] = json!({"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web", "api"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "tier", "operator": "NotIn", "values": ["db"]},
            {"key": "app", "operator": "Exists"}
        ]});
        assert!(validate_deployment_spec(&deployment(value.clone()).spec).is_empty());
        value["spec"]["template"]["metadata"]["labels"]["canary"] = json!("true");
        assert_eq!(fields(&validate_deployment_spec(&deployment(value).spec)), vec!["spec.template.metadata.labels"]);
    }

    #[test]
    fn deployment_needs_a_selector_and_an_always_restarting_template() {
        let mut value = web_deployment();
        value["spec"]["selector"] = json!(null);
        value["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        value["spec"]["replicas"] = json!(-1);
        let errs = validate_deployment_spec(&deployment(value).spec);
        assert_eq!(fields(&errs), vec!["spec.replicas", "spec.selector", "spec.template.spec.restartPolicy"]);
    }

    #[test]
    fn max_surge_and_max_unavailable_may_not_both_be_zero() {
        let mut value = web_deployment();
        value["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        value["spec"]["progressDeadlineSeconds"] = json!(5);
        value["spec"]["minReadySeconds"] = json!(10);
        let errs = validate_deployment_spec(&deployment(value).spec);
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0",
                "spec.progressDeadlineSeconds: Invalid value: \"5\": must be greater than minReadySeconds",
            ]
        );
    }

    #[test]
    fn unknown_strategy_types_and_bad_percentages_are_rejected() {
        let mut value = web_deployment();
        value["spec"]["strategy"] = json!({"type": "BlueGreen"});
        assert_eq!(fields(&validate_deployment_spec(&deployment(value).spec)), vec!["spec.strategy.type"]);
        let mut value = web_deployment();
        value["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": "x%", "maxUnavailable": "150%"}});
        let errs = validate_deployment_spec(&deployment(value).spec);
        assert_eq!(
            fields(&errs),
            vec!["spec.strategy.rollingUpdate.maxSurge", "spec.strategy.rollingUpdate.maxUnavailable"]
        );
    }

    #[test]
    fn controller_selectors_are_immutable() {
        let old = deployment(web_deployment()).spec.selector;
        let new =
            LabelSelector { match_labels: Some(BTreeMap::from([("app".into(), "api".into())])), ..Default::default() };
        let errs = validate_selector_update(&new, &old);
        assert_eq!(errs[0].to_string(), "spec.selector: Invalid value: \"app=api\": field is immutable");
        assert!(validate_selector_update(&old, &old).is_empty());
    }

    #[test]
    fn replica_set_without_template_is_rejected() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "rs"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}}
        }))
        .expect("valid replicaset");
        assert_eq!(fields(&validate_replica_set_spec(&rs.spec)), vec!["spec.template"]);
    }
}
