//! rkube-proxy against the real kernel: the rules it writes with the real `nft` into a network
//! namespace standing for a node make a Service's cluster IP and node port reach servers in
//! another namespace, from the node itself (nat output) and from a pod behind it (nat
//! prerouting). Needs root, `ip` and `nft` (`make deps`) and python3 for the servers.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rkube_tests::{Api, Cluster, binary, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Three network namespaces, deleted when dropped: `node` (where the rules go), `backend`
/// (10.77.0.2 and 10.77.0.3, the endpoints) and `pod` (10.78.0.2, routed through `node`).
struct Lab {
    node: String,
    backend: String,
    pod: String,
    servers: Vec<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs (make deps installs iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn in_netns(netns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip").args(["netns", "exec", netns]).args(args).output().expect("ip netns exec")
}

impl Lab {
    fn new() -> Lab {
        let id = std::process::id() % 100_000;
        let lab = Lab {
            node: format!("rkp{id}n"),
            backend: format!("rkp{id}b"),
            pod: format!("rkp{id}p"),
            servers: Vec::new(),
        };
        for netns in [&lab.node, &lab.backend, &lab.pod] {
            ip(&["netns", "add", netns]);
            ip(&["-n", netns, "link", "set", "lo", "up"]);
        }
        let (nb, bn, np, pn) = (format!("rkp{id}nb"), format!("rkp{id}bn"), format!("rkp{id}np"), format!("rkp{id}pn"));
        ip(&["link", "add", &nb, "netns", &lab.node, "type", "veth", "peer", "name", &bn, "netns", &lab.backend]);
        ip(&["link", "add", &np, "netns", &lab.node, "type", "veth", "peer", "name", &pn, "netns", &lab.pod]);
        for (netns, link, address) in [
            (&lab.node, &nb, "10.77.0.1/24"),
            (&lab.backend, &bn, "10.77.0.2/24"),
            (&lab.backend, &bn, "10.77.0.3/24"),
            (&lab.node, &np, "10.78.0.1/24"),
            (&lab.pod, &pn, "10.78.0.2/24"),
        ] {
            ip(&["-n", netns, "addr", "add", address, "dev", link]);
            ip(&["-n", netns, "link", "set", link, "up"]);
        }
        ip(&["-n", &lab.pod, "route", "add", "default", "via", "10.78.0.1"]);
        // A node has a default route; without one, a packet the node sends to a cluster IP
        // finds no route before the rules could rewrite it.
        ip(&["-n", &lab.node, "route", "add", "default", "via", "10.77.0.2"]);
        let out = in_netns(&lab.node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        assert!(out.status.success(), "{out:?}");
        lab
    }

    /// An HTTP server on `address`:8080 in `backend` answering `name`.
    fn serve(&mut self, address: &str, name: &str, dir: &std::path::Path) {
        let root = dir.join(name);
        std::fs::create_dir_all(&root).expect("server dir");
        std::fs::write(root.join("index.html"), name).expect("page");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.backend, "python3", "-m", "http.server", "8080", "--bind", address])
            .arg("--directory")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server");
        self.servers.push(child);
    }

    /// A UDP server on `address`:5353 in `backend` answering every datagram with `name`.
    fn serve_udp(&mut self, address: &str, name: &str) {
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('{address}', 5353))\n\
             while True:\n    data, peer = s.recvfrom(512)\n    s.sendto(b'{name}', peer)\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.backend, "python3", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 UDP server");
        self.servers.push(child);
    }

    /// One datagram to `ip:port` from `netns`: the answer, or the error.
    fn ask_udp(&self, netns: &str, ip: &str, port: u64) -> Result<String, String> {
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(2)\n\
             s.sendto(b'hello', ('{ip}', {port}))\nprint(s.recv(512).decode(), end='')\n"
        );
        let out = in_netns(netns, &["python3", "-c", &script]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().to_string())
        }
    }

    /// `GET http://<target>/` from `netns`: the page, or the error.
    fn get(&self, netns: &str, target: &str) -> Result<String, String> {
        let script = format!(
            "import urllib.request; print(urllib.request.urlopen('http://{target}/', timeout=3).read().decode(), end='')"
        );
        let out = in_netns(netns, &["python3", "-c", &script]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().to_string())
        }
    }

    fn rules(&self) -> String {
        String::from_utf8_lossy(&in_netns(&self.node, &["nft", "list", "table", "ip", "rkube-proxy"]).stdout)
            .into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        for netns in [&self.node, &self.backend, &self.pod] {
            let _ = Command::new("ip").args(["netns", "delete", netns]).output();
        }
    }
}

#[tokio::test]
async fn service_ips_and_node_ports_reach_ready_endpoints_through_nftables() {
    let dir = tempfile::tempdir().expect("dir");
    let mut lab = Lab::new();
    lab.serve("10.77.0.2", "a", dir.path());
    lab.serve("10.77.0.3", "b", dir.path());
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    let service = api.create("/api/v1/namespaces/default/services", &service).await;
    let cluster_ip = service["spec"]["clusterIP"].as_str().expect("cluster IP").to_string();
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().expect("node port");
    let slice = |b_ready: bool| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.77.0.2"], "conditions": {"ready": true}, "nodeName": "n1"},
                          {"addresses": ["10.77.0.3"], "conditions": {"ready": b_ready}, "nodeName": "n1"}]})
    };
    api.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", &slice(true)).await;
    let empty = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "empty"},
        "spec": {"selector": {"app": "none"}, "ports": [{"port": 81}]}});
    let empty = api.create("/api/v1/namespaces/default/services", &empty).await;

    // The proxy runs on the host (it reaches the apiserver there) and writes its rules into the
    // `node` namespace through an nft wrapper.
    let wrapper = dir.path().join("nft");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec ip netns exec {} nft \"$@\"\n", lab.node)).expect("wrapper");
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let kubeconfig = cluster.write_kubeconfig(dir.path()).expect("kubeconfig");
    let mut proxy = Proxy(
        Command::new(binary("rkube-proxy"))
            .args(["--node-name", "n1", "--port", "0", "--sync-period", "1s", "--nft"])
            .arg(&wrapper)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("proxy.log")).expect("log file"))
            .spawn()
            .expect("rkube-proxy runs (cargo build)"),
    );

    // From the node itself and from a pod behind it, over both endpoints.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + WAIT;
    while let Err(error) = lab.get(&lab.node, &format!("{cluster_ip}:80")) {
        let logged = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline,
            "the Service does not answer from the node: {error}\nrules:\n{}\nproxy ({:?}) log:\n{logged}",
            lab.rules(),
            proxy.0.try_wait()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..30 {
        seen.insert(lab.get(&lab.node, &format!("{cluster_ip}:80")).expect("the node reaches the Service"));
        seen.insert(lab.get(&lab.pod, &format!("{cluster_ip}:80")).expect("a pod reaches the Service"));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b"], "random over both endpoints\n{}", lab.rules());
    // The node port, on the node's address.
    let page = lab.get(&lab.pod, &format!("10.78.0.1:{node_port}"));
    assert!(matches!(page.as_deref(), Ok("a" | "b")), "{page:?}\n{}", lab.rules());

    // A Service without endpoints is refused at once, not left to time out.
    let empty_ip = empty["spec"]["clusterIP"].as_str().expect("ip").to_string();
    let refused = lab.get(&lab.node, &format!("{empty_ip}:81")).expect_err("nothing answers");
    assert!(refused.contains("Connection refused"), "{refused}");

    // An endpoint that turns unready gets no new connections.
    let path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-1";
    let mut unready = slice(false);
    unready["metadata"]["resourceVersion"] = api.get_ok(path).await["metadata"]["resourceVersion"].clone();
    let (code, body) = api.put(path, &unready).await;
    assert!(code.is_success(), "{body}");
    eventually(WAIT, "only the ready endpoint to answer", || {
        let all_a = (0..10).all(|_| lab.get(&lab.node, &format!("{cluster_ip}:80")).as_deref() == Ok("a"));
        async move { all_a.then_some(()) }
    })
    .await;

    // UDP: a Service port of protocol UDP reaches a UDP server, from the node and from a pod.
    lab.serve_udp("10.77.0.2", "udp-a");
    let dns = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
        "spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]}});
    let dns = api.create("/api/v1/namespaces/default/services", &dns).await;
    let dns_ip = dns["spec"]["clusterIP"].as_str().expect("ip").to_string();
    let dns_slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "dns-1", "labels": {"kubernetes.io/service-name": "dns"}},
        "addressType": "IPv4", "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": [{"addresses": ["10.77.0.2"], "conditions": {"ready": true}}]});
    api.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", &dns_slice).await;
    eventually(WAIT, "the UDP Service to answer from the node", || {
        let answer = lab.ask_udp(&lab.node, &dns_ip, 53);
        async move { answer.ok() }
    })
    .await;
    assert_eq!(lab.ask_udp(&lab.pod, &dns_ip, 53).as_deref(), Ok("udp-a"), "{}", lab.rules());

    // Rules deleted by hand come back at the next sync.
    let out = in_netns(&lab.node, &["nft", "delete", "table", "ip", "rkube-proxy"]);
    assert!(out.status.success(), "{out:?}");
    eventually(WAIT, "the rules to come back", || {
        let answer = lab.get(&lab.node, &format!("{cluster_ip}:80"));
        async move { answer.ok() }
    })
    .await;
    assert!(lab.rules().contains(&format!("{cluster_ip} . tcp . 80 : goto svc-default/web/tcp/80")), "{}", lab.rules());
}

/// The proxy, killed when the test ends, however it ends.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
