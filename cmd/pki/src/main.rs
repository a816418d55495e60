//! `rkube-pki`: writes a cluster's CA, the apiserver's serving certificate and a kubeconfig
//! for the admin, the controller-manager, the scheduler and each node's kubelet.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rkube_pki::cluster::{ClusterSpec, NodeSpec, write_cluster};

/// Makes the certificates and kubeconfigs of an rkube cluster, as kubeadm's `init phase
/// certs` and `kubeconfig` do: one CA, the apiserver's serving certificate (valid for every
/// --apiserver-name and --apiserver-address), and client certificates whose subject is
/// the identity RBAC knows (kubernetes-admin in system:masters, system:kube-scheduler,
/// system:kube-controller-manager, system:node:<node> in system:nodes), each in a
/// kubeconfig; each kubelet's serving certificate, the client certificate the apiserver
/// presents to kubelets, the ServiceAccount signing key, and etcd's own CA with etcd's
/// serving certificate and the apiserver's etcd client certificate. A directory that already
/// holds them for the same --server is left alone.
///
/// Example: rkube-pki --dir .rkube/pki --server https://127.0.0.1:6443 --apiserver-address 127.0.0.1 --node node1=127.0.0.1
#[derive(Debug, Parser)]
#[command(name = "rkube-pki", version, about, long_about)]
struct Flags {
    /// Where to write the files (created if missing).
    #[arg(long)]
    dir: PathBuf,

    /// The apiserver's URL as clients will use it, written into every kubeconfig.
    #[arg(long)]
    server: String,

    /// A DNS name of the apiserver (repeat for several); `localhost` is always included.
    #[arg(long = "apiserver-name")]
    apiserver_names: Vec<String>,

    /// An IP address of the apiserver (repeat for several).
    #[arg(long = "apiserver-address")]
    apiserver_addresses: Vec<IpAddr>,

    /// A node, as NAME or NAME=IP[,IP]: its kubelet gets a kubeconfig and a serving
    /// certificate for those addresses (repeat for several nodes).
    #[arg(long = "node")]
    nodes: Vec<NodeSpec>,

    /// A member of a multi-member etcd, as NAME=IP: it gets etcd-NAME-server.crt (clients, for
    /// IP and loopback) and etcd-NAME-peer.crt (the other members), both from etcd's CA (repeat
    /// for each member). Without it, one etcd-server.crt for loopback only.
    #[arg(long = "etcd-member")]
    etcd_members: Vec<NodeSpec>,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    anyhow::ensure!(flags.server.starts_with("https://"), "--server must be an https:// URL, not {:?}", flags.server);
    let mut names = flags.apiserver_names;
    if !names.iter().any(|n| n == "localhost") {
        names.push("localhost".into());
    }
    let spec = ClusterSpec {
        server: flags.server,
        apiserver_names: names,
        apiserver_addresses: flags.apiserver_addresses,
        nodes: flags.nodes,
        etcd_members: flags.etcd_members,
    };
    let written = write_cluster(&flags.dir, &spec).with_context(|| format!("writing into {}", flags.dir.display()))?;
    if written.is_empty() {
        println!("rkube-pki: {} already holds the certificates for {}", flags.dir.display(), spec.server);
    }
    for path in written {
        println!("rkube-pki: wrote {}", path.display());
    }
    Ok(())
}
