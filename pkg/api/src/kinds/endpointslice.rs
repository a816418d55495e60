//! EndpointSlice (discovery.k8s.io/v1): a part (at most 1,000 endpoints; the controller writes
//! 100) of the endpoints behind a Service, each with its addresses, its conditions (`ready`,
//! `serving`, `terminating`) and the pod it is; every endpoint of a slice has the slice's ports.
//! What the proxy and DNS read (see the controller-manager's `endpointslice`).
//!
//! Its strategy: `addressType` is `IPv4`, `IPv6` or `FQDN` and never changes; every endpoint
//! has 1 to 100 addresses of that type; ports (at most 100) have unique names, valid numbers
//! and protocols (TCP by default).

use std::net::{Ipv4Addr, Ipv6Addr};

use jiff::Timestamp;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;

use crate::columns::{AGE, Column, NAME, age_cell, column, list, name_cell, text};
use crate::field::FieldError;
use crate::registry::ResourceDef;
use crate::strategy::{Strategy, StrategyFor};
use crate::validation::{INVALID_IP_ERR, PORT_RANGE_ERR, is_dns1123_subdomain, is_valid_port_num, validate_protocol};

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The registry entry.
pub static RESOURCE: ResourceDef = ResourceDef {
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    singular: "endpointslice",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: &[],
    strategy: &StrategyFor::<EndpointSlice>::new(),
    conversion: None,
    custom: None,
    columns: COLUMNS,
    row,
};

impl Strategy for EndpointSlice {
    fn set_defaults(&mut self) {
        for port in self.ports.iter_mut().flatten() {
            if port.protocol.is_none() {
                port.protocol = Some("TCP".into());
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let address_type = self.address_type.as_str();
        if !matches!(address_type, "IPv4" | "IPv6" | "FQDN") {
            errs.push(FieldError::not_supported("addressType", address_type, &["IPv4", "IPv6", "FQDN"]));
        }
        let endpoints = self.endpoints.as_deref().unwrap_or_default();
        if endpoints.len() > 1000 {
            errs.push(FieldError::too_long("endpoints", 1000));
        }
        for (i, endpoint) in endpoints.iter().enumerate() {
            let at = format!("endpoints[{i}].addresses");
            match endpoint.addresses.len() {
                0 => errs.push(FieldError::required(&at, "must contain at least 1 address")),
                n if n > 100 => errs.push(FieldError::too_long(&at, 100)),
                _ => {}
            }
            for (j, address) in endpoint.addresses.iter().enumerate() {
                let valid = match address_type {
                    "IPv4" => address.parse::<Ipv4Addr>().is_ok(),
                    "IPv6" => address.parse::<Ipv6Addr>().is_ok(),
                    _ => is_dns1123_subdomain(address).is_empty(),
                };
                if !valid {
                    errs.push(FieldError::invalid(format!("{at}[{j}]"), address, INVALID_IP_ERR));
                }
            }
        }
        let ports = self.ports.as_deref().unwrap_or_default();
        if ports.len() > 100 {
            errs.push(FieldError::too_long("ports", 100));
        }
        let mut names = std::collections::HashSet::new();
        for (i, port) in ports.iter().enumerate() {
            let at = format!("ports[{i}]");
            let name = port.name.clone().unwrap_or_default();
            if !names.insert(name.clone()) {
                errs.push(FieldError::duplicate(format!("{at}.name"), name));
            }
            if let Some(number) = port.port
                && !is_valid_port_num(number)
            {
                errs.push(FieldError::invalid(format!("{at}.port"), number, PORT_RANGE_ERR));
            }
            validate_protocol(port.protocol.as_deref(), &format!("{at}.protocol"), &mut errs);
        }
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        if self.address_type != old.address_type {
            return vec![FieldError::invalid("addressType", &self.address_type, "field is immutable")];
        }
        Vec::new()
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    column("AddressType", "string", "The type of addresses in this slice.", 0),
    column("Ports", "string", "The ports of the endpoints in this slice.", 0),
    column("Endpoints", "string", "The addresses of the endpoints in this slice.", 0),
    AGE,
];

/// printers.go's `printEndpointSlice`: ports joined, `<unset>` without any; up to three
/// addresses, then `+ N more...`, `<none>` without any.
fn row(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = list(slice, &["ports"])
        .iter()
        .map(|port| match port.get("port").and_then(Value::as_i64) {
            Some(number) => number.to_string(),
            None => "<unset>".into(),
        })
        .collect();
    let ports = if ports.is_empty() { "<unset>".to_string() } else { ports.join(",") };
    let addresses: Vec<&str> = list(slice, &["endpoints"])
        .iter()
        .flat_map(|endpoint| list(endpoint, &["addresses"]))
        .filter_map(Value::as_str)
        .collect();
    let shown = match addresses.len() {
        0 => "<none>".to_string(),
        n if n > 3 => format!("{} + {} more...", addresses[..3].join(","), n - 3),
        _ => addresses.join(","),
    };
    vec![name_cell(slice), Value::from(text(slice, &["addressType"])), ports.into(), shown.into(), age_cell(slice, now)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_must_fit_the_address_type_and_ports_be_unique() {
        let slice = |body: Value| -> EndpointSlice { serde_json::from_value(body).expect("slice") };
        let good = slice(json!({"metadata": {"name": "web-abc", "namespace": "default"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}));
        assert!(good.validate().is_empty());
        let bad = slice(json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["fd00::1"]}, {"addresses": []}],
            "ports": [{"name": "a", "port": 70000, "protocol": "TCP"}, {"name": "a", "port": 80, "protocol": "TCP"}]}));
        let fields: Vec<String> = bad.validate().iter().map(|e| e.field.clone()).collect();
        assert_eq!(fields, ["endpoints[0].addresses[0]", "endpoints[1].addresses", "ports[0].port", "ports[1].name"]);
        let mut changed = good.clone();
        changed.address_type = "IPv6".into();
        assert_eq!(changed.validate_update(&good).len(), 1);
    }

    #[test]
    fn rows_show_ports_and_the_first_three_addresses() {
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"port": 80}, {"port": 443}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.3"]},
                          {"addresses": ["10.0.0.4"]}]});
        let cells = row(&slice, Timestamp::now());
        assert_eq!(cells[1..4], [json!("IPv4"), json!("80,443"), json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")]);
    }
}
