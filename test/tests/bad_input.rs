//! Bad input gets a 4xx `Status` naming the problem, never a 5xx, never plain text: malformed
//! JSON, wrong kind or apiVersion, invalid fields (422 with causes), oversized bodies (413),
//! unknown resources (404), wrong methods (405), unsupported media types (415), strict field
//! validation.

use rkube_tests::resources::{CONFIG_MAPS, DEPLOYMENTS, PODS, config_map, pod};
use rkube_tests::{Api, Cluster, Method, StatusCode, assert_client_error, assert_status};
use serde_json::{Value, json};

async fn start_with(args: &[&str]) -> (Cluster, Api) {
    let cluster = Cluster::start_with_args(args).await.expect("cluster starts");
    let api = Api::new(cluster.url());
    (cluster, api)
}

async fn post_raw(api: &Api, path: &str, content_type: Option<&str>, body: &[u8]) -> (StatusCode, Value) {
    let headers: Vec<(&str, &str)> = content_type.map(|value| ("content-type", value)).into_iter().collect();
    let reply = api.send(Method::POST, path, &headers, Some(body.to_vec())).await;
    (reply.status, reply.body)
}

/// The `field` of each cause of an Invalid Status.
fn cause_fields(status: &Value) -> Vec<&str> {
    status["details"]["causes"].as_array().into_iter().flatten().filter_map(|cause| cause["field"].as_str()).collect()
}

#[tokio::test]
async fn malformed_json_wrong_kind_and_wrong_api_version_are_400() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = PODS.collection("default");
    let (status, reply) =
        post_raw(&api, &collection, Some("application/json"), b"{\"apiVersion\": \"v1\", \"kind\": ").await;
    assert_status(status, &reply, 400, "BadRequest", "truncated JSON");

    let (status, reply) = api.post(&collection, &config_map("default", "cm", json!({}))).await;
    assert_status(status, &reply, 400, "BadRequest", "a ConfigMap posted to pods");

    // (A missing apiVersion is defaulted from the URL, as in Kubernetes; a wrong one is not.)
    for api_version in ["apps/v1", "v2", "v1beta1"] {
        let mut body = pod("default", "p", json!({}));
        body["apiVersion"] = json!(api_version);
        let (status, reply) = api.post(&collection, &body).await;
        assert_status(status, &reply, 400, "BadRequest", &format!("a Pod with apiVersion {api_version:?}"));
    }
    assert_eq!(api.get(&PODS.item("default", "p")).await.0, StatusCode::NOT_FOUND, "nothing was created");
}

#[tokio::test]
async fn invalid_fields_are_422_invalid_with_causes_naming_the_field() {
    let (_cluster, api) = start_with(&[]).await;
    let (status, reply) =
        api.post(&CONFIG_MAPS.collection("default"), &config_map("default", "Not_Valid!", json!({}))).await;
    assert_status(status, &reply, 422, "Invalid", "an invalid object name");
    assert!(cause_fields(&reply).contains(&"metadata.name"), "causes must name metadata.name: {reply}");
    assert_eq!(reply["details"]["kind"], "ConfigMap", "{reply}");

    let mut no_containers = pod("default", "empty", json!({}));
    no_containers["spec"]["containers"] = json!([]);
    let (status, reply) = api.post(&PODS.collection("default"), &no_containers).await;
    assert_status(status, &reply, 422, "Invalid", "a pod without containers");
    assert!(cause_fields(&reply).contains(&"spec.containers"), "{reply}");

    let mut mismatched = DEPLOYMENTS.sample("default", "d");
    mismatched["spec"]["template"]["metadata"]["labels"] = json!({ "app": "other" });
    let (status, reply) = api.post(&DEPLOYMENTS.collection("default"), &mismatched).await;
    assert_status(status, &reply, 422, "Invalid", "a deployment whose selector does not match its template");
    assert!(cause_fields(&reply).contains(&"spec.template.metadata.labels"), "{reply}");
}

#[tokio::test]
async fn namespace_or_name_disagreeing_with_the_url_is_400() {
    let (_cluster, api) = start_with(&[]).await;
    let (status, reply) =
        api.post(&CONFIG_MAPS.collection("default"), &config_map("kube-system", "x", json!({}))).await;
    assert_status(status, &reply, 400, "BadRequest", "body namespace differs from the URL's");

    api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "a", json!({}))).await;
    let mut renamed = api.get_ok(&CONFIG_MAPS.item("default", "a")).await;
    renamed["metadata"]["name"] = json!("b");
    let (status, reply) = api.put(&CONFIG_MAPS.item("default", "a"), &renamed).await;
    assert_status(status, &reply, 400, "BadRequest", "body name differs from the URL's");
}

#[tokio::test]
async fn a_body_over_max_request_body_bytes_is_413() {
    let (_cluster, api) = start_with(&["--max-request-body-bytes", "4096"]).await;
    let collection = CONFIG_MAPS.collection("default");
    let big = config_map("default", "big", json!({ "blob": "x".repeat(8192) }));
    let (status, reply) = api.post(&collection, &big).await;
    assert_status(status, &reply, 413, "RequestEntityTooLarge", "an 8 KiB body with a 4 KiB limit");
    assert_eq!(api.get(&CONFIG_MAPS.item("default", "big")).await.0, StatusCode::NOT_FOUND);

    let small = config_map("default", "small", json!({ "blob": "x".repeat(1024) }));
    api.create(&collection, &small).await;
}

#[tokio::test]
async fn unknown_resources_are_404_and_wrong_methods_405() {
    let (_cluster, api) = start_with(&[]).await;
    for path in [
        "/api/v1/namespaces/default/widgets",
        "/api/v1/widgets",
        "/apis/nope.example.com/v1/things",
        "/apis/apps/v1/namespaces/default/widgets",
        "/api/v2/pods",
    ] {
        let (status, reply) = api.get(path).await;
        assert_status(status, &reply, 404, "NotFound", &format!("GET {path}"));
    }
    let (status, reply) = api.post("/api/v1/namespaces/default/widgets", &json!({})).await;
    assert_status(status, &reply, 404, "NotFound", "POST to an unknown resource");

    let (status, reply) = api.put(&CONFIG_MAPS.collection("default"), &config_map("default", "x", json!({}))).await;
    assert_status(status, &reply, 405, "MethodNotAllowed", "PUT on a collection");
    let (status, reply) = api.post(&CONFIG_MAPS.item("default", "x"), &config_map("default", "x", json!({}))).await;
    assert_status(status, &reply, 405, "MethodNotAllowed", "POST on an item");
}

#[tokio::test]
async fn unsupported_content_types_are_415_and_a_missing_content_type_means_json() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    let body = serde_json::to_vec(&config_map("default", "typed", json!({}))).expect("json");
    let (status, reply) = post_raw(&api, &collection, Some("text/plain"), &body).await;
    assert_status(status, &reply, 415, "UnsupportedMediaType", "POST as text/plain");

    let (status, reply) = post_raw(&api, &collection, None, &body).await;
    assert_eq!(status, StatusCode::CREATED, "POST without Content-Type is read as JSON: {reply}");
    // JSON (or garbage) labelled protobuf is a 400 naming why, never a crash.
    let (status, reply) = post_raw(&api, &collection, Some("application/vnd.kubernetes.protobuf"), &body).await;
    assert_status(status, &reply, 400, "BadRequest", "JSON sent as protobuf");
    let (status, reply) =
        post_raw(&api, &collection, Some("application/vnd.kubernetes.protobuf"), b"k8s\0\x0a\xff\xff").await;
    assert_status(status, &reply, 400, "BadRequest", "a broken protobuf body");

    let (status, reply) =
        api.patch(&CONFIG_MAPS.item("default", "typed"), "application/json", &json!({ "data": {} })).await;
    assert_status(status, &reply, 415, "UnsupportedMediaType", "PATCH as plain application/json");
    let (status, reply) = api.patch(&CONFIG_MAPS.item("default", "typed"), "text/plain", &json!({ "data": {} })).await;
    assert_status(status, &reply, 415, "UnsupportedMediaType", "PATCH as text/plain");
}

#[tokio::test]
async fn strict_field_validation_rejects_unknown_fields_and_the_default_drops_them() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    let mut body = config_map("default", "strict", json!({}));
    body["bogusField"] = json!(1);
    let (status, reply) = api.post(&format!("{collection}?fieldValidation=Strict"), &body).await;
    assert_client_error(status, &reply, "unknown field with fieldValidation=Strict");
    assert!(reply["message"].as_str().is_some_and(|message| message.contains("bogusField")), "name the field: {reply}");
    assert_eq!(api.get(&CONFIG_MAPS.item("default", "strict")).await.0, StatusCode::NOT_FOUND);

    let mut nested = pod("default", "strict-pod", json!({}));
    nested["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
    let (status, reply) = api.post(&format!("{}?fieldValidation=Strict", PODS.collection("default")), &nested).await;
    assert_client_error(status, &reply, "misspelt nested field with fieldValidation=Strict");
    assert!(reply["message"].as_str().is_some_and(|message| message.contains("imagePullPolcy")), "{reply}");

    let created = api.create(&collection, &body).await;
    assert!(created.get("bogusField").is_none(), "unknown fields are dropped, not stored: {created}");
    let stored = api.get_ok(&CONFIG_MAPS.item("default", "strict")).await;
    assert!(stored.get("bogusField").is_none(), "{stored}");
}

#[tokio::test]
async fn garbage_bodies_and_parameters_get_4xx_never_5xx() {
    let (_cluster, api) = start_with(&[]).await;
    api.create(&CONFIG_MAPS.collection("default"), &config_map("default", "target", json!({}))).await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"42".to_vec(),
        b"\"text\"".to_vec(),
        b"{}".to_vec(),
        b"{\"metadata\": \"x\"}".to_vec(),
        b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":123}}".to_vec(),
        b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"target\"},\"data\":{\"k\":5}}".to_vec(),
        b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"target\"},\"data\":\"x\"}".to_vec(),
        b"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"target\"},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"i\",\"ports\":[{\"containerPort\":\"x\"}]}]}}".to_vec(),
        b"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"target\"},\"spec\":null}".to_vec(),
        vec![0xff, 0xfe, b'{', 0x80],
        deep.into_bytes(),
    ];
    let targets = [
        (Method::POST, CONFIG_MAPS.collection("default"), "application/json"),
        (Method::POST, PODS.collection("default"), "application/json"),
        (Method::PUT, CONFIG_MAPS.item("default", "target"), "application/json"),
        (Method::PATCH, CONFIG_MAPS.item("default", "target"), "application/merge-patch+json"),
        (Method::PATCH, CONFIG_MAPS.item("default", "target"), "application/strategic-merge-patch+json"),
        (Method::PATCH, CONFIG_MAPS.item("default", "target"), "application/json-patch+json"),
    ];
    // Collect every wrong answer, so one run shows them all.
    let mut problems = Vec::new();
    for (method, path, content_type) in &targets {
        for body in &bodies {
            let reply = api.send(method.clone(), path, &[("content-type", content_type)], Some(body.clone())).await;
            let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            let request = format!("{method} {path} ({content_type}) body {shown:?}");
            // A few of these are valid patches: {} merges nothing, [] is an empty JSON patch.
            let valid_patch = *method == Method::PATCH && matches!(body.as_slice(), b"{}" | b"[]");
            if reply.status.is_success() && !valid_patch {
                problems.push(format!("{request} was accepted: {} {}", reply.status, reply.body));
            } else if !reply.status.is_success() && !is_client_error_status(reply.status, &reply.body) {
                problems.push(format!("{request}: expected a 4xx Status, got {} {}", reply.status, reply.body));
            }
        }
    }
    for query in ["limit=abc", "limit=-1", "timeoutSeconds=x&watch=true", "resourceVersion=abc", "continue=%%%"] {
        let path = format!("{}?{query}", CONFIG_MAPS.collection("default"));
        let reply = api.send(Method::GET, &path, &[], None).await;
        if !reply.status.is_success() && !is_client_error_status(reply.status, &reply.body) {
            problems.push(format!("GET {path}: expected 2xx or a 4xx Status, got {} {}", reply.status, reply.body));
        }
    }
    assert!(problems.is_empty(), "{} wrong answers:\n{}", problems.len(), problems.join("\n"));
    let reply = api.send(Method::GET, "/readyz", &[], None).await;
    assert_eq!(reply.status, StatusCode::OK, "still healthy after all that");
}

/// Whether a reply is a 4xx whose body is a `Status` with the same code.
fn is_client_error_status(status: StatusCode, body: &Value) -> bool {
    status.is_client_error() && body["kind"] == "Status" && body["code"] == status.as_u16()
}

#[tokio::test]
async fn error_statuses_are_written_byte_for_byte_as_kube_apiserver_writes_them() {
    let (_cluster, api) = start_with(&[]).await;
    let reply =
        reqwest::Client::new().get(api.url("/api/v1/namespaces/default/configmaps/missing")).send().await.expect("GET");
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        reply.text().await.expect("body"),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"configmaps \\\"missing\\\" not found\",\"reason\":\"NotFound\",\
         \"details\":{\"name\":\"missing\",\"kind\":\"configmaps\"},\"code\":404}\n"
    );
}

/// The lax input the fault audit found (issue 21), each refused now instead of stored or
/// answered without a `Status`.
#[tokio::test]
async fn lax_input_from_the_fault_audit_is_refused() {
    let (_cluster, api) = start_with(&[]).await;
    let collection = CONFIG_MAPS.collection("default");
    for (field, value) in [("apiVersion", json!(5)), ("kind", json!([]))] {
        let mut body = config_map("default", "typed", json!({}));
        body[field] = value.clone();
        let (status, reply) = api.post(&collection, &body).await;
        assert_status(status, &reply, 400, "BadRequest", &format!("{field}: {value}"));
    }

    let mut owned = config_map("default", "owned", json!({}));
    owned["metadata"]["ownerReferences"] = json!([{}]);
    let (status, reply) = api.post(&collection, &owned).await;
    assert_status(status, &reply, 422, "Invalid", "an empty owner reference");
    let fields = cause_fields(&reply);
    for field in ["apiVersion", "kind", "name", "uid"] {
        assert!(fields.contains(&format!("metadata.ownerReferences.{field}").as_str()), "{reply}");
    }
    let (status, _) = api.get(&format!("{collection}/owned")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored");

    // (`..`, even as `%2E%2E`, never reaches the server: URL parsers resolve it.)
    for namespace in ["a%2Fb", "UPPER", "-x"] {
        let (status, reply) = api.get(&format!("/api/v1/namespaces/{namespace}/pods")).await;
        assert_status(status, &reply, 400, "BadRequest", &format!("namespace {namespace:?} in the path"));
    }

    let deployments = DEPLOYMENTS.collection("default");
    api.create(&deployments, &DEPLOYMENTS.sample("default", "web")).await;
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                       "metadata": {"name": "other", "namespace": "default"}, "spec": {"replicas": 2}});
    let (status, reply) = api.put(&format!("{deployments}/web/scale"), &scale).await;
    assert_status(status, &reply, 400, "BadRequest", "a Scale naming another object");

    let trace = api.send(Method::from_bytes(b"TRACE").expect("a method"), "/api", &[], None).await;
    assert_status(trace.status, &trace.body, 405, "MethodNotAllowed", "TRACE /api");
}

/// A chunked body that is malformed is the client's error (400), not a 413 (issue 21).
#[tokio::test]
async fn a_malformed_chunked_body_is_400_not_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cluster, _api) = start_with(&[]).await;
    let address = cluster.url().trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connects");
    let request = format!(
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{{\"a\":\r\nnot-a-size\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = String::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_string(&mut answer)).await;
    let status_line = answer.lines().next().unwrap_or_default();
    assert!(status_line.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"reason\":\"BadRequest\""), "{answer}");
}
