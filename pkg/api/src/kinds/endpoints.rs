//! Endpoints (core/v1): the addresses behind a Service, in subsets of addresses and ports.
//!
//! Its strategy: port protocols default to `TCP`; each subset needs an address, addresses
//! are IPs, ports are named when more than one.

use std::net::IpAddr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{EndpointSubset, Endpoints};
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, column, int, list, name_cell, text};
use crate::defaulting;
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{
    INVALID_IP_ERR, PORT_RANGE_ERR, is_dns1123_label, is_dns1123_subdomain, is_valid_port_num, validate_protocol,
};

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "Endpoints",
    plural: "endpoints",
    singular: "endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<Endpoints>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for Endpoints {
    fn set_defaults(&mut self) {
        defaulting::default_endpoints(self);
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_endpoint_subsets(self.subsets.as_deref().unwrap_or_default())
    }
}

/// Checks Endpoints subsets (at `subsets`): each has an address, addresses are IPs, ports
/// are named when more than one and have valid numbers and protocols.
pub fn validate_endpoint_subsets(subsets: &[EndpointSubset]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, subset) in subsets.iter().enumerate() {
        let at = format!("subsets[{i}]");
        let addresses = subset.addresses.as_deref().unwrap_or_default();
        let not_ready = subset.not_ready_addresses.as_deref().unwrap_or_default();
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(&at, "must specify `addresses` or `notReadyAddresses`"));
        }
        for (field, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            for (j, address) in list.iter().enumerate() {
                let address_path = format!("{at}.{field}[{j}]");
                if address.ip.parse::<IpAddr>().is_err() {
                    errs.push(FieldError::invalid(format!("{address_path}.ip"), &address.ip, INVALID_IP_ERR));
                }
                if let Some(hostname) = address.hostname.as_deref().filter(|h| !h.is_empty()) {
                    errs.extend(
                        is_dns1123_label(hostname)
                            .into_iter()
                            .map(|m| FieldError::invalid(format!("{address_path}.hostname"), hostname, m)),
                    );
                }
                if let Some(node_name) = address.node_name.as_deref().filter(|n| !n.is_empty()) {
                    errs.extend(
                        is_dns1123_subdomain(node_name)
                            .into_iter()
                            .map(|m| FieldError::invalid(format!("{address_path}.nodeName"), node_name, m)),
                    );
                }
            }
        }
        let ports = subset.ports.as_deref().unwrap_or_default();
        for (j, port) in ports.iter().enumerate() {
            let port_path = format!("{at}.ports[{j}]");
            match port.name.as_deref().unwrap_or_default() {
                "" if ports.len() > 1 => errs.push(FieldError::required(format!("{port_path}.name"), "")),
                "" => {}
                name => errs.extend(
                    is_dns1123_label(name)
                        .into_iter()
                        .map(|m| FieldError::invalid(format!("{port_path}.name"), name, m)),
                ),
            }
            if !is_valid_port_num(port.port) {
                errs.push(FieldError::invalid(format!("{port_path}.port"), port.port, PORT_RANGE_ERR));
            }
            validate_protocol(port.protocol.as_deref(), &format!("{port_path}.protocol"), &mut errs);
        }
    }
    errs
}

const COLUMNS: &[Column] =
    &[NAME, column("Endpoints", "string", "The set of all endpoints is the union of all subsets.", 0), AGE];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), format_endpoints(obj).into(), age_cell(obj, now)]
}

/// printers.go's `formatEndpoints`: up to three `ip:port` pairs, then `+ N more...`.
fn format_endpoints(endpoints: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for subset in subsets {
        let addresses = list(subset, &["addresses"]);
        let ports = list(subset, &["ports"]);
        if ports.is_empty() {
            // A headless service may have endpoints without ports.
            count += addresses.len();
            for address in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(address, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                let ip = text(address, &["ip"]);
                let port = int(port, &["port"]);
                // net.JoinHostPort brackets IPv6 addresses.
                shown.push(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") });
            }
        }
    }
    let joined = shown.join(",");
    if more { format!("{joined} + {} more...", count - MAX) } else { joined }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::tests::fields;
    use serde_json::json;

    #[test]
    fn endpoints_need_addresses_and_valid_ports() {
        let ep: k8s_openapi::api::core::v1::Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "e"},
            "subsets": [{"ports": [{"port": 80, "protocol": "TCP"}]},
                        {"addresses": [{"ip": "nope"}], "ports": [{"port": 1, "protocol": "TCP"}, {"port": 2, "protocol": "TCP", "name": "b"}]}]
        }))
        .expect("valid endpoints");
        let errs = validate_endpoint_subsets(ep.subsets.as_deref().unwrap_or_default());
        assert_eq!(fields(&errs), vec!["subsets[0]", "subsets[1].addresses[0].ip", "subsets[1].ports[0].name"]);
    }
}
