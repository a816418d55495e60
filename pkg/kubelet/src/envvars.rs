//! A container's environment as Kubernetes builds it (kubelet's
//! `makeEnvironmentVariables`): `envFrom` sources first (ConfigMaps and Secrets, with their
//! `prefix`), then `env` in order, later entries replacing earlier ones of the same name.
//! An `env` entry is a literal `value` (with `$(VAR)` references to earlier variables
//! expanded, `$$` escaping) or a `valueFrom`: `fieldRef` (the downward API), `resourceFieldRef`,
//! `configMapKeyRef` or `secretKeyRef` (`optional` ones may be missing).
//!
//! Resolved when a container is created, as in Kubernetes: a later change to a ConfigMap or
//! Secret reaches a container only when it starts again. Errors name the reference, never a
//! Secret's values.
//!
//! Below those, with the lowest precedence (an `env` or `envFrom` entry of the same name wins,
//! and `$(VAR)` may refer to them), the Services' variables: for the `kubernetes` Service in
//! `default` always, and with `enableServiceLinks` (the default) for every Service of the pod's
//! namespace that has a cluster IP ([`service_env`]: `WEB_SERVICE_HOST`, `WEB_SERVICE_PORT`,
//! `WEB_PORT_80_TCP_ADDR`, ...). The Services come from the kubelet's Service informer
//! ([`ServiceLister`], Kubernetes' `serviceLister`), never from the apiserver: a burst of
//! container starts costs the apiserver no request for them.
//!
//! [`ObjectSource`] reads the ConfigMaps and Secrets (the Node authorizer lets a kubelet read
//! only those of its pods) and, through its [`ServiceLister`], the Services; [`field_value`] is
//! the downward API shared with volumes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, ResourceFieldSelector, Secret, Service,
};
use rkube_client::{Api, Client};
use rkube_informer::ObjectKey;
use rkube_informer::informer::SharedInformer;
use rkube_informer::store::{NAMESPACE_INDEX, Store};

/// What a container start fails with while the Service informer has not listed once
/// (Kubernetes' kubelet says the same, in `getServiceEnvVarMap`).
pub const SERVICES_NOT_SYNCED: &str = "services have not yet been read at least once, cannot construct envvars";

/// How long a container start waits for the Service informer's first list before it fails
/// with [`SERVICES_NOT_SYNCED`].
pub const SERVICES_SYNC_WAIT: Duration = Duration::from_secs(5);

/// The Services as the kubelet's Service informer (all namespaces) sees them: Kubernetes'
/// `serviceLister`. Cheap to clone.
///
/// # Before the first list
/// A container start must not go on with variables missing. Kubernetes' kubelet fails it at
/// once ([`SERVICES_NOT_SYNCED`]) and retries the pod later. Here the start first waits for
/// the informer's first list, at most [`SERVICES_SYNC_WAIT`] (the informer starts with the pod
/// informer, so a pod seen right after the kubelet starts usually waits milliseconds, without a
/// failed start to show for it); past that, or if the informer stopped, it fails with
/// [`SERVICES_NOT_SYNCED`]: the container waits with `CreateContainerConfigError` and the pod
/// worker retries the sync with its back-off, as after any failed start.
#[derive(Clone, Debug)]
pub struct ServiceLister {
    informer: SharedInformer<Service>,
    sync_wait: Duration,
}

impl ServiceLister {
    /// A lister reading `informer`'s store (an informer of all namespaces, started by its
    /// owner).
    pub fn new(informer: SharedInformer<Service>) -> ServiceLister {
        ServiceLister { informer, sync_wait: SERVICES_SYNC_WAIT }
    }

    /// The same, waiting at most `wait` for the first list instead of [`SERVICES_SYNC_WAIT`].
    #[must_use]
    pub fn with_sync_wait(mut self, wait: Duration) -> ServiceLister {
        self.sync_wait = wait;
        self
    }

    /// The Services whose variables a container of a pod in `namespace` gets
    /// ([`env_services`]), from the informer's cache (which may lag the apiserver by a few
    /// events, as in Kubernetes: a Service created just before the pod may be missed).
    ///
    /// # Errors
    /// [`SERVICES_NOT_SYNCED`] when the informer has not listed once within the wait (see the
    /// type's docs).
    pub async fn services(&self, namespace: &str, links: bool) -> Result<Vec<Arc<Service>>, String> {
        if !self.informer.has_synced() {
            let synced = tokio::time::timeout(self.sync_wait, self.informer.wait_for_sync()).await;
            if !synced.unwrap_or(false) {
                return Err(SERVICES_NOT_SYNCED.to_string());
            }
        }
        env_services(&self.informer.store(), namespace, links)
    }
}

/// The Services in `store` whose variables a container of a pod in `namespace` gets: with
/// `links` (`enableServiceLinks`) every Service of `namespace`, and the `kubernetes` Service in
/// `default` unless that is already among them. Both in key order; [`service_env`] sorts
/// them by name.
///
/// # Errors
/// A store without the namespace index (every informer's store has it).
pub fn env_services(store: &Store<Service>, namespace: &str, links: bool) -> Result<Vec<Arc<Service>>, String> {
    let mut services = Vec::new();
    if links {
        services = store.by_index(NAMESPACE_INDEX, namespace).map_err(|e| format!("services in {namespace}: {e}"))?;
    }
    if !(links && namespace == "default") {
        services.extend(store.get(&ObjectKey::new(Some("default"), "kubernetes")));
    }
    Ok(services)
}

/// Reads the ConfigMaps and Secrets a pod references from the apiserver, and the Services from
/// the Service informer (see [`ObjectSource::with_services`]).
#[derive(Clone)]
pub struct ObjectSource {
    client: Client,
    services: Option<ServiceLister>,
}

impl std::fmt::Debug for ObjectSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSource").finish_non_exhaustive()
    }
}

/// The values of one ConfigMap or Secret, as bytes by key.
pub type Values = BTreeMap<String, Vec<u8>>;

impl ObjectSource {
    /// A source reading through `client` (the kubelet's identity).
    ///
    /// Without [`ObjectSource::with_services`] it reads no Services, and [`container_env`]
    /// fails rather than leave their variables out.
    pub fn new(client: Client) -> ObjectSource {
        ObjectSource { client, services: None }
    }

    /// The same source, reading the Services through `services`.
    #[must_use]
    pub fn with_services(mut self, services: ServiceLister) -> ObjectSource {
        self.services = Some(services);
        self
    }

    /// The client (for token requests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The data and binaryData of ConfigMap `name`, `None` when it does not exist.
    ///
    /// # Errors
    /// When the apiserver cannot be read (refused, unreachable).
    pub async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Values>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let found = api.get_opt(name).await.map_err(|e| format!("reading configmap {namespace}/{name}: {e}"))?;
        Ok(found.map(|cm| {
            let text = cm.data.into_iter().flatten().map(|(k, v)| (k, v.into_bytes()));
            text.chain(cm.binary_data.into_iter().flatten().map(|(k, v)| (k, v.0))).collect()
        }))
    }

    /// The Services whose variables a container of a pod in `namespace` gets: the `kubernetes`
    /// Service in `default`, and with `links` every Service of `namespace`; from the Service
    /// informer's cache ([`ServiceLister::services`]), with no request to the apiserver.
    ///
    /// # Errors
    /// [`SERVICES_NOT_SYNCED`] before the informer's first list, or no Service informer at all.
    pub async fn services(&self, namespace: &str, links: bool) -> Result<Vec<Arc<Service>>, String> {
        match &self.services {
            Some(services) => services.services(namespace, links).await,
            None => Err(format!("{SERVICES_NOT_SYNCED}: this kubelet has no Service informer")),
        }
    }

    /// The data of Secret `name`, `None` when it does not exist.
    ///
    /// # Errors
    /// When the apiserver cannot be read (refused, unreachable).
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Values>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let found = api.get_opt(name).await.map_err(|e| format!("reading secret {namespace}/{name}: {e}"))?;
        Ok(found.map(|secret| secret.data.into_iter().flatten().map(|(k, v)| (k, v.0)).collect()))
    }

    /// The directory on this node behind claim `name` of `namespace`: the `hostPath` or
    /// `local` path of the PersistentVolume it is bound to, and whether that path may be
    /// created (`DirectoryOrCreate`, as the local-path provisioner's volumes are).
    ///
    /// # Errors
    /// A missing or unbound claim, a volume of a type this kubelet cannot mount, or the
    /// apiserver refusing the read.
    pub async fn claim_path(&self, namespace: &str, name: &str) -> Result<(String, bool), String> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let claim = claims
            .get_opt(name)
            .await
            .map_err(|e| format!("reading persistentvolumeclaim {namespace}/{name}: {e}"))?
            .ok_or_else(|| format!("persistentvolumeclaim {name:?} not found"))?;
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let volume_name = claim.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty() && bound);
        let volume_name = volume_name.ok_or_else(|| format!("persistentvolumeclaim {name:?} is not bound yet"))?;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let volume = volumes
            .get_opt(&volume_name)
            .await
            .map_err(|e| format!("reading persistentvolume {volume_name}: {e}"))?
            .ok_or_else(|| format!("persistentvolume {volume_name:?} of claim {name:?} not found"))?;
        let spec = volume.spec.unwrap_or_default();
        if let Some(host) = spec.host_path {
            let create = host.type_.as_deref() == Some("DirectoryOrCreate");
            return Ok((host.path, create));
        }
        if let Some(local) = spec.local {
            return Ok((local.path, false));
        }
        Err(format!("persistentvolume {volume_name:?}: only hostPath and local volumes can be mounted by this kubelet"))
    }

    /// ConfigMap (`secret` false) or Secret `name`; a missing one is an error unless `optional`.
    ///
    /// # Errors
    /// A missing object that is not optional, or the apiserver refusing the read.
    pub async fn values(&self, secret: bool, namespace: &str, name: &str, optional: bool) -> Result<Values, String> {
        let found = if secret { self.secret(namespace, name).await? } else { self.config_map(namespace, name).await? };
        match found {
            Some(values) => Ok(values),
            None if optional => Ok(Values::new()),
            None => Err(format!("{} {name:?} not found", if secret { "secret" } else { "configmap" })),
        }
    }
}

/// What the downward API knows besides the pod object.
#[derive(Clone, Debug, Default)]
pub struct PodFacts {
    /// The node's IP (`status.hostIP`).
    pub host_ip: String,
    /// The pod's IP (`status.podIP`), once its network is up.
    pub pod_ip: String,
}

/// The value of the downward API field `path` of `pod` (`metadata.name`,
/// `metadata.labels['app']`, `status.podIP`, ...).
///
/// # Errors
/// A field the downward API does not offer.
pub fn field_value(pod: &Pod, path: &str, facts: &PodFacts) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str| path.strip_prefix(prefix).and_then(|rest| rest.strip_suffix("']"));
    if let Some(key) = keyed("metadata.labels['") {
        return Ok(meta.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default());
    }
    if let Some(key) = keyed("metadata.annotations['") {
        return Ok(meta.annotations.as_ref().and_then(|a| a.get(key)).cloned().unwrap_or_default());
    }
    let map_lines = |map: Option<&BTreeMap<String, String>>| {
        map.into_iter().flatten().map(|(k, v)| format!("{k}={v:?}\n")).collect::<String>()
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_lines(meta.labels.as_ref()),
        "metadata.annotations" => map_lines(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        other => return Err(format!("unsupported fieldPath {other:?}")),
    })
}

/// The value of a `resourceFieldRef` for `container` (`limits.cpu`, `requests.memory`, ...),
/// divided by its `divisor` and rounded up; an unset limit is the node's capacity, as in
/// Kubernetes.
///
/// # Errors
/// An unknown resource or an unparsable quantity.
pub fn resource_value(container: &Container, selector: &ResourceFieldSelector) -> Result<String, String> {
    let resources = container.resources.as_ref();
    let (kind, resource) =
        selector.resource.split_once('.').ok_or_else(|| format!("unsupported resource {:?}", selector.resource))?;
    let set = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource {:?}", selector.resource)),
    };
    let quantity = set.and_then(|s| s.get(resource)).map(|q| q.0.clone());
    let divisor = selector.divisor.as_ref().map(|d| d.0.clone());
    match resource {
        "cpu" => {
            let milli = match quantity {
                Some(q) => rkube_api::quantity::parse_milli(&q).map_err(|e| format!("{}: {e}", selector.resource))?,
                None => node_cpus() * 1000,
            };
            let per = rkube_api::quantity::parse_milli(divisor.as_deref().unwrap_or("1")).map_err(|e| e.to_string())?;
            Ok(ceil_div(milli, per).max(1).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match quantity {
                Some(q) => rkube_api::quantity::parse_units(&q).map_err(|e| format!("{}: {e}", selector.resource))?,
                None => node_memory_bytes(),
            };
            let per = rkube_api::quantity::parse_units(divisor.as_deref().unwrap_or("1")).map_err(|e| e.to_string())?;
            Ok(ceil_div(bytes, per).to_string())
        }
        other => Err(format!("unsupported resource {other:?}")),
    }
}

/// `value / divisor` rounded up (both positive; a divisor below 1 counts as 1).
fn ceil_div(value: i64, divisor: i64) -> i64 {
    let divisor = divisor.max(1);
    value / divisor + i64::from(value % divisor > 0)
}

fn node_cpus() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| i64::try_from(n.get()).unwrap_or(1))
}

fn node_memory_bytes() -> i64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .unwrap_or(0);
    kib * 1024
}

/// Expands `$(NAME)` references to variables defined so far; `$$` is a literal `$`; an
/// unknown reference stays as written (Kubernetes' `expansion.Expand`).
pub fn expand(text: &str, defined: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(name_end) = after.strip_prefix('(').and_then(|r| r.find(')')) {
            let name = &after[1..=name_end];
            match defined.iter().rev().find(|(key, _)| key == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&rest[at..at + name_end + 3]),
            }
            rest = &after[name_end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of key `key` of ConfigMap (or, with `secret`, Secret) `name`; `None` when it
/// or the key is missing and `optional`.
async fn key_value(
    source: &ObjectSource,
    namespace: &str,
    (secret, name, key, optional): (bool, &str, &str, bool),
) -> Result<Option<String>, String> {
    let values = source.values(secret, namespace, name, optional).await?;
    match values.get(key) {
        Some(value) => Ok(Some(String::from_utf8_lossy(value).into_owned())),
        None if optional => Ok(None),
        None => {
            let kind = if secret { "Secret" } else { "ConfigMap" };
            Err(format!("couldn't find key {key} in {kind} {namespace}/{name}"))
        }
    }
}

/// The environment of `container` in `pod` (see the module docs), as (name, value) in
/// order, without duplicates.
///
/// The Services are read from the Service informer's cache, not the apiserver; before its
/// first list this waits for it, at most [`SERVICES_SYNC_WAIT`] (see [`ServiceLister`]).
///
/// # Errors
/// A missing ConfigMap, Secret or key that is not `optional`, an unsupported field, the
/// apiserver refusing the read, or the Service informer not synced ([`SERVICES_NOT_SYNCED`]);
/// the message names which (Kubernetes reports it as the container's
/// `CreateContainerConfigError`, and the pod worker retries).
pub async fn container_env(
    source: &ObjectSource,
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, key: String, value: String| {
        env.retain(|(existing, _)| *existing != key);
        env.push((key, value));
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let values = if let Some(r) = &from.config_map_ref {
            source.values(false, namespace, &r.name, r.optional.unwrap_or(false)).await?
        } else if let Some(r) = &from.secret_ref {
            source.values(true, namespace, &r.name, r.optional.unwrap_or(false)).await?
        } else {
            continue;
        };
        for (key, value) in values {
            set(&mut env, format!("{prefix}{key}"), String::from_utf8_lossy(&value).into_owned());
        }
    }
    let links = pod.spec.as_ref().and_then(|spec| spec.enable_service_links).unwrap_or(true);
    let services = service_env(&source.services(namespace, links).await?);
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => {
                // `$(VAR)` may name an earlier variable or a Service's.
                let defined: Vec<(String, String)> = services.iter().cloned().chain(env.iter().cloned()).collect();
                expand(var.value.as_deref().unwrap_or_default(), &defined)
            }
            Some(from) => {
                if let Some(field) = &from.field_ref {
                    field_value(pod, &field.field_path, facts).map_err(|e| format!("env {:?}: {e}", var.name))?
                } else if let Some(resource) = &from.resource_field_ref {
                    resource_value(container, resource).map_err(|e| format!("env {:?}: {e}", var.name))?
                } else if let Some(r) = &from.config_map_key_ref {
                    let key = (false, r.name.as_str(), r.key.as_str(), r.optional.unwrap_or(false));
                    match key_value(source, namespace, key).await? {
                        Some(value) => value,
                        None => continue,
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let key = (true, r.name.as_str(), r.key.as_str(), r.optional.unwrap_or(false));
                    match key_value(source, namespace, key).await? {
                        Some(value) => value,
                        None => continue,
                    }
                } else {
                    return Err(format!("env {:?}: valueFrom names no source", var.name));
                }
            }
        };
        set(&mut env, var.name.clone(), value);
    }
    // The Services' variables, unless the container set one of the same name.
    for (key, value) in services {
        if !env.iter().any(|(existing, _)| *existing == key) {
            env.push((key, value));
        }
    }
    Ok(env)
}

/// The variables Kubernetes gives containers for `services` (those with a cluster IP), named
/// after each Service in upper case with `-` as `_`: `<NAME>_SERVICE_HOST`,
/// `<NAME>_SERVICE_PORT` (the first port), `<NAME>_SERVICE_PORT_<PORT NAME>` (each named port),
/// and Docker's link variables `<NAME>_PORT` (`tcp://ip:port` of the first port) and for each
/// port `<NAME>_PORT_<port>_<PROTO>`, with `_PROTO`, `_PORT` and `_ADDR`.
pub fn service_env<S: std::borrow::Borrow<Service>>(services: &[S]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut sorted: Vec<&Service> = services.iter().map(std::borrow::Borrow::borrow).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for service in sorted {
        let Some(spec) = &service.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = service.metadata.name.clone().unwrap_or_default().to_uppercase().replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        env.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        if let Some(first) = ports.first() {
            env.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        }
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                env.push((
                    format!("{name}_SERVICE_PORT_{}", port_name.to_uppercase().replace('-', "_")),
                    port.port.to_string(),
                ));
            }
        }
        for (index, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let url = format!("{}://{ip}:{}", protocol.to_lowercase(), port.port);
            if index == 0 {
                env.push((format!("{name}_PORT"), url.clone()));
            }
            let prefix = format!("{name}_PORT_{}_{}", port.port, protocol.to_uppercase());
            env.push((prefix.clone(), url));
            env.push((format!("{prefix}_PROTO"), protocol.to_lowercase()));
            env.push((format!("{prefix}_PORT"), port.port.to_string()));
            env.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "builder", "containers": []}
        }))
        .expect("pod")
    }

    #[test]
    fn the_downward_api_answers_the_fields_kubernetes_offers() {
        let facts = PodFacts { host_ip: "10.0.0.1".into(), pod_ip: "10.244.0.5".into() };
        let pod = pod();
        let value = |path: &str| field_value(&pod, path, &facts);
        assert_eq!(value("metadata.name").as_deref(), Ok("web"));
        assert_eq!(value("metadata.namespace").as_deref(), Ok("shop"));
        assert_eq!(value("metadata.labels['tier']").as_deref(), Ok("front"));
        assert_eq!(value("metadata.labels").as_deref(), Ok("app=\"web\"\ntier=\"front\"\n"));
        assert_eq!(value("spec.serviceAccountName").as_deref(), Ok("builder"));
        assert_eq!(value("status.podIP").as_deref(), Ok("10.244.0.5"));
        assert!(value("spec.containers").is_err());
    }

    #[test]
    fn references_expand_to_earlier_variables_only() {
        let defined = vec![("HOST".to_string(), "db".to_string()), ("PORT".to_string(), "5432".to_string())];
        assert_eq!(expand("$(HOST):$(PORT)", &defined), "db:5432");
        assert_eq!(expand("$$(HOST) $(LATER) $", &defined), "$(HOST) $(LATER) $");
        assert_eq!(expand("cost: $5", &defined), "cost: $5");
    }

    #[test]
    fn resource_fields_are_divided_and_rounded_up() {
        let container: Container = serde_json::from_value(json!({
            "name": "c", "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}}
        }))
        .expect("container");
        let selector = |resource: &str, divisor: Option<&str>| ResourceFieldSelector {
            resource: resource.into(),
            divisor: divisor.map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
            container_name: None,
        };
        assert_eq!(resource_value(&container, &selector("limits.cpu", None)).as_deref(), Ok("2"));
        assert_eq!(resource_value(&container, &selector("limits.cpu", Some("1m"))).as_deref(), Ok("1500"));
        assert_eq!(resource_value(&container, &selector("limits.memory", Some("1Mi"))).as_deref(), Ok("64"));
        assert!(resource_value(&container, &selector("limits.gpu", None)).is_err());
    }

    #[test]
    fn services_become_variables_with_dashes_as_underscores() {
        let service = |name: &str, ip: &str| -> Service {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": {"clusterIP": ip,
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}]}}))
            .expect("service")
        };
        let env = service_env(&[service("my-web", "10.96.1.2"), service("headless", "None")]);
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("MY_WEB_SERVICE_HOST"), Some("10.96.1.2"));
        assert_eq!(get("MY_WEB_SERVICE_PORT"), Some("80"));
        assert_eq!(get("MY_WEB_SERVICE_PORT_DNS_UDP"), Some("53"));
        assert_eq!(get("MY_WEB_PORT"), Some("tcp://10.96.1.2:80"));
        assert_eq!(get("MY_WEB_PORT_53_UDP"), Some("udp://10.96.1.2:53"));
        assert_eq!(get("MY_WEB_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(get("MY_WEB_PORT_80_TCP_ADDR"), Some("10.96.1.2"));
        assert!(env.iter().all(|(k, _)| !k.starts_with("HEADLESS")), "{env:?}");
    }

    fn service_in(namespace: &str, name: &str, ip: &str) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}))
        .expect("service")
    }

    #[test]
    fn the_store_gives_the_namespace_s_services_with_links_and_the_kubernetes_service_always() {
        let mut writer = rkube_informer::store::Writer::<Service>::default();
        for (namespace, name, ip) in [
            ("default", "kubernetes", "10.96.0.1"),
            ("default", "registry", "10.96.0.9"),
            ("shop", "web", "10.96.1.2"),
            ("shop", "kubernetes", "10.96.1.3"),
            ("other", "db", "10.96.2.2"),
        ] {
            writer.apply(Arc::new(service_in(namespace, name, ip)));
        }
        let store = writer.store();
        let names = |namespace: &str, links: bool| -> Vec<String> {
            let services = env_services(&store, namespace, links).expect("lookup");
            services.iter().map(|s| ObjectKey::of(s.as_ref()).to_string()).collect()
        };
        // The namespace's Services first, then default/kubernetes, as the LIST + GET gave them.
        assert_eq!(names("shop", true), ["shop/kubernetes", "shop/web", "default/kubernetes"]);
        assert_eq!(names("shop", false), ["default/kubernetes"]);
        assert_eq!(names("default", true), ["default/kubernetes", "default/registry"]);
        assert_eq!(names("default", false), ["default/kubernetes"]);
        assert_eq!(names("empty", true), ["default/kubernetes"]);

        let env = service_env(&env_services(&store, "shop", true).expect("lookup"));
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("WEB_SERVICE_HOST"), Some("10.96.1.2"));
        assert_eq!(get("KUBERNETES_PORT"), Some("tcp://10.96.1.3:80"), "the namespace's own Service comes first");
        assert!(get("DB_SERVICE_HOST").is_none() && get("REGISTRY_SERVICE_HOST").is_none(), "{env:?}");
    }

    #[tokio::test]
    async fn a_start_before_the_service_informer_listed_fails_instead_of_leaving_variables_out() {
        let config = rkube_client::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let api: Api<Service> = Api::all(Client::new(config).expect("client"));
        let metrics = rkube_informer::metrics::ResourceMetrics::unregistered("services").expect("metrics");
        // Never started: it never lists.
        let informer = SharedInformer::new(api, rkube_informer::informer::InformerConfig::default(), metrics);
        let lister = ServiceLister::new(informer).with_sync_wait(Duration::from_millis(20));
        assert_eq!(lister.services("shop", true).await, Err(SERVICES_NOT_SYNCED.to_string()));
        let unwired = ObjectSource::new(
            Client::new(rkube_client::Config::new("http://127.0.0.1:9".parse().expect("url"))).expect("client"),
        );
        let error = unwired.services("shop", false).await.expect_err("no informer, no variables");
        assert!(error.starts_with(SERVICES_NOT_SYNCED), "{error}");
    }

    /// An apiserver whose Service LIST answers `services` after 50 ms, and whose WATCH never
    /// answers.
    struct SlowList(Vec<Service>);

    impl rkube_informer::lister_watcher::ListerWatcher<Service> for SlowList {
        fn list_page(
            &self,
            _params: rkube_client::ListParams,
        ) -> futures::future::BoxFuture<'static, rkube_client::Result<rkube_client::ObjectList<Service>>> {
            let list = rkube_client::ObjectList {
                types: kube_core::TypeMeta { api_version: "v1".into(), kind: "ServiceList".into() },
                metadata: kube_core::ListMeta { resource_version: Some("7".into()), ..Default::default() },
                items: self.0.clone(),
            };
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(list)
            })
        }

        fn watch(
            &self,
            _params: rkube_client::WatchParams,
            _resource_version: String,
        ) -> futures::future::BoxFuture<'static, rkube_client::Result<rkube_client::WatchStream<Service>>> {
            Box::pin(futures::future::pending())
        }
    }

    #[tokio::test]
    async fn a_start_during_the_first_list_waits_for_it() {
        let metrics = rkube_informer::metrics::ResourceMetrics::unregistered("services").expect("metrics");
        let services = vec![service_in("default", "kubernetes", "10.96.0.1"), service_in("shop", "web", "10.96.1.2")];
        let informer = SharedInformer::new(SlowList(services), Default::default(), metrics);
        let shutdown = tokio_util::sync::CancellationToken::new();
        informer.start(shutdown.clone());
        let lister = ServiceLister::new(informer);
        let found = lister.services("shop", true).await.expect("the services once listed");
        let names: Vec<_> = found.iter().map(|s| ObjectKey::of(s.as_ref()).to_string()).collect();
        assert_eq!(names, ["shop/web", "default/kubernetes"]);
        shutdown.cancel();
    }
}
