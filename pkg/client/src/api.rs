//! [`Api<K>`]: typed verbs for one resource kind, in one namespace or across all of them.
//!
//! `Api<Pod>`, `Api<Deployment>`, `Api<Node>` ...: the kind comes from the k8s-openapi type, the
//! URL from kube-core's [`Request`](kube_core::Request) builder (it knows every verb's path and
//! query parameters), and the answer is decoded back into `K`. This is kube-rs's `Api` and
//! client-go's typed clientset (`clientset.CoreV1().Pods(ns)`) in one generic type.
//!
//! What this keeps true:
//! - an `Api` for a cluster-scoped kind (Node, Namespace) ignores the namespace it was given, so
//!   `Api::<Node>::namespaced(c, "default")` still reaches `/api/v1/nodes`;
//! - every verb goes through the same [`Client`] path, so the rate limit, the timeout and the
//!   error mapping are the same for all;
//! - [`Api::list_all`] returns the pages of one consistent snapshot (one resourceVersion) or an
//!   error, never a mix; a continue token that expires midway is [`Error::Gone`].
//!
//! Not promised: that the server supports a verb for a kind; a subresource it does not serve
//! is a [`Error::NotFound`] (or 405 as [`Error::Api`]) from the server.

use std::fmt::Debug;
use std::marker::PhantomData;

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::ObjectList;
use kube_core::Request;
use kube_core::params::{DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube_core::watch::WatchEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::watch::event_stream;

/// Page size [`Api::list_all`] uses when the [`ListParams`] set no `limit`.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// The events of one watch, as [`Api::watch`] returns them. Ends when the server ends the
/// response; see [`Api::watch`] for what each item means.
pub type WatchStream<K> = futures::stream::BoxStream<'static, Result<WatchEvent<K>>>;

/// Typed access to one resource kind `K` in one namespace (or all); see the module docs.
///
/// Cheap to clone: a [`Client`] (an `Arc`) and a URL.
pub struct Api<K> {
    client: Client,
    request: Request,
    namespace: Option<String>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            request: self.request.clone(),
            namespace: self.namespace.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K> Debug for Api<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("url", &self.request.url_path).finish_non_exhaustive()
    }
}

/// Whether `K` lives in a namespace, from rkube's resource registry. Kinds rkube does not
/// serve are taken to be namespaced, so the caller's namespace is kept.
fn is_namespaced<K: kube_core::Resource<DynamicType = ()>>() -> bool {
    rkube_api::registry::lookup(&K::group(&()), &K::version(&()), &K::plural(&())).is_none_or(|def| def.namespaced)
}

fn body<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::request_not_sent(format!("cannot serialize the object: {e}")))
}

/// What an [`Api`] can serve: a k8s-openapi kind (its URL from kube-core's `Resource`,
/// its metadata from k8s-openapi's `Metadata`) that is JSON both ways and can cross tasks.
/// Implemented for every such type; name it instead of repeating the bounds.
pub trait ApiResource:
    kube_core::Resource<DynamicType = ()>
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> ApiResource for K where
    K: kube_core::Resource<DynamicType = ()>
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// A request kube-core refused to build (bad name, bad parameters).
fn built(
    result: std::result::Result<http::Request<Vec<u8>>, kube_core::request::Error>,
) -> Result<http::Request<Vec<u8>>> {
    result.map_err(Error::request_not_sent)
}

impl<K> Api<K>
where
    K: ApiResource,
{
    fn with_namespace(client: Client, namespace: Option<&str>) -> Self {
        let namespace = namespace.filter(|_| is_namespaced::<K>());
        Api {
            client,
            request: Request::new(K::url_path(&(), namespace)),
            namespace: namespace.map(str::to_string),
            _kind: PhantomData,
        }
    }

    /// Objects of kind `K` in `namespace` (for a cluster-scoped kind, the namespace is ignored).
    pub fn namespaced(client: Client, namespace: &str) -> Self {
        Self::with_namespace(client, Some(namespace))
    }

    /// Objects of kind `K` in the client's default namespace (the kubeconfig context's).
    pub fn default_namespaced(client: Client) -> Self {
        let namespace = client.default_namespace().to_string();
        Self::with_namespace(client, Some(&namespace))
    }

    /// Objects of kind `K` in all namespaces, or of a cluster-scoped kind. Listing and watching
    /// work across namespaces; verbs on one object need a namespaced `Api` for a namespaced kind.
    pub fn all(client: Client) -> Self {
        Self::with_namespace(client, None)
    }

    /// The collection's path, e.g. `/api/v1/namespaces/default/pods`.
    pub fn resource_url(&self) -> &str {
        &self.request.url_path
    }

    /// The object called `name`; [`Error::NotFound`] when there is none.
    pub async fn get(&self, name: &str) -> Result<K> {
        self.client.request(built(self.request.get(name, &GetParams::default()))?).await
    }

    /// The object called `name`, or `None` when there is none.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of the collection: at most `lp.limit` objects, starting at
    /// `lp.continue_token`. The next page's token is in `metadata.continue_`.
    pub async fn list(&self, lp: &ListParams) -> Result<ObjectList<K>> {
        self.client.request(built(self.request.list(lp))?).await
    }

    /// The whole collection, following continue tokens with pages of `lp.limit` (or
    /// [`DEFAULT_PAGE_SIZE`]) objects. All pages come from the first page's resourceVersion,
    /// which the result carries; if that snapshot is compacted away midway the result is
    /// [`Error::Gone`], and the caller should list again. client-go calls this a `ListPager`
    /// (which instead falls back to one unpaged list on 410).
    pub async fn list_all(&self, lp: &ListParams) -> Result<ObjectList<K>> {
        let mut page_params = lp.clone();
        page_params.limit = Some(lp.limit.filter(|&l| l > 0).unwrap_or(DEFAULT_PAGE_SIZE));
        let mut all = self.list(&page_params).await?;
        while let Some(token) = all.metadata.continue_.take().filter(|t| !t.is_empty()) {
            page_params.continue_token = Some(token);
            // The continue token pins the snapshot; resourceVersion must not be sent with it.
            page_params.resource_version = None;
            page_params.version_match = None;
            let page = self.list(&page_params).await?;
            all.items.extend(page.items);
            all.metadata.continue_ = page.metadata.continue_;
        }
        all.metadata.remaining_item_count = None;
        Ok(all)
    }

    /// Creates `obj` (`metadata.generateName` works) and returns it as stored.
    /// [`Error::AlreadyExists`] when the name is taken, [`Error::Invalid`] when it fails
    /// validation.
    pub async fn create(&self, pp: &PostParams, obj: &K) -> Result<K> {
        self.client.request(built(self.request.create(pp, body(obj)?))?).await
    }

    /// Replaces the object called `name` with `obj` (a PUT). When `obj` carries a
    /// `metadata.resourceVersion` that is no longer current, [`Error::Conflict`]: read again and
    /// retry (see [`retry_on_conflict`](crate::retry_on_conflict)).
    pub async fn replace(&self, name: &str, pp: &PostParams, obj: &K) -> Result<K> {
        self.client.request(built(self.request.replace(name, pp, body(obj)?))?).await
    }

    /// Replaces the `status` subresource: only `obj.status` is taken, as a controller reports it.
    pub async fn replace_status(&self, name: &str, pp: &PostParams, obj: &K) -> Result<K> {
        self.client.request(built(self.request.replace_subresource("status", name, pp, body(obj)?))?).await
    }

    /// Patches the object: [`Patch::Merge`] (JSON merge patch), [`Patch::Json`] (RFC 6902),
    /// [`Patch::Strategic`] (kubectl's strategic merge patch) or [`Patch::Apply`] (server-side
    /// apply; needs `pp.field_manager`).
    pub async fn patch(&self, name: &str, pp: &PatchParams, patch: &Patch<serde_json::Value>) -> Result<K> {
        self.client.request(built(self.request.patch(name, pp, patch))?).await
    }

    /// Patches the `status` subresource.
    pub async fn patch_status(&self, name: &str, pp: &PatchParams, patch: &Patch<serde_json::Value>) -> Result<K> {
        self.client.request(built(self.request.patch_subresource("status", name, pp, patch))?).await
    }

    /// Deletes the object called `name` and returns it: gone already, or only marked for
    /// deletion (`metadata.deletionTimestamp` set) when finalizers or a pod's graceful stop
    /// hold it. `dp` carries preconditions (a mismatch is [`Error::Conflict`]), the propagation
    /// policy and the grace period.
    pub async fn delete(&self, name: &str, dp: &DeleteParams) -> Result<K> {
        self.client.request(built(self.request.delete(name, dp))?).await
    }

    /// Deletes every object matching `lp`'s selectors and returns them.
    pub async fn delete_collection(&self, dp: &DeleteParams, lp: &ListParams) -> Result<ObjectList<K>> {
        self.client.request(built(self.request.delete_collection(dp, lp))?).await
    }

    /// Watches the collection from `resource_version` (`"0"` or `""`: from the server's
    /// choice, with the current objects as `Added` first). Each item is one event:
    /// `Added`/`Modified`/`Deleted` with the object (a delete carries its last state),
    /// `Bookmark` with only a newer resourceVersion (when `wp.bookmarks`), or
    /// [`WatchEvent::Error`], a Status such as 410 `Expired` when `resource_version` has been
    /// compacted away: relist then. A line that does not decode is one `Err(Error::Decode)`,
    /// and the stream goes on. A server that refuses the watch outright answers this call with
    /// an `Err` instead (a 410 as [`Error::Gone`]); rkube's apiserver uses the ERROR event.
    ///
    /// The stream ends when the server ends the response (at `wp.timeout`, 290s by default) or
    /// the connection breaks (one last `Err`). Resuming from the last resourceVersion seen is
    /// the caller's job; the Reflector in rkube-informer does it.
    pub async fn watch(&self, wp: &WatchParams, resource_version: &str) -> Result<WatchStream<K>> {
        let body = self.client.request_stream(built(self.request.watch(wp, resource_version))?).await?;
        Ok(event_stream(Box::pin(body)))
    }

    /// The `scale` subresource (replicas wanted and seen) of a Deployment or ReplicaSet.
    pub async fn get_scale(&self, name: &str) -> Result<Scale> {
        self.client.request(built(self.request.get_subresource("scale", name))?).await
    }

    /// Patches the `scale` subresource, e.g. `Patch::Merge(json!({"spec": {"replicas": 3}}))`.
    pub async fn patch_scale(&self, name: &str, pp: &PatchParams, patch: &Patch<serde_json::Value>) -> Result<Scale> {
        self.client.request(built(self.request.patch_subresource("scale", name, pp, patch))?).await
    }

    /// Replaces the `scale` subresource; a stale `scale.metadata.resourceVersion` is
    /// [`Error::Conflict`].
    pub async fn replace_scale(&self, name: &str, pp: &PostParams, scale: &Scale) -> Result<Scale> {
        self.client.request(built(self.request.replace_subresource("scale", name, pp, body(scale)?))?).await
    }
}

impl Api<Pod> {
    /// Binds the pod called `name` to `node` through the `binding` subresource, as the
    /// scheduler does: the server sets `spec.nodeName`. A pod already bound is
    /// [`Error::Conflict`].
    pub async fn bind(&self, name: &str, node: &str) -> Result<()> {
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: self.namespace.clone(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..ObjectReference::default()
            },
        };
        let req = built(self.request.create_subresource("binding", name, &PostParams::default(), body(&binding)?))?;
        self.client.request_json(req).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Node};

    fn client() -> Client {
        let mut config = Config::new("http://127.0.0.1:1".parse().unwrap());
        config.default_namespace = "team".into();
        Client::new(config).unwrap()
    }

    #[test]
    fn urls_follow_the_kind_and_scope() {
        assert_eq!(Api::<Pod>::namespaced(client(), "default").resource_url(), "/api/v1/namespaces/default/pods");
        assert_eq!(Api::<Pod>::default_namespaced(client()).resource_url(), "/api/v1/namespaces/team/pods");
        assert_eq!(Api::<Pod>::all(client()).resource_url(), "/api/v1/pods");
        assert_eq!(
            Api::<Deployment>::namespaced(client(), "x").resource_url(),
            "/apis/apps/v1/namespaces/x/deployments"
        );
    }

    #[test]
    fn cluster_scoped_kinds_ignore_the_namespace() {
        assert_eq!(Api::<Node>::namespaced(client(), "default").resource_url(), "/api/v1/nodes");
        assert_eq!(Api::<Namespace>::default_namespaced(client()).resource_url(), "/api/v1/namespaces");
    }

    #[tokio::test]
    async fn a_bad_name_is_refused_before_sending() {
        let err = Api::<Pod>::namespaced(client(), "default").get("").await.unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{err}");
    }
}
