//! Every certificate and kubeconfig a cluster's processes need, written to one directory
//! (kubeadm's `init phase certs` and `kubeconfig`, for rkube's processes):
//!
//! | file | what |
//! |---|---|
//! | `ca.crt` | the CA every process trusts |
//! | `apiserver.crt`, `apiserver.key` | the apiserver's serving certificate |
//! | `admin.kubeconfig` | `kubernetes-admin` in `system:masters`: may do anything |
//! | `controller-manager.kubeconfig` | `system:kube-controller-manager` |
//! | `scheduler.kubeconfig` | `system:kube-scheduler` |
//! | `proxy.kubeconfig` | `system:kube-proxy` (every node's rkube-proxy) |
//! | `kubelet-<node>.kubeconfig` | `system:node:<node>` in `system:nodes` |
//! | `kubelet-<node>.crt`, `.key` | the kubelet's serving certificate |
//! | `apiserver-kubelet-client.crt`, `.key` | what the apiserver presents to kubelets (`system:masters`) |
//! | `sa.key` | the key ServiceAccount tokens are signed with |
//! | `etcd-ca.crt` | a CA of etcd's own (as kubeadm's `etcd/ca`): a cluster certificate opens no etcd |
//! | `etcd-server.crt`, `.key` | etcd's serving certificate, for `127.0.0.1` and `localhost` |
//! | `etcd-<member>-server.crt`, `.key` | with `etcd_members`: a member's serving certificate, for its address, `127.0.0.1` and `localhost` |
//! | `etcd-<member>-peer.crt`, `.key` | with `etcd_members`: what a member presents to the other members and accepts from them |
//! | `apiserver-etcd-client.crt`, `.key` | what the apiserver presents to etcd |
//!
//! Private keys (and kubeconfigs, which hold keys) are written readable by the owner only.
//! A directory that already holds a complete set for the same server is kept as it is, so
//! kubeconfigs copied elsewhere keep working across restarts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::{Ca, PkiError, kubeconfig};

/// What the certificates are for.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The apiserver's URL as clients use it, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    /// DNS names the serving certificate is valid for.
    pub apiserver_names: Vec<String>,
    /// Addresses the serving certificate is valid for.
    pub apiserver_addresses: Vec<IpAddr>,
    /// The nodes: one kubelet kubeconfig and serving certificate each.
    pub nodes: Vec<NodeSpec>,
    /// The members of a multi-member etcd (name and addresses, as nodes are given): a serving
    /// and a peer certificate each, signed by etcd's CA. Empty for one etcd on loopback.
    pub etcd_members: Vec<NodeSpec>,
}

/// One node: its name and the addresses its kubelet API is reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The node's name.
    pub name: String,
    /// The addresses in its kubelet's serving certificate.
    pub addresses: Vec<IpAddr>,
}

impl std::str::FromStr for NodeSpec {
    type Err = String;

    /// `name` or `name=ip[,ip...]`.
    fn from_str(text: &str) -> Result<NodeSpec, String> {
        let (name, addresses) = text.split_once('=').unwrap_or((text, ""));
        if name.is_empty() {
            return Err(format!("{text:?}: a node needs a name (NAME or NAME=IP[,IP])"));
        }
        let addresses = addresses
            .split(',')
            .filter(|a| !a.is_empty())
            .map(|a| a.parse().map_err(|_| format!("{text:?}: {a:?} is not an IP address")))
            .collect::<Result<Vec<IpAddr>, String>>()?;
        Ok(NodeSpec { name: name.to_string(), addresses })
    }
}

/// Why the files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ClusterPkiError {
    /// Making a certificate failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The identities of the control plane: (file stem, user, groups).
const CONTROL_PLANE: [(&str, &str, &[&str]); 4] = [
    ("admin", "kubernetes-admin", &["system:masters"]),
    ("controller-manager", "system:kube-controller-manager", &[]),
    ("scheduler", "system:kube-scheduler", &[]),
    ("proxy", "system:kube-proxy", &[]),
];

/// The files of etcd's own CA and the certificates it signs.
const ETCD_FILES: [&str; 5] =
    ["etcd-ca.crt", "etcd-server.crt", "etcd-server.key", "apiserver-etcd-client.crt", "apiserver-etcd-client.key"];

fn files(spec: &ClusterSpec) -> Vec<String> {
    let mut names: Vec<String> = ["ca.crt", "apiserver.crt", "apiserver.key"].iter().map(ToString::to_string).collect();
    names.extend(CONTROL_PLANE.iter().map(|(stem, _, _)| format!("{stem}.kubeconfig")));
    names.extend(["apiserver-kubelet-client.crt", "apiserver-kubelet-client.key", "sa.key"].map(String::from));
    names.extend(ETCD_FILES.map(String::from));
    for node in &spec.nodes {
        names.extend(["kubeconfig", "crt", "key"].map(|ext| format!("kubelet-{}.{ext}", node.name)));
    }
    for member in &spec.etcd_members {
        for role in ["server", "peer"] {
            names.extend(["crt", "key"].map(|ext| format!("etcd-{}-{role}.{ext}", member.name)));
        }
    }
    names
}

/// Whether `dir` already holds every file of `spec`, made for the same server.
pub fn is_complete(dir: &Path, spec: &ClusterSpec) -> bool {
    let server_line = format!("server: {}\n", spec.server);
    files(spec).iter().all(|name| dir.join(name).is_file())
        && std::fs::read_to_string(dir.join("admin.kubeconfig")).is_ok_and(|text| text.contains(&server_line))
}

fn write(dir: &Path, name: &str, text: &str, private: bool) -> Result<PathBuf, ClusterPkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let io = |source| ClusterPkiError::Io { path: path.display().to_string(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(if private { 0o600 } else { 0o644 });
    let mut file = options.open(&path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    Ok(path)
}

/// Writes every file of `spec` into `dir` (created if missing), unless it already holds
/// them ([`is_complete`]). Returns the files written (none when kept).
///
/// # Errors
/// When a certificate cannot be made or a file cannot be written.
pub fn write_cluster(dir: &Path, spec: &ClusterSpec) -> Result<Vec<PathBuf>, ClusterPkiError> {
    if is_complete(dir, spec) {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|source| ClusterPkiError::Io { path: dir.display().to_string(), source })?;
    let ca = Ca::new("rkube-ca")?;
    let names: Vec<&str> = spec.apiserver_names.iter().map(String::as_str).collect();
    let serving = ca.serving("kube-apiserver", &names, &spec.apiserver_addresses)?;
    let kubelet_client = ca.client("kube-apiserver-kubelet-client", &["system:masters"])?;
    let mut written = vec![
        write(dir, "ca.crt", &ca.cert_pem(), false)?,
        write(dir, "apiserver.crt", &serving.cert_pem, false)?,
        write(dir, "apiserver.key", &serving.key_pem, true)?,
        write(dir, "apiserver-kubelet-client.crt", &kubelet_client.cert_pem, false)?,
        write(dir, "apiserver-kubelet-client.key", &kubelet_client.key_pem, true)?,
        write(dir, "sa.key", &crate::signing_key_pem()?, true)?,
    ];
    let etcd_ca = Ca::new("etcd-ca")?;
    let loopback: IpAddr = IpAddr::from([127, 0, 0, 1]);
    let etcd_server = etcd_ca.serving("etcd", &["localhost"], &[loopback])?;
    let etcd_client = etcd_ca.client("kube-apiserver-etcd-client", &[])?;
    written.extend([
        write(dir, "etcd-ca.crt", &etcd_ca.cert_pem(), false)?,
        write(dir, "etcd-server.crt", &etcd_server.cert_pem, false)?,
        write(dir, "etcd-server.key", &etcd_server.key_pem, true)?,
        write(dir, "apiserver-etcd-client.crt", &etcd_client.cert_pem, false)?,
        write(dir, "apiserver-etcd-client.key", &etcd_client.key_pem, true)?,
    ]);
    for member in &spec.etcd_members {
        let mut addresses = member.addresses.clone();
        addresses.push(loopback);
        let server = etcd_ca.peer(&format!("etcd-{}", member.name), &["localhost"], &addresses)?;
        let peer = etcd_ca.peer(&format!("etcd-{}", member.name), &[], &member.addresses)?;
        for (role, cert) in [("server", server), ("peer", peer)] {
            written.push(write(dir, &format!("etcd-{}-{role}.crt", member.name), &cert.cert_pem, false)?);
            written.push(write(dir, &format!("etcd-{}-{role}.key", member.name), &cert.key_pem, true)?);
        }
    }
    for node in &spec.nodes {
        let serving = ca.serving(&format!("system:node:{}", node.name), &[node.name.as_str()], &node.addresses)?;
        written.push(write(dir, &format!("kubelet-{}.crt", node.name), &serving.cert_pem, false)?);
        written.push(write(dir, &format!("kubelet-{}.key", node.name), &serving.key_pem, true)?);
    }
    let mut identities: Vec<(String, String, Vec<String>)> = CONTROL_PLANE
        .iter()
        .map(|(stem, user, groups)| {
            (stem.to_string(), user.to_string(), groups.iter().map(ToString::to_string).collect())
        })
        .collect();
    for node in &spec.nodes {
        let name = &node.name;
        identities.push((format!("kubelet-{name}"), format!("system:node:{name}"), vec!["system:nodes".to_string()]));
    }
    for (stem, user, groups) in identities {
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let cert = ca.client(&user, &groups)?;
        written.push(write(
            dir,
            &format!("{stem}.kubeconfig"),
            &kubeconfig(&spec.server, &ca.cert_pem(), &user, &cert),
            true,
        )?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn spec(server: &str) -> ClusterSpec {
        ClusterSpec {
            server: server.into(),
            apiserver_names: vec!["localhost".into()],
            apiserver_addresses: vec!["127.0.0.1".parse().expect("address")],
            nodes: vec!["node1=127.0.0.1".parse().expect("a node")],
            etcd_members: Vec::new(),
        }
    }

    #[test]
    fn a_cluster_gets_every_file_once_with_private_keys_private() {
        let dir = tempfile::tempdir().expect("directory");
        let written = write_cluster(dir.path(), &spec("https://127.0.0.1:6443")).expect("written");
        assert_eq!(written.len(), 18);
        let mode = std::fs::metadata(dir.path().join("apiserver.key")).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let kubelet = std::fs::read_to_string(dir.path().join("kubelet-node1.kubeconfig")).expect("kubeconfig");
        assert!(kubelet.contains("user: system:node:node1"), "{kubelet}");
        // Run again for the same server: kept; for another: made anew.
        assert!(write_cluster(dir.path(), &spec("https://127.0.0.1:6443")).expect("kept").is_empty());
        assert_eq!(write_cluster(dir.path(), &spec("https://127.0.0.1:7443")).expect("anew").len(), 18);
        assert!("=1.2.3.4".parse::<NodeSpec>().is_err());
        assert!("n=not-an-ip".parse::<NodeSpec>().is_err());
    }

    #[test]
    fn each_etcd_member_gets_a_serving_and_a_peer_certificate() {
        let dir = tempfile::tempdir().expect("directory");
        let mut spec = spec("https://127.0.0.1:6443");
        spec.etcd_members = vec!["m1=10.0.0.1".parse().expect("member"), "m2=10.0.0.2".parse().expect("member")];
        let written = write_cluster(dir.path(), &spec).expect("written");
        assert_eq!(written.len(), 18 + 8);
        for file in ["etcd-m1-server.crt", "etcd-m1-peer.key", "etcd-m2-server.key", "etcd-m2-peer.crt"] {
            assert!(dir.path().join(file).is_file(), "{file}");
        }
        // A directory made without the members is not complete for a spec with them.
        let plain = tempfile::tempdir().expect("directory");
        write_cluster(plain.path(), &self::spec("https://127.0.0.1:6443")).expect("written");
        assert!(!is_complete(plain.path(), &spec));
    }
}
