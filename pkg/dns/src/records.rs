//! The names of the cluster domain (`cluster.local` by default), answered from the Services and
//! EndpointSlices, as Kubernetes' DNS specification defines them:
//!
//! - `<service>.<namespace>.svc.<domain>`: `A` with the cluster IP; for a headless Service
//!   (`clusterIP: None`) one `A` per ready endpoint.
//! - `<hostname>.<service>.<namespace>.svc.<domain>`: `A` of a headless Service's endpoint that
//!   has a `hostname` (a pod with `hostname` and `subdomain`).
//! - `_<port>._<protocol>.<service>.<namespace>.svc.<domain>`: `SRV` for each named port, aimed
//!   at the Service's name (for a headless Service, at each endpoint's name).
//!
//! - `<a-b-c-d>.<namespace>.pod.<domain>`: `A` with the address `a.b.c.d` the name spells, as
//!   CoreDNS's `pods insecure` mode (Kubernetes' kubeadm default) answers it, without looking
//!   for the pod.
//!
//! Other names of the domain do not exist (`NXDOMAIN`); a name that exists but has no record of
//! the type asked (`AAAA` of an IPv4 Service) is an empty answer.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube_core::ResourceExt;

/// How long answers may be cached (Kubernetes' CoreDNS default).
pub const TTL: u32 = 30;

/// What a question about the cluster domain gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The records (possibly none: the name exists without records of that type).
    Records(Vec<Record>),
    /// The name does not exist.
    NoSuchName,
}

/// A view of the cluster's Services and EndpointSlices to answer from.
pub struct Zone<'a> {
    /// The cluster domain, e.g. `cluster.local.`.
    pub domain: &'a Name,
    /// Every Service.
    pub services: &'a [Arc<Service>],
    /// Every EndpointSlice.
    pub slices: &'a [Arc<EndpointSlice>],
}

/// The answer for `<a-b-c-d>.<namespace>.pod.<domain>`: the address the first label spells.
fn pod_answer(name: &Name, address: &str, kind: RecordType) -> Answer {
    let Ok(ip) = address.replace('-', ".").parse::<Ipv4Addr>() else { return Answer::NoSuchName };
    match kind {
        RecordType::A | RecordType::ANY => {
            Answer::Records(vec![Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))])
        }
        _ => Answer::Records(Vec::new()),
    }
}

/// One ready endpoint of a headless Service: its address and its name's first label.
struct Endpoint {
    ip: Ipv4Addr,
    hostname: String,
}

impl Zone<'_> {
    /// The answer to `name` (lower case, under the domain) for `kind`.
    pub fn answer(&self, name: &Name, kind: RecordType) -> Answer {
        let labels: Vec<String> =
            name.iter().map(|label| String::from_utf8_lossy(label).to_ascii_lowercase()).collect();
        let domain_labels = usize::from(self.domain.num_labels());
        if labels.len() < domain_labels + 3 {
            return self.parent(&labels, domain_labels);
        }
        let local = &labels[..labels.len() - domain_labels];
        if let [address, _namespace, pod] = local
            && pod == "pod"
        {
            return pod_answer(name, address, kind);
        }
        // ... <service> <namespace> svc
        let [rest @ .., service_name, namespace, svc] = local else { return Answer::NoSuchName };
        if svc != "svc" {
            return Answer::NoSuchName;
        }
        let Some(service) = self
            .services
            .iter()
            .find(|s| s.name_any() == *service_name && s.namespace().as_deref() == Some(namespace.as_str()))
        else {
            return Answer::NoSuchName;
        };
        let Some(spec) = service.spec.as_ref() else { return Answer::NoSuchName };
        let service_fqdn = name_of(&[service_name, namespace, "svc"], self.domain);
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let endpoints = if headless { self.endpoints(service) } else { Vec::new() };
        match rest {
            [] => {
                let addresses: Vec<Ipv4Addr> = if headless {
                    endpoints.iter().map(|e| e.ip).collect()
                } else {
                    spec.cluster_ip.iter().filter_map(|ip| ip.parse().ok()).collect()
                };
                if spec.type_.as_deref() == Some("ExternalName") {
                    return Answer::Records(Vec::new());
                }
                let records = match kind {
                    RecordType::A | RecordType::ANY => {
                        addresses.into_iter().map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))).collect()
                    }
                    _ => Vec::new(),
                };
                Answer::Records(records)
            }
            [port, protocol] if port.starts_with('_') && protocol.starts_with('_') => {
                let Some(service_port) = spec.ports.iter().flatten().find(|p| {
                    p.name.as_deref().map(|n| format!("_{n}")) == Some(port.clone())
                        && format!("_{}", p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase()) == *protocol
                }) else {
                    return Answer::NoSuchName;
                };
                if !matches!(kind, RecordType::SRV | RecordType::ANY) {
                    return Answer::Records(Vec::new());
                }
                let port_number = u16::try_from(service_port.port).unwrap_or(0);
                let targets: Vec<Name> = if headless {
                    endpoints
                        .iter()
                        .map(|e| name_of(&[&e.hostname, service_name, namespace, "svc"], self.domain))
                        .collect()
                } else {
                    vec![service_fqdn]
                };
                let records = targets
                    .into_iter()
                    .map(|target| {
                        Record::from_rdata(name.clone(), TTL, RData::SRV(SRV::new(0, 100, port_number, target)))
                    })
                    .collect();
                Answer::Records(records)
            }
            [hostname] if headless => match endpoints.iter().find(|e| e.hostname == *hostname) {
                Some(endpoint) if matches!(kind, RecordType::A | RecordType::ANY) => {
                    Answer::Records(vec![Record::from_rdata(name.clone(), TTL, RData::A(A(endpoint.ip)))])
                }
                Some(_) => Answer::Records(Vec::new()),
                None => Answer::NoSuchName,
            },
            _ => Answer::NoSuchName,
        }
    }

    /// Names above Services (`svc.<domain>`, `<namespace>.svc.<domain>`, the domain): they exist,
    /// without records.
    fn parent(&self, labels: &[String], domain_labels: usize) -> Answer {
        match &labels[..labels.len().saturating_sub(domain_labels)] {
            [] | [_] | [_, _] => Answer::Records(Vec::new()),
            _ => Answer::NoSuchName,
        }
    }

    /// The ready endpoints of `service` (from its slices), each named by its `hostname` or its
    /// address with dashes (`10-244-1-5`), as Kubernetes names them.
    fn endpoints(&self, service: &Service) -> Vec<Endpoint> {
        let mut endpoints: Vec<Endpoint> = self
            .slices
            .iter()
            .filter(|slice| slice.namespace() == service.namespace())
            .filter(|slice| slice.labels().get("kubernetes.io/service-name") == Some(&service.name_any()))
            .filter(|slice| slice.address_type == "IPv4")
            .flat_map(|slice| slice.endpoints.clone().unwrap_or_default())
            .filter(|endpoint| endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .filter_map(|endpoint| {
                let ip: Ipv4Addr = endpoint.addresses.first()?.parse().ok()?;
                let hostname = endpoint.hostname.clone().unwrap_or_else(|| ip.to_string().replace('.', "-"));
                Some(Endpoint { ip, hostname })
            })
            .collect();
        endpoints.sort_by_key(|e| e.ip);
        endpoints.dedup_by_key(|e| e.ip);
        endpoints
    }
}

/// `labels` followed by `domain`, as one name.
fn name_of(labels: &[&str], domain: &Name) -> Name {
    let text = format!("{}.{}", labels.join("."), domain.to_ascii());
    Name::from_ascii(&text).unwrap_or_else(|_| domain.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, cluster_ip: &str) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
                "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
            .expect("service"),
        )
    }

    fn slice(service: &str, endpoints: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": format!("{service}-x"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": service}}, "addressType": "IPv4", "endpoints": endpoints}))
            .expect("slice"),
        )
    }

    fn ask(zone: &Zone<'_>, name: &str, kind: RecordType) -> Answer {
        zone.answer(&Name::from_ascii(name).expect("name"), kind)
    }

    fn data(answer: Answer) -> Vec<String> {
        match answer {
            Answer::Records(records) => records.iter().map(|r| r.data.to_string()).collect(),
            Answer::NoSuchName => vec!["NXDOMAIN".into()],
        }
    }

    #[test]
    fn services_endpoints_and_ports_have_names() {
        let domain = Name::from_ascii("cluster.local.").expect("domain");
        let services = [service("web", "10.96.1.2"), service("db", "None")];
        let slices = [slice(
            "db",
            json!([{"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "hostname": "db-0"},
                   {"addresses": ["10.244.2.6"], "conditions": {"ready": true}},
                   {"addresses": ["10.244.2.7"], "conditions": {"ready": false}}]),
        )];
        let zone = Zone { domain: &domain, services: &services, slices: &slices };
        assert_eq!(data(ask(&zone, "web.default.svc.cluster.local.", RecordType::A)), ["10.96.1.2"]);
        assert_eq!(data(ask(&zone, "WEB.Default.svc.cluster.local.", RecordType::A)), ["10.96.1.2"]);
        assert!(data(ask(&zone, "web.default.svc.cluster.local.", RecordType::AAAA)).is_empty());
        assert_eq!(data(ask(&zone, "db.default.svc.cluster.local.", RecordType::A)), ["10.244.1.5", "10.244.2.6"]);
        assert_eq!(data(ask(&zone, "db-0.db.default.svc.cluster.local.", RecordType::A)), ["10.244.1.5"]);
        assert_eq!(data(ask(&zone, "10-244-2-6.db.default.svc.cluster.local.", RecordType::A)), ["10.244.2.6"]);
        assert_eq!(
            data(ask(&zone, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV)),
            ["0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(data(ask(&zone, "nope.default.svc.cluster.local.", RecordType::A)), ["NXDOMAIN"]);
        assert_eq!(data(ask(&zone, "web.other.svc.cluster.local.", RecordType::A)), ["NXDOMAIN"]);
        assert!(data(ask(&zone, "default.svc.cluster.local.", RecordType::A)).is_empty());
    }

    #[test]
    fn pod_names_spell_their_address() {
        let domain = Name::from_ascii("cluster.local.").expect("domain");
        let zone = Zone { domain: &domain, services: &[], slices: &[] };
        assert_eq!(data(ask(&zone, "10-244-1-7.default.pod.cluster.local.", RecordType::A)), ["10.244.1.7"]);
        assert!(data(ask(&zone, "10-244-1-7.default.pod.cluster.local.", RecordType::AAAA)).is_empty());
        for bad in [
            "10-244-1.default.pod.cluster.local.",
            "10-244-1-300.default.pod.cluster.local.",
            "web.default.pod.cluster.local.",
        ] {
            assert_eq!(data(ask(&zone, bad, RecordType::A)), ["NXDOMAIN"], "{bad}");
        }
    }
}
