//! etcd store.
