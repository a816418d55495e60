//! rkube's storage layer: objects as JSON values in etcd, versioned by etcd revisions.
//!
//! Only the apiserver uses this crate; every other process goes through the API.
//!
//! What it keeps true (each promise is a case of the `conformance` suite, run against
//! [`MemoryStore`] in this crate's tests and against real etcd in
//! `test/tests/storage_conformance.rs`):
//! - an object's resourceVersion is the `mod_revision` of its key, and a list's is the
//!   revision of the read that served it;
//! - [`Store::create`] fails with [`Error::AlreadyExists`] if the key exists; [`Store::update`]
//!   and [`Store::delete`] take the resourceVersion they expect and fail with
//!   [`Error::Conflict`] if the key moved on, so no write can silently overwrite another;
//! - every page of a paged list is read at the first page's revision, so a client sees one
//!   consistent snapshot however many pages it takes and whatever is written meanwhile;
//! - a watch from revision `r` delivers every change after `r`, in order, each delete with
//!   the object's last state, or fails with [`Error::Expired`] if etcd compacted `r` away.
//!
//! [`Store`] is a trait so the apiserver's logic can be tested without etcd: [`MemoryStore`]
//! has the same semantics in memory (one process, no persistence); [`EtcdStore`] is what
//! runs. The `conformance` module (cargo feature `conformance`) is the suite both pass; a
//! new implementation should run it too.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod continuation;
pub mod encryption;
mod etcd;
mod keys;
mod memory;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;

pub use continuation::Continue;
pub use etcd::{EtcdConfig, EtcdStore, EtcdTls};
pub use keys::Keys;
pub use memory::MemoryStore;

/// A stored value with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full etcd key.
    pub key: String,
    /// The object's JSON.
    pub value: Vec<u8>,
    /// Revision of the last write of this key: the object's resourceVersion.
    pub mod_revision: i64,
    /// Revision that created this key.
    pub create_revision: i64,
}

/// One page of a list, read at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// The objects of this page, ordered by key.
    pub items: Vec<KeyValue>,
    /// The revision the page was read at: the list's resourceVersion.
    pub revision: i64,
    /// Where the next page starts, if there is one.
    pub next: Option<Continue>,
    /// How many keys remain after this page (only known when paging).
    pub remaining: Option<i64>,
}

/// How to read a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// At most this many items per page; `None` or `0` for all.
    pub limit: Option<i64>,
    /// Continue a previous list: same revision, from where it stopped.
    pub continue_from: Option<Continue>,
    /// Read at this exact revision (a consistent snapshot); `None` for the latest.
    pub revision: Option<i64>,
}

/// How the keys under a prefix stand now against an earlier revision (see
/// [`Store::written_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixSummary {
    /// The store's current revision: what the summary describes.
    pub revision: i64,
    /// How many keys the prefix holds now.
    pub count: i64,
    /// The keys under the prefix whose last write came after the earlier revision.
    pub written: Vec<String>,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated; `prev` is its previous value (None on create).
    Put {
        /// The new value.
        kv: KeyValue,
        /// The previous value, if the key existed.
        prev: Option<KeyValue>,
    },
    /// A key was deleted; `prev` is its last value and `revision` the deletion's revision.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the deletion.
        revision: i64,
        /// The value before deletion (etcd sends it because we ask for `prev_kv`).
        prev: Option<KeyValue>,
    },
    /// Nothing changed up to `revision` (an etcd progress notification): a bookmark.
    Progress {
        /// All events up to this revision have been delivered.
        revision: i64,
    },
}

/// A stream of watch events; ends or yields an error when the watch breaks.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// Why a storage operation failed. Each variant is what the API needs to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The key does not exist.
    #[error("not found: {key}")]
    NotFound {
        /// The key looked up.
        key: String,
    },
    /// The key already exists (create).
    #[error("already exists: {key}")]
    AlreadyExists {
        /// The key written.
        key: String,
    },
    /// The key's revision is not the expected one (compare-and-swap failed).
    #[error("conflict on {key}: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key written.
        key: String,
        /// The resourceVersion the caller expected.
        expected: i64,
        /// The key's current mod_revision.
        actual: i64,
    },
    /// The requested revision has been compacted away.
    #[error("too old resource version: {requested} ({compacted})")]
    Expired {
        /// The revision asked for.
        requested: i64,
        /// The oldest revision etcd still has.
        compacted: i64,
    },
    /// The requested revision is newer than any etcd has (a client's resourceVersion from the
    /// future, or from another cluster).
    #[error("revision {requested} is a future revision (the store is at {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The store's current revision, when known (0 otherwise).
        current: i64,
    },
    /// The value is larger than etcd accepts in one request (`--max-request-bytes`, 1.5 MiB by
    /// default); nothing was written.
    #[error("the value of {key} is too large for the store ({size} bytes)")]
    TooLarge {
        /// The key written.
        key: String,
        /// The size of the value.
        size: usize,
    },
    /// A continue token that cannot be decoded.
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    /// etcd could not be reached or did not answer in time.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// etcd answered something unexpected (a bug or a corrupt value).
    #[error("storage error: {0}")]
    Internal(String),
}

/// Storage results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The operations the apiserver needs from its storage.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores `value` under `key` if the key does not exist; returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64>;

    /// Reads one key.
    async fn get(&self, key: &str) -> Result<KeyValue>;

    /// Replaces `key` if its mod_revision is still `expected`; returns the new revision.
    async fn update(&self, key: &str, expected: i64, value: Vec<u8>) -> Result<i64>;

    /// Deletes `key`, if `expected` is given only while its mod_revision is still that;
    /// returns the deleted value and the revision of the deletion.
    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(KeyValue, i64)>;

    /// Lists the keys under `prefix` (which must end in `/`).
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage>;

    /// Watches the keys under `prefix` for changes after `after_revision`. With
    /// `progress_every`, emits [`WatchEvent::Progress`] at about that interval when caught up.
    async fn watch(&self, prefix: &str, after_revision: i64, progress_every: Option<Duration>) -> Result<WatchStream>;

    /// How many keys `prefix` holds now, and which of them were written after `since`, in one
    /// read (etcd: a keys-only range with `min_mod_revision`, nothing else sent back).
    ///
    /// It proves a copy of the prefix current without transferring it: when the copy was the
    /// store's at `since`, nothing is in `written` and the counts are equal, the store still
    /// holds exactly the copy. (A key written after `since` and still there is in `written`;
    /// a key of the copy deleted since lowers the count, unless another was created, which is
    /// in `written`.)
    async fn written_since(&self, prefix: &str, since: i64) -> Result<PrefixSummary>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<i64>;

    /// Whether the store answers at all (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    /// Discards history older than `revision`: watches and exact-revision reads from
    /// before it then fail with [`Error::Expired`].
    async fn compact(&self, revision: i64) -> Result<()>;
}
