//! Kubernetes validation rules, each error carrying its field path.
