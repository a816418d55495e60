//! What a container is built from: the image's config, and the complete OCI runtime spec
//! (config.json) the kubelet hands to containerd, which adds nothing of its own.

use std::path::Path;

use k8s_openapi::api::core::v1::Container as PodContainer;
use sha2::{Digest, Sha256};

/// What an image's config says a container runs by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ImageInfo {
    /// The chain ID of the top layer: the parent of container snapshots.
    pub(super) chain_id: String,
    pub(super) entrypoint: Vec<String>,
    pub(super) cmd: Vec<String>,
    pub(super) env: Vec<String>,
    pub(super) working_dir: String,
}

/// `docker.io/library/busybox:latest` for `busybox`: the name containerd stores images under.
pub fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_registry = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or_default();
    if digest.is_none() && !last.contains(':') {
        full.push_str(":latest");
    }
    if let Some(digest) = digest {
        full = format!("{full}@{digest}");
    }
    full
}

/// The chain ID of a stack of layers (OCI image spec: `sha256(parent + " " + diff_id)`).
pub(super) fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut ids = diff_ids.iter();
    let mut chain = ids.next()?.clone();
    for diff_id in ids {
        chain = format!("sha256:{:x}", Sha256::digest(format!("{chain} {diff_id}").as_bytes()));
    }
    Some(chain)
}

/// Kubernetes' rules: `command` replaces the entrypoint, `args` the image's cmd; `args` alone
/// keep the entrypoint.
pub(super) fn process_args(container: &PodContainer, image: &ImageInfo) -> Vec<String> {
    match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => command.iter().chain(args.iter().flatten()).cloned().collect(),
        (_, Some(args)) if !args.is_empty() => image.entrypoint.iter().chain(args).cloned().collect(),
        _ => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    }
}

/// The image's env, then `HOSTNAME`, then the container's resolved env (later wins).
pub(super) fn process_env(container_env: &[(String, String)], image: &ImageInfo, hostname: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| {
        env.retain(|(existing, _)| existing != key);
        env.push((key.to_string(), value.to_string()));
    };
    for entry in &image.env {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        set(key, value);
    }
    set("HOSTNAME", hostname);
    for (key, value) in container_env {
        set(key, value);
    }
    env.into_iter().map(|(key, value)| format!("{key}={value}")).collect()
}

/// The capabilities containerd gives a container by default.
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The cgroup settings of a container: no device access beyond the defaults, and its
/// `resources.limits` — memory in bytes (the kernel OOM-kills the container past it) and cpu
/// as a CFS quota per 100 ms period (`500m` = 50 ms of CPU time every 100 ms).
pub(super) fn linux_resources(container: &PodContainer) -> Result<serde_json::Value, String> {
    let mut resources = serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(limits) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) {
        if let Some(memory) = limits.get("memory") {
            let bytes = rkube_api::quantity::parse_units(&memory.0).map_err(|e| format!("limits.memory: {e}"))?;
            resources["memory"] = serde_json::json!({"limit": bytes});
        }
        if let Some(cpu) = limits.get("cpu") {
            let milli = rkube_api::quantity::parse_milli(&cpu.0).map_err(|e| format!("limits.cpu: {e}"))?;
            resources["cpu"] = serde_json::json!({"quota": (milli * 100).max(1000), "period": 100_000});
        }
    }
    Ok(resources)
}

/// The OCI `process` of a container or of a command exec'd in one: root, no terminal, the
/// default capabilities, no new privileges.
pub(super) fn process(args: &[String], env: &[String], cwd: &str) -> serde_json::Value {
    serde_json::json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": DEFAULT_CAPABILITIES,
            "effective": DEFAULT_CAPABILITIES,
            "permitted": DEFAULT_CAPABILITIES,
        },
        "noNewPrivileges": true,
    })
}

/// A pod's `/etc/resolv.conf`, by its `dnsPolicy` as Kubernetes writes it: `ClusterFirst`
/// (the default; `ClusterFirstWithHostNet` for a pod on the node's network) names the cluster
/// DNS with the search path `<namespace>.svc.<domain> svc.<domain> <domain>` and `ndots:5`;
/// `Default` (and `ClusterFirst` on the node's network, or without a cluster DNS) is the node's
/// own `host` file; `None` only what `dnsConfig` says. `dnsConfig`'s nameservers, searches and
/// options are added in every case.
pub(super) fn resolv_conf(
    pod: &k8s_openapi::api::core::v1::Pod,
    dns: Option<&super::ClusterDns>,
    host: &str,
) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        (Vec::new(), Vec::new(), Vec::new());
    let cluster = match (policy, dns) {
        ("ClusterFirst", Some(dns)) if !host_network => Some(dns),
        ("ClusterFirstWithHostNet", Some(dns)) => Some(dns),
        _ => None,
    };
    match (policy, cluster) {
        (_, Some(dns)) => {
            servers.extend(dns.servers.iter().cloned());
            searches.extend([
                format!("{namespace}.svc.{}", dns.domain),
                format!("svc.{}", dns.domain),
                dns.domain.clone(),
            ]);
            options.push("ndots:5".into());
        }
        ("None", None) => {}
        _ => return with_dns_config(host.to_string(), &spec),
    }
    if let Some(config) = &spec.dns_config {
        servers.extend(config.nameservers.iter().flatten().cloned());
        searches.extend(config.searches.iter().flatten().cloned());
        for option in config.options.iter().flatten() {
            let text = match &option.value {
                Some(value) => format!("{}:{value}", option.name.clone().unwrap_or_default()),
                None => option.name.clone().unwrap_or_default(),
            };
            options.retain(|o| o.split(':').next() != text.split(':').next());
            options.push(text);
        }
    }
    let mut text = String::new();
    for server in servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

/// The node's resolv.conf with `dnsConfig`'s additions appended.
fn with_dns_config(host: String, spec: &k8s_openapi::api::core::v1::PodSpec) -> String {
    let mut text = host;
    if let Some(config) = &spec.dns_config {
        for server in config.nameservers.iter().flatten() {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if let Some(searches) = config.searches.as_ref().filter(|s| !s.is_empty()) {
            text.push_str(&format!("search {}\n", searches.join(" ")));
        }
    }
    text
}

/// The Linux namespaces of a container of `pod`: new ones for its processes (`pid`), IPC,
/// hostname (`uts`) and mounts, and its pod's network namespace at `netns` (a new one without
/// a path). `hostPID`, `hostIPC` and `hostNetwork` share the node's instead (leave that
/// namespace out); `hostNetwork` shares the node's hostname too, as on Kubernetes. The PID
/// namespace comes first (an ephemeral container's may be replaced by its target's).
pub(super) fn namespaces(pod: &k8s_openapi::api::core::v1::PodSpec, netns: Option<&Path>) -> Vec<serde_json::Value> {
    let host_network = pod.host_network.unwrap_or(false);
    let mut namespaces = Vec::new();
    if !pod.host_pid.unwrap_or(false) {
        namespaces.push(serde_json::json!({"type": "pid"}));
    }
    if !pod.host_ipc.unwrap_or(false) {
        namespaces.push(serde_json::json!({"type": "ipc"}));
    }
    if !host_network {
        namespaces.push(serde_json::json!({"type": "uts"}));
    }
    namespaces.push(serde_json::json!({"type": "mount"}));
    if !host_network {
        namespaces.push(match netns {
            Some(path) => serde_json::json!({"type": "network", "path": path}),
            None => serde_json::json!({"type": "network"}),
        });
    }
    namespaces
}

/// The complete OCI runtime spec (config.json) of one container: `mounts` are the pod's
/// volumes (see `volumes`), `resources` its cgroup settings (see [`linux_resources`]).
#[allow(clippy::too_many_arguments)] // one per part of the spec; a struct would only rename them
pub(super) fn oci_spec(
    args: &[String],
    env: &[String],
    cwd: &str,
    hostname: &str,
    cgroups_path: &str,
    namespaces: Vec<serde_json::Value>,
    mounts: Vec<serde_json::Value>,
    resources: serde_json::Value,
) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": process(args, env, cwd),
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    });
    if let Some(list) = spec["mounts"].as_array_mut() {
        list.extend(mounts);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_the_dns_policy() {
        let dns = crate::runtime::containerd::ClusterDns {
            servers: vec!["10.96.0.10".into()],
            domain: "cluster.local".into(),
        };
        let pod = |spec: serde_json::Value| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": "team"}, "spec": spec}))
                .unwrap()
        };
        let host = "nameserver 192.0.2.53\n";
        assert_eq!(
            resolv_conf(&pod(serde_json::json!({"containers": []})), Some(&dns), host),
            "nameserver 10.96.0.10\nsearch team.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        assert_eq!(resolv_conf(&pod(serde_json::json!({"containers": []})), None, host), host);
        assert_eq!(
            resolv_conf(&pod(serde_json::json!({"containers": [], "dnsPolicy": "Default"})), Some(&dns), host),
            host
        );
        assert_eq!(
            resolv_conf(&pod(serde_json::json!({"containers": [], "hostNetwork": true})), Some(&dns), host),
            host
        );
        let custom = serde_json::json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.1.1.1"], "searches": ["example.com"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}});
        assert_eq!(
            resolv_conf(&pod(custom), Some(&dns), host),
            "nameserver 1.1.1.1\nsearch example.com\noptions ndots:2 edns0\n"
        );
        let tuned = serde_json::json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}});
        assert!(resolv_conf(&pod(tuned), Some(&dns), host).ends_with("options ndots:1\n"));
    }

    #[test]
    fn host_namespaces_are_left_out_and_the_pod_network_is_joined() {
        let types = |spec: serde_json::Value| -> Vec<String> {
            let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(spec).unwrap();
            namespaces(&spec, Some(Path::new("/run/netns/rkube-x")))
                .iter()
                .map(|ns| format!("{}{}", ns["type"].as_str().unwrap(), ns["path"].as_str().unwrap_or_default()))
                .collect()
        };
        assert_eq!(
            types(serde_json::json!({"containers": []})),
            ["pid", "ipc", "uts", "mount", "network/run/netns/rkube-x"]
        );
        assert_eq!(
            types(serde_json::json!({"containers": [], "hostPID": true, "hostIPC": true})),
            ["uts", "mount", "network/run/netns/rkube-x"]
        );
        assert_eq!(types(serde_json::json!({"containers": [], "hostNetwork": true})), ["pid", "ipc", "mount"]);
    }

    #[test]
    fn limits_become_a_memory_limit_in_bytes_and_a_cpu_quota() {
        let c: PodContainer = serde_json::from_value(serde_json::json!(
            {"name": "c", "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}
        ))
        .unwrap();
        let r = linux_resources(&c).unwrap();
        assert_eq!(r["memory"]["limit"], 64 * 1024 * 1024);
        assert_eq!(r["cpu"], serde_json::json!({"quota": 50_000, "period": 100_000}));
        let none: PodContainer = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        assert!(linux_resources(&none).unwrap().get("memory").is_none());
    }

    #[test]
    fn image_names_are_normalized_like_docker() {
        assert_eq!(normalize_image("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize_image("busybox-local:v1"), "docker.io/library/busybox-local:v1");
        assert_eq!(normalize_image("me/app"), "docker.io/me/app:latest");
        assert_eq!(normalize_image("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(normalize_image("localhost/app:2"), "localhost/app:2");
        assert_eq!(normalize_image("quay.io/x/y@sha256:ab"), "quay.io/x/y@sha256:ab");
    }

    #[test]
    fn chain_id_of_one_layer_is_its_diff_id_and_stacks_hash() {
        let one = vec!["sha256:aa".to_string()];
        assert_eq!(chain_id(&one).as_deref(), Some("sha256:aa"));
        let two = vec!["sha256:aa".to_string(), "sha256:bb".to_string()];
        let expected = format!("sha256:{:x}", Sha256::digest(b"sha256:aa sha256:bb"));
        assert_eq!(chain_id(&two), Some(expected));
        assert_eq!(chain_id(&[]), None);
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let image =
            ImageInfo { entrypoint: vec!["/entry".into()], cmd: vec!["default".into()], ..ImageInfo::default() };
        let container = |command: Option<Vec<&str>>, args: Option<Vec<&str>>| PodContainer {
            command: command.map(|c| c.into_iter().map(String::from).collect()),
            args: args.map(|a| a.into_iter().map(String::from).collect()),
            ..PodContainer::default()
        };
        assert_eq!(process_args(&container(None, None), &image), ["/entry", "default"]);
        assert_eq!(process_args(&container(None, Some(vec!["x"])), &image), ["/entry", "x"]);
        assert_eq!(process_args(&container(Some(vec!["sh"]), None), &image), ["sh"]);
        assert_eq!(process_args(&container(Some(vec!["sh"]), Some(vec!["-c", "true"])), &image), ["sh", "-c", "true"]);
    }

    #[test]
    fn container_env_overrides_image_env() {
        let image = ImageInfo { env: vec!["PATH=/bin".into(), "A=image".into()], ..ImageInfo::default() };
        let env = process_env(&[("A".into(), "pod".into())], &image, "web");
        assert_eq!(env, ["PATH=/bin", "HOSTNAME=web", "A=pod"]);
    }
}
