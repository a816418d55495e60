//! `kubectl create <generator>` with the real kubectl 1.37, which sends every generated object
//! as a protobuf body: each command's output line, and the object it made read back through
//! the API with the fields kubectl put in it. And `kubectl drain --disable-eviction`, whose
//! DELETEs carry a protobuf `DeleteOptions` (the command the issue found failing with
//! `invalid DeleteOptions`).
//!
//! Needs `make deps` (etcd, the venv's kubectl).

use std::time::Duration;

use rkube_tests::kubectl::real_kubectl_run;
use rkube_tests::node::Kubelet;
use rkube_tests::{Api, Cluster, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn create_generators_send_protobuf_and_make_what_kubectl_describes() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let kubectl = |args: Vec<String>| {
        let (kubeconfig, home) = (kubeconfig.clone(), home.path().to_path_buf());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let ran = real_kubectl_run(&kubeconfig, &home, &args, None).await;
            assert_eq!(ran.code, Some(0), "{}", ran.describe());
            ran.stdout
        }
    };
    let create = |words: &str| kubectl(words.split_whitespace().map(str::to_string).collect());

    // Services: the generator's port:targetPort pairs, type and selector (app=<name>).
    assert_eq!(create("create service clusterip api --tcp=80:8080 --tcp=443:8443").await, "service/api created\n");
    let service = api.get_ok("/api/v1/namespaces/default/services/api").await;
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["selector"], json!({"app": "api"}));
    let ports: Vec<(i64, i64, &str)> = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (p["port"].as_i64().unwrap_or(0), p["targetPort"].as_i64().unwrap_or(0), p["name"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(ports, [(80, 8080, "80-8080"), (443, 8443, "443-8443")], "{service}");
    assert!(service["spec"]["clusterIP"].as_str().is_some_and(|ip| !ip.is_empty()), "{service}");
    assert_eq!(create("create service nodeport edge --tcp=80:8080 --node-port=30123").await, "service/edge created\n");
    let edge = api.get_ok("/api/v1/namespaces/default/services/edge").await;
    assert_eq!(
        (edge["spec"]["type"].as_str(), edge["spec"]["ports"][0]["nodePort"].as_i64()),
        (Some("NodePort"), Some(30123))
    );
    assert_eq!(create("create service externalname db --external-name=db.example.com").await, "service/db created\n");
    let db = api.get_ok("/api/v1/namespaces/default/services/db").await;
    assert_eq!(
        (db["spec"]["type"].as_str(), db["spec"]["externalName"].as_str()),
        (Some("ExternalName"), Some("db.example.com"))
    );

    // A Job and a CronJob with a command.
    assert_eq!(create("create job once --image=busybox:1.37 -- echo hi").await, "job.batch/once created\n");
    let job = api.get_ok("/apis/batch/v1/namespaces/default/jobs/once").await;
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (container["image"].as_str(), &container["command"]),
        (Some("busybox:1.37"), &json!(["echo", "hi"])),
        "{job}"
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let args = ["create", "cronjob", "tick", "--image=busybox:1.37", "--schedule=*/5 * * * *", "--", "date"];
    let out = kubectl(args.iter().map(|arg| (*arg).to_string()).collect()).await;
    assert_eq!(out, "cronjob.batch/tick created\n");
    let cron = api.get_ok("/apis/batch/v1/namespaces/default/cronjobs/tick").await;
    assert_eq!(cron["spec"]["schedule"], "*/5 * * * *", "{cron}");
    assert_eq!(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"], json!(["date"]));
    // create job --from: a Job made from the CronJob's template, owned by it.
    assert_eq!(create("create job manual --from=cronjob/tick").await, "job.batch/manual created\n");
    let manual = api.get_ok("/apis/batch/v1/namespaces/default/jobs/manual").await;
    assert_eq!(manual["metadata"]["ownerReferences"][0]["name"], "tick", "{manual}");
    assert_eq!(manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual", "{manual}");

    // RBAC: roles with their rules, bindings with their subjects.
    assert_eq!(
        create("create role reader --verb=get,list --resource=pods,configmaps").await,
        "role.rbac.authorization.k8s.io/reader created\n"
    );
    let role = api.get_ok("/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/reader").await;
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list"]}]),
        "{role}"
    );
    assert_eq!(
        create("create clusterrole node-reader --verb=get --resource=nodes --resource-name=n1").await,
        "clusterrole.rbac.authorization.k8s.io/node-reader created\n"
    );
    let clusterrole = api.get_ok("/apis/rbac.authorization.k8s.io/v1/clusterroles/node-reader").await;
    assert_eq!(
        clusterrole["rules"],
        json!([{"apiGroups": [""], "resources": ["nodes"], "resourceNames": ["n1"], "verbs": ["get"]}]),
        "{clusterrole}"
    );
    assert_eq!(
        create("create clusterrolebinding read-nodes --clusterrole=node-reader --user=alice --group=ops --serviceaccount=default:robot")
            .await,
        "clusterrolebinding.rbac.authorization.k8s.io/read-nodes created\n"
    );
    let binding = api.get_ok("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/read-nodes").await;
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-reader"})
    );
    let subjects: Vec<(&str, &str)> = binding["subjects"]
        .as_array()
        .expect("subjects")
        .iter()
        .map(|s| (s["kind"].as_str().unwrap_or(""), s["name"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(subjects, [("User", "alice"), ("Group", "ops"), ("ServiceAccount", "robot")], "{binding}");

    // ConfigMaps and Secrets from files and literals.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("app.conf"), "listen 8080\n").expect("file");
    std::fs::write(dir.path().join("motd"), "hello\n").expect("file");
    let from_file = format!("--from-file={}", dir.path().join("app.conf").display());
    let from_dir = format!("--from-file={}", dir.path().display());
    let out =
        kubectl(vec!["create".into(), "configmap".into(), "conf".into(), from_file, "--from-literal=mode=fast".into()])
            .await;
    assert_eq!(out, "configmap/conf created\n");
    let conf = api.get_ok("/api/v1/namespaces/default/configmaps/conf").await;
    assert_eq!(conf["data"], json!({"app.conf": "listen 8080\n", "mode": "fast"}), "{conf}");
    let out = kubectl(vec!["create".into(), "configmap".into(), "all".into(), from_dir]).await;
    assert_eq!(out, "configmap/all created\n");
    let all = api.get_ok("/api/v1/namespaces/default/configmaps/all").await;
    assert_eq!(all["data"], json!({"app.conf": "listen 8080\n", "motd": "hello\n"}), "{all}");
    let out = create("create secret docker-registry pull --docker-server=registry.local:5000 --docker-username=u --docker-password=p").await;
    assert_eq!(out, "secret/pull created\n");
    let pull = api.get_ok("/api/v1/namespaces/default/secrets/pull").await;
    assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson", "{pull}");
    let config = decode(&pull["data"][".dockerconfigjson"]);
    let config: Value = serde_json::from_slice(&config).expect("docker config JSON");
    assert_eq!(config["auths"]["registry.local:5000"]["username"], "u", "{config}");
    let pair = rkube_pki::Ca::new("test-ca")
        .and_then(|ca| ca.serving("web.local", &["web.local"], &[]))
        .expect("a serving certificate");
    std::fs::write(dir.path().join("tls.crt"), &pair.cert_pem).expect("file");
    std::fs::write(dir.path().join("tls.key"), &pair.key_pem).expect("file");
    let cert = format!("--cert={}", dir.path().join("tls.crt").display());
    let key = format!("--key={}", dir.path().join("tls.key").display());
    let out = kubectl(vec!["create".into(), "secret".into(), "tls".into(), "web-tls".into(), cert, key]).await;
    assert_eq!(out, "secret/web-tls created\n");
    let tls = api.get_ok("/api/v1/namespaces/default/secrets/web-tls").await;
    assert_eq!(tls["type"], "kubernetes.io/tls", "{tls}");
    assert_eq!(decode(&tls["data"]["tls.crt"]), pair.cert_pem.as_bytes());
    assert_eq!(decode(&tls["data"]["tls.key"]), pair.key_pem.as_bytes());
}

/// The bytes of a Secret's base64 data value.
fn decode(value: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap_or_default()).expect("base64")
}

#[tokio::test]
async fn drain_without_eviction_deletes_with_a_protobuf_delete_options() {
    let cluster = Cluster::start().await.expect("cluster");
    let api = Api::new(cluster.url());
    let _kubelet = Kubelet::start_fake(&cluster, "plain-node", &[]).await.expect("kubelet");
    for name in ["a", "b"] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": "plain-node", "containers": [{"name": "main", "image": "busybox:1.37"}]}});
        api.create("/api/v1/namespaces/default/pods", &pod).await;
    }
    eventually(WAIT, "both pods Running", || async {
        let pods = api.get_ok("/api/v1/namespaces/default/pods").await;
        let running =
            pods["items"].as_array().map(|items| items.iter().filter(|p| p["status"]["phase"] == "Running").count());
        (running == Some(2)).then_some(())
    })
    .await;
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let args = ["drain", "plain-node", "--disable-eviction", "--force", "--grace-period=1", "--timeout=60s", "-v=8"];
    let ran = real_kubectl_run(&kubeconfig, home.path(), &args, None).await;
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    assert!(ran.stdout.contains("node/plain-node drained"), "{}", ran.describe());
    // Both DELETEs carried a protobuf body: kubectl -v=8 logs each request with its headers, one
    // per line, after `headers=<` and up to a line `>`.
    let lines: Vec<&str> = ran.stderr.lines().collect();
    let deletes: Vec<bool> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains("\"Request\" verb=\"DELETE\""))
        .map(|(at, _)| {
            lines[at + 1..]
                .iter()
                .take_while(|line| line.trim() != ">")
                .any(|header| header.trim() == "Content-Type: application/vnd.kubernetes.protobuf")
        })
        .collect();
    assert_eq!(deletes, [true, true], "two DELETEs, each with a protobuf DeleteOptions: {}", ran.describe());
    let pods = api.get_ok("/api/v1/namespaces/default/pods").await;
    assert_eq!(pods["items"], json!([]), "drained pods are gone: {pods}");
}
