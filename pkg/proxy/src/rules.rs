//! The nftables ruleset of one node, from the Services and EndpointSlices: a pure function, so
//! what the kernel gets can be read and tested without a kernel.
//!
//! Everything lives in the table `ip rkube-proxy`, replaced whole in one transaction (`nft -f`:
//! the table is declared, deleted and declared again with its content), modelled on
//! kube-proxy's nftables mode:
//!
//! - `nat-prerouting` (traffic arriving, e.g. from pods) and `nat-output` (from the node
//!   itself) jump to `services`, which looks the destination up in two verdict maps:
//!   `service-ips` (cluster IP . protocol . port) and, for addresses of this node,
//!   `service-nodeports` (protocol . port).
//! - A Service port's chain `svc-…` marks the packet for masquerade when it does not come from
//!   the cluster CIDR, sends a client with session affinity back to its endpoint, and else picks
//!   an endpoint at random (`numgen random mod N`). A node port's chain `ext-…` marks every
//!   packet (the reply must come back through this node) and goes to the Service chain, or with
//!   `externalTrafficPolicy: Local` to a chain of this node's endpoints only, without
//!   masquerade, keeping the client's address.
//! - An endpoint's chain `ep-…` marks hairpin traffic (a pod reaching itself through its
//!   Service), records the client for affinity, and DNATs to the endpoint.
//! - `nat-postrouting` masquerades what was marked.
//! - A Service port without usable endpoints is rejected (ICMP port unreachable) in the filter
//!   hooks, through `no-endpoint-services` and `no-endpoint-nodeports`, so a client learns at
//!   once instead of timing out.
//!
//! Endpoints used: the ready ones; when none is ready, those still serving while terminating
//! (so connections drain during a rolling update), as Kubernetes does.

use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube_core::ResourceExt;

/// The table all rules live in.
pub const TABLE: &str = "rkube-proxy";
/// The packet mark that asks for masquerade.
const MASQUERADE_MARK: &str = "0x4000";

/// How this node's rules are made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// This node's name (for `externalTrafficPolicy: Local`).
    pub node_name: String,
    /// The pods' addresses (`--cluster-cidr`); traffic from elsewhere to a cluster IP is
    /// masqueraded. `None` masquerades all Service traffic.
    pub cluster_cidr: Option<String>,
}

/// A ruleset and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// The `nft -f` script.
    pub script: String,
    /// Service ports with at least one endpoint.
    pub services: usize,
    /// Endpoint chains (one per endpoint and Service port).
    pub endpoints: usize,
}

/// One endpoint of a Service port: its address and port, its node, and its conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    ip: String,
    port: i32,
    node: Option<String>,
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// The endpoints of `service`'s port `port` in `slices`.
fn targets(service: &Service, port: &ServicePort, slices: &[Arc<EndpointSlice>]) -> Vec<Target> {
    let name = port.name.clone().unwrap_or_default();
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let mut targets: Vec<Target> = slices
        .iter()
        .filter(|slice| slice.namespace() == service.namespace())
        .filter(|slice| slice.labels().get("kubernetes.io/service-name") == Some(&service.name_any()))
        .filter(|slice| slice.address_type == "IPv4")
        .flat_map(|slice| {
            let number = slice.ports.iter().flatten().find_map(|p| {
                (p.name.clone().unwrap_or_default() == name && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                    .then_some(p.port)
                    .flatten()
            });
            let endpoints = slice.endpoints.clone().unwrap_or_default();
            endpoints.into_iter().filter_map(move |endpoint| {
                let conditions = endpoint.conditions.unwrap_or_default();
                Some(Target {
                    ip: endpoint.addresses.first()?.clone(),
                    port: number?,
                    node: endpoint.node_name,
                    // Unset means true, as the API says.
                    ready: conditions.ready.unwrap_or(true),
                    serving: conditions.serving.or(conditions.ready).unwrap_or(true),
                    terminating: conditions.terminating.unwrap_or(false),
                })
            })
        })
        .collect();
    targets.sort_by(|a, b| (&a.ip, a.port).cmp(&(&b.ip, b.port)));
    targets.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
    targets
}

/// The endpoints traffic goes to: the ready ones, else those serving while terminating.
fn usable(targets: &[Target]) -> Vec<&Target> {
    let ready: Vec<&Target> = targets.iter().filter(|t| t.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    targets.iter().filter(|t| t.serving && t.terminating).collect()
}

/// The ruleset for `services` and `slices` on this node (see the module docs).
pub fn ruleset(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>], options: &Options) -> Ruleset {
    let mut chains = String::new();
    let mut service_ips = Vec::new();
    let mut node_ports = Vec::new();
    let mut no_endpoint_ips = Vec::new();
    let mut no_endpoint_ports = Vec::new();
    let mut sets = String::new();
    let (mut services_count, mut endpoints_count) = (0, 0);
    let mut sorted: Vec<&Arc<Service>> = services.iter().collect();
    sorted.sort_by_key(|s| (s.namespace(), s.name_any()));
    for service in sorted {
        let Some(spec) = service.spec.as_ref() else { continue };
        let cluster_ip = spec.cluster_ip.clone().unwrap_or_default();
        if cluster_ip.is_empty() || cluster_ip == "None" || spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800)
        });
        let local_only = spec.external_traffic_policy.as_deref() == Some("Local");
        for port in spec.ports.iter().flatten() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            let id =
                format!("{}/{}/{protocol}/{}", service.namespace().unwrap_or_default(), service.name_any(), port.port);
            let targets = targets(service, port, slices);
            let usable = usable(&targets);
            let node_port = port.node_port.filter(|p| *p > 0);
            if usable.is_empty() {
                no_endpoint_ips.push(format!("{cluster_ip} . {protocol} . {}", port.port));
                if let Some(node_port) = node_port {
                    no_endpoint_ports.push(format!("{protocol} . {node_port}"));
                }
                continue;
            }
            services_count += 1;
            // One chain per endpoint.
            let mut endpoint_chains = Vec::new();
            for target in &usable {
                let chain = format!("ep-{id}__{}/{}", target.ip, target.port);
                let _ = writeln!(chains, "\tchain {chain} {{");
                let _ = writeln!(chains, "\t\tip saddr {} jump mark-for-masquerade", target.ip);
                if affinity.is_some() {
                    let _ = writeln!(chains, "\t\tupdate @{} {{ ip saddr }}", affinity_set(&chain));
                }
                let _ = writeln!(chains, "\t\tmeta l4proto {protocol} dnat to {}:{}", target.ip, target.port);
                let _ = writeln!(chains, "\t}}");
                if let Some(timeout) = affinity {
                    let _ = writeln!(
                        sets,
                        "\tset {} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {timeout}s\n\t}}",
                        affinity_set(&chain)
                    );
                }
                endpoints_count += 1;
                endpoint_chains.push((chain, target.node.clone()));
            }
            // The Service port's chain.
            let service_chain = format!("svc-{id}");
            let _ = writeln!(chains, "\tchain {service_chain} {{");
            match &options.cluster_cidr {
                Some(cidr) => {
                    let _ = writeln!(chains, "\t\tip saddr != {cidr} jump mark-for-masquerade");
                }
                None => {
                    let _ = writeln!(chains, "\t\tjump mark-for-masquerade");
                }
            }
            write_balancing(
                &mut chains,
                &endpoint_chains.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
                affinity.is_some(),
            );
            let _ = writeln!(chains, "\t}}");
            service_ips.push(format!("{cluster_ip} . {protocol} . {} : goto {service_chain}", port.port));
            // The node port's chain.
            if let Some(node_port) = node_port {
                let external_chain = format!("ext-{id}");
                let _ = writeln!(chains, "\tchain {external_chain} {{");
                if local_only {
                    let local: Vec<&str> = endpoint_chains
                        .iter()
                        .filter(|(_, node)| node.as_deref() == Some(options.node_name.as_str()))
                        .map(|(chain, _)| chain.as_str())
                        .collect();
                    if local.is_empty() {
                        let _ = writeln!(chains, "\t\tdrop");
                    } else {
                        write_balancing(&mut chains, &local, affinity.is_some());
                    }
                } else {
                    let _ = writeln!(chains, "\t\tjump mark-for-masquerade");
                    let _ = writeln!(chains, "\t\tgoto {service_chain}");
                }
                let _ = writeln!(chains, "\t}}");
                node_ports.push(format!("{protocol} . {node_port} : goto {external_chain}"));
            }
        }
    }
    let mut script = String::new();
    let _ = writeln!(script, "table ip {TABLE}");
    let _ = writeln!(script, "delete table ip {TABLE}");
    let _ = writeln!(script, "table ip {TABLE} {{");
    write_map(&mut script, "service-ips", "ipv4_addr . inet_proto . inet_service : verdict", &service_ips);
    write_map(&mut script, "service-nodeports", "inet_proto . inet_service : verdict", &node_ports);
    let rejects = |elements: &[String]| elements.iter().map(|e| format!("{e} : goto reject-chain")).collect::<Vec<_>>();
    write_map(
        &mut script,
        "no-endpoint-services",
        "ipv4_addr . inet_proto . inet_service : verdict",
        &rejects(&no_endpoint_ips),
    );
    write_map(
        &mut script,
        "no-endpoint-nodeports",
        "inet_proto . inet_service : verdict",
        &rejects(&no_endpoint_ports),
    );
    script.push_str(&sets);
    script.push_str(BASE_CHAINS.replace("MARK", MASQUERADE_MARK).as_str());
    script.push_str(&chains);
    script.push_str("}\n");
    Ruleset { script, services: services_count, endpoints: endpoints_count }
}

/// The affinity set of an endpoint chain (set names are shorter than chain names may be).
fn affinity_set(chain: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in chain.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("affinity-{hash:016x}")
}

/// Sends a client with affinity back to its endpoint, else picks one at random.
fn write_balancing(chains: &mut String, endpoints: &[&str], affinity: bool) {
    if affinity {
        for chain in endpoints {
            let _ = writeln!(chains, "\t\tip saddr @{} goto {chain}", affinity_set(chain));
        }
    }
    let verdicts: Vec<String> = endpoints.iter().enumerate().map(|(i, chain)| format!("{i} : goto {chain}")).collect();
    let _ = writeln!(chains, "\t\tnumgen random mod {} vmap {{ {} }}", endpoints.len(), verdicts.join(", "));
}

fn write_map(script: &mut String, name: &str, kind: &str, elements: &[String]) {
    let _ = writeln!(script, "\tmap {name} {{\n\t\ttype {kind}");
    if !elements.is_empty() {
        let _ = writeln!(script, "\t\telements = {{ {} }}", elements.join(",\n\t\t\t"));
    }
    let _ = writeln!(script, "\t}}");
}

/// The chains every ruleset has: the hooks, the lookups, masquerade and reject.
const BASE_CHAINS: &str = "\tchain filter-prerouting {
\t\ttype filter hook prerouting priority -110; policy accept;
\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services
\t\tfib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
\t}
\tchain filter-output {
\t\ttype filter hook output priority -110; policy accept;
\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services
\t\tfib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
\t}
\tchain reject-chain {
\t\treject
\t}
\tchain nat-prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump services
\t}
\tchain nat-output {
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}
\tchain nat-postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tjump masquerading
\t}
\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
\t}
\tchain masquerading {
\t\tmeta mark & MARK == 0 return
\t\tmeta mark set meta mark ^ MARK
\t\tmasquerade fully-random
\t}
\tchain mark-for-masquerade {
\t\tmeta mark set meta mark | MARK
\t}
";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, spec: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}))
                .expect("service"),
        )
    }

    fn slice(service: &str, endpoints: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": format!("{service}-x"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints}))
            .expect("slice"),
        )
    }

    fn options() -> Options {
        Options { node_name: "n1".into(), cluster_cidr: Some("10.244.0.0/16".into()) }
    }

    #[test]
    fn a_service_balances_over_its_ready_endpoints() {
        let web = service(
            "web",
            json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        );
        let endpoints = json!([
            {"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "n1"},
            {"addresses": ["10.244.2.5"], "conditions": {"ready": true}, "nodeName": "n2"},
            {"addresses": ["10.244.2.6"], "conditions": {"ready": false, "serving": false}, "nodeName": "n2"},
        ]);
        let rules = ruleset(&[web], &[slice("web", endpoints)], &options());
        assert_eq!((rules.services, rules.endpoints), (1, 2));
        let script = &rules.script;
        assert!(script.contains("10.96.0.10 . tcp . 80 : goto svc-default/web/tcp/80"), "{script}");
        assert!(script.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"), "{script}");
        assert!(
            script.contains("numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/80__10.244.1.5/8080, 1 : goto ep-default/web/tcp/80__10.244.2.5/8080 }"),
            "{script}"
        );
        assert!(script.contains("meta l4proto tcp dnat to 10.244.1.5:8080"), "{script}");
        assert!(!script.contains("10.244.2.6"), "an unready endpoint gets no traffic: {script}");
    }

    #[test]
    fn terminating_endpoints_serve_only_when_nothing_is_ready_and_none_rejects() {
        let web = service(
            "web",
            json!({"clusterIP": "10.96.0.10", "type": "NodePort",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}),
        );
        let draining = json!([{"addresses": ["10.244.1.5"], "conditions": {"ready": false, "serving": true, "terminating": true}}]);
        let rules = ruleset(std::slice::from_ref(&web), &[slice("web", draining)], &options());
        assert!(rules.script.contains("dnat to 10.244.1.5:8080"), "{}", rules.script);
        assert!(rules.script.contains("tcp . 30080 : goto ext-default/web/tcp/80"), "{}", rules.script);
        let rules = ruleset(&[web], &[], &options());
        assert_eq!(rules.services, 0);
        assert!(rules.script.contains("10.96.0.10 . tcp . 80 : goto reject-chain"), "{}", rules.script);
        assert!(rules.script.contains("tcp . 30080 : goto reject-chain"), "{}", rules.script);
    }

    #[test]
    fn local_traffic_policy_and_affinity() {
        let web = service(
            "web",
            json!({"clusterIP": "10.96.0.10", "type": "NodePort", "externalTrafficPolicy": "Local",
            "sessionAffinity": "ClientIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}),
        );
        let endpoints = json!([
            {"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "n1"},
            {"addresses": ["10.244.2.5"], "conditions": {"ready": true}, "nodeName": "n2"},
        ]);
        let script = ruleset(&[web], &[slice("web", endpoints)], &options()).script;
        let external = script
            .split("chain ext-default/web/tcp/80 {")
            .nth(1)
            .and_then(|s| s.split("\n\t}").next())
            .unwrap_or_default();
        assert!(
            external.contains("numgen random mod 1 vmap { 0 : goto ep-default/web/tcp/80__10.244.1.5/8080 }"),
            "{external}"
        );
        assert!(!external.contains("mark-for-masquerade"), "Local keeps the client's address: {external}");
        assert!(script.contains("flags dynamic,timeout") && script.contains("timeout 10800s"), "{script}");
        assert!(script.contains("update @affinity-"), "{script}");
    }

    #[test]
    fn headless_and_external_name_services_get_no_rules() {
        let headless = service("db", json!({"clusterIP": "None", "ports": [{"port": 5432}]}));
        let external = service("ext", json!({"type": "ExternalName", "externalName": "example.com"}));
        let rules = ruleset(&[headless, external], &[], &options());
        assert_eq!((rules.services, rules.endpoints), (0, 0));
        assert!(!rules.script.contains("goto svc-"), "{}", rules.script);
    }
}
