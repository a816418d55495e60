//! Event handlers: what a shared informer calls when an object is added, updated or deleted.
//!
//! client-go calls these `ResourceEventHandler` (`OnAdd`, `OnUpdate`, `OnDelete`) and the
//! per-handler queue a `processorListener`. As there, each handler gets its own unbounded queue
//! and its own task, so a slow handler delays only itself (and its queue grows meanwhile).
//!
//! What it keeps true (tests in `informer.rs`):
//! - one handler's calls never overlap, and for one object they come in resourceVersion order;
//! - a handler added late first gets `on_add` for every object already in the store, then the
//!   changes after that, with nothing missed or repeated in between;
//! - a handler that panics is logged and keeps receiving the next events.
//!
//! Not promised: ordering between different objects beyond the server's order, or seeing every
//! intermediate state (see [`crate::reflector`]). A delete followed by a create under the same
//! name can arrive as one `on_update`: compare `metadata.uid` when that matters. Handlers are
//! called on the async runtime and must return quickly: push a key to a work queue and return.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc::UnboundedReceiver;

/// The last state of a deleted object, and whether we saw the delete itself.
#[derive(Debug)]
pub enum Deleted<K> {
    /// A watch `DELETED` event: the object's state when it was deleted.
    Known(Arc<K>),
    /// The object vanished while the informer was not watching (found missing at a relist
    /// after a 410). Carries the last state we knew, which may be older than the real final
    /// state. client-go calls this `DeletedFinalStateUnknown`.
    FinalStateUnknown(Arc<K>),
}

impl<K> Clone for Deleted<K> {
    fn clone(&self) -> Self {
        match self {
            Deleted::Known(object) => Deleted::Known(Arc::clone(object)),
            Deleted::FinalStateUnknown(object) => Deleted::FinalStateUnknown(Arc::clone(object)),
        }
    }
}

impl<K> Deleted<K> {
    /// The last state known of the deleted object.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Deleted::Known(object) | Deleted::FinalStateUnknown(object) => object,
        }
    }

    /// Whether the delete was inferred at a relist rather than seen.
    pub fn is_final_state_unknown(&self) -> bool {
        matches!(self, Deleted::FinalStateUnknown(_))
    }
}

/// Reacts to changes of one resource. Every method has an empty default, so a handler
/// implements only what it needs.
pub trait EventHandler<K>: Send + Sync + 'static {
    /// An object appeared (or the handler was just added and this object was already there).
    fn on_add(&self, object: &Arc<K>) {
        let _ = object;
    }

    /// An object changed from `old` to `new`. On a periodic resync, `old` and `new` are the
    /// same object (same resourceVersion).
    fn on_update(&self, old: &Arc<K>, new: &Arc<K>) {
        let _ = (old, new);
    }

    /// An object was deleted.
    fn on_delete(&self, deleted: Deleted<K>) {
        let _ = deleted;
    }
}

type AddFn<K> = Box<dyn Fn(&Arc<K>) + Send + Sync>;
type UpdateFn<K> = Box<dyn Fn(&Arc<K>, &Arc<K>) + Send + Sync>;
type DeleteFn<K> = Box<dyn Fn(Deleted<K>) + Send + Sync>;

/// An [`EventHandler`] made of closures. client-go calls this `ResourceEventHandlerFuncs`.
///
/// ```no_run
/// # use rkube_informer::handler::HandlerFns;
/// # use k8s_openapi::api::core::v1::Pod;
/// let handler = HandlerFns::<Pod>::new()
///     .on_add(|pod| println!("added {:?}", pod.metadata.name))
///     .on_delete(|deleted| println!("deleted {:?}", deleted.object().metadata.name));
/// ```
pub struct HandlerFns<K> {
    add: Option<AddFn<K>>,
    update: Option<UpdateFn<K>>,
    delete: Option<DeleteFn<K>>,
}

impl<K> Default for HandlerFns<K> {
    fn default() -> Self {
        HandlerFns { add: None, update: None, delete: None }
    }
}

impl<K> HandlerFns<K> {
    /// A handler that ignores everything until given closures.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `add` for every added object.
    #[must_use]
    pub fn on_add(mut self, add: impl Fn(&Arc<K>) + Send + Sync + 'static) -> Self {
        self.add = Some(Box::new(add));
        self
    }

    /// Calls `update` with the old and the new state of every updated object.
    #[must_use]
    pub fn on_update(mut self, update: impl Fn(&Arc<K>, &Arc<K>) + Send + Sync + 'static) -> Self {
        self.update = Some(Box::new(update));
        self
    }

    /// Calls `delete` for every deleted object.
    #[must_use]
    pub fn on_delete(mut self, delete: impl Fn(Deleted<K>) + Send + Sync + 'static) -> Self {
        self.delete = Some(Box::new(delete));
        self
    }
}

impl<K: Send + Sync + 'static> EventHandler<K> for HandlerFns<K> {
    fn on_add(&self, object: &Arc<K>) {
        if let Some(add) = &self.add {
            add(object);
        }
    }

    fn on_update(&self, old: &Arc<K>, new: &Arc<K>) {
        if let Some(update) = &self.update {
            update(old, new);
        }
    }

    fn on_delete(&self, deleted: Deleted<K>) {
        if let Some(delete) = &self.delete {
            delete(deleted);
        }
    }
}

/// One entry of a handler's queue.
pub(crate) enum Notification<K> {
    Add(Arc<K>),
    Update(Arc<K>, Arc<K>),
    Delete(Deleted<K>),
    /// Everything the store held when the handler joined (or the first list) has been queued
    /// before this.
    InitialDone,
}

impl<K> Clone for Notification<K> {
    fn clone(&self) -> Self {
        match self {
            Notification::Add(object) => Notification::Add(Arc::clone(object)),
            Notification::Update(old, new) => Notification::Update(Arc::clone(old), Arc::clone(new)),
            Notification::Delete(deleted) => Notification::Delete(deleted.clone()),
            Notification::InitialDone => Notification::InitialDone,
        }
    }
}

/// Returned by [`crate::informer::SharedInformer::add_handler`]; identifies the handler.
#[derive(Clone, Debug)]
pub struct HandlerRegistration {
    pub(crate) id: u64,
    pub(crate) synced: Arc<AtomicBool>,
}

impl HandlerRegistration {
    /// Whether this handler has been called for every object of the informer's first list (or,
    /// for a handler added late, of the store when it was added).
    pub fn has_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

/// A handler's queue and the handler: the task that calls it.
pub(crate) struct Delivery<K> {
    pub(crate) queue: UnboundedReceiver<Notification<K>>,
    pub(crate) handler: Arc<dyn EventHandler<K>>,
    pub(crate) synced: Arc<AtomicBool>,
}

impl<K: Send + Sync + 'static> Delivery<K> {
    /// Calls the handler for each notification, in order, until the queue is closed.
    pub(crate) async fn run(mut self) {
        while let Some(notification) = self.queue.recv().await {
            let handler = &self.handler;
            let called = catch_unwind(AssertUnwindSafe(|| match notification {
                Notification::Add(object) => handler.on_add(&object),
                Notification::Update(old, new) => handler.on_update(&old, &new),
                Notification::Delete(deleted) => handler.on_delete(deleted),
                Notification::InitialDone => self.synced.store(true, Ordering::Release),
            }));
            if called.is_err() {
                tracing::error!("an informer event handler panicked; it keeps receiving the next events");
            }
        }
    }
}
