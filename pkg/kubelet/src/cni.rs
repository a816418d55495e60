//! Pod networking with the CNI plugins (bridge + host-local; `lo` brought up with `ip`), run directly.
//!
//! One network namespace per pod, `/run/netns/rkube-<pod uid>` (made with `ip netns add`),
//! shared by all the pod's containers. [`Network::set_up`] brings `lo` up (`ip -n <netns> link
//! set lo up`: what the `loopback` plugin does, without starting a Go program per pod) and runs
//! the `bridge` plugin (IPAM: `host-local` on the node's pod CIDR) for `eth0`, and keeps the
//! result in `<root-dir>/cni/results/<uid>.json`; [`Network::tear_down`] runs the bridge's DEL,
//! deletes the namespace (and its `lo` with it) and the result. This is what containerd's CRI does through
//! go-cni; the Kubernetes kubelet's old built-in `kubenet` generated the same bridge config from
//! the pod CIDR, as this module does (no files in `--cni-conf-dir` are read yet).
//!
//! What it keeps true (`test/tests/kubelet_containerd.rs`:
//! `pod_gets_an_ip_from_the_pod_cidr_and_serves_http_to_the_host`): a pod's IP is in the
//! node's pod CIDR and reachable from the host through the bridge; set-up is idempotent; after
//! tear-down the namespace and the host-local reservation are gone.
//!
//! Not promised: removing the bridge itself (the bridge plugin never does; it is shared by the
//! node's pods), masquerading to the outside (`ipMasq` is off), port mappings. The bridge
//! plugin with `isGateway` turns on `net.ipv4.ip_forward`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs the CNI plugins for a node's pods (see the module docs).
#[derive(Clone, Debug)]
pub struct Network {
    bin_dir: PathBuf,
    state_dir: PathBuf,
    pod_cidr: String,
    bridge: String,
}

/// Why a pod's network could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A plugin or `ip` could not be run, or failed.
    #[error("{what}: {message}")]
    Command {
        /// What was run.
        what: String,
        /// Its error output or the I/O error.
        message: String,
    },
    /// The plugin's result did not hold an IPv4 address.
    #[error("CNI result without an IPv4 address: {0}")]
    NoAddress(String),
}

/// The netns path of pod `uid`.
pub fn netns_path(uid: &str) -> PathBuf {
    Path::new("/run/netns").join(netns_name(uid))
}

fn netns_name(uid: &str) -> String {
    format!("rkube-{uid}")
}

/// A TCP connection to `localhost:port` in the network namespace at `netns` (a
/// `/run/netns/...` or `/proc/<pid>/ns/net` path): what port forwarding reaches in a pod. The socket is made on a thread of its own
/// that enters the namespace and then ends (a namespace belongs to the thread that entered it,
/// so no pooled thread may do it); the socket stays in the namespace it was made in.
pub async fn connect_in(netns: PathBuf, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("rkube-portforward".into()).spawn(move || {
        let connect = || -> std::io::Result<std::net::TcpStream> {
            let namespace = std::fs::File::open(&netns)?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&namespace),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            let timeout = std::time::Duration::from_secs(5);
            // Kubernetes tries IPv4 first, then IPv6.
            let stream = std::net::TcpStream::connect_timeout(&(std::net::Ipv4Addr::LOCALHOST, port).into(), timeout)
                .or_else(|v4| {
                std::net::TcpStream::connect_timeout(&(std::net::Ipv6Addr::LOCALHOST, port).into(), timeout)
                    .map_err(|_| v4)
            })?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        };
        let _ = done.send(connect());
    })?;
    let stream = result.await.map_err(|_| std::io::Error::other("the connecting thread ended"))??;
    tokio::net::TcpStream::from_std(stream)
}

/// The bridge name for a pod CIDR: `rk` + the network address in hex (fits Linux's 15 bytes,
/// and kubelets with different CIDRs on one machine get different bridges).
pub fn bridge_name(pod_cidr: &str) -> String {
    let address = pod_cidr.split('/').next().unwrap_or_default();
    let octets: Vec<u8> = address.split('.').filter_map(|octet| octet.parse().ok()).collect();
    format!("rk{}", octets.iter().map(|octet| format!("{octet:02x}")).collect::<String>())
}

fn run(what: &str, command: &mut Command, stdin: Option<&[u8]>) -> Result<Vec<u8>, CniError> {
    let failed = |message: String| CniError::Command { what: what.to_string(), message };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(error.to_string()))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default()).map_err(|error| failed(error.to_string()))?;
    }
    let output = child.wait_with_output().map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        let mut message = String::from_utf8_lossy(&output.stdout).trim().to_string();
        message.push_str(String::from_utf8_lossy(&output.stderr).trim());
        return Err(failed(format!("{}: {message}", output.status)));
    }
    Ok(output.stdout)
}

impl Network {
    /// Networking for pods from `pod_cidr`, with plugins from `bin_dir` and state (results,
    /// host-local's reservations) under `state_dir`.
    pub fn new(bin_dir: PathBuf, state_dir: PathBuf, pod_cidr: &str) -> Network {
        Network { bin_dir, state_dir, pod_cidr: pod_cidr.into(), bridge: bridge_name(pod_cidr) }
    }

    fn result_path(&self, uid: &str) -> PathBuf {
        self.state_dir.join("results").join(format!("{uid}.json"))
    }

    fn bridge_config(&self) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("rkube-{}", self.bridge),
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.state_dir.join("networks"),
            },
        })
    }

    fn plugin(&self, command: &str, uid: &str, ifname: &str, config: &serde_json::Value) -> Result<Vec<u8>, CniError> {
        let plugin = config["type"].as_str().unwrap_or_default().to_string();
        let netns = netns_path(uid);
        run(
            &format!("CNI {command} {plugin} ({ifname})"),
            Command::new(self.bin_dir.join(&plugin))
                .env_clear()
                .env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", uid)
                .env("CNI_NETNS", &netns)
                .env("CNI_IFNAME", ifname)
                .env("CNI_PATH", &self.bin_dir)
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            Some(config.to_string().as_bytes()),
        )
    }

    /// The IP of pod `uid`, if its network is set up.
    pub fn pod_ip(&self, uid: &str) -> Option<String> {
        std::fs::read_to_string(self.result_path(uid)).ok().map(|ip| ip.trim().to_string())
    }

    /// The uids of pods whose network is set up (to tear down orphans).
    pub fn pod_uids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("results")) else { return Vec::new() };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".json").map(String::from))
            .collect()
    }

    /// Creates pod `uid`'s namespace and network unless it exists; returns the pod's IP.
    ///
    /// A network half made (an ADD that failed) or half lost (a reboot took the namespace but
    /// left the saved result and the IPAM's reservation on disk) is torn down first, so the
    /// pod's address is released and made anew: never a namespace without its interface.
    ///
    /// # Errors
    /// [`CniError`] when `ip` or a plugin fails; what was made is undone before returning.
    pub fn set_up(&self, uid: &str) -> Result<String, CniError> {
        if let Some(ip) = self.pod_ip(uid)
            && netns_path(uid).exists()
        {
            return Ok(ip);
        }
        self.tear_down(uid)?;
        self.add(uid).inspect_err(|_| {
            if let Err(error) = self.tear_down(uid) {
                tracing::warn!(%uid, %error, "cannot undo a failed pod network set-up");
            }
        })
    }

    /// Makes the namespace, brings `lo` up, runs the bridge's ADD and saves the pod's IP.
    fn add(&self, uid: &str) -> Result<String, CniError> {
        let name = netns_name(uid);
        run("ip netns add", Command::new("ip").args(["netns", "add", &name]), None)?;
        run("ip link set lo up", Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]), None)?;
        let output = self.plugin("ADD", uid, "eth0", &self.bridge_config())?;
        let result: serde_json::Value = serde_json::from_slice(&output)
            .map_err(|error| CniError::NoAddress(format!("{error}: {}", String::from_utf8_lossy(&output))))?;
        let ip = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["address"].as_str())
            .find(|address| address.contains('.'))
            .and_then(|address| address.split('/').next())
            .ok_or_else(|| CniError::NoAddress(result.to_string()))?
            .to_string();
        let path = self.result_path(uid);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| CniError::Command {
                what: format!("creating {}", dir.display()),
                message: error.to_string(),
            })?;
        }
        std::fs::write(&path, &ip).map_err(|error| CniError::Command {
            what: format!("writing {}", path.display()),
            message: error.to_string(),
        })?;
        Ok(ip)
    }

    /// Runs the bridge's DEL, deletes the namespace and the saved result. Missing pieces are
    /// fine.
    ///
    /// # Errors
    /// [`CniError`] when a plugin's DEL fails.
    pub fn tear_down(&self, uid: &str) -> Result<(), CniError> {
        if netns_path(uid).exists() || self.pod_ip(uid).is_some() {
            self.plugin("DEL", uid, "eth0", &self.bridge_config())?;
            if netns_path(uid).exists() {
                run("ip netns delete", Command::new("ip").args(["netns", "delete", &netns_name(uid)]), None)?;
            }
        }
        let _ = std::fs::remove_file(self.result_path(uid));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_linux_and_differ_per_cidr() {
        assert_eq!(bridge_name("10.244.3.0/24"), "rk0af40300");
        assert_ne!(bridge_name("10.244.3.0/24"), bridge_name("10.244.4.0/24"));
        assert!(bridge_name("255.255.255.0/24").len() <= 15);
    }
}
