//! OpenAPI v3 documents (`/openapi/v3` and one per group version), generated from the
//! k8s-openapi types through schemars, never written by hand.
//!
//! kubectl's default `--validate=strict` looks for a `patch` operation carrying the kind's
//! `x-kubernetes-group-version-kind` and a `fieldValidation` parameter; finding it, it leaves
//! unknown-field checks to the server (`fieldValidation=Strict`). Each kind's schema carries
//! `x-kubernetes-group-version-kind` too, which is how `kubectl explain` finds it.
//! `/openapi/v2` is an empty Swagger 2.0 document ([`v2`]): kubectl reads v3 and only falls
//! back to v2 for a kind v3 does not describe, where an empty document makes its validation
//! skip the object, so that `kubectl apply` of a kind the server lacks answers Kubernetes'
//! `no matches for kind` (a 404 there fails the validation instead).

use std::collections::BTreeMap;

use rkube_api::registry::{Registry, ResourceDef};
use serde_json::{Map, Value, json};

use crate::discovery::KUBERNETES_VERSION;

/// The media type of OpenAPI v2 in protobuf (gnostic's `openapi.v2.Document`), as Kubernetes
/// answers it (kubectl asks with an `@` in place of the second `.`, which Go's media type
/// parser refuses in an answer).
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2`: an empty Swagger 2.0 document (no paths, no definitions), in protobuf when
/// `accept` asks for it (kubectl only asks for that), else JSON. Returns the content type and
/// the body.
pub fn v2(accept: &str) -> (&'static str, Vec<u8>) {
    let (major, minor) = KUBERNETES_VERSION;
    let version = format!("v{major}.{minor}.0");
    if accept.contains("protobuf") {
        // openapi.v2.Document: swagger (1), info (2: title 1, version 2), paths (8),
        // definitions (9), each a length-delimited field.
        let field = |number: u8, bytes: &[u8]| {
            let mut out = vec![(number << 3) | 2];
            out.extend(prost_length(bytes.len()));
            out.extend_from_slice(bytes);
            out
        };
        let info = [field(1, b"rkube"), field(2, version.as_bytes())].concat();
        let body = [field(1, b"2.0"), field(2, &info), field(8, &[]), field(9, &[])].concat();
        return (V2_PROTOBUF, body);
    }
    let body =
        json!({"swagger": "2.0", "info": {"title": "rkube", "version": version}, "paths": {}, "definitions": {}});
    ("application/json", body.to_string().into_bytes())
}

/// A protobuf varint length.
fn prost_length(mut len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// The path of a group version in `/openapi/v3`: `api/v1` or `apis/<group>/<version>`.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `/openapi/v3`: where each group version's document is.
pub fn root(registry: &Registry) -> Value {
    let paths: Map<String, Value> = registry
        .groups()
        .into_iter()
        .flat_map(|(group, versions)| versions.into_iter().map(move |v| group_version_path(group, v)))
        .map(|path| {
            let url = format!("/openapi/v3/{path}");
            (path, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// All group-version documents, keyed by their path (`api/v1`, `apis/apps/v1`, ...).
pub fn documents(registry: &Registry) -> BTreeMap<String, Value> {
    let resources = registry.resources();
    registry
        .groups()
        .into_iter()
        .flat_map(|(group, versions)| versions.into_iter().map(move |v| (group, v)))
        .map(|(group, version)| (group_version_path(group, version), document(&resources, group, version)))
        .collect()
}

fn document(resources: &[&'static ResourceDef], group: &str, version: &str) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let mut kinds = Vec::new();
    for res in resources.iter().filter(|r| r.group == group && r.version == version) {
        let schema = Value::from(res.strategy.json_schema(&mut generator));
        add_paths(&mut paths, res, &schema);
        kinds.push((schema, res.kind));
    }
    let mut schemas = generator.take_definitions(true);
    // `kubectl explain` finds a kind's schema by this extension, as in kube-apiserver's
    // documents.
    for (schema, kind) in kinds {
        let name = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).map(String::from);
        let definition = match &name {
            Some(name) => schemas.get_mut(name),
            None => None,
        };
        if let Some(Value::Object(definition)) = definition {
            definition.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "version": version, "kind": kind}]),
            );
        }
    }
    let (major, minor) = KUBERNETES_VERSION;
    json!({
        "openapi": "3.0.0",
        "info": {"title": "rkube", "version": format!("v{major}.{minor}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}, "uniqueItems": true})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}, "uniqueItems": true})
}

fn add_paths(paths: &mut Map<String, Value>, res: &ResourceDef, schema: &Value) {
    let gvk = json!({"group": res.group, "version": res.version, "kind": res.kind});
    let write_params = vec![
        query_param("dryRun", "When present, indicates that modifications should not be persisted. Valid value: All."),
        query_param("fieldManager", "A name associated with the actor or entity that is making these changes."),
        query_param(
            "fieldValidation",
            "How the server handles unknown fields in the body: Ignore, Warn (default) or Strict (reject).",
        ),
    ];
    let body = json!({"content": {"application/json": {"schema": schema}}, "required": true});
    let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}});
    let op = |action: &str, extra: Vec<Value>, with_body: bool| {
        let mut op = json!({
            "operationId": format!("{action}{}", res.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": extra,
            "responses": ok,
        });
        if with_body {
            op["requestBody"] = body.clone();
        }
        op
    };
    let base = res.path_prefix();
    let (collection, scope_params) = if res.namespaced {
        (format!("{base}/namespaces/{{namespace}}/{}", res.plural), vec![path_param("namespace")])
    } else {
        (format!("{base}/{}", res.plural), vec![])
    };
    let mut with_name = scope_params.clone();
    with_name.push(path_param("name"));
    paths.insert(
        collection.clone(),
        json!({
            "parameters": scope_params,
            "get": op("list", vec![], false),
            "post": op("post", write_params.clone(), true),
            "delete": op("deletecollection", vec![], false),
        }),
    );
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "parameters": with_name,
            "get": op("get", vec![], false),
            "put": op("put", write_params.clone(), true),
            "patch": op("patch", [write_params, vec![query_param("force", "Force is going to \"force\" Apply requests.")]].concat(), true),
            "delete": op("delete", vec![], false),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_patch_with_field_validation_and_its_gvk() {
        for (path, doc) in documents(&Registry::new()) {
            for res in
                rkube_api::registry::resources().iter().filter(|r| group_version_path(r.group, r.version) == path)
            {
                let found = doc["paths"].as_object().expect("paths").values().any(|item| {
                    let patch = &item["patch"];
                    patch["x-kubernetes-group-version-kind"]["kind"] == res.kind
                        && patch["parameters"]
                            .as_array()
                            .is_some_and(|p| p.iter().any(|q| q["name"] == "fieldValidation"))
                });
                assert!(found, "{} has no patch operation with fieldValidation in {path}", res.kind);
            }
        }
    }

    #[test]
    fn every_kind_schema_names_its_group_version_kind() {
        for (path, document) in documents(&Registry::new()) {
            let schemas = document["components"]["schemas"].as_object().expect("schemas");
            for res in
                rkube_api::registry::resources().iter().filter(|r| group_version_path(r.group, r.version) == path)
            {
                let named = schemas.values().any(|s| {
                    s["x-kubernetes-group-version-kind"][0]
                        == json!({"group": res.group, "version": res.version, "kind": res.kind})
                });
                assert!(named, "{path}: no schema names {}", res.kind);
            }
        }
    }

    #[test]
    fn the_v2_document_is_an_empty_swagger_document_in_protobuf_or_json() {
        let (media, body) = v2(V2_PROTOBUF);
        assert_eq!(media, V2_PROTOBUF);
        // swagger = "2.0", then info {title, version}, then empty paths and definitions.
        assert_eq!(&body[..5], b"\x0a\x032.0");
        assert_eq!(&body[body.len() - 4..], b"\x42\x00\x4a\x00");
        assert_eq!(prost_length(300), vec![0xac, 0x02]);
        let (media, body) = v2("application/json");
        assert_eq!(media, "application/json");
        let doc: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(doc["swagger"], "2.0");
    }

    #[test]
    fn schemas_are_generated_from_the_types() {
        let docs = documents(&Registry::new());
        let core = &docs["api/v1"];
        let schemas = core["components"]["schemas"].as_object().expect("schemas");
        assert!(schemas.keys().any(|k| k.contains("Pod")), "{:?}", schemas.keys().collect::<Vec<_>>());
    }
}
