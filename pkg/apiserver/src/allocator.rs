//! Service IPs and node ports: which Service holds which `spec.clusterIP` and
//! `spec.ports[].nodePort`.
//!
//! Each allocated IP or port is a storage key of its own (`<prefix>/serviceipallocations/<ip>`,
//! `<prefix>/servicenodeportallocations/<port>`), created only if it is absent (an etcd
//! transaction) and naming the Service that holds it. So two creates, on one apiserver or on
//! several, can never get the same IP, and nothing is read, changed and written back: the
//! Kubernetes apiserver does the same since 1.33 with one `IPAddress` object per Service IP.
//!
//! A Service gets its IP (a random free one in `--service-cluster-ip-range`, or the one it asks
//! for if that is free and in the range) and its node ports (`type: NodePort` or
//! `LoadBalancer`; random in `--service-node-port-range`, or the ones asked for) before it is
//! written; a write that then fails gives them back. An update keeps what the Service had
//! (an update may leave `clusterIP` or a port's `nodePort` empty: the old one stays), takes
//! new ports, and gives back what it no longer uses once the update is written. A deleted
//! Service's are given back when it is gone. [`repair`] (at start-up and every few minutes)
//! takes back keys whose Service is gone (a crash between two steps) and records Services'
//! IPs and ports that have no key.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

use rand::Rng;
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;
use crate::metadata::meta_str;
use rkube_api::FieldError;

const IPS: &str = "serviceipallocations";
const PORTS: &str = "servicenodeportallocations";

/// An IPv4 CIDR such as `10.96.0.0/12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let invalid = || format!("{text:?} is not an IPv4 CIDR such as 10.96.0.0/12");
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (8..=30).contains(p)).ok_or_else(|| {
            format!("{text:?}: the prefix length must be 8 to 30 (a range with at least two usable addresses)")
        })?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr { network: u32::from(address) & mask, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl Cidr {
    /// The addresses Services may get: all but the network and broadcast addresses.
    fn usable(&self) -> RangeInclusive<u32> {
        let size = 1u32 << (32 - self.prefix);
        self.network + 1..=self.network + size - 2
    }

    /// The first usable address: the `kubernetes` Service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(*self.usable().start())
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        self.usable().contains(&u32::from(ip))
    }
}

/// Where Service IPs and node ports come from (`--service-cluster-ip-range`,
/// `--service-node-port-range`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRanges {
    /// Cluster IPs.
    pub cluster_ips: Cidr,
    /// Node ports.
    pub node_ports: RangeInclusive<u16>,
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges {
            cluster_ips: Cidr { network: u32::from(Ipv4Addr::new(10, 96, 0, 0)), prefix: 12 },
            node_ports: 30000..=32767,
        }
    }
}

/// Parses `--service-node-port-range` (`30000-32767`).
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let invalid = || format!("{text:?} is not a port range such as 30000-32767");
    let (low, high) = text.split_once('-').ok_or_else(invalid)?;
    let (low, high): (u16, u16) =
        (low.trim().parse().map_err(|_| invalid())?, high.trim().parse().map_err(|_| invalid())?);
    if low == 0 || low > high {
        return Err(invalid());
    }
    Ok(low..=high)
}

/// What one allocation took: keys to give back if the write it was for fails.
#[derive(Debug, Default)]
#[must_use = "what was taken must be given back if the write fails"]
pub struct Taken {
    keys: Vec<String>,
}

/// What an update no longer uses: keys to give back once it is written.
#[derive(Debug, Default)]
#[must_use = "what the update freed must be given back once it is written"]
pub struct Freed {
    keys: Vec<String>,
}

/// Whether `res` is the resource whose objects hold allocations.
pub fn holds_allocations(res: &rkube_api::registry::ResourceDef) -> bool {
    std::ptr::eq(res, &rkube_api::kinds::service::RESOURCE)
}

fn ip_key(state: &ApiState, ip: Ipv4Addr) -> String {
    state.keys.object(IPS, None, &ip.to_string())
}

fn port_key(state: &ApiState, port: u16) -> String {
    state.keys.object(PORTS, None, &port.to_string())
}

/// Who holds an allocation: the Service's namespace, name and uid.
fn holder(service: &Value) -> Vec<u8> {
    let owner = json!({
        "namespace": meta_str(service, "namespace"),
        "name": meta_str(service, "name"),
        "uid": meta_str(service, "uid"),
    });
    serde_json::to_vec(&owner).unwrap_or_default()
}

fn service_type(service: &Value) -> &str {
    service.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP")
}

fn wants_node_ports(service: &Value) -> bool {
    match service_type(service) {
        "NodePort" => true,
        "LoadBalancer" => {
            service.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool).unwrap_or(true)
        }
        _ => false,
    }
}

/// The node ports a Service holds.
fn node_ports(service: &Value) -> Vec<u16> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|port| port.get("nodePort").and_then(Value::as_u64))
        .filter_map(|port| u16::try_from(port).ok())
        .filter(|port| *port > 0)
        .collect()
}

/// The cluster IP a Service holds.
fn cluster_ip(service: &Value) -> Option<Ipv4Addr> {
    service.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|ip| ip.parse().ok())
}

/// Tries to take one key; `Ok(false)` when another holds it.
async fn take(state: &ApiState, key: &str, owner: &[u8]) -> Result<bool, ApiError> {
    match state.store.create(key, owner.to_vec()).await {
        Ok(_) => Ok(true),
        Err(rkube_storage::Error::AlreadyExists { .. }) => Ok(false),
        Err(other) => Err(other.into()),
    }
}

/// Gives keys back (after a failed write, a delete, or an update that freed them).
async fn give_back(state: &ApiState, keys: &[String]) {
    for key in keys {
        if let Err(error) = state.store.delete(key, None).await
            && !matches!(error, rkube_storage::Error::NotFound { .. })
        {
            tracing::warn!(key, %error, "cannot give back a Service allocation; the repair will");
        }
    }
}

/// Gives back what a failed write had taken.
pub async fn undo(state: &ApiState, taken: Taken) {
    give_back(state, &taken.keys).await;
}

/// Gives back what a written update no longer uses.
pub async fn release(state: &ApiState, freed: Freed) {
    give_back(state, &freed.keys).await;
}

/// Gives back everything a deleted Service held.
pub async fn release_all(state: &ApiState, service: &Value) {
    let mut keys: Vec<String> = node_ports(service).into_iter().map(|port| port_key(state, port)).collect();
    keys.extend(cluster_ip(service).map(|ip| ip_key(state, ip)));
    give_back(state, &keys).await;
}

/// Allocates what a Service needs before it is written (`old`: the stored Service, for an
/// update): its cluster IP and node ports, filled into `service`. Errors are the 422s of
/// Kubernetes (an IP or port outside the range, or held by another Service).
pub async fn allocate(state: &ApiState, service: &mut Value, old: Option<&Value>) -> Result<(Taken, Freed), ApiError> {
    let mut taken = Taken::default();
    match allocate_into(state, service, old, &mut taken).await {
        Ok(freed) => Ok((taken, freed)),
        Err(error) => {
            undo(state, taken).await;
            Err(error)
        }
    }
}

async fn allocate_into(
    state: &ApiState,
    service: &mut Value,
    old: Option<&Value>,
    taken: &mut Taken,
) -> Result<Freed, ApiError> {
    let ranges = &state.config.services;
    let owner = holder(service);
    let target = crate::error::Target::new(&rkube_api::kinds::service::RESOURCE, meta_str(service, "name"));
    let invalid = |field: &str, value: &dyn std::fmt::Display, detail: String| {
        ApiError::Invalid(target.clone(), vec![FieldError::invalid(field, value, detail)])
    };
    let mut freed = Freed::default();
    let external_name = service_type(service) == "ExternalName";

    // The cluster IP.
    let old_ip = old.and_then(cluster_ip);
    let asked = service.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or_default().to_string();
    let ip = if external_name {
        None
    } else if asked == "None" {
        Some("None".to_string())
    } else if asked.is_empty() && old_ip.is_some() {
        old_ip.map(|ip| ip.to_string()) // an update that left it out keeps it
    } else if asked.is_empty() {
        let ip = take_random_ip(state, &owner).await?;
        taken.keys.push(ip_key(state, ip));
        Some(ip.to_string())
    } else {
        let ip: Ipv4Addr =
            asked.parse().map_err(|_| invalid("spec.clusterIP", &asked, "must be a valid IPv4 address".into()))?;
        if old_ip != Some(ip) {
            if !ranges.cluster_ips.contains(ip) {
                let detail =
                    format!("provided IP is not in the valid range. The range of valid IPs is {}", ranges.cluster_ips);
                return Err(invalid("spec.clusterIP", &ip, detail));
            }
            if !take(state, &ip_key(state, ip), &owner).await? {
                return Err(invalid("spec.clusterIP", &ip, "provided IP is already allocated".into()));
            }
            taken.keys.push(ip_key(state, ip));
        }
        Some(ip.to_string())
    };
    if let Some(old_ip) = old_ip
        && ip.as_deref() != Some(old_ip.to_string().as_str())
    {
        freed.keys.push(ip_key(state, old_ip));
    }
    let spec = &mut service["spec"];
    match &ip {
        Some(ip) => {
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
            spec["ipFamilies"] = json!(["IPv4"]);
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        None => {
            for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                if let Some(fields) = spec.as_object_mut() {
                    fields.remove(field);
                }
            }
        }
    }

    // The node ports.
    let old_ports = old.map(node_ports).unwrap_or_default();
    let wants = wants_node_ports(service);
    let old_entries: Vec<Value> =
        old.and_then(|old| old.pointer("/spec/ports")).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut kept = Vec::new();
    let count = service.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
    for index in 0..count {
        let entry = &service["spec"]["ports"][index];
        let asked = entry.get("nodePort").and_then(Value::as_u64).unwrap_or(0);
        let field = format!("spec.ports[{index}].nodePort");
        if !wants {
            if let Some(fields) = service["spec"]["ports"][index].as_object_mut() {
                fields.remove("nodePort");
            }
            continue;
        }
        let port = if asked == 0 {
            // An update that left it out keeps the old port of the same port and protocol.
            let same = |old: &Value| old["port"] == entry["port"] && old["protocol"] == entry["protocol"];
            match old_entries.iter().find(|old| same(old)).and_then(|old| old["nodePort"].as_u64()) {
                Some(port) if old_ports.contains(&(port as u16)) && !kept.contains(&(port as u16)) => port as u16,
                _ => {
                    let port = take_random_port(state, &owner).await?;
                    taken.keys.push(port_key(state, port));
                    port
                }
            }
        } else {
            let port = u16::try_from(asked).ok().filter(|port| state.config.services.node_ports.contains(port));
            let Some(port) = port else {
                let range = &state.config.services.node_ports;
                let detail = format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    range.start(),
                    range.end()
                );
                return Err(invalid(&field, &asked, detail));
            };
            if !old_ports.contains(&port) || kept.contains(&port) {
                if !take(state, &port_key(state, port), &owner).await? {
                    return Err(invalid(&field, &port, "provided port is already allocated".into()));
                }
                taken.keys.push(port_key(state, port));
            }
            port
        };
        kept.push(port);
        service["spec"]["ports"][index]["nodePort"] = json!(port);
    }
    freed.keys.extend(old_ports.into_iter().filter(|port| !kept.contains(port)).map(|port| port_key(state, port)));
    Ok(freed)
}

/// A random free IP of the range: a random start, then the next ones in turn.
async fn take_random_ip(state: &ApiState, owner: &[u8]) -> Result<Ipv4Addr, ApiError> {
    let usable = state.config.services.cluster_ips.usable();
    // The first address is the `kubernetes` Service's.
    let (low, high) = (*usable.start() + 1, *usable.end());
    if low > high {
        return Err(ApiError::Internal("the Service IP range has no free address".into()));
    }
    let size = high - low + 1;
    let start = rand::rng().random_range(0..size);
    for offset in 0..size.min(4096) {
        let ip = Ipv4Addr::from(low + (start + offset) % size);
        if take(state, &ip_key(state, ip), owner).await? {
            return Ok(ip);
        }
    }
    Err(ApiError::Internal(format!("no free IP in the Service IP range {}", state.config.services.cluster_ips)))
}

/// A random free node port: a random start, then the next ones in turn.
async fn take_random_port(state: &ApiState, owner: &[u8]) -> Result<u16, ApiError> {
    let range = state.config.services.node_ports.clone();
    let (low, size) = (u32::from(*range.start()), u32::from(*range.end()) - u32::from(*range.start()) + 1);
    let start = rand::rng().random_range(0..size);
    for offset in 0..size {
        let port = u16::try_from(low + (start + offset) % size).unwrap_or(*range.start());
        if take(state, &port_key(state, port), owner).await? {
            return Ok(port);
        }
    }
    Err(ApiError::Internal(format!("no free node port in {}-{}", range.start(), range.end())))
}

/// Makes the allocation keys agree with the stored Services: IPs and ports of Services without
/// a key get one, and keys no Service holds are given back once they were seen unheld (and
/// unchanged) at the previous repair too, so a create between its allocation and its write is
/// never robbed. `suspects` carries those sightings from one repair to the next. Returns (given
/// back, recorded).
pub async fn repair(
    state: &ApiState,
    suspects: &mut std::collections::HashMap<String, i64>,
) -> Result<(usize, usize), ApiError> {
    let services = state.store.list(&state.keys.collection("services", None), Default::default()).await?;
    let mut held: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    for kv in &services.items {
        let Ok(service) = serde_json::from_slice::<Value>(&kv.value) else { continue };
        let owner = holder(&service);
        for port in node_ports(&service) {
            held.insert(port_key(state, port), owner.clone());
        }
        if let Some(ip) = cluster_ip(&service) {
            held.insert(ip_key(state, ip), owner.clone());
        }
    }
    let (mut given_back, mut recorded) = (0, 0);
    let mut existing = std::collections::HashSet::new();
    let mut unheld = std::collections::HashMap::new();
    for prefix in [state.keys.collection(IPS, None), state.keys.collection(PORTS, None)] {
        for kv in state.store.list(&prefix, Default::default()).await?.items {
            existing.insert(kv.key.clone());
            if held.contains_key(&kv.key) {
                continue;
            }
            if suspects.get(&kv.key) == Some(&kv.mod_revision) {
                if state.store.delete(&kv.key, Some(kv.mod_revision)).await.is_ok() {
                    given_back += 1;
                }
            } else {
                unheld.insert(kv.key, kv.mod_revision);
            }
        }
    }
    *suspects = unheld;
    for (key, owner) in held {
        if !existing.contains(&key) && take(state, &key, &owner).await? {
            recorded += 1;
        }
    }
    Ok((given_back, recorded))
}

/// Repairs every `every` until shutdown (see [`repair`]).
pub async fn run_repair(state: std::sync::Arc<ApiState>, every: std::time::Duration) {
    let mut suspects = std::collections::HashMap::new();
    loop {
        match repair(&state, &mut suspects).await {
            Ok((0, 0)) => {}
            Ok((given_back, recorded)) => tracing::info!(given_back, recorded, "repaired Service allocations"),
            Err(error) => tracing::warn!(%error, "cannot repair Service allocations now"),
        }
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_keep_the_network_and_broadcast_addresses_out() {
        let cidr: Cidr = "10.96.0.0/12".parse().expect("cidr");
        assert_eq!(cidr.first(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(cidr.contains(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 111, 255, 255)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 96, 0, 0)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 112, 0, 1)));
        assert_eq!("10.96.7.9/16".parse::<Cidr>().map(|c| c.to_string()), Ok("10.96.0.0/16".into()));
        assert!("10.96.0.0".parse::<Cidr>().is_err());
        assert!("10.96.0.0/31".parse::<Cidr>().is_err());
        assert!("fd00::/108".parse::<Cidr>().is_err());
        assert_eq!(parse_port_range("30000-32767"), Ok(30000..=32767));
        assert!(parse_port_range("32767-30000").is_err());
        assert!(parse_port_range("0-10").is_err());
    }
}
