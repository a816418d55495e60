//! ListerWatcher: the two calls a reflector makes to the apiserver, behind a trait.
//!
//! client-go has the same interface under the same name. It exists so a reflector can be
//! driven by something other than the real client: the unit tests play the apiserver with an
//! in-memory fake. [`rkube_client::Api`] implements it for every resource type.
//!
//! The reflector owns the parameters (page size, continue token, selectors, timeouts); an
//! implementation only carries them to the server.

use futures::future::BoxFuture;
use rkube_client::{Api, ListParams, ObjectList, WatchParams, WatchStream};

/// What a reflector needs from the apiserver: one page of a LIST, and a WATCH from a
/// resourceVersion.
pub trait ListerWatcher<K: Clone>: Send + Sync + 'static {
    /// One page of a LIST (`params.limit`, `params.continue_token`). The list's
    /// `metadata.resourceVersion` and `metadata.continue_` drive the next step.
    fn list_page(&self, params: ListParams) -> BoxFuture<'static, rkube_client::Result<ObjectList<K>>>;

    /// A WATCH of every change after `resource_version`.
    ///
    /// A 410 arrives either as the error of this call ([`rkube_client::Error::is_gone`]) or as
    /// an `ERROR` event with code 410 on the stream.
    fn watch(
        &self,
        params: WatchParams,
        resource_version: String,
    ) -> BoxFuture<'static, rkube_client::Result<WatchStream<K>>>;
}

impl<K> ListerWatcher<K> for Api<K>
where
    K: rkube_client::ApiResource,
{
    fn list_page(&self, params: ListParams) -> BoxFuture<'static, rkube_client::Result<ObjectList<K>>> {
        let api = self.clone();
        Box::pin(async move { api.list(&params).await })
    }

    fn watch(
        &self,
        params: WatchParams,
        resource_version: String,
    ) -> BoxFuture<'static, rkube_client::Result<WatchStream<K>>> {
        let api = self.clone();
        Box::pin(async move { api.watch(&params, &resource_version).await })
    }
}
