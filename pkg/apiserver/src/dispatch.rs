//! The one generic handler behind every `/api` and `/apis` path: it reads the request
//! (resource, verb, query, body), calls the matching operation and renders the result.
//! Per-kind behaviour lives in each kind's strategy (`rkube_api::kinds`), reached through the
//! registry entry, never here.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use rkube_api::Subresource;
use serde::Serialize;
use serde_json::Value;

use crate::ApiState;
use crate::conversion;
use crate::decode::{decode_object, read_body};
use crate::discovery;
use crate::error::{ApiError, Target as ErrorTarget};
use crate::fieldmanager;
use crate::patch::{Patch, PatchType};
use crate::request::{self, Query, Rendering, ResourceRequest, Target, Verb, content_type};
use crate::rest::{self, Listed, WriteOptions, Written};
use crate::subresource::{binding, eviction, log, scale, token};
use crate::table::{self, IncludeObject};
use crate::watch;

/// Serves one request under `/api` or `/apis`, recording its metrics.
pub async fn api(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let query = Query::parse(uri.query());
    let target = request::parse_path(uri.path(), &state.resources);
    let (verb, resource) = match &target {
        Ok(Target::Resource(req)) => (
            Verb::of(&method, req.name.is_some(), &query).map_or("unknown", Verb::as_str),
            match req.subresource {
                Some(sub) => format!("{}/{}", req.resource.plural, sub.name()),
                None => req.resource.plural.to_string(),
            },
        ),
        Ok(Target::GroupVersion { .. }) => ("get", "discovery".to_string()),
        Err(_) => ("unknown", "unknown".to_string()),
    };
    let response = match target {
        Ok(target) => {
            serve(&state, &method, target, &query, &headers, body).await.unwrap_or_else(IntoResponse::into_response)
        }
        Err(e) => e.into_response(),
    };
    let code = response.status().as_u16().to_string();
    state.metrics.requests.with_label_values(&[verb, &resource, &code]).inc();
    state.metrics.latency.with_label_values(&[verb, &resource]).observe(started.elapsed().as_secs_f64());
    tracing::debug!(%method, path = uri.path(), verb, resource, code, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

async fn serve(
    state: &Arc<ApiState>,
    method: &Method,
    target: Target,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req = match target {
        Target::GroupVersion { group, version } => {
            if method != Method::GET {
                return Err(ApiError::MethodNotAllowed(format!("{method} is not supported on discovery documents")));
            }
            let list = discovery::resources(&state.resources, &group, &version).ok_or(ApiError::NoSuchResource)?;
            return Ok(json(StatusCode::OK, &list));
        }
        Target::Resource(req) => req,
    };
    let verb = Verb::of(method, req.name.is_some(), query)
        .ok_or_else(|| ApiError::MethodNotAllowed(format!("{method} is not supported on {}", req.resource.plural)))?;
    // Across all namespaces a namespaced resource is only listed and watched, as Kubernetes
    // registers it: a create there has no namespace, and a deletecollection there would
    // empty every namespace at once.
    if req.resource.namespaced && req.namespace.is_none() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(ApiError::MethodNotAllowed(
            "the server does not allow this method on the requested resource".into(),
        ));
    }
    if let Some(custom) = req.resource.custom
        && custom.terminating
        && verb == Verb::Create
    {
        // As Kubernetes: a terminating CRD's objects are read and deleted, not made.
        return Err(ApiError::MethodNotAllowed(
            "create not allowed while custom resource definition is terminating".into(),
        ));
    }
    let rendering = Rendering::from_headers(headers);
    let include = IncludeObject::from_query(query.get("includeObject"));
    if let Some(conversion) = conversion::of(req.resource) {
        return serve_converted(state, verb, &req, conversion, query, headers, body, (rendering, include)).await;
    }
    let name = req.name.clone().unwrap_or_default();
    let limit = state.config.max_body_bytes;
    match (verb, req.subresource) {
        (Verb::Get, None | Some(Subresource::Status | Subresource::EphemeralContainers)) => {
            let obj = rest::get(state, &req, &name).await?;
            Ok(render_object(&req, obj, rendering, include))
        }
        (Verb::Get, Some(Subresource::Log)) => log::proxy(state, &req, &name, query).await,
        (Verb::Get, Some(Subresource::Scale)) => Ok(json(StatusCode::OK, &scale::get_scale(state, &req, &name).await?)),
        (Verb::List, None) => {
            let listed = rest::list(state, &req, query).await?;
            render_list(&req, listed, rendering, include)
        }
        (Verb::Watch, None) => watch::watch(state.clone(), req, query, rendering).await,
        (Verb::Create, None) if req.name.is_none() => {
            let opts = WriteOptions::from_request(query, headers)?;
            let body = decode_object(read_body(body, headers, limit).await?, content_type(headers).as_deref()).await?;
            Ok(written(&req, rest::create(state, &req, body, &opts).await?, rendering))
        }
        (Verb::Create, Some(Subresource::Token)) => {
            let body = decode_object(read_body(body, headers, limit).await?, content_type(headers).as_deref()).await?;
            Ok(json(StatusCode::CREATED, &token::create(state, &req, &name, body).await?))
        }
        (Verb::Create, Some(Subresource::Binding)) => {
            let body = decode_object(read_body(body, headers, limit).await?, content_type(headers).as_deref()).await?;
            Ok(json(StatusCode::CREATED, &binding::bind(state, &req, &name, body).await?))
        }
        (Verb::Create, Some(Subresource::Eviction)) => {
            let dry_run = WriteOptions::from_request(query, headers)?.dry_run;
            let body = decode_object(read_body(body, headers, limit).await?, content_type(headers).as_deref()).await?;
            Ok(json(StatusCode::CREATED, &eviction::evict(state, &req, &name, body, dry_run).await?))
        }
        (Verb::Update, None | Some(Subresource::Status | Subresource::EphemeralContainers)) => {
            let opts = WriteOptions::from_request(query, headers)?;
            let body = decode_object(read_body(body, headers, limit).await?, content_type(headers).as_deref()).await?;
            Ok(written(&req, rest::update(state, &req, &name, body, &opts).await?, rendering))
        }
        (Verb::Update, Some(Subresource::Scale)) => {
            let opts = WriteOptions::from_request(query, headers)?;
            let body = decode_object(read_body(body, headers, limit).await?, content_type(headers).as_deref()).await?;
            Ok(json(StatusCode::OK, &scale::update_scale(state, &req, &name, &body, &opts).await?))
        }
        (Verb::Patch, sub) => {
            let opts = WriteOptions::from_request(query, headers)?;
            let kind = PatchType::from_media(content_type(headers).as_deref())?;
            patch_type_served(req.resource, kind)?;
            let patch = Patch::parse(kind, read_body(body, headers, limit).await?).await?;
            match sub {
                Some(Subresource::Scale) => {
                    Ok(json(StatusCode::OK, &scale::patch_scale(state, &req, &name, &patch, &opts).await?))
                }
                None | Some(Subresource::Status | Subresource::EphemeralContainers) => {
                    Ok(written(&req, patch_object(state, &req, &name, &patch, query, &opts).await?, rendering))
                }
                Some(sub @ (Subresource::Binding | Subresource::Log | Subresource::Token | Subresource::Eviction)) => {
                    Err(ApiError::MethodNotAllowed(format!("PATCH is not supported on pods/{}", sub.name())))
                }
            }
        }
        (Verb::Delete, None) => {
            let bytes = read_body(body, headers, limit).await?;
            let options = rest::delete_options(&bytes, query)?;
            let dry_run = WriteOptions::from_request(query, headers)?.dry_run
                || options.dry_run.as_ref().is_some_and(|d| d.iter().any(|v| v == "All"));
            crate::admission::admit_delete(state, &req, &name).await?;
            // 200 whether the object is gone or only marked, as Kubernetes answers
            // (it keeps 202 for the deprecated orphanDependents=false).
            let (obj, _gone) = rest::delete(state, &req, &name, &options, dry_run).await?;
            Ok(json(StatusCode::OK, &obj))
        }
        (Verb::DeleteCollection, None) => {
            let bytes = read_body(body, headers, limit).await?;
            let options = rest::delete_options(&bytes, query)?;
            let dry_run = WriteOptions::from_request(query, headers)?.dry_run;
            let listed = rest::delete_collection(state, &req, query, &options, dry_run).await?;
            Ok(json(StatusCode::OK, &rest::list_object(req.resource, &listed)?))
        }
        (verb, sub) => Err(ApiError::MethodNotAllowed(format!(
            "{} is not supported on {}{}",
            verb.as_str(),
            req.resource.plural,
            sub.map(|s| format!("/{}", s.name())).unwrap_or_default()
        ))),
    }
}

/// A request for a resource stored as another (see [`conversion`]): the same operations on the
/// storage resource, converted at the edges.
#[allow(clippy::too_many_arguments)]
async fn serve_converted(
    state: &Arc<ApiState>,
    verb: Verb,
    req: &ResourceRequest,
    conversion: &'static rkube_api::registry::Conversion,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
    (rendering, include): (Rendering, IncludeObject),
) -> Result<Response, ApiError> {
    let res = req.resource;
    let storage = conversion::storage_request(req, conversion);
    let name = req.name.clone().unwrap_or_default();
    let limit = state.config.max_body_bytes;
    if let Some(sub) = req.subresource {
        return Err(ApiError::NotFound(ErrorTarget::new(res, &format!("{name}/{}", sub.name()))));
    }
    match verb {
        Verb::Get => {
            let object = conversion::to_view(conversion, rest::get(state, &storage, &name).await?);
            Ok(render_object(req, object, rendering, include))
        }
        Verb::List => {
            let listed = rest::list(state, &storage, &conversion::storage_query(query, res, conversion)?).await?;
            render_list(req, conversion::listed_view(res, conversion, listed)?, rendering, include)
        }
        Verb::Watch => {
            let query = conversion::storage_query(query, res, conversion)?;
            watch::watch_as(state.clone(), storage, &query, rendering, res).await
        }
        Verb::Create => {
            let opts = WriteOptions::from_request(query, headers)?;
            let body = decode_object(read_body(body, headers, limit).await?, content_type(headers).as_deref()).await?;
            Ok(written(req, conversion::create(state, req, conversion, body, &opts).await?, rendering))
        }
        Verb::Update => {
            let opts = WriteOptions::from_request(query, headers)?;
            let body = decode_object(read_body(body, headers, limit).await?, content_type(headers).as_deref()).await?;
            Ok(written(req, conversion::update(state, req, conversion, &name, body, &opts).await?, rendering))
        }
        Verb::Patch => {
            let opts = WriteOptions::from_request(query, headers)?;
            let kind = PatchType::from_media(content_type(headers).as_deref())?;
            patch_type_served(req.resource, kind)?;
            let patch = Patch::parse(kind, read_body(body, headers, limit).await?).await?;
            let patched = conversion::patch(state, req, conversion, &name, &patch, query, &opts).await?;
            Ok(written(req, patched, rendering))
        }
        Verb::Delete => {
            let bytes = read_body(body, headers, limit).await?;
            let options = rest::delete_options(&bytes, query)?;
            let dry_run = WriteOptions::from_request(query, headers)?.dry_run
                || options.dry_run.as_ref().is_some_and(|d| d.iter().any(|v| v == "All"));
            crate::admission::admit_delete(state, &storage, &name).await?;
            let (object, _gone) = rest::delete(state, &storage, &name, &options, dry_run).await?;
            Ok(json(StatusCode::OK, &conversion::to_view(conversion, object)))
        }
        Verb::DeleteCollection => {
            let bytes = read_body(body, headers, limit).await?;
            let options = rest::delete_options(&bytes, query)?;
            let dry_run = WriteOptions::from_request(query, headers)?.dry_run;
            let query = conversion::storage_query(query, res, conversion)?;
            let listed = rest::delete_collection(state, &storage, &query, &options, dry_run).await?;
            Ok(json(StatusCode::OK, &rest::list_object(res, &conversion::listed_view(res, conversion, listed)?)?))
        }
    }
}

/// PATCH of an object or its status; server-side apply creates a missing object.
async fn patch_object(
    state: &ApiState,
    req: &ResourceRequest,
    name: &str,
    patch: &Patch,
    query: &Query,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    patch.check_field_manager(query)?;
    let target = ErrorTarget::new(req.resource, name);
    if patch.kind == PatchType::Apply {
        let opts = WriteOptions { apply: true, ..opts.clone() };
        let result = rest::guaranteed_update(state, req, name, None, &opts, |current| {
            patch.check_resource_version(current, &target)?;
            fieldmanager::apply(req, &opts, Some(current), &patch.document)
        })
        .await;
        return match result {
            Err(ApiError::NotFound(_)) if req.subresource.is_none() => {
                let object = fieldmanager::apply(req, &opts, None, &patch.object_to_create(name)?)?;
                rest::create(state, req, object, &opts).await
            }
            other => other,
        };
    }
    let kind = req.resource.kind;
    rest::guaranteed_update(state, req, name, None, opts, |current| patch.apply_to(kind, current, &target)).await
}

/// Strategic merge patches need the patch strategies of a Go type; custom resources have none,
/// so Kubernetes answers them with a 415 naming the patch types it accepts.
pub(crate) fn patch_type_served(res: &rkube_api::ResourceDef, kind: PatchType) -> Result<(), ApiError> {
    if res.custom.is_some() && kind == PatchType::Strategic {
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
        ));
    }
    Ok(())
}

fn json(code: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (code, [(http::header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => ApiError::Internal(format!("encoding response: {e}")).into_response(),
    }
}

/// `object` in Kubernetes protobuf; JSON when it has no protobuf message (clients decode by
/// `Content-Type`, and every client asking for protobuf also accepts JSON).
fn protobuf(code: StatusCode, object: &Value) -> Response {
    match rkube_protobuf::encode(object) {
        Ok(bytes) => (code, [(http::header::CONTENT_TYPE, rkube_protobuf::MEDIA_TYPE)], bytes).into_response(),
        Err(error) => {
            tracing::debug!(%error, "answering in JSON: no protobuf encoding");
            json(code, object)
        }
    }
}

fn render_object(req: &ResourceRequest, obj: Value, rendering: Rendering, include: IncludeObject) -> Response {
    match rendering {
        Rendering::Json => json(StatusCode::OK, &obj),
        Rendering::Protobuf => protobuf(StatusCode::OK, &obj),
        Rendering::Table => table_response(table::table(req.resource, std::slice::from_ref(&obj), None, include)),
    }
}

fn render_list(
    req: &ResourceRequest,
    listed: Listed,
    rendering: Rendering,
    include: IncludeObject,
) -> Result<Response, ApiError> {
    match rendering {
        Rendering::Json => {
            let chunks = rest::list_body(req.resource, listed).into_iter().map(Ok::<_, std::convert::Infallible>);
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap_or_default())
        }
        Rendering::Protobuf => Ok(protobuf(StatusCode::OK, &rest::list_object(req.resource, &listed)?)),
        Rendering::Table => {
            let list = rest::list_object(req.resource, &listed)?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            Ok(table_response(table::table(req.resource, &items, Some(list["metadata"].clone()), include)))
        }
    }
}

fn table_response(table: Value) -> Response {
    match serde_json::to_vec(&table) {
        Ok(bytes) => (StatusCode::OK, [(http::header::CONTENT_TYPE, table::CONTENT_TYPE)], bytes).into_response(),
        Err(e) => ApiError::Internal(format!("encoding table: {e}")).into_response(),
    }
}

fn written(req: &ResourceRequest, written: Written, rendering: Rendering) -> Response {
    let code = if written.created { StatusCode::CREATED } else { StatusCode::OK };
    let mut response = match rendering {
        Rendering::Table => table_response(table::table(
            req.resource,
            std::slice::from_ref(&written.object),
            None,
            IncludeObject::Metadata,
        )),
        Rendering::Json => json(code, &written.object),
        Rendering::Protobuf => protobuf(code, &written.object),
    };
    *response.status_mut() = code;
    for warning in written.warnings {
        let text = format!("299 - {:?}", warning);
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(http::header::WARNING, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::json;

    use crate::testing::{MERGE_PATCH, TestApi, assert_status, config_map, core, pod};

    #[tokio::test]
    async fn json_merge_and_strategic_patches_each_change_the_stored_object() {
        let api = TestApi::start().await;
        let path = format!("{}/web", core("default", "pods"));
        let mut two = pod("web");
        two["spec"]["containers"] = json!([{"name": "app", "image": "app:1"}, {"name": "side", "image": "side:1"}]);
        api.create(&core("default", "pods"), two).await;

        let ops = json!([{"op": "add", "path": "/metadata/labels", "value": {"a": "1"}}]);
        let (status, patched) = api.patch(&path, "application/json-patch+json", ops).await;
        assert_eq!((status, &patched["metadata"]["labels"]), (StatusCode::OK, &json!({"a": "1"})), "{patched}");
        let (status, patched) =
            api.patch(&path, MERGE_PATCH, json!({"metadata": {"labels": {"a": null, "b": "2"}}})).await;
        assert_eq!((status, &patched["metadata"]["labels"]), (StatusCode::OK, &json!({"b": "2"})), "{patched}");
        let by_name = json!({"spec": {"containers": [{"name": "side", "image": "side:2"}]}});
        let (status, patched) = api.patch(&path, "application/strategic-merge-patch+json", by_name).await;
        assert_eq!(status, StatusCode::OK, "{patched}");
        let images: Vec<_> =
            patched["spec"]["containers"].as_array().unwrap().iter().map(|c| c["image"].clone()).collect();
        assert_eq!(images, [json!("app:1"), json!("side:2")], "containers merge by name");
        assert_eq!(api.get_ok(&path).await, patched);
    }

    #[tokio::test]
    async fn patching_a_missing_object_is_a_404_and_a_broken_patch_a_400() {
        let api = TestApi::start().await;
        let collection = core("default", "configmaps");
        let (status, reply) = api.patch(&format!("{collection}/missing"), MERGE_PATCH, json!({"data": {}})).await;
        assert_status(status, &reply, 404, "NotFound");
        api.create(&collection, config_map("cm", json!({}))).await;
        let remove_missing = json!([{"op": "remove", "path": "/data/nothing"}]);
        let (status, reply) =
            api.patch(&format!("{collection}/cm"), "application/json-patch+json", remove_missing).await;
        assert_status(status, &reply, 400, "BadRequest");
    }

    #[tokio::test]
    async fn server_side_apply_needs_a_field_manager_and_creates_a_missing_object() {
        let api = TestApi::start().await;
        let path = format!("{}/applied", core("default", "configmaps"));
        let apply = "application/apply-patch+yaml";
        let (status, reply) = api.patch(&path, apply, config_map("applied", json!({"v": "1"}))).await;
        assert_status(status, &reply, 400, "BadRequest");

        let with_manager = format!("{path}?fieldManager=test");
        let (status, created) = api.patch(&with_manager, apply, config_map("applied", json!({"v": "1"}))).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let (status, updated) = api.patch(&with_manager, apply, config_map("applied", json!({"w": "2"}))).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["data"], json!({"w": "2"}), "the field the manager no longer applies goes");
        assert_eq!(updated["metadata"]["managedFields"][0]["manager"], "test", "{updated}");
        assert_eq!(updated["metadata"]["managedFields"][0]["operation"], "Apply", "{updated}");

        let (status, reply) = api
            .patch(
                &format!("{}/other?fieldManager=test", core("default", "configmaps")),
                apply,
                config_map("applied", json!({})),
            )
            .await;
        assert_status(status, &reply, 400, "BadRequest");
    }

    #[tokio::test]
    async fn a_namespaced_collection_across_all_namespaces_is_only_listed_and_watched() {
        let api = TestApi::start().await;
        api.create(&core("default", "configmaps"), config_map("a", json!({}))).await;
        api.create(&core("kube-system", "configmaps"), config_map("b", json!({}))).await;
        let (status, reply) = api.delete("/api/v1/configmaps").await;
        assert_status(status, &reply, 405, "MethodNotAllowed");
        let mut elsewhere = config_map("c", json!({}));
        elsewhere["metadata"]["namespace"] = json!("default");
        let (status, reply) = api.post("/api/v1/configmaps", elsewhere).await;
        assert_status(status, &reply, 405, "MethodNotAllowed");
        let (status, reply) = api.delete("/apis/apps/v1/deployments").await;
        assert_status(status, &reply, 405, "MethodNotAllowed");

        assert_eq!(crate::testing::names(&api.get_ok("/api/v1/configmaps").await), ["a", "b"], "nothing deleted");
        api.watch("/api/v1/configmaps?watch=true").await;
        let (status, reply) = api.delete("/api/v1/nodes").await;
        assert_eq!(status, StatusCode::OK, "a cluster-scoped collection is deleted as before: {reply}");
    }
}
