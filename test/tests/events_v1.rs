//! `events.k8s.io/v1` Events over real etcd and rkube-apiserver: the same objects as core `v1`
//! Events, written by kube-rs's event `Recorder` (what every kube-rs controller uses) and read
//! back through both versions, the real kubectl's `kubectl events` included.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use rkube_tests::{Api, Cluster, venv_bin};
use serde_json::json;

const EVENTS_V1: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const CORE: &str = "/api/v1/namespaces/default/events";

#[tokio::test]
async fn events_written_in_either_version_read_back_in_both() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    api.create(
        "/api/v1/namespaces/default/pods",
        &json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}),
    )
    .await;

    // kube-rs's Recorder: a create, then the same event again as a merge patch with a series.
    let client = {
        let config = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    };
    let reporter = kube::runtime::events::Reporter { controller: "web-operator".into(), instance: Some("op-0".into()) };
    let recorder = kube::runtime::events::Recorder::new(client, reporter);
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("web is as it should be".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some("web".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    recorder.publish(&event, &regarding).await.expect("the first event is created");
    recorder.publish(&event, &regarding).await.expect("the second becomes a series");

    // As events.k8s.io/v1 shows it, and as core v1 stores it.
    let (status, list) = api.get(EVENTS_V1).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["kind"], "EventList");
    assert_eq!(list["apiVersion"], "events.k8s.io/v1");
    let recorded = list["items"][0].clone();
    assert_eq!(recorded["apiVersion"], "events.k8s.io/v1", "{recorded}");
    assert_eq!(
        (
            &recorded["regarding"]["name"],
            &recorded["note"],
            &recorded["reportingController"],
            &recorded["series"]["count"]
        ),
        (&json!("web"), &json!("web is as it should be"), &json!("web-operator"), &json!(2)),
        "{recorded}"
    );
    assert!(recorded.get("involvedObject").is_none(), "{recorded}");
    let name = recorded["metadata"]["name"].as_str().expect("name").to_string();
    let core = api.get_ok(&format!("{CORE}/{name}")).await;
    assert_eq!(
        (&core["apiVersion"], &core["involvedObject"]["name"], &core["message"], &core["reportingComponent"]),
        (&json!("v1"), &json!("web"), &json!("web is as it should be"), &json!("web-operator")),
        "{core}"
    );
    assert_eq!(
        (&core["reportingInstance"], &core["action"], &core["series"]["count"]),
        (&json!("op-0"), &json!("Reconcile"), &json!(2))
    );

    // kubectl reads core v1: the recorded event is there with its reason and note.
    let out = std::process::Command::new(venv_bin("kubectl"))
        .args(["events", "--for", "pod/web"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .output()
        .expect("kubectl runs (make deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Reconciled") && text.contains("web is as it should be"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A core event read as events.k8s.io/v1: the deprecated fields carry the old ones.
    api.create(
        CORE,
        &json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "old.1"},
        "involvedObject": {"kind": "Pod", "name": "db", "namespace": "default"}, "reason": "Pulled",
        "message": "pulled the image", "type": "Normal", "count": 3, "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2026-12-01T10:00:00Z", "lastTimestamp": "2026-12-01T10:05:00Z"}),
    )
    .await;
    let old = api.get_ok(&format!("{EVENTS_V1}/old.1")).await;
    assert_eq!(
        (&old["regarding"]["name"], &old["note"], &old["deprecatedCount"], &old["deprecatedSource"]["host"]),
        (&json!("db"), &json!("pulled the image"), &json!(3), &json!("n1")),
        "{old}"
    );
    assert_eq!(old["deprecatedFirstTimestamp"], "2026-12-01T10:00:00Z", "{old}");

    // Field selectors in this version's names; the core names are not this version's.
    let (_, by_regarding) = api.get(&format!("{EVENTS_V1}?fieldSelector=regarding.name%3Dweb")).await;
    let names: Vec<_> =
        by_regarding["items"].as_array().expect("items").iter().map(|e| e["regarding"]["name"].clone()).collect();
    assert_eq!(names, [json!("web")], "{by_regarding}");
    let (status, refused) = api.get(&format!("{EVENTS_V1}?fieldSelector=involvedObject.name%3Dweb")).await;
    assert_eq!(
        (status.as_u16(), refused["message"].as_str()),
        (400, Some("field label not supported: involvedObject.name"))
    );

    // A watch shows the changes in this version.
    let mut watch = api.watch(&format!("{EVENTS_V1}?watch=true&fieldSelector=reason%3DScaled")).await;
    api.create(EVENTS_V1, &json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "scaled.1"},
        "eventTime": "2026-12-06T10:00:00.000000Z", "reportingController": "rkube.io/deployment", "reportingInstance": "cm-1",
        "action": "Scale", "reason": "Scaled", "type": "Normal", "note": "scaled up to 3",
        "regarding": {"kind": "Deployment", "name": "web", "namespace": "default"}}))
        .await;
    let seen = watch.expect_non_bookmark(Duration::from_secs(10)).await;
    assert_eq!(
        (&seen["type"], &seen["object"]["note"], &seen["object"]["apiVersion"]),
        (&json!("ADDED"), &json!("scaled up to 3"), &json!("events.k8s.io/v1")),
        "{seen}"
    );

    // Written through events.k8s.io/v1, an event must say when, who, what and why.
    let (status, invalid) = api
        .post(
            EVENTS_V1,
            &json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "bad.1"}, "type": "Sometimes", "note": "x"}),
        )
        .await;
    assert_eq!(status.as_u16(), 422, "{invalid}");
    let fields: Vec<_> =
        invalid["details"]["causes"].as_array().expect("causes").iter().map(|c| c["field"].clone()).collect();
    for field in ["eventTime", "reportingController", "reportingInstance", "action", "reason", "type"] {
        assert!(fields.contains(&json!(field)), "{field} in {invalid}");
    }
    // A core event stays free of those rules, and deleting through either version works.
    let (status, _) = api.delete(&format!("{EVENTS_V1}/old.1")).await;
    assert_eq!(status.as_u16(), 200);
    let (status, _) = api.get(&format!("{CORE}/old.1")).await;
    assert_eq!(status.as_u16(), 404);
}
