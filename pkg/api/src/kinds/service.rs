//! Service (core/v1): a stable name and virtual IP in front of a set of pods.
//!
//! Its strategy: defaults as Kubernetes' (`type: ClusterIP`, `sessionAffinity: None`,
//! `targetPort` = `port`, traffic policies); a new Service's status is reset to an empty
//! load-balancer status; ports, protocols, selectors and the external name are checked; an
//! allocated cluster IP may not change.

use std::collections::HashSet;
use std::net::IpAddr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{LoadBalancerStatus, Service, ServiceSpec, ServiceStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, at, column, int, list, or_none, since, text};
use crate::defaulting;
use crate::field::FieldError;
use crate::registry::{ResourceDef, Subresource};
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{
    INVALID_IP_ERR, NameFormat, PORT_RANGE_ERR, is_dns1123_label, is_dns1123_subdomain, is_valid_port_name,
    is_valid_port_num, validate_labels, validate_protocol,
};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Service",
    plural: "services",
    singular: "service",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    subresources: &[Subresource::Status],
    field_labels: &[],
    strategy: &StrategyFor::<Service>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Service {
    /// Services become DNS names and environment variables: DNS-1035 labels.
    const NAME_FORMAT: NameFormat = NameFormat::Dns1035Label;

    fn set_defaults(&mut self) {
        defaulting::default_service(self);
    }

    /// The status belongs to the controllers: a new Service has an empty load balancer.
    fn prepare_for_create(&mut self) {
        self.status = Some(ServiceStatus { load_balancer: Some(LoadBalancerStatus::default()), conditions: None });
    }

    /// Kubernetes' `dropTypeDependentFields`: a Service that no longer needs node ports (or a
    /// cluster IP, for ExternalName) drops the ones it still carries from before, so a type
    /// change needs no second edit.
    fn prepare_for_update(&mut self, old: &Self) {
        let (Some(spec), Some(old_spec)) = (self.spec.as_mut(), old.spec.as_ref()) else { return };
        let needs_node_ports = |spec: &ServiceSpec| matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        if needs_node_ports(old_spec) && !needs_node_ports(spec) {
            let old_ports = old_spec.ports.as_deref().unwrap_or_default();
            for port in spec.ports.iter_mut().flatten() {
                if port.node_port.is_some() && old_ports.iter().any(|old| old.node_port == port.node_port) {
                    port.node_port = None;
                }
            }
        }
        if spec.type_.as_deref() == Some("ExternalName")
            && old_spec.type_.as_deref() != Some("ExternalName")
            && spec.cluster_ip == old_spec.cluster_ip
        {
            spec.cluster_ip = None;
            spec.cluster_ips = None;
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_service_spec(self.spec.as_ref().unwrap_or(&ServiceSpec::default()))
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let empty = ServiceSpec::default();
        validate_service_update(self.spec.as_ref().unwrap_or(&empty), old.spec.as_ref().unwrap_or(&empty))
    }
}

/// Checks a Service's spec: type, session affinity, cluster IP, ports (present unless
/// headless or `ExternalName`; named when more than one; unique names and port/protocol
/// pairs; valid numbers, protocols and target ports), selector labels, external name.
pub fn validate_service_spec(spec: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let service_type = spec.type_.as_deref().unwrap_or_default();
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let headless = cluster_ip == "None";
    let ports = spec.ports.as_deref().unwrap_or_default();

    match service_type {
        "" => errs.push(FieldError::required("spec.type", "")),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        other => errs.push(FieldError::not_supported(
            "spec.type",
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    match spec.session_affinity.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.sessionAffinity", "")),
        "None" | "ClientIP" => {}
        other => errs.push(FieldError::not_supported("spec.sessionAffinity", other, &["ClientIP", "None"])),
    }
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    if service_type == "ExternalName" {
        if !cluster_ip.is_empty() {
            errs.push(FieldError::forbidden("spec.clusterIP", "may not be set for ExternalName services"));
        }
        let cname = spec.external_name.as_deref().unwrap_or_default();
        let cname = cname.strip_suffix('.').unwrap_or(cname);
        if cname.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            errs.extend(
                is_dns1123_subdomain(cname).into_iter().map(|m| FieldError::invalid("spec.externalName", cname, m)),
            );
        }
    } else if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<IpAddr>().is_err() {
        errs.push(FieldError::invalid("spec.clusterIP", cluster_ip, INVALID_IP_ERR));
    }

    let mut names = HashSet::new();
    let mut port_keys = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        match port.name.as_deref().unwrap_or_default() {
            "" if ports.len() > 1 => errs.push(FieldError::required(format!("{at}.name"), "")),
            "" => {}
            name => {
                errs.extend(
                    is_dns1123_label(name).into_iter().map(|m| FieldError::invalid(format!("{at}.name"), name, m)),
                );
                if !names.insert(name) {
                    errs.push(FieldError::duplicate(format!("{at}.name"), name));
                }
            }
        }
        if !is_valid_port_num(port.port) {
            errs.push(FieldError::invalid(format!("{at}.port"), port.port, PORT_RANGE_ERR));
        }
        validate_protocol(port.protocol.as_deref(), &format!("{at}.protocol"), &mut errs);
        match &port.target_port {
            Some(IntOrString::Int(n)) if !is_valid_port_num(*n) => {
                errs.push(FieldError::invalid(format!("{at}.targetPort"), n, PORT_RANGE_ERR));
            }
            Some(IntOrString::String(name)) => errs.extend(
                is_valid_port_name(name).into_iter().map(|m| FieldError::invalid(format!("{at}.targetPort"), name, m)),
            ),
            _ => {}
        }
        if service_type == "ClusterIP" && port.node_port.unwrap_or(0) != 0 {
            errs.push(FieldError::forbidden(format!("{at}.nodePort"), "may not be used when `type` is 'ClusterIP'"));
        }
        let protocol = port.protocol.as_deref().unwrap_or_default();
        if !port_keys.insert((port.port, protocol)) {
            errs.push(FieldError::duplicate(&at, format!("{}/{protocol}", port.port)));
        }
    }
    if service_type != "ExternalName"
        && let Some(selector) = &spec.selector
    {
        errs.extend(validate_labels(selector, "spec.selector"));
    }
    errs
}

/// Checks a Service update: a cluster IP, once allocated, may not change. An update that
/// leaves `clusterIP` empty passes; the apiserver is expected to carry the old value over,
/// as Kubernetes' strategy does.
pub fn validate_service_update(new: &ServiceSpec, old: &ServiceSpec) -> Vec<FieldError> {
    let new_ip = new.cluster_ip.as_deref().unwrap_or_default();
    let old_ip = old.cluster_ip.as_deref().unwrap_or_default();
    if !old_ip.is_empty() && !new_ip.is_empty() && new_ip != old_ip {
        vec![FieldError::invalid("spec.clusterIP", new_ip, "field is immutable")]
    } else {
        Vec::new()
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "type determines how the Service is exposed.", 0),
    column("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly.", 0),
    column(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
        0,
    ),
    column("Port(s)", "string", "The list of ports that are exposed by this service.", 0),
    AGE,
    column("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", 1),
];

/// printers.go's `printService`.
fn row(service: &Value, now: Timestamp) -> Vec<Value> {
    let service_type = text(service, &["spec", "type"]);
    let cluster_ip = list(service, &["spec", "clusterIPs"]).first().and_then(Value::as_str).unwrap_or_default();
    let cluster_ip = if cluster_ip.is_empty() { text(service, &["spec", "clusterIP"]) } else { cluster_ip };
    let external_ips: Vec<&str> = list(service, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    let external_ip = match service_type {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut ips: Vec<&str> = list(service, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|ingress| match text(ingress, &["ip"]) {
                    "" => text(ingress, &["hostname"]),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            ips.extend(&external_ips);
            if ips.is_empty() { "<pending>".to_string() } else { ips.join(",") }
        }
        "ExternalName" => text(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = list(service, &["spec", "ports"])
        .iter()
        .map(|port| {
            let protocol = text(port, &["protocol"]);
            match int(port, &["nodePort"]) {
                node_port if node_port > 0 => format!("{}:{node_port}/{protocol}", int(port, &["port"])),
                _ => format!("{}/{protocol}", int(port, &["port"])),
            }
        })
        .collect();
    let selector = at(service, &["spec", "selector"])
        .and_then(Value::as_object)
        .map(|labels| {
            labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        })
        .unwrap_or_default();

    vec![
        Value::from(text(service, &["metadata", "name"])),
        Value::from(service_type),
        or_none(cluster_ip).into(),
        external_ip.into(),
        or_none(&ports.join(",")).into(),
        since(text(service, &["metadata", "creationTimestamp"]), now).into(),
        or_none(&selector).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;
    use serde_json::json;

    #[test]
    fn services_need_ports_with_names_when_more_than_one() {
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 80, "name": "http"}, {"port": 0, "name": "http"}]}
        }))
        .expect("valid service");
        defaulting::default_service(&mut svc);
        let errs = validate_service_spec(&svc.spec.expect("spec"));
        assert_eq!(
            fields(&errs),
            vec![
                "spec.ports[0].name",
                "spec.ports[1]",
                "spec.ports[2].name",
                "spec.ports[2].port",
                "spec.ports[2].targetPort"
            ]
        );

        let mut svc: Service = serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {}})).expect("valid");
        defaulting::default_service(&mut svc);
        assert_eq!(fields(&validate_service_spec(&svc.spec.expect("spec"))), vec!["spec.ports"]);
    }

    #[test]
    fn cluster_ip_may_not_change_once_set() {
        let old = ServiceSpec { cluster_ip: Some("10.0.0.1".into()), ..Default::default() };
        let new = ServiceSpec { cluster_ip: Some("10.0.0.2".into()), ..Default::default() };
        assert_eq!(fields(&validate_service_update(&new, &old)), vec!["spec.clusterIP"]);
        assert!(validate_service_update(&ServiceSpec::default(), &old).is_empty());
    }
}
