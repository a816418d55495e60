//! `meta.k8s.io/v1` Table responses: server-side printing for `kubectl get`.
//!
//! Columns and cells come from the kind's registry entry (`columns` and `row`); each row carries the object's
//! metadata (or the whole object with `includeObject=Object`) so that `-A`,
//! `--show-labels` and `--sort-by` work.

use rkube_api::registry::ResourceDef;
use serde_json::{Value, json};

/// The response content type of a Table.
pub const CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// What each row's `object` holds (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A `PartialObjectMetadata` with the full metadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Reads `includeObject`.
    pub fn from_query(value: Option<&str>) -> Self {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// A Table of `objects`; `list_meta` is the list's metadata (resourceVersion, continue).
pub fn table(res: &ResourceDef, objects: &[Value], list_meta: Option<Value>, include: IncludeObject) -> Value {
    let now = jiff::Timestamp::now();
    let columns: Vec<Value> = res.columns
        .iter()
        .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
                IncludeObject::Object => obj.clone(),
            };
            json!({"cells": res.cells(obj, now), "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.unwrap_or_else(|| json!({})),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::{Value, json};

    use crate::testing::{ACCEPT_TABLE, TestApi, apps, core, deployment, json_body, pod};

    async fn get_table(api: &TestApi, path: &str) -> Value {
        let response = api.raw(Method::GET, path, &[("accept", ACCEPT_TABLE)], axum::body::Body::empty()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
        assert_eq!(content_type.as_ref().and_then(|v| v.to_str().ok()), Some(super::CONTENT_TYPE));
        let table = json_body(response).await;
        assert_eq!((&table["kind"], &table["apiVersion"]), (&json!("Table"), &json!("meta.k8s.io/v1")), "{table}");
        table
    }

    fn column_names(table: &Value) -> Vec<&str> {
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
    }

    #[tokio::test]
    async fn a_pod_table_has_kubectls_pod_columns_and_one_row_per_pod() {
        let api = TestApi::start().await;
        api.create(&core("default", "pods"), pod("a")).await;
        api.create(&core("default", "pods"), pod("b")).await;
        let table = get_table(&api, &core("default", "pods")).await;
        let columns = ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"];
        assert_eq!(column_names(&table), columns);
        assert_eq!(table["columnDefinitions"][5]["priority"], 1, "IP is a wide column");
        let rows = table["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["cells"].as_array().unwrap().len(), columns.len());
        assert_eq!(rows[0]["cells"].as_array().unwrap()[..4], [json!("a"), json!("0/1"), json!("Pending"), json!("0")]);
        assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(rows[0]["object"]["metadata"]["name"], "a");
        assert!(table["metadata"]["resourceVersion"].is_string(), "the list's metadata: {table}");

        let one = get_table(&api, &format!("{}/b", core("default", "pods"))).await;
        assert_eq!(one["rows"][0]["cells"][0], "b");
        let full = get_table(&api, &format!("{}?includeObject=Object", core("default", "pods"))).await;
        assert_eq!(full["rows"][0]["object"]["kind"], "Pod");
    }

    #[tokio::test]
    async fn a_deployment_table_has_kubectls_deployment_columns() {
        let api = TestApi::start().await;
        api.create(&apps("default", "deployments"), deployment("web", 3)).await;
        let table = get_table(&api, &apps("default", "deployments")).await;
        assert_eq!(
            column_names(&table),
            ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
        );
        assert_eq!(
            table["rows"][0]["cells"].as_array().unwrap()[..4],
            [json!("web"), json!("0/3"), json!(0), json!(0)]
        );
    }

    #[tokio::test]
    async fn without_the_table_accept_header_a_list_is_a_plain_list() {
        let api = TestApi::start().await;
        api.create(&core("default", "pods"), pod("a")).await;
        let list = api.get_ok(&core("default", "pods")).await;
        assert_eq!(list["kind"], "PodList");
    }
}
