use serde_json::json;

use super::*;
use crate::{decode, decode_watch_event, is_protobuf};

fn testdata(path: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn testdata_files(dir: &str, prefix: &str, suffix: &str) -> Vec<String> {
    let path = format!("{}/testdata/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix) && name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// The sample objects of every kind, by file name.
fn samples() -> Vec<(String, Value)> {
    testdata_files("objects", "", ".json")
        .into_iter()
        .map(|name| {
            let value =
                serde_json::from_slice(&testdata(&format!("objects/{name}"))).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, value)
        })
        .collect()
}

fn sample(name: &str) -> Value {
    serde_json::from_slice(&testdata(&format!("objects/{name}.json"))).expect("sample")
}

/// What Go writes for a non-pointer field the JSON omitted, and reads back: 0, false, null,
/// "", [], {} or an object of those.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(members) => members.values().all(is_zero),
        Value::Bool(true) => false,
    }
}

/// `decoded` is `original` read back: every value the same, but for the zeros Go writes
/// for what the JSON omits, and the empty values protobuf cannot tell from absent (an empty
/// string, list or map, a null).
fn assert_same(original: &Value, decoded: &Value, path: &str) {
    match (original, decoded) {
        (Value::Object(o), Value::Object(d)) => {
            let keys: std::collections::BTreeSet<&String> = o.keys().chain(d.keys()).collect();
            for key in keys {
                let path = format!("{path}.{key}");
                match (o.get(key), d.get(key)) {
                    (Some(o), Some(d)) => assert_same(o, d, &path),
                    (Some(o), None) => {
                        assert!(o.is_null() || o == "" || o == &json!([]) || o == &json!({}), "{path}: {o} is lost")
                    }
                    (None, Some(d)) => assert!(is_zero(d), "{path}: {d} appeared"),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(o), Value::Array(d)) => {
            assert_eq!(o.len(), d.len(), "{path}: {original} became {decoded}");
            for (i, (o, d)) in o.iter().zip(d).enumerate() {
                assert_same(o, d, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(original, decoded, "{path}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn kubectl_bodies_decode_and_encode_back_byte_for_byte() {
    let fixtures = testdata_files("kubectl-1.37", "b_", ".bin");
    assert_eq!(fixtures.len(), 12);
    for name in fixtures {
        let body = testdata(&format!("kubectl-1.37/{name}"));
        let object = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let encoded = encode(&object).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decode(&encoded).expect("decode again"), object, "{name}");
        assert_eq!(hex(&encoded), hex(&body), "{name}: {object}");
    }
}

#[test]
fn every_kind_round_trips_through_protobuf() {
    let samples = samples();
    let kinds: Vec<&str> = samples.iter().filter_map(|(_, v)| v["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "Pod",
        "Node",
        "Service",
        "Endpoints",
        "Event",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "ReplicaSet",
        "Deployment",
        "Lease",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "PriorityClass",
        "ResourceQuota",
        "LimitRange",
        "PodDisruptionBudget",
        "Eviction",
        "NodeMetrics",
        "PodMetrics",
        "TokenRequest",
        "TokenReview",
        "SelfSubjectAccessReview",
        "Status",
        "DeleteOptions",
        "PodList",
        "APIResourceList",
        "CustomResourceDefinition",
        "Job",
        "CronJob",
        "DaemonSet",
        "StatefulSet",
        "ControllerRevision",
        "ReplicationController",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "StorageClass",
        "EndpointSlice",
    ] {
        assert!(kinds.contains(&kind), "no sample of {kind}");
    }
    for (name, object) in &samples {
        let body = encode(object).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(is_protobuf(&body));
        let decoded = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_same(object, &decoded, name.trim_end_matches(".json"));
        // Read back and written again, the bytes do not change.
        assert_eq!(hex(&encode(&decoded).expect("encode again")), hex(&body), "{name}");
    }
}

#[test]
fn special_types_survive_with_their_meaning() {
    let pod = decode(&encode(&sample("pod")).expect("pod")).expect("pod");
    let web = &pod["spec"]["containers"][0];
    assert_eq!(web["livenessProbe"]["httpGet"]["port"], 8080);
    assert_eq!(web["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(web["env"][1]["valueFrom"]["configMapKeyRef"]["name"], "web-config"); // inline
    assert_eq!(web["resources"]["requests"]["cpu"], "250m");
    assert_eq!(pod["spec"]["volumes"][3]["emptyDir"]["sizeLimit"], "64Mi"); // inline VolumeSource
    assert_eq!(pod["spec"]["volumes"][4]["emptyDir"], json!({}));
    assert_eq!(pod["spec"]["tolerations"][0]["tolerationSeconds"], 300);
    assert_eq!(pod["metadata"]["managedFields"][1]["fieldsV1"]["f:status"]["f:phase"], json!({}));
    assert_eq!(pod["status"]["conditions"][0]["lastProbeTime"], Value::Null);
    assert!(pod["metadata"].get("deletionTimestamp").is_none());

    let options = decode(&encode(&sample("deleteoptions")).expect("options")).expect("options");
    assert_eq!(options["gracePeriodSeconds"], 0);
    assert_eq!(options["orphanDependents"], false);
    let eviction = decode(&encode(&sample("eviction")).expect("eviction")).expect("eviction");
    assert_eq!(eviction["deleteOptions"]["gracePeriodSeconds"], 0);

    let lease = decode(&encode(&sample("lease")).expect("lease")).expect("lease");
    assert_eq!(lease["spec"]["renewTime"], "2025-01-15T10:00:00.123456Z");
    let metrics = decode(&encode(&sample("podmetrics")).expect("metrics")).expect("metrics");
    assert_eq!(metrics["window"], "1m30s");
    let pdb = decode(&encode(&sample("poddisruptionbudget")).expect("pdb")).expect("pdb");
    assert_eq!(pdb["spec"]["minAvailable"], "50%");
    let deployment = decode(&encode(&sample("deployment")).expect("deployment")).expect("deployment");
    assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": "25%", "maxUnavailable": 1}));
    let review = decode(&encode(&sample("tokenreview")).expect("review")).expect("review");
    assert_eq!(review["status"]["user"]["extra"]["scopes"], json!(["read", "write"]));
    let resources = decode(&encode(&sample("apiresourcelist")).expect("list")).expect("list");
    assert_eq!(resources["resources"][2]["verbs"], json!([]));
    let crd = decode(&encode(&sample("customresourcedefinition")).expect("crd")).expect("crd");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["config"]["additionalProperties"], false);
    assert_eq!(spec["config"]["x-kubernetes-preserve-unknown-fields"], true);
    assert_eq!(spec["labels"]["additionalProperties"]["type"], "string"); // and Go's zeros
    assert_eq!(spec["tuple"]["items"][1]["type"], "integer");
    assert_eq!(spec["replicas"]["default"], 1);
    let token = decode(&encode(&sample("tokenrequest")).expect("token")).expect("token");
    assert_eq!(token["spec"]["boundObjectRef"]["uid"], "5f0c6a2e-8f3b-4c1d-9a7e-2b1c3d4e5f60"); // proto: uID
}

/// The bytes of a small object, written out by hand from Go's marshalers.
#[test]
fn bytes_are_what_go_writes() {
    let object = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "creationTimestamp": "2025-01-15T10:00:00Z"},
        "data": {"b": "2", "a": "1"},
    });
    let mut expected = b"k8s\0".to_vec();
    expected.extend([0x0a, 0x0f, 0x0a, 0x02, b'v', b'1', 0x12, 0x09]);
    expected.extend(b"ConfigMap");
    let seconds = [0xa0, 0x8e, 0x9e, 0xbc, 0x06]; // 1736935200
    let mut meta = vec![0x0a, 0x01, b'x', 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00];
    meta.extend([0x42, 0x08, 0x08]);
    meta.extend(seconds);
    meta.extend([0x10, 0x00]);
    let mut raw = vec![0x0a, meta.len() as u8];
    raw.extend(meta);
    raw.extend([0x12, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'1', 0x12, 0x06, 0x0a, 0x01, b'b', 0x12, 0x01, b'2']);
    expected.extend([0x12, raw.len() as u8]);
    expected.extend(raw);
    expected.extend([0x1a, 0x00, 0x22, 0x00]);
    assert_eq!(hex(&encode(&object).expect("encode")), hex(&expected));

    // IntOrString writes type, intVal and strVal; negative int32s take 10 bytes.
    let service =
        json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": "http"}]}});
    let body = encode(&service).expect("service");
    assert!(body.windows(12).any(|w| w == [0x22, 0x0a, 0x08, 0x01, 0x10, 0x00, 0x1a, 0x04, b'h', b't', b't', b'p']));
    let options = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": -1});
    let body = encode(&options).expect("options");
    assert!(body.windows(11).any(|w| w == [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
}

#[test]
fn members_the_message_lacks_are_dropped() {
    let object = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "futureField": {"a": 1}},
        "data": {"k": "v"},
        "spec": "ConfigMaps have no spec",
    });
    let decoded = decode(&encode(&object).expect("encode")).expect("decode");
    assert_eq!(decoded["data"], json!({"k": "v"}));
    assert!(decoded.get("spec").is_none());
    assert!(decoded["metadata"].get("futureField").is_none());
    // List items carry no apiVersion and kind in protobuf.
    let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}]});
    let decoded = decode(&encode(&list).expect("encode")).expect("decode");
    assert_eq!(decoded["items"][0]["metadata"]["name"], "a");
    assert!(decoded["items"][0].get("kind").is_none());
}

#[test]
fn watch_events_are_length_prefixed_watch_events_around_whole_bodies() {
    let pod = sample("pod");
    let frame = encode_watch_event("ADDED", &pod).expect("frame");
    let length = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(length, frame.len() - 4);
    assert_eq!(&frame[4..11], &[0x0a, 0x05, b'A', b'D', b'D', b'E', b'D']);
    assert_eq!(frame[11], 0x12); // object: RawExtension
    let body = encode(&pod).expect("pod");
    assert!(frame.ends_with(&body), "the object is its whole k8s\\0 body");
    let (event_type, object) = decode_watch_event(&frame).expect("decode");
    assert_eq!(event_type, "ADDED");
    assert_eq!(object, decode(&body).expect("pod"));

    let bookmark = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"resourceVersion": "48300", "creationTimestamp": null, "annotations": {"k8s.io/initial-events-end": "true"}},
    });
    let (event_type, object) =
        decode_watch_event(&encode_watch_event("BOOKMARK", &bookmark).expect("frame")).expect("decode");
    assert_eq!(event_type, "BOOKMARK");
    assert_eq!(object["metadata"]["resourceVersion"], "48300");
    assert_same(&bookmark, &object, "bookmark");

    let status = json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": "too old resource version: 100 (48000)", "reason": "Expired", "code": 410,
    });
    let (event_type, object) =
        decode_watch_event(&encode_watch_event("ERROR", &status).expect("frame")).expect("decode");
    assert_eq!(event_type, "ERROR");
    assert_eq!(object["code"], 410);
    assert_eq!(object["reason"], "Expired");

    // A kind with no message (a custom resource) travels as JSON.
    let widget =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
    let (_, object) = decode_watch_event(&encode_watch_event("MODIFIED", &widget).expect("frame")).expect("decode");
    assert_eq!(object, widget);

    // A WatchEvent as an ordinary body embeds its object the same way.
    let event = json!({"apiVersion": "v1", "kind": "WatchEvent", "type": "DELETED", "object": status});
    let decoded = decode(&encode(&event).expect("event")).expect("event");
    assert_eq!(decoded["object"]["reason"], "Expired");
    assert_eq!(decoded["type"], "DELETED");
}

#[test]
fn bad_watch_frames_are_errors() {
    let frame = encode_watch_event("ADDED", &sample("configmap")).expect("frame");
    assert!(decode_watch_event(&frame[..3]).is_err());
    assert!(decode_watch_event(&frame[..frame.len() - 1]).is_err());
    let mut longer = frame.clone();
    longer.push(0);
    assert!(decode_watch_event(&longer).is_err());
    for end in 0..frame.len() {
        let _ = decode_watch_event(&frame[..end]);
    }
}

fn error_of(object: Value) -> String {
    match encode(&object) {
        Ok(_) => panic!("{object} encoded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_objects_are_errors_naming_the_field() {
    assert!(matches!(encode(&json!([1])), Err(EncodeError::NotAnObject)));
    assert!(matches!(encode(&json!({"apiVersion": "v1", "metadata": {}})), Err(EncodeError::NoKind)));
    assert!(matches!(encode(&json!({"apiVersion": 1, "kind": "Pod"})), Err(EncodeError::NoKind)));
    assert!(matches!(
        encode(&json!({"apiVersion": "example.com/v1", "kind": "Widget"})),
        Err(EncodeError::UnknownKind { .. })
    ));
    assert!(matches!(
        encode(&json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table"})),
        Err(EncodeError::UnknownKind { .. })
    ));
    let pod = |spec: Value| json!({"apiVersion": "v1", "kind": "Pod", "spec": spec});
    assert_eq!(
        error_of(pod(json!({"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}))),
        "spec.containers[0].ports[0].containerPort: expected an integer in range, found a string"
    );
    assert_eq!(
        error_of(pod(json!({"containers": [{"name": "a", "ports": [{"containerPort": 1.5}]}]}))),
        "spec.containers[0].ports[0].containerPort: expected an integer in range, found a number"
    );
    assert_eq!(
        error_of(pod(json!({"activeDeadlineSeconds": true}))),
        "spec.activeDeadlineSeconds: expected an integer in range, found a bool"
    );
    assert_eq!(
        error_of(pod(json!({"priority": 4_294_967_296_i64}))),
        "spec.priority: expected an integer in range, found a number"
    );
    assert_eq!(
        error_of(pod(json!({"containers": {"name": "a"}}))),
        "spec.containers: expected an array, found an object"
    );
    assert_eq!(
        error_of(pod(json!({"nodeSelector": {"a": 1}}))),
        "spec.nodeSelector[a]: expected a string, found a number"
    );
    assert_eq!(error_of(pod(json!("none"))), "spec: expected an object, found a string");
    assert!(
        error_of(pod(json!({"volumes": [{"name": "v", "emptyDir": {"sizeLimit": true}}]})))
            .starts_with("spec.volumes[0].emptyDir.sizeLimit: expected a quantity")
    );
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "not base64!"}});
    assert!(error_of(secret).starts_with("data[k]: not base64"));
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"creationTimestamp": "yesterday"}});
    assert!(error_of(namespace).starts_with("metadata.creationTimestamp: not an RFC 3339 time"));
    let metrics = json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics", "window": "30 seconds"});
    assert_eq!(error_of(metrics), "window: not a duration: \"30 seconds\"");
    let service = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"targetPort": [80]}]}});
    assert_eq!(error_of(service), "spec.ports[0].targetPort: expected an int32 or a string, found an array");
    let service = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"targetPort": 1_u64 << 40}]}});
    assert!(error_of(service).starts_with("spec.ports[0].targetPort"));
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": {"user": {"extra": {"a": "b"}}}});
    assert_eq!(error_of(review), "status.user.extra[a]: expected an array, found a string");
}

#[test]
fn deep_and_huge_objects_are_handled() {
    // Deeper than any object: an error, not a stack overflow (built by hand: serde_json's
    // parser would refuse it).
    let mut deep = json!({"type": "object"});
    for _ in 0..1000 {
        deep = json!({"type": "object", "properties": {"p": deep}});
    }
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": deep}}]},
    });
    assert!(matches!(encode(&crd), Err(EncodeError::TooDeep { .. })));
    let mut deep_json = json!(1);
    for _ in 0..1000 {
        deep_json = json!([deep_json]);
    }
    let revision = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "data": deep_json, "revision": 1});
    assert!(matches!(encode(&revision), Err(EncodeError::TooDeep { .. })));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"managedFields": [{"fieldsV1": deep_json}]}});
    assert!(matches!(encode(&pod), Err(EncodeError::TooDeep { .. })));
    assert!(matches!(encode_watch_event("ADDED", &deep_json), Err(EncodeError::TooDeep { .. })));

    // A schema of a reasonable depth is fine.
    let mut schema = json!({"type": "string"});
    for _ in 0..30 {
        schema = json!({"type": "object", "properties": {"p": schema}});
    }
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]},
    });
    let decoded = decode(&encode(&crd).expect("crd")).expect("crd");
    assert_same(&crd, &decoded, "crd");

    // Wide: 50,000 entries.
    let data: Map<String, Value> = (0..50_000).map(|i| (format!("key-{i}"), json!(format!("value-{i}")))).collect();
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": data});
    assert_eq!(decode(&encode(&big).expect("big")).expect("big")["data"], big["data"]);
}

/// Every leaf of the Pod sample replaced by every kind of JSON value: a value or an error,
/// never a panic.
#[test]
fn any_value_anywhere_is_an_error_or_a_body_never_a_panic() {
    fn leaves(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    path.push(key.clone());
                    leaves(member, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    path.push(index.to_string());
                    leaves(item, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }
    let pod = sample("pod");
    let mut paths = Vec::new();
    leaves(&pod, &mut Vec::new(), &mut paths);
    assert!(paths.len() > 200);
    for path in &paths {
        let pointer = format!("/{}", path.join("/"));
        for replacement in [json!(null), json!(true), json!(-1.5), json!(-7), json!("x"), json!([1]), json!({"a": "b"})]
        {
            let mut object = pod.clone();
            if let Some(leaf) = object.pointer_mut(&pointer) {
                *leaf = replacement;
            }
            if let Ok(body) = encode(&object) {
                decode(&body).unwrap_or_else(|e| panic!("{pointer}: {e}"));
            }
        }
    }
}

#[test]
fn go_durations_parse_as_go_parses_them() {
    assert_eq!(parse_go_duration("0"), Some(0));
    assert_eq!(parse_go_duration("0s"), Some(0));
    assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
    assert_eq!(parse_go_duration("1h0m0.5s"), Some(3_600_500_000_000));
    assert_eq!(parse_go_duration("-2s"), Some(-2_000_000_000));
    assert_eq!(parse_go_duration("+1.5h"), Some(5_400_000_000_000));
    assert_eq!(parse_go_duration("20.05s"), Some(20_050_000_000));
    assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
    assert_eq!(parse_go_duration("1us1µs1μs1ns"), Some(3_001));
    assert_eq!(parse_go_duration(".5s"), Some(500_000_000));
    assert_eq!(parse_go_duration("2562047h47m16.854775807s"), Some(i64::MAX));
    assert_eq!(parse_go_duration("-2562047h47m16.854775808s"), Some(i64::MIN));
    for bad in ["", "-", "1", "s", "1x", "1.s.", "1h-2m", "9999999999999h", "2562047h47m16.854775808s", " 1s"] {
        assert_eq!(parse_go_duration(bad), None, "{bad:?}");
    }
}
