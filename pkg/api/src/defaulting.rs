//! Kubernetes defaulting for the kinds in the registry.
