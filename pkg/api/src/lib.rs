//! rkube's API machinery, shared by the apiserver and every client.
//!
//! - [`registry`]: the resources rkube serves (group, version, kind, plural, scope,
//!   subresources, short names). Routes, storage keys and CLI verbs are all driven from it.
//! - [`object`]: the contract a stored kind fulfils (typed decode, defaulting, validation).
//! - [`defaulting`] and [`validation`]: Kubernetes' defaulting and validation rules for
//!   the kinds in the registry, on the k8s-openapi types.
//! - [`selector`]: label and field selectors, parsed and matched.
//! - [`patch`]: strategic merge patch as `kubectl apply` sends it.
//! - [`quantity`]: resource quantities (`100m`, `512Mi`) as integers.
//! - [`printer`]: the table columns `kubectl get` shows for each kind (server-side printing).
//!
//! This crate does no I/O: everything here is pure and unit tested.

pub mod defaulting;
pub mod kinds;
pub mod object;
pub mod patch;
pub mod printer;
pub mod quantity;
pub mod registry;
pub mod selector;
pub mod validation;

pub use object::{FieldError, FieldErrorKind, Object};
pub use registry::{ResourceDef, Subresource};
