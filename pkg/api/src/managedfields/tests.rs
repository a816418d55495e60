//! Scenario tests, each checked against what Kubernetes documents or its code does
//! (https://kubernetes.io/docs/reference/using-api/server-side-apply/).

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, Time};
use serde_json::json;

const DEPLOYMENT: BuiltinTypes<'static> = BuiltinTypes { kind: "Deployment" };
const STATUS: &[&str] = &["status"];

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + second).unwrap()
}

fn writer<'a>(manager: &'a str, second: i64) -> Writer<'a> {
    Writer { manager, api_version: "apps/v1", subresource: None, now: at(second), types: &DEPLOYMENT, ignored: STATUS }
}

fn entry<'e>(entries: &'e [ManagedFieldsEntry], manager: &str, operation: &str) -> Option<&'e ManagedFieldsEntry> {
    entries.iter().find(|e| e.manager.as_deref() == Some(manager) && e.operation.as_deref() == Some(operation))
}

fn fields(entries: &[ManagedFieldsEntry], manager: &str, operation: &str) -> Value {
    entry(entries, manager, operation).and_then(|e| e.fields_v1.clone()).map_or(Value::Null, |f| f.0)
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    })
}

/// Applies and unwraps, for steps that must succeed.
fn ok_apply(
    live: Option<&Value>,
    managed: &[ManagedFieldsEntry],
    config: &Value,
    force: bool,
    w: &Writer<'_>,
) -> (Value, Vec<ManagedFieldsEntry>) {
    match apply(live, managed, config, force, w) {
        Ok(done) => done,
        Err(e) => panic!("apply by {} failed: {e}", w.manager),
    }
}

fn conflicts(result: Result<(Value, Vec<ManagedFieldsEntry>), ApplyError>) -> Conflicts {
    match result {
        Err(ApplyError::Conflicts(c)) => c,
        other => panic!("expected conflicts, got {other:?}"),
    }
}

#[test]
fn an_apply_records_exactly_the_applied_fields_and_not_server_metadata() {
    let config = deployment(2, "nginx:1.27");
    let (object, managed) = ok_apply(None, &[], &config, false, &writer("ci", 0));
    assert_eq!(object, config);
    assert_eq!(managed.len(), 1);
    let e = &managed[0];
    assert_eq!(e.operation.as_deref(), Some("Apply"));
    assert_eq!(e.api_version.as_deref(), Some("apps/v1"));
    assert_eq!(e.fields_type.as_deref(), Some("FieldsV1"));
    assert_eq!(e.subresource, None);
    assert_eq!(e.time, Some(Time(at(0))));
    assert_eq!(
        e.fields_v1,
        Some(FieldsV1(json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                }
            }
        })))
    );
}

#[test]
fn the_applied_time_is_recorded_to_the_second() {
    let w = Writer {
        now: Timestamp::from_second(1_700_000_000).unwrap() + jiff::SignedDuration::from_millis(750),
        ..writer("ci", 0)
    };
    let (_, managed) = ok_apply(None, &[], &deployment(1, "a"), false, &w);
    assert_eq!(managed[0].time, Some(Time(at(0))));
}

#[test]
fn reapplying_without_a_field_removes_it_from_the_object() {
    let mut config = deployment(2, "nginx");
    config["metadata"]["labels"]["tier"] = json!("frontend");
    let (live, managed) = ok_apply(None, &[], &config, false, &writer("ci", 0));
    let config = deployment(2, "nginx");
    let (object, managed) = ok_apply(Some(&live), &managed, &config, false, &writer("ci", 1));
    assert_eq!(object["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(fields(&managed, "ci", "Apply")["f:metadata"], json!({"f:labels": {"f:app": {}}}));
}

#[test]
fn a_field_another_applier_set_to_a_different_value_conflicts() {
    let (live, managed) = ok_apply(None, &[], &deployment(2, "nginx"), false, &writer("alice", 0));
    let config =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let found = conflicts(apply(Some(&live), &managed, &config, false, &writer("bob", 1)));
    assert_eq!(found.0.len(), 1);
    assert_eq!(found.0[0].field, ".spec.replicas");
    assert_eq!(found.0[0].cause_message(), "conflict with \"alice\"");
    assert_eq!(found.to_string(), "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas");
}

#[test]
fn a_conflict_with_an_updater_names_its_api_version_as_the_docs_show() {
    let live = deployment(2, "nginx");
    let managed = update(None, &live, &[], &writer("kubectl-client-side-apply", 0));
    let config =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let found = conflicts(apply(Some(&live), &managed, &config, false, &writer("ci", 1)));
    assert_eq!(
        found.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn several_conflicts_are_listed_per_manager_in_sorted_order() {
    let (live, managed) = ok_apply(None, &[], &deployment(2, "nginx"), false, &writer("zed", 0));
    let (live, managed) = ok_apply(Some(&live), &managed, &deployment(2, "nginx"), false, &writer("amy", 1));
    let config = deployment(3, "httpd");
    let found = conflicts(apply(Some(&live), &managed, &config, false, &writer("bob", 2)));
    assert_eq!(
        found.to_string(),
        "Apply failed with 4 conflicts: conflicts with \"amy\":\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"web\"].image\n\
         conflicts with \"zed\":\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"web\"].image"
    );
}

#[test]
fn applying_the_same_value_shares_ownership_without_conflict() {
    let (live, managed) = ok_apply(None, &[], &deployment(2, "nginx"), false, &writer("alice", 0));
    let config =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    let (object, managed) = ok_apply(Some(&live), &managed, &config, false, &writer("bob", 1));
    assert_eq!(object, live);
    assert!(fields(&managed, "alice", "Apply")["f:spec"].get("f:replicas").is_some());
    assert_eq!(fields(&managed, "bob", "Apply"), json!({"f:spec": {"f:replicas": {}}}));
}

#[test]
fn force_takes_the_field_from_the_other_applier() {
    let (live, managed) = ok_apply(None, &[], &deployment(2, "nginx"), false, &writer("alice", 0));
    let config =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let (object, managed) = ok_apply(Some(&live), &managed, &config, true, &writer("bob", 1));
    assert_eq!(object["spec"]["replicas"], json!(3));
    assert!(fields(&managed, "alice", "Apply")["f:spec"].get("f:replicas").is_none());
    assert!(fields(&managed, "alice", "Apply")["f:spec"].get("f:template").is_some());
    assert_eq!(fields(&managed, "bob", "Apply"), json!({"f:spec": {"f:replicas": {}}}));
}

#[test]
fn an_update_takes_the_fields_it_changes_and_a_later_apply_conflicts_on_them() {
    let (live, managed) = ok_apply(None, &[], &deployment(2, "nginx"), false, &writer("alice", 0));
    let mut edited = live.clone();
    edited["spec"]["replicas"] = json!(5);
    let managed = update(Some(&live), &edited, &managed, &writer("kubectl-edit", 1));
    assert_eq!(fields(&managed, "kubectl-edit", "Update"), json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(entry(&managed, "kubectl-edit", "Update").and_then(|e| e.time.clone()), Some(Time(at(1))));
    assert!(fields(&managed, "alice", "Apply")["f:spec"].get("f:replicas").is_none());
    // Kubernetes' order: Apply entries first.
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));

    let found = conflicts(apply(Some(&edited), &managed, &deployment(2, "nginx"), false, &writer("alice", 2)));
    assert_eq!(
        found.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn an_update_that_removes_a_field_takes_it_from_every_manager() {
    let (live, managed) = ok_apply(None, &[], &deployment(2, "nginx"), false, &writer("alice", 0));
    let mut edited = live.clone();
    edited["metadata"]["labels"] = json!({});
    let managed = update(Some(&live), &edited, &managed, &writer("kubectl-edit", 1));
    assert!(fields(&managed, "alice", "Apply")["f:metadata"].is_null());
    // The write only removed a field (the labels map itself existed before), so it takes nothing.
    assert!(entry(&managed, "kubectl-edit", "Update").is_none());
}

#[test]
fn removing_a_field_another_manager_took_leaves_its_value_as_in_the_hpa_handover() {
    // The documented handover: a temporary manager applies replicas alone, the user drops
    // replicas from their configuration, the value stays; when the HPA controller writes
    // replicas, the temporary manager owns nothing and its entry goes.
    let (live, managed) = ok_apply(None, &[], &deployment(3, "nginx"), false, &writer("kubectl", 0));
    let handover =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let (live, managed) = ok_apply(Some(&live), &managed, &handover, false, &writer("handover-to-hpa", 1));
    let mut without_replicas = deployment(3, "nginx");
    if let Some(spec) = without_replicas["spec"].as_object_mut() {
        spec.remove("replicas");
    }
    let (live, managed) = ok_apply(Some(&live), &managed, &without_replicas, false, &writer("kubectl", 2));
    assert_eq!(live["spec"]["replicas"], json!(3));
    assert!(fields(&managed, "kubectl", "Apply")["f:spec"].get("f:replicas").is_none());

    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let managed = update(Some(&live), &scaled, &managed, &writer("hpa-controller", 3));
    assert!(entry(&managed, "handover-to-hpa", "Apply").is_none());
    assert_eq!(fields(&managed, "hpa-controller", "Update"), json!({"f:spec": {"f:replicas": {}}}));
}

#[test]
fn without_the_handover_dropping_a_field_one_alone_applied_removes_it() {
    let (live, managed) = ok_apply(None, &[], &deployment(3, "nginx"), false, &writer("kubectl", 0));
    let mut without_replicas = deployment(3, "nginx");
    if let Some(spec) = without_replicas["spec"].as_object_mut() {
        spec.remove("replicas");
    }
    let (object, _) = ok_apply(Some(&live), &managed, &without_replicas, false, &writer("kubectl", 1));
    assert!(object["spec"].get("replicas").is_none());
}

#[test]
fn an_atomic_list_is_replaced_and_owned_as_a_whole() {
    let mut config = deployment(1, "nginx");
    config["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["a", "b"]);
    let (live, managed) = ok_apply(None, &[], &config, false, &writer("alice", 0));
    let web = "k:{\"name\":\"web\"}";
    assert_eq!(
        fields(&managed, "alice", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"][web]["f:args"],
        json!({})
    );

    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["c"]}]}}}});
    let found = conflicts(apply(Some(&live), &managed, &other, false, &writer("bob", 1)));
    assert_eq!(found.0[0].field, ".spec.template.spec.containers[name=\"web\"].args");
    let (object, managed) = ok_apply(Some(&live), &managed, &other, true, &writer("bob", 1));
    assert_eq!(object["spec"]["template"]["spec"]["containers"][0]["args"], json!(["c"]));
    assert!(
        fields(&managed, "alice", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"][web]
            .get("f:args")
            .is_none()
    );
}

#[test]
fn a_set_list_is_a_union_and_loses_only_the_values_its_applier_alone_applied() {
    let base = |finalizers: Value| json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "finalizers": finalizers}});
    let (live, managed) = ok_apply(None, &[], &base(json!(["a.io/x", "shared.io/s"])), false, &writer("alice", 0));
    let (live, managed) =
        ok_apply(Some(&live), &managed, &base(json!(["b.io/y", "shared.io/s"])), false, &writer("bob", 1));
    // SMD's order: a new value goes before the shared value that follows it in the
    // configuration.
    assert_eq!(live["metadata"]["finalizers"], json!(["a.io/x", "b.io/y", "shared.io/s"]));
    assert_eq!(
        fields(&managed, "bob", "Apply"),
        json!({"f:metadata": {"f:finalizers": {"v:\"b.io/y\"": {}, "v:\"shared.io/s\"": {}}}})
    );
    let config =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "1"}}});
    let (object, _) = ok_apply(Some(&live), &managed, &config, false, &writer("alice", 2));
    assert_eq!(object["metadata"]["finalizers"], json!(["b.io/y", "shared.io/s"]));
}

fn containers(list: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": list}}}})
}

#[test]
fn a_map_list_merges_by_key_and_loses_an_element_only_its_applier_owned() {
    let (live, managed) =
        ok_apply(None, &[], &containers(json!([{"name": "web", "image": "nginx"}])), false, &writer("alice", 0));
    let (live, managed) = ok_apply(
        Some(&live),
        &managed,
        &containers(json!([{"name": "sidecar", "image": "envoy"}])),
        false,
        &writer("bob", 1),
    );
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "nginx"}, {"name": "sidecar", "image": "envoy"}])
    );
    let (object, managed) = ok_apply(Some(&live), &managed, &containers(json!([])), false, &writer("alice", 2));
    assert_eq!(object["spec"]["template"]["spec"]["containers"], json!([{"name": "sidecar", "image": "envoy"}]));
    assert!(entry(&managed, "alice", "Apply").is_none());
}

#[test]
fn a_map_list_element_another_applier_also_applied_stays() {
    let web = json!([{"name": "web", "image": "nginx"}]);
    let (live, managed) = ok_apply(None, &[], &containers(web.clone()), false, &writer("alice", 0));
    let (live, managed) = ok_apply(Some(&live), &managed, &containers(web.clone()), false, &writer("bob", 1));
    let (object, _) = ok_apply(Some(&live), &managed, &containers(json!([])), false, &writer("alice", 2));
    assert_eq!(object["spec"]["template"]["spec"]["containers"], web);
}

#[test]
fn multi_key_map_lists_tell_elements_apart_by_every_key_with_defaults() {
    let ports = |p: Value| containers(json!([{"name": "dns", "image": "coredns", "ports": p}]));
    let (live, managed) = ok_apply(None, &[], &ports(json!([{"containerPort": 53}])), false, &writer("alice", 0));
    let (live, managed) = ok_apply(
        Some(&live),
        &managed,
        &ports(json!([{"containerPort": 53, "protocol": "UDP"}])),
        false,
        &writer("bob", 1),
    );
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 53}, {"containerPort": 53, "protocol": "UDP"}])
    );
    let bob = fields(&managed, "bob", "Apply");
    let bob_ports = &bob["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"dns\"}"]["f:ports"];
    assert_eq!(
        bob_ports,
        &json!({"k:{\"containerPort\":53,\"protocol\":\"UDP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}})
    );
    let alice = fields(&managed, "alice", "Apply");
    let alice_ports = &alice["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"dns\"}"]["f:ports"];
    assert!(alice_ports.get("k:{\"containerPort\":53,\"protocol\":\"TCP\"}").is_some());
}

#[test]
fn managed_fields_in_an_applied_body_are_refused() {
    let mut config = deployment(1, "nginx");
    config["metadata"]["managedFields"] = json!([]);
    let err = apply(None, &[], &config, false, &writer("ci", 0)).unwrap_err();
    assert_eq!(err, ApplyError::ManagedFieldsInBody);
    assert_eq!(err.to_string(), "metadata.managedFields must be nil");
}

#[test]
fn a_configuration_with_duplicate_keys_or_no_object_is_refused() {
    let dup = containers(json!([{"name": "a"}, {"name": "a"}]));
    assert!(matches!(apply(None, &[], &dup, false, &writer("ci", 0)), Err(ApplyError::InvalidConfig { .. })));
    assert_eq!(apply(None, &[], &json!("x"), false, &writer("ci", 0)), Err(ApplyError::NotAnObject));
    let bad_entry = vec![ManagedFieldsEntry { operation: Some("Patch".into()), ..Default::default() }];
    let live = deployment(1, "nginx");
    assert!(matches!(
        apply(Some(&live), &bad_entry, &live, false, &writer("ci", 0)),
        Err(ApplyError::InvalidManagedFields(_))
    ));
}

#[test]
fn a_create_by_update_records_new_maps_as_kubernetes_does_for_unstructured_objects() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v"}});
    let w = Writer { api_version: "v1", types: &Untyped, ignored: &[], ..writer("kubectl-create", 0) };
    let managed = update(None, &cm, &[], &w);
    assert_eq!(
        fields(&managed, "kubectl-create", "Update"),
        json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
    );
}

#[test]
fn an_untracked_object_stays_untracked_by_updates_and_its_first_apply_credits_before_first_apply() {
    let live = deployment(2, "nginx");
    let mut edited = live.clone();
    edited["spec"]["replicas"] = json!(4);
    assert!(update(Some(&live), &edited, &[], &writer("kubectl", 0)).is_empty());

    let config =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let found = conflicts(apply(Some(&live), &[], &config, false, &writer("ci", 1)));
    assert_eq!(
        found.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let (_, managed) = ok_apply(Some(&live), &[], &config, true, &writer("ci", 1));
    let before = fields(&managed, BEFORE_FIRST_APPLY, "Update");
    assert!(before["f:spec"].get("f:replicas").is_none());
    assert!(before["f:spec"].get("f:template").is_some());
}

#[test]
fn ignored_fields_are_neither_recorded_nor_taken() {
    let mut config = deployment(1, "nginx");
    config["status"] = json!({"replicas": 1});
    let (live, managed) = ok_apply(None, &[], &config, false, &writer("ci", 0));
    assert!(fields(&managed, "ci", "Apply").get("f:status").is_none());
    let mut edited = live.clone();
    edited["status"]["replicas"] = json!(7);
    let managed = update(Some(&live), &edited, &managed, &writer("other", 1));
    assert!(entry(&managed, "other", "Update").is_none());
}

#[test]
fn a_write_that_changes_nothing_keeps_the_entry_time() {
    let (live, managed) = ok_apply(None, &[], &deployment(1, "nginx"), false, &writer("ci", 0));
    let (_, again) = ok_apply(Some(&live), &managed, &deployment(1, "nginx"), false, &writer("ci", 9));
    assert_eq!(again, managed);
    let edited = {
        let mut e = live.clone();
        e["spec"]["replicas"] = json!(2);
        e
    };
    let managed = update(Some(&live), &edited, &managed, &writer("kubectl", 3));
    let unchanged = update(Some(&edited), &edited, &managed, &writer("kubectl", 8));
    assert_eq!(entry(&unchanged, "kubectl", "Update").and_then(|e| e.time.clone()), Some(Time(at(3))));
}

#[test]
fn updates_through_a_subresource_get_their_own_entry() {
    let (live, managed) = ok_apply(None, &[], &deployment(1, "nginx"), false, &writer("ci", 0));
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(4);
    let w = Writer { subresource: Some("scale"), ..writer("ci", 1) };
    let managed = update(Some(&live), &scaled, &managed, &w);
    let scale = managed.iter().find(|e| e.subresource.as_deref() == Some("scale")).unwrap();
    assert_eq!(scale.manager.as_deref(), Some("ci"));
    let found = conflicts(apply(Some(&scaled), &managed, &deployment(1, "nginx"), false, &writer("ci", 2)));
    assert_eq!(
        found.to_string(),
        "Apply failed with 1 conflict: conflict with \"ci\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn the_entries_an_update_starts_from_follow_decode_live_or_new() {
    let (mut live, managed) = ok_apply(None, &[], &deployment(1, "nginx"), false, &writer("ci", 0));
    set_managed_fields(&mut live, &managed);
    let mut new = live.clone();
    new["metadata"]["managedFields"] = json!([]);
    assert!(managed_fields_for_update(Some(&live), &new, None).is_empty());
    assert_eq!(managed_fields_for_update(Some(&live), &new, Some("status")), managed);
    if let Some(meta) = new["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    assert_eq!(managed_fields_for_update(Some(&live), &new, None), managed);
    new["metadata"]["managedFields"] = json!("garbage");
    assert_eq!(managed_fields_for_update(Some(&live), &new, None), managed);
}

#[test]
fn odd_inputs_never_panic() {
    let w = writer("ci", 0);
    let lives = [json!(null), json!(5), json!([1, 2]), json!({"spec": "x"}), json!({"metadata": 3})];
    let configs = [
        json!({}),
        json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        json!({"metadata": null}),
    ];
    for live in &lives {
        for config in &configs {
            let _ = apply(Some(live), &[], config, false, &w);
            let _ = apply(Some(live), &[], config, true, &w);
            let _ = update(Some(live), config, &[], &w);
            let _ = update(None, live, &[], &w);
        }
    }
    let mut v = json!(1);
    set_managed_fields(&mut v, &[]);
    assert_eq!(v, json!(1));
    // A map-list element without its key is refused, not guessed at.
    assert!(matches!(apply(None, &[], &configs[1], false, &w), Err(ApplyError::InvalidConfig { .. })));
}

#[test]
fn an_appliers_entry_follows_its_latest_version_while_updaters_get_one_entry_per_version() {
    let (live, managed) = ok_apply(None, &[], &deployment(1, "nginx"), false, &writer("ci", 0));
    let beta = Writer { api_version: "apps/v1beta2", ..writer("ci", 1) };
    let (live, managed) = ok_apply(Some(&live), &managed, &deployment(2, "nginx"), false, &beta);
    let applies: Vec<_> = managed.iter().filter(|e| e.operation.as_deref() == Some("Apply")).collect();
    assert_eq!(applies.len(), 1);
    assert_eq!(applies[0].api_version.as_deref(), Some("apps/v1beta2"));

    let mut a = live.clone();
    a["metadata"]["labels"]["x"] = json!("1");
    let managed = update(Some(&live), &a, &managed, &writer("kubectl", 2));
    let mut b = a.clone();
    b["metadata"]["labels"]["y"] = json!("2");
    let managed = update(Some(&a), &b, &managed, &Writer { api_version: "apps/v1beta2", ..writer("kubectl", 3) });
    let versions: Vec<_> = managed
        .iter()
        .filter(|e| e.manager.as_deref() == Some("kubectl"))
        .map(|e| e.api_version.clone().unwrap_or_default())
        .collect();
    assert_eq!(versions, vec!["apps/v1".to_string(), "apps/v1beta2".to_string()]);
}

/// What `kubectl apply --server-side` leaves after upgrading a client-side applied object:
/// its Apply entry owns the `data` map itself (`"."`) and the annotation, which another
/// applier owns too. Re-applying only `data.greeting` must keep the map (a field inside it is
/// still applied) and the annotation (another manager owns it): structured-merge-diff adds
/// back what is still owned after pruning.
#[test]
fn pruning_keeps_a_map_whose_fields_are_still_owned_and_fields_other_appliers_own() {
    let live = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "other", "namespace": "default", "annotations": {"last": "x"}},
        "data": {"greeting": "server"}
    });
    let entry = |manager: &str, fields: Value| ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some("Apply".into()),
        api_version: Some("v1".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(fields)),
        time: Some(Time(at(0))),
        subresource: None,
    };
    let managed = vec![
        entry(
            "kubectl",
            json!({"f:data": {".": {}, "f:greeting": {}}, "f:metadata": {"f:annotations": {".": {}, "f:last": {}}}}),
        ),
        entry("kubectl-last-applied", json!({"f:metadata": {"f:annotations": {"f:last": {}}}})),
    ];
    let config =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}, "data": {"greeting": "server"}});
    let w =
        Writer { manager: "kubectl", api_version: "v1", subresource: None, now: at(1), types: &Untyped, ignored: &[] };
    let (object, _) = ok_apply(Some(&live), &managed, &config, false, &w);
    assert_eq!(object["data"], json!({"greeting": "server"}), "{object}");
    assert_eq!(object["metadata"]["annotations"], json!({"last": "x"}), "{object}");
}
