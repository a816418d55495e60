//! [`Object`](crate::Object) for each kind in the registry: which defaulting and
//! validation rules apply to it.
//!
//! Placeholder: metadata-only validation until the full rules land.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Event, Namespace, Node, Pod, Service};

use crate::object::{FieldError, Object};

macro_rules! metadata_only {
    ($($t:ty),*) => {$(
        impl Object for $t {
            fn validate_create(&self) -> Vec<FieldError> {
                Vec::new()
            }
        }
    )*};
}

metadata_only!(Namespace, Pod, Node, Service, Endpoints, Event, ConfigMap, ReplicaSet, Deployment, Lease);
