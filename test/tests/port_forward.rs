//! `kubectl port-forward` end to end: the real kubectl opens a WebSocket
//! (`SPDY/3.1+portforward.k8s.io`) to the apiserver's `pods/portforward`, which relays it to
//! the real rkubelet, which connects to the port inside the pod's network namespace (CNI on
//! containerd). Needs root and `make deps` (containerd, runc, the CNI plugins,
//! busybox-static, the venv's kubectl).

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use rkube_tests::forward::{Forward, http_get};
use rkube_tests::kubectl::Rkubectl;
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::{Api, Cluster, eventually, venv_bin};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// The Python client's port forwarding (a page, then a big download, one session each) and
/// exec with its exit code.
const PYTHON: &str = r#"
import sys
from kubernetes import client, config
from kubernetes.stream import portforward, stream

config.load_kube_config(config_file=sys.argv[1])
api = client.CoreV1Api()

def fetch(forward, port, path):
    sock = forward.socket(port)
    sock.setblocking(True)
    sock.sendall(("GET %s HTTP/1.0\r\n\r\n" % path).encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n\r\n", 1)[1]

forward = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="8080")
print("page: " + fetch(forward, 8080, "/index.html").decode(), end="")
forward = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="8080")
print("big: %d bytes" % len(fetch(forward, 8080, "/big")))
run = stream(api.connect_get_namespaced_pod_exec, "web", "default", command=["sh", "-c", "echo hi; exit 3"],
             stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
run.run_forever(timeout=30)
print("exec: " + run.read_stdout(), "exit", run.returncode)
"#;

#[tokio::test]
async fn kubectl_port_forward_reaches_ports_inside_the_pods_network() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd_with(&cluster, &containerd, "pf-node", &["--pod-cidr", "10.98.9.0/24"])
        .await
        .expect("kubelet starts");
    let api = Api::new(cluster.url());
    // An HTTP server on 8080 in the pod's own network namespace: a small page and a big one
    // (1.3 MB, many SPDY frames).
    let script = "mkdir -p /www && echo hello from the pod > /www/index.html && seq 1 200000 > /www/big \
                  && exec httpd -f -p 8080 -h /www";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"nodeName": "pf-node", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]}]}});
    api.create("/api/v1/namespaces/default/pods", &pod).await;
    eventually(WAIT, "pod web Running", || async {
        let (_, pod) = api.get("/api/v1/namespaces/default/pods/web").await;
        (pod["status"]["phase"] == "Running").then_some(())
    })
    .await;
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");

    // The pod's port is reached through kubectl's local port; the pod is not on the host's
    // network (nothing listens on 8080 here).
    assert!(TcpStream::connect(("127.0.0.1", 8080)).is_err(), "something on the host listens on 8080");
    let forward = Forward::start(&kubeconfig, home.path(), "pod/web", "8080");
    let page = eventually(WAIT, "the page through the forwarded port", || async {
        let (status, body) = forward.get("/index.html");
        status.contains("200").then_some(body)
    })
    .await;
    assert_eq!(String::from_utf8_lossy(&page), "hello from the pod\n");
    let expected: String = (1..=200_000).map(|n| format!("{n}\n")).collect();
    let (status, big) = forward.get("/big");
    assert!(status.contains("200"), "{status}");
    assert!(big == expected.as_bytes(), "the big page came back with {} of {} bytes", big.len(), expected.len());
    // Several connections at once, each its own pair of streams.
    let bodies: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| http_get(forward.port, "/big").1)).collect();
        handles.into_iter().map(|handle| handle.join().expect("thread")).collect()
    });
    assert!(bodies.iter().all(|body| body == expected.as_bytes()), "a parallel download differs");
    let (status, _) = forward.get("/missing");
    assert!(status.contains("404"), "{status}");
    let handled = forward.stdout.try_iter().filter(|line| line.starts_with("Handling connection for")).count();
    assert!(handled >= 7, "kubectl reports each connection: {handled}");
    let stderr = forward.stop();
    assert!(!stderr.contains("error"), "{stderr}");

    // A Service: kubectl maps its port to the pod's targetPort and forwards to a pod it selects.
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    api.create("/api/v1/namespaces/default/services", &service).await;
    let forward = Forward::start(&kubeconfig, home.path(), "svc/web", "80");
    let (status, page) = forward.get("/index.html");
    assert!(status.contains("200"), "{status}");
    assert_eq!(String::from_utf8_lossy(&page), "hello from the pod\n");
    forward.stop();

    // Nothing listens on 9999 in the pod: the connection closes and kubectl says why, in the
    // kubelet's words, then gives up as it does on Kubernetes.
    let mut forward = Forward::start(&kubeconfig, home.path(), "pod/web", "9999");
    let (status, body) = forward.get("/");
    assert_eq!((status.as_str(), body.len()), ("", 0), "nothing should answer");
    let exited = eventually(WAIT, "kubectl to give up", || {
        let exited = forward.child.try_wait().ok().flatten();
        async move { exited }
    })
    .await;
    let stderr = forward.stop();
    assert!(!exited.success(), "{stderr}");
    assert!(
        stderr.contains("error forwarding port 9999 to pod web") && stderr.contains("Connection refused"),
        "{stderr}\nkubelet log:\n{}",
        kubelet.log_tail(20)
    );

    // The Python client speaks the channel protocol (v4.channel.k8s.io, ports in the query); its
    // exec reads the exit code from the status's causes.
    let out = Command::new(venv_bin("python"))
        .args(["-c", PYTHON, &kubeconfig.display().to_string()])
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("python runs (make deps installs the client)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "page: hello from the pod\nbig: 1288895 bytes\nexec: hi\n exit 3\n",
        "{}\nkubelet log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        kubelet.log_tail(20)
    );

    // rkubectl port-forward: the same through the channel protocol, one WebSocket per
    // connection; a Service's port leads to the pod's targetPort there too.
    let rkubectl = Rkubectl::new(&cluster);
    let forward = Forward::start_program(rkubectl.program(), &kubeconfig, home.path(), "svc/web", "80");
    let (status, big) = forward.get("/big");
    assert!(status.contains("200") && big == expected.as_bytes(), "{status}: {} bytes", big.len());
    let (status, page) = forward.get("/index.html");
    assert_eq!((status.contains("200"), String::from_utf8_lossy(&page).as_ref()), (true, "hello from the pod\n"));
    forward.stop();
    let forward = Forward::start_program(rkubectl.program(), &kubeconfig, home.path(), "pod/web", "9999");
    assert_eq!(forward.get("/"), (String::new(), Vec::new()), "nothing should answer");
    let stderr = forward.stop();
    assert!(
        stderr.contains("error forwarding port 9999 to pod web") && stderr.contains("Connection refused"),
        "{stderr}"
    );
    let ran = rkubectl.run(&["port-forward", "pod/nobody", "80"]).await;
    assert_eq!((ran.code, ran.stderr.trim()), (Some(1), "Error from server (NotFound): pods \"nobody\" not found"));

    // A pod that does not exist is the apiserver's 404.
    let out = Command::new(venv_bin("kubectl"))
        .args(["port-forward", "pod/nobody", ":80"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .output()
        .expect("kubectl runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pods \"nobody\" not found"), "{out:?}");
}
