//! The `website_operator` example (kube-rs), run as its own process against a real cluster with
//! the controller-manager: it installs its CustomResourceDefinition, serves a Website with a
//! ConfigMap, a Deployment and a Service it owns, follows changes to the spec (also through the
//! `scale` subresource), reports the ready count in the status, lets a deleted Website go
//! through its finalizer, and the garbage collector then deletes what it owned. Every apply
//! names the field manager `website-operator`.
//!
//! No kubelet runs: the controllers' [`Kubelet`] stand-in marks the Deployment's pods Ready, so
//! `readyReplicas` reaches the spec.
//!
//! The binary is the one `cargo test --workspace` builds before it runs any test (as `make test`
//! does); `cargo test -p rkube-tests` alone does not build it, and the test then fails asking
//! for `cargo build --workspace --examples` first.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rkube_tests::controllers::{ControllerManager, Kubelet};
use rkube_tests::{Api, Cluster, Method, StatusCode, eventually, stays_true};
use serde_json::{Value, json};

const CRD: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/websites.examples.rkube.dev";
const WEBSITES: &str = "/apis/examples.rkube.dev/v1/namespaces/default/websites";
const CONFIG_MAPS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SERVICES: &str = "/api/v1/namespaces/default/services";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const MANAGER: &str = "website-operator";
const FINALIZER: &str = "websites.examples.rkube.dev/cleanup";
const WAIT: Duration = Duration::from_secs(30);
/// The garbage collector's work: a Website's dependents are deleted after it is gone.
const GC_WAIT: Duration = Duration::from_secs(60);

/// Kills the example when the test ends, also when it panics.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cluster with the controllers a Website needs (Deployment, ReplicaSet, garbage collector), a
/// stand-in kubelet for `default`, and the operator running against it.
struct Setup {
    api: Api,
    operator: Running,
    // Dropped after the operator: the kubeconfig outlives it.
    _kubelet: Kubelet,
    _manager: ControllerManager,
    _cluster: Cluster,
    _home: tempfile::TempDir,
}

fn example_binary() -> PathBuf {
    let apiserver = rkube_tests::binary("rkube-apiserver");
    let dir = apiserver.parent().expect("binaries live in a directory");
    let path = dir.join("examples").join("website_operator");
    assert!(path.is_file(), "{} not found: build it first: cargo build --workspace --examples", path.display());
    path
}

async fn start() -> Setup {
    let cluster = Cluster::start().await.expect("cluster starts");
    let manager = ControllerManager::start(
        &cluster,
        &["--leader-elect=false", "--controllers=replicaset,deployment,garbagecollector"],
    )
    .await
    .expect("controller-manager starts");
    let kubelet = Kubelet::start(cluster.url(), "default", "no-image-is-broken");
    let home = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig written");
    let mut child = Command::new(example_binary())
        .args(["--default-image", "busybox-local:v1"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("example starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("operator: {line}");
        }
    });
    let api = Api::new(cluster.url());
    Setup { api, operator: Running(child), _kubelet: kubelet, _manager: manager, _cluster: cluster, _home: home }
}

fn website(name: &str, content: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "examples.rkube.dev/v1",
        "kind": "Website",
        "metadata": {"name": name},
        "spec": {"content": content, "replicas": replicas}
    })
}

/// Waits until GET `path` answers 200 with an object for which `ok` holds, and returns it.
async fn wait_for(api: &Api, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(WAIT, what, || async {
        let (status, object) = api.get(path).await;
        (status.is_success() && ok(&object)).then_some(object)
    })
    .await
}

async fn wait_gone(api: &Api, path: &str, limit: Duration, what: &str) {
    eventually(limit, what, || async { (api.get(path).await.0 == StatusCode::NOT_FOUND).then_some(()) }).await;
}

async fn merge_patch(api: &Api, path: &str, patch: Value) {
    let (status, reply) = api.patch(path, "application/merge-patch+json", &patch).await;
    assert!(status.is_success(), "PATCH {path}: {status} {reply}");
}

/// Waits until the operator has installed its CRD and the apiserver reports it Established.
async fn wait_established(api: &Api) -> Value {
    wait_for(api, CRD, "the Website CRD installed and Established", |crd| {
        crd["status"]["conditions"]
            .as_array()
            .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Established" && c["status"] == "True"))
    })
    .await
}

#[tokio::test]
async fn website_operator_example_serves_a_website_follows_its_spec_and_finalizes_it() {
    let mut setup = start().await;
    let api = &setup.api;
    wait_established(api).await;
    let created = api.create(WEBSITES, &website("hello", "<h1>Hello</h1>", 2)).await;
    let uid = created["metadata"]["uid"].as_str().expect("a uid").to_string();

    // The three objects, each owned by the Website (a controller reference, so the garbage
    // collector and `Controller::owns` both see it).
    let owned_by_site = |object: &Value| {
        object["metadata"]["ownerReferences"].as_array().is_some_and(|refs| {
            refs.iter().any(|r| {
                r["apiVersion"] == "examples.rkube.dev/v1"
                    && r["kind"] == "Website"
                    && r["name"] == "hello"
                    && r["uid"] == uid.as_str()
                    && r["controller"] == true
            })
        })
    };
    let cm = wait_for(api, &format!("{CONFIG_MAPS}/hello"), "the ConfigMap with the page", |cm| {
        cm["data"]["index.html"] == "<h1>Hello</h1>"
    })
    .await;
    assert!(owned_by_site(&cm), "ConfigMap not owned by the Website: {cm}");
    let deployment = wait_for(api, &format!("{DEPLOYMENTS}/hello"), "the Deployment", |_| true).await;
    assert!(owned_by_site(&deployment), "Deployment not owned by the Website: {deployment}");
    assert_eq!(deployment["spec"]["replicas"], 2, "{deployment}");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "busybox-local:v1", "{deployment}");
    assert_eq!(pod["containers"][0]["command"], json!(["httpd", "-f", "-p", "8080", "-h", "/www"]), "{deployment}");
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "hello", "{deployment}");
    let service = wait_for(api, &format!("{SERVICES}/hello"), "the Service", |_| true).await;
    assert!(owned_by_site(&service), "Service not owned by the Website: {service}");
    assert_eq!(service["spec"]["ports"][0]["port"], 80, "{service}");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080, "{service}");
    assert_eq!(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"], "{service}");

    // The finalizer is on, and the status follows the Deployment's ready pods.
    let site_path = format!("{WEBSITES}/hello");
    let site = wait_for(api, &site_path, "status.readyReplicas 2", |site| site["status"]["readyReplicas"] == 2).await;
    assert_eq!(site["metadata"]["finalizers"], json!([FINALIZER]), "{site}");
    assert_eq!(site["status"]["url"], "http://hello.default.svc", "{site}");

    // What `kubectl get websites` shows: the printer columns of the CRD.
    let table =
        api.send(Method::GET, WEBSITES, &[("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")], None).await;
    assert!(table.status.is_success(), "{}", table.body);
    let columns: Vec<&str> =
        table.body["columnDefinitions"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(columns, ["Name", "Replicas", "Ready", "URL", "Age"], "{}", table.body);
    let cells = table.body["rows"][0]["cells"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        cells.get(..4),
        Some(&[json!("hello"), json!(2), json!(2), json!("http://hello.default.svc")][..]),
        "{}",
        table.body
    );

    // The spec changes; the objects follow.
    merge_patch(api, &site_path, json!({"spec": {"content": "<h1>Hello again</h1>"}})).await;
    wait_for(api, &format!("{CONFIG_MAPS}/hello"), "the new page in the ConfigMap", |cm| {
        cm["data"]["index.html"] == "<h1>Hello again</h1>"
    })
    .await;
    merge_patch(api, &site_path, json!({"spec": {"replicas": 3}})).await;
    wait_for(api, &format!("{DEPLOYMENTS}/hello"), "the Deployment at 3 replicas", |d| d["spec"]["replicas"] == 3)
        .await;
    wait_for(api, &site_path, "status.readyReplicas 3", |site| site["status"]["readyReplicas"] == 3).await;
    // `kubectl scale website hello --replicas=1`: the CRD's scale subresource.
    merge_patch(api, &format!("{site_path}/scale"), json!({"spec": {"replicas": 1}})).await;
    wait_for(api, &format!("{DEPLOYMENTS}/hello"), "the Deployment at 1 replica", |d| d["spec"]["replicas"] == 1).await;
    wait_for(api, &site_path, "status.readyReplicas 1", |site| site["status"]["readyReplicas"] == 1).await;

    // Converged, the operator writes nothing more: an apply that changes nothing is no write,
    // so its own writes do not wake it again and again. 3 s covers many reconcile rounds.
    let rv = |object: &Value| object["metadata"]["resourceVersion"].clone();
    let (cm, site) = (api.get_ok(&format!("{CONFIG_MAPS}/hello")).await, api.get_ok(&site_path).await);
    stays_true(Duration::from_secs(3), "the ConfigMap and the Website unchanged once converged", || async {
        rv(&api.get_ok(&format!("{CONFIG_MAPS}/hello")).await) == rv(&cm)
            && rv(&api.get_ok(&site_path).await) == rv(&site)
    })
    .await;

    // Deleted: the finalizer's cleanup runs (its Event), then the finalizer goes, then the Website.
    let (status, reply) = api.delete(&site_path).await;
    assert!(status.is_success(), "DELETE {site_path}: {status} {reply}");
    wait_gone(api, &site_path, WAIT, "the Website gone once its finalizer is removed").await;
    let events = api.get_ok(EVENTS).await;
    let cleaned_up = events["items"].as_array().into_iter().flatten().any(|event| {
        event["reason"] == "CleanedUp"
            && event["regarding"]["kind"] == "Website"
            && event["regarding"]["name"] == "hello"
    });
    assert!(cleaned_up, "no CleanedUp Event for the Website: {events}");

    // Ctrl-C: the controller finishes what it is doing and the process exits 0.
    let pid = setup.operator.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill runs").success());
    let exit = eventually(Duration::from_secs(20), "the operator to exit after SIGINT", || {
        let exited = setup.operator.0.try_wait().expect("try_wait");
        async move { exited }
    })
    .await;
    assert!(exit.success(), "the operator exited with {exit}");
}

/// Owner references do the deleting: once the Website is gone (its finalizer removed), the
/// garbage collector deletes the ConfigMap, Deployment and Service, whose owner uid no longer
/// exists: the collector finds the custom owner kind through discovery.
#[tokio::test]
async fn website_operator_example_leaves_the_owned_objects_to_the_garbage_collector() {
    let setup = start().await;
    let api = &setup.api;
    wait_established(api).await;
    api.create(WEBSITES, &website("bye", "<p>bye</p>", 1)).await;
    let owned = [format!("{CONFIG_MAPS}/bye"), format!("{DEPLOYMENTS}/bye"), format!("{SERVICES}/bye")];
    for path in &owned {
        wait_for(api, path, path, |_| true).await;
    }
    let site_path = format!("{WEBSITES}/bye");
    let (status, reply) = api.delete(&site_path).await;
    assert!(status.is_success(), "DELETE {site_path}: {status} {reply}");
    wait_gone(api, &site_path, WAIT, "the Website gone once its finalizer is removed").await;
    for path in &owned {
        wait_gone(api, path, GC_WAIT, &format!("{path} deleted by the garbage collector")).await;
    }
}

/// Every apply names the operator as field manager, so `metadata.managedFields` says who owns
/// which field (`kubectl get -o yaml --show-managed-fields`).
#[tokio::test]
async fn website_operator_example_applies_as_field_manager_website_operator() {
    let setup = start().await;
    let api = &setup.api;
    let applied_by_operator = |object: &Value| {
        object["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|fields| fields.iter().any(|f| f["manager"] == MANAGER && f["operation"] == "Apply"))
    };
    let crd = wait_established(api).await;
    api.create(WEBSITES, &website("managed", "<p>managed</p>", 1)).await;
    let mut missing = Vec::new();
    if !applied_by_operator(&crd) {
        missing.push(format!("{CRD}: {}", crd["metadata"]));
    }
    for path in [format!("{CONFIG_MAPS}/managed"), format!("{DEPLOYMENTS}/managed"), format!("{SERVICES}/managed")] {
        let object = wait_for(api, &path, &path, |_| true).await;
        if !applied_by_operator(&object) {
            missing.push(format!("{path}: {}", object["metadata"]));
        }
    }
    assert!(missing.is_empty(), "managedFields name no Apply by {MANAGER}:\n{}", missing.join("\n"));
}
