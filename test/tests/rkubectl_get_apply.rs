//! `rkubectl apply`, `create` and `get` against a real apiserver: client-side apply's
//! created/configured/unchanged, manifests from files, directories and stdin, every output
//! format, selectors, short names, watching, and bad manifests.

use std::time::Duration;

use rkube_tests::kubectl::{Rkubectl, row_named, rows};
use rkube_tests::{Api, Cluster};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};

async fn start() -> Cluster {
    Cluster::start().await.expect("etcd and rkube-apiserver start")
}

fn deployment(image: &str, tier: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web, tier: {tier}}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: httpd
        image: {image}
        ports:
        - containerPort: 8080
"
    )
}

const POD_AND_CM: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: main
    image: busybox:1.37
---
# an empty document is skipped
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
data:
  greeting: hello
";

#[tokio::test]
async fn apply_creates_then_configures_then_leaves_unchanged() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let file = k.file("deploy.yaml", &deployment("httpd:2.4", "front"));
    assert_eq!(k.ok(&["apply", "-f", &file]).await, "deployment.apps/web created\n");
    let first = api.get_ok("/apis/apps/v1/namespaces/default/deployments/web").await;
    let annotation =
        first["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap();
    let last: Value = serde_json::from_str(annotation).unwrap();
    assert_eq!(last["spec"]["template"]["spec"]["containers"][0]["image"], "httpd:2.4");

    // Same file again: nothing is sent, the object is untouched.
    assert_eq!(k.ok(&["apply", "-f", &file]).await, "deployment.apps/web unchanged\n");
    let same = api.get_ok("/apis/apps/v1/namespaces/default/deployments/web").await;
    assert_eq!(same["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"]);

    // A changed image and label: configured; the label someone else added stays, the one the
    // file dropped goes.
    k.ok(&["label", "deploy", "web", "owner=ops"]).await;
    let file = k.file("deploy.yaml", &deployment("httpd:2.5", "back").replace("tier: back", "release: b"));
    assert_eq!(k.ok(&["apply", "-f", &file]).await, "deployment.apps/web configured\n");
    let after = api.get_ok("/apis/apps/v1/namespaces/default/deployments/web").await;
    assert_eq!(after["spec"]["template"]["spec"]["containers"][0]["image"], "httpd:2.5");
    assert_eq!(after["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 8080);
    let labels = &after["metadata"]["labels"];
    assert_eq!(
        (labels["owner"].as_str(), labels["release"].as_str(), labels.get("tier")),
        (Some("ops"), Some("b"), None),
        "{labels}"
    );
    assert_eq!(after["metadata"]["generation"], 2);
    assert_eq!(k.ok(&["apply", "-f", &file]).await, "deployment.apps/web unchanged\n");

    // A second container, then without it again: the merge by name must not keep it.
    let two = std::fs::read_to_string(&file).unwrap() + "      - name: sidecar\n        image: busybox\n";
    let file = k.file("deploy.yaml", &two);
    assert_eq!(k.ok(&["apply", "-f", &file]).await, "deployment.apps/web configured\n");
    let containers = |d: &Value| -> Vec<String> {
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        containers(&api.get_ok("/apis/apps/v1/namespaces/default/deployments/web").await),
        vec!["httpd", "sidecar"]
    );
    let file = k.file("deploy.yaml", &two.replace("      - name: sidecar\n        image: busybox\n", ""));
    assert_eq!(k.ok(&["apply", "-f", &file]).await, "deployment.apps/web configured\n");
    assert_eq!(containers(&api.get_ok("/apis/apps/v1/namespaces/default/deployments/web").await), vec!["httpd"]);
    assert_eq!(k.ok(&["apply", "-f", &file]).await, "deployment.apps/web unchanged\n");
}

#[tokio::test]
async fn manifests_come_from_files_directories_and_stdin() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let dir = k.dir().join("manifests");
    k.file("manifests/a.yaml", POD_AND_CM);
    k.file("manifests/b.json", r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-json"}}"#);
    k.file("manifests/notes.txt", "not a manifest");
    k.file("manifests/sub/c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nested}\n");
    let out = k.ok(&["apply", "-f", dir.to_str().unwrap()]).await;
    assert_eq!(out, "pod/web created\nconfigmap/settings created\nconfigmap/from-json created\n");
    let out = k.ok(&["apply", "-R", "-f", dir.to_str().unwrap()]).await;
    assert_eq!(
        out,
        "pod/web unchanged\nconfigmap/settings unchanged\nconfigmap/from-json unchanged\nconfigmap/nested created\n"
    );

    let stdin = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: piped}\ndata: {k: v}\n";
    let ran = k.run_with(&["create", "-f", "-"], &[], Some(stdin)).await;
    assert_eq!(ran.stdout, "configmap/piped created\n", "{}", ran.describe());
    let ran = k.run_with(&["create", "-f", "-"], &[], Some(stdin)).await;
    assert_eq!(ran.code, Some(1));
    assert_eq!(ran.stderr.trim(), r#"Error from server (AlreadyExists): configmaps "piped" already exists"#);
    let ran = k.run_with(&["apply", "-f", "-"], &[], Some(stdin)).await;
    // Created without apply: the first apply has no last-applied annotation, adds it.
    assert_eq!(ran.stdout, "configmap/piped configured\n", "{}", ran.describe());

    // An object's own namespace wins over the context's, but must agree with an explicit -n.
    let sys = k.file("sys.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sys, namespace: kube-system}\n");
    let ran = k.fails(&["apply", "-n", "default", "-f", &sys]).await;
    assert!(ran.stderr.contains("does not match the namespace \"default\""), "{}", ran.describe());
    assert_eq!(k.ok(&["apply", "-f", &sys]).await, "configmap/sys created\n");
    assert_eq!(k.ok(&["get", "cm", "sys", "-n", "kube-system", "-o", "name"]).await, "configmap/sys\n");
}

#[tokio::test]
async fn bad_manifests_fail_before_anything_is_sent() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let ran = k.fails(&["apply", "-f", "/nonexistent/x.yaml"]).await;
    assert_eq!(ran.stderr.trim(), r#"error: the path "/nonexistent/x.yaml" does not exist"#);

    // The second document breaks on line 7: the first is not applied either.
    let bad = k.file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: [oops\n",
    );
    let ran = k.fails(&["apply", "-f", &bad]).await;
    assert!(ran.stderr.starts_with(&format!("error: error parsing {bad}:")), "{}", ran.describe());
    assert!(ran.stderr.contains("line 7") || ran.stderr.contains("line 8"), "no line number: {}", ran.describe());
    let ran = k.run(&["get", "cm", "first"]).await;
    assert_eq!(ran.code, Some(1), "nothing may be created from a file that does not parse");

    let unknown = k.file("w.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n");
    let ran = k.fails(&["create", "-f", &unknown]).await;
    assert!(ran.stderr.contains(r#"no matches for kind "Widget" in version "example.com/v1""#), "{}", ran.describe());
    let invalid =
        k.file("i.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: nocontainers}\nspec: {containers: []}\n");
    let ran = k.fails(&["apply", "-f", &invalid]).await;
    assert!(ran.stderr.starts_with("Error from server (Invalid): "), "{}", ran.describe());
}

#[tokio::test]
async fn get_prints_tables_and_every_output_format() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    k.ok(&["apply", "-f", &k.file("app.yaml", POD_AND_CM)]).await;
    k.ok(&["apply", "-f", &k.file("d.yaml", &deployment("httpd:2.4", "front"))]).await;
    k.ok(&["run", "other", "--image", "busybox", "-l", "app=other"]).await;

    let table = rows(&k.ok(&["get", "pods"]).await);
    assert_eq!(table[0], vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(row_named(&table, "web").unwrap()[1..4], ["0/1", "Pending", "0"]);
    let wide = rows(&k.ok(&["get", "po", "-o", "wide"]).await);
    assert_eq!(wide[0][5..7], ["IP", "NODE"]);
    let labels = rows(&k.ok(&["get", "po", "web", "--show-labels"]).await);
    assert_eq!(labels[1].last().unwrap(), "app=web");
    let selected = rows(&k.ok(&["get", "po", "-l", "app=web"]).await);
    assert_eq!(selected.len(), 2, "{selected:?}");
    let by_field = k.ok(&["get", "po", "--field-selector", "metadata.name=other", "-o", "name"]).await;
    assert_eq!(by_field, "pod/other\n");

    // Several types at once, short names, type/name form.
    let mixed = k.ok(&["get", "po,deploy,cm", "-l", "app=web"]).await;
    assert!(
        mixed.contains("pod/web") && mixed.contains("deployment.apps/web") && mixed.contains("configmap/settings"),
        "{mixed}"
    );
    assert_eq!(
        k.ok(&["get", "deploy/web", "cm/settings", "-o", "name"]).await,
        "deployment.apps/web\nconfigmap/settings\n"
    );
    for short in ["po", "rs", "deploy", "no", "svc", "ns", "ev", "cm"] {
        let ran = k.run(&["get", short]).await;
        assert_eq!(ran.code, Some(0), "{}", ran.describe());
    }

    let yaml: Value = serde_yaml_ng::from_str(&k.ok(&["get", "cm", "settings", "-o", "yaml"]).await).unwrap();
    assert_eq!((yaml["kind"].as_str(), yaml["data"]["greeting"].as_str()), (Some("ConfigMap"), Some("hello")));
    let list: Value = serde_json::from_str(&k.ok(&["get", "pods", "-o", "json"]).await).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(list["items"][0]["kind"], "Pod");
    let out = k.ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]).await;
    assert_eq!(out, "other web");
    let out = k
        .ok(&["get", "deploy", "web", "-o", r#"jsonpath={.spec.replicas}/{.spec.template.spec.containers[0].image}"#])
        .await;
    assert_eq!(out, "2/httpd:2.4");
    let out = k
        .ok(&[
            "get",
            "po",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}:{.spec.containers[0].image}{"\n"}{end}"#,
        ])
        .await;
    assert_eq!(out, "other:busybox\nweb:busybox:1.37\n");
    let ran = k.fails(&["get", "po", "-o", "fancy"]).await;
    assert!(ran.stderr.contains("unable to match a printer"), "{}", ran.describe());
    let ran = k.fails(&["get", "pods", "web", "missing"]).await;
    assert!(ran.stderr.contains(r#"pods "missing" not found"#), "{}", ran.describe());
    assert!(k.ok(&["get", "pods", "web", "missing", "--ignore-not-found"]).await.contains("web"));
}

#[tokio::test]
async fn get_watch_prints_a_row_for_each_change() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    k.ok(&["run", "first", "--image", "busybox"]).await;
    let mut child = k.command(&["get", "pods", "-w"]).spawn().expect("rkubectl get -w starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a line within 30s")
            .unwrap()
            .unwrap()
    };
    assert!(next().await.starts_with("NAME"));
    assert!(next().await.starts_with("first "));
    k.ok(&["run", "second", "--image", "busybox"]).await;
    let line = next().await;
    assert!(line.starts_with("second ") && line.contains("Pending"), "{line}");
    k.ok(&["label", "pod", "first", "x=y"]).await;
    assert!(next().await.starts_with("first "));
    child.kill().await.unwrap();
}

/// rkubectl learns the server's custom resources from discovery, as kubectl does: it applies,
/// lists (with the CRD's columns), scales and deletes them by their names and short names.
#[tokio::test]
async fn custom_resources_are_found_through_discovery() {
    let cluster = start().await;
    let k = Rkubectl::new(&cluster);
    let api = Api::new(cluster.url());
    let crd = k.file(
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
          status: {type: object, properties: {size: {type: integer}}}
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.size}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
"#,
    );
    k.ok(&["apply", "-f", &crd]).await;
    rkube_tests::eventually(Duration::from_secs(20), "gadgets to be served", || async {
        let (status, _) = api.get("/apis/example.com/v1/namespaces/default/gadgets").await;
        status.is_success().then_some(())
    })
    .await;
    let gadget = k.file("g.yaml", "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec: {size: 2}\n");
    assert_eq!(k.ok(&["apply", "-f", &gadget]).await.trim(), "gadget.example.com/g created");
    let table = rows(&k.ok(&["get", "gadgets"]).await);
    assert_eq!(table[0], vec!["NAME", "SIZE"]);
    assert_eq!(row_named(&table, "g").expect("row"), vec!["g", "2"]);
    k.ok(&["scale", "gd", "g", "--replicas=5"]).await;
    let object: Value = serde_json::from_str(&k.ok(&["get", "gadget/g", "-o", "json"]).await).expect("JSON");
    assert_eq!(object["spec"]["size"], 5);
    k.ok(&["delete", "gd", "g"]).await;
    let ran = k.run(&["get", "gadget", "g"]).await;
    assert_eq!(ran.code, Some(1), "{}", ran.describe());
}
