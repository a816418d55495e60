//! The crate's error type: one variant per step of list-watch that can fail.
//!
//! Every list or watch error is retryable from the reflector's point of view: the reflector logs
//! it, counts it in the metrics and tries again (with backoff, or with a relist after a 410).
//! None of them stops an informer; only its shutdown token does. The errors that reach a caller
//! are the ones from setting things up: registering metrics, or asking for an index that does
//! not exist.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in list-watch or in setting up an informer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A LIST request (one page of it) failed.
    #[error("list failed")]
    List(#[source] rkube_client::Error),
    /// A WATCH request could not be started.
    #[error("watch could not start")]
    WatchStart(#[source] rkube_client::Error),
    /// A running watch stream broke (connection lost, undecodable event).
    #[error("watch stream broke")]
    WatchStream(#[source] rkube_client::Error),
    /// The server sent an `ERROR` event other than 410 on a watch stream.
    #[error("watch ERROR event {code}: {message}")]
    WatchEvent {
        /// The Status code the server sent.
        code: u16,
        /// The Status message the server sent.
        message: String,
    },
    /// The resourceVersion we resumed from is no longer available (410 Gone / Expired):
    /// the reflector must relist.
    #[error("resourceVersion expired: {0}")]
    Expired(String),
    /// A list answered without a resourceVersion, so there is nothing to watch from.
    #[error("list returned no resourceVersion")]
    NoResourceVersion,
    /// No client stream event arrived within the idle timeout; the connection may be dead.
    #[error("watch idle for {0:?}")]
    WatchIdle(std::time::Duration),
    /// The watch ended at once without any event, which a healthy server does not do.
    #[error("watch ended after {0:?} without any event")]
    VeryShortWatch(std::time::Duration),
    /// The informer metrics could not be registered (for example, registered twice in one
    /// registry).
    #[error("cannot register informer metrics")]
    Metrics(#[source] prometheus::Error),
    /// [`crate::store::Store::by_index`] was asked for an index nobody registered.
    #[error("no index named {0:?}")]
    UnknownIndex(String),
}

impl Error {
    /// Whether this error means "your resourceVersion is too old": the only error after which
    /// the reflector relists instead of resuming.
    pub fn is_expired(&self) -> bool {
        match self {
            Error::Expired(_) => true,
            Error::List(e) | Error::WatchStart(e) | Error::WatchStream(e) => e.is_gone(),
            _ => false,
        }
    }
}
