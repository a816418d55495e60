//! Lists: paging with `limit`/`continue` at one consistent revision, label selectors and field
//! selectors.

use std::collections::BTreeSet;

use rkube_tests::resources::{CONFIG_MAPS, PODS, binding, config_map, item_names, namespace, pod, resource_version};
use rkube_tests::{Api, Cluster, StatusCode, assert_status, escape_query};
use serde_json::{Value, json};

async fn start() -> (Cluster, Api) {
    let cluster = Cluster::start().await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

fn continue_token(list: &Value) -> Option<String> {
    list["metadata"]["continue"].as_str().filter(|token| !token.is_empty()).map(str::to_string)
}

#[tokio::test]
async fn paged_list_sees_exactly_the_objects_of_its_first_revision_while_writes_happen() {
    let (_cluster, api) = start().await;
    api.create("/api/v1/namespaces", &namespace("paging")).await;
    let collection = CONFIG_MAPS.collection("paging");
    let originals: Vec<String> = (0..23).map(|index| format!("cm-{index:02}")).collect();
    for name in &originals {
        api.create(&collection, &config_map("paging", name, json!({ "v": "original" }))).await;
    }

    let first = api.get_ok(&format!("{collection}?limit=5")).await;
    assert_eq!(first["kind"], "ConfigMapList");
    let list_rv = first["metadata"]["resourceVersion"].as_str().expect("list resourceVersion").to_string();
    let mut token = continue_token(&first).unwrap_or_else(|| panic!("23 objects with limit=5 must continue: {first}"));
    assert_eq!(first["items"].as_array().map(Vec::len), Some(5), "{first}");
    let mut seen: Vec<Value> = first["items"].as_array().cloned().unwrap_or_default();

    let mut page = 1;
    loop {
        // Writes between pages: a create, a modification and a deletion of not-yet-seen objects.
        api.create(&collection, &config_map("paging", &format!("cm-new-{page}"), json!({}))).await;
        let late = format!("cm-{:02}", 23 - page);
        let (status, reply) = api.delete(&CONFIG_MAPS.item("paging", &late)).await;
        assert!(status.is_success(), "{reply}");
        let modified = CONFIG_MAPS.item("paging", &format!("cm-{:02}", 10 + page));
        let mut object = api.get_ok(&modified).await;
        object["data"]["v"] = json!("changed");
        assert_eq!(api.put(&modified, &object).await.0, StatusCode::OK);

        let next = api.get_ok(&format!("{collection}?limit=5&continue={}", escape_query(&token))).await;
        page += 1;
        assert_eq!(
            next["metadata"]["resourceVersion"],
            list_rv.as_str(),
            "page {page} must report the first page's RV"
        );
        let items = next["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 5, "page {page} exceeds limit: {next}");
        seen.extend(items);
        match continue_token(&next) {
            Some(next_token) => token = next_token,
            None => break,
        }
        assert!(page < 10, "paging does not end");
    }

    let names: Vec<String> =
        seen.iter().map(|item| item["metadata"]["name"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(names, originals, "pages must hold exactly the objects at the first page's revision, in key order");
    let list_rv: i64 = list_rv.parse().expect("numeric RV");
    for item in &seen {
        assert!(resource_version(item) <= list_rv, "item newer than the list revision: {item}");
        assert_eq!(item["data"]["v"], "original", "pages must show objects as of the list revision: {item}");
    }

    // A fresh list sees the writes.
    let fresh = api.get_ok(&collection).await;
    let fresh_names: BTreeSet<String> = item_names(&fresh).into_iter().collect();
    assert!(fresh_names.contains("cm-new-1") && !fresh_names.contains("cm-22"), "{fresh}");
}

#[tokio::test]
async fn a_limit_larger_than_the_collection_returns_everything_without_a_continue_token() {
    let (_cluster, api) = start().await;
    let collection = CONFIG_MAPS.collection("default");
    for index in 0..3 {
        api.create(&collection, &config_map("default", &format!("c{index}"), json!({}))).await;
    }
    let list = api.get_ok(&format!("{collection}?limit=10")).await;
    assert_eq!(item_names(&list), ["c0", "c1", "c2"]);
    assert_eq!(continue_token(&list), None, "{list}");
    let exact = api.get_ok(&format!("{collection}?limit=3")).await;
    assert_eq!(item_names(&exact), ["c0", "c1", "c2"]);
    if let Some(token) = continue_token(&exact) {
        // Kubernetes may hand out a token when the page is exactly full; it must lead to nothing.
        let rest = api.get_ok(&format!("{collection}?limit=3&continue={}", escape_query(&token))).await;
        assert_eq!(rest["items"], json!([]), "{rest}");
    }
}

/// Creates pods a, b, c, d in namespace `sel` with different labels.
async fn labelled_pods(api: &Api) {
    api.create("/api/v1/namespaces", &namespace("sel")).await;
    let collection = PODS.collection("sel");
    api.create(&collection, &pod("sel", "a", json!({ "app": "web", "tier": "frontend" }))).await;
    api.create(&collection, &pod("sel", "b", json!({ "app": "db", "tier": "backend" }))).await;
    api.create(&collection, &pod("sel", "c", json!({ "app": "web", "tier": "backend" }))).await;
    api.create(&collection, &pod("sel", "d", json!({}))).await;
}

async fn names_matching(api: &Api, parameter: &str, selector: &str) -> Vec<String> {
    let path = format!("{}?{parameter}={}", PODS.collection("sel"), escape_query(selector));
    let list = api.get_ok(&path).await;
    assert_eq!(list["kind"], "PodList", "{list}");
    let mut names = item_names(&list);
    names.sort();
    names
}

#[tokio::test]
async fn label_selectors_filter_lists_by_equality_set_and_existence() {
    let (_cluster, api) = start().await;
    labelled_pods(&api).await;
    let cases: &[(&str, &[&str])] = &[
        ("app=web", &["a", "c"]),
        ("app==web", &["a", "c"]),
        ("app!=web", &["b", "d"]),
        ("tier in (frontend,backend)", &["a", "b", "c"]),
        ("app notin (web)", &["b", "d"]),
        ("app", &["a", "b", "c"]),
        ("!app", &["d"]),
        ("app=web,tier=backend", &["c"]),
        ("app=nothing", &[]),
    ];
    for (selector, expected) in cases {
        assert_eq!(names_matching(&api, "labelSelector", selector).await, *expected, "labelSelector {selector}");
    }
}

#[tokio::test]
async fn field_selectors_filter_lists_by_name_namespace_node_and_phase() {
    let (_cluster, api) = start().await;
    labelled_pods(&api).await;
    let (status, reply) = api.post(&format!("{}/binding", PODS.item("sel", "b")), &binding("b", "n1")).await;
    assert!(status.is_success(), "binding: {status} {reply}");
    let mut running = api.get_ok(&PODS.item("sel", "a")).await;
    running["status"]["phase"] = json!("Running");
    let (status, reply) = api.put(&format!("{}/status", PODS.item("sel", "a")), &running).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    let cases: &[(&str, &[&str])] = &[
        ("metadata.name=a", &["a"]),
        ("metadata.name!=a", &["b", "c", "d"]),
        ("metadata.namespace=sel", &["a", "b", "c", "d"]),
        ("spec.nodeName=n1", &["b"]),
        ("spec.nodeName=", &["a", "c", "d"]),
        ("status.phase=Running", &["a"]),
        ("status.phase=Pending", &["b", "c", "d"]),
        ("status.phase!=Running,spec.nodeName=", &["c", "d"]),
    ];
    for (selector, expected) in cases {
        assert_eq!(names_matching(&api, "fieldSelector", selector).await, *expected, "fieldSelector {selector}");
    }

    // Across namespaces, metadata.namespace picks one.
    api.create(&PODS.collection("default"), &pod("default", "elsewhere", json!({}))).await;
    let path = format!("{}?fieldSelector={}", PODS.all_namespaces(), escape_query("metadata.namespace=default"));
    assert_eq!(item_names(&api.get_ok(&path).await), ["elsewhere"]);
    let everything = api.get_ok(&PODS.all_namespaces()).await;
    assert_eq!(everything["items"].as_array().map(Vec::len), Some(5), "{everything}");
}

#[tokio::test]
async fn malformed_or_unsupported_selectors_are_rejected_with_400() {
    let (_cluster, api) = start().await;
    labelled_pods(&api).await;
    for (parameter, selector) in
        [("labelSelector", "app in (web"), ("labelSelector", "=web"), ("fieldSelector", "spec.unknownField=x")]
    {
        let path = format!("{}?{parameter}={}", PODS.collection("sel"), escape_query(selector));
        let (status, reply) = api.get(&path).await;
        assert_status(status, &reply, 400, "BadRequest", &format!("{parameter}={selector}"));
    }
}
