//! rkube's list-watch machinery (being written): reflector, indexed store, shared informers
//! and their factory, work queue, metrics.

pub mod workqueue;
