//! rkube's API machinery, shared by the apiserver and every client.
//!
//! - [`registry`]: the resources rkube serves (group, version, kind, plural, scope,
//!   subresources, short names, strategy, columns). Routes, storage keys, Tables and CLI
//!   verbs are all driven from it.
//! - [`kinds`]: one module per kind: its registry entry, its [`strategy`] and its columns.
//! - [`strategy`]: what a kind decides on create, update and delete (Kubernetes'
//!   `RESTCreateStrategy`/`RESTUpdateStrategy`/`RESTDeleteStrategy`).
//! - [`defaulting`] and [`validation`]: Kubernetes' defaulting and validation rules that
//!   several kinds share (names, metadata, labels, selectors, ports, pod templates), on the
//!   k8s-openapi types; [`field`]: the errors they report.
//! - [`selector`]: label and field selectors, parsed and matched.
//! - [`strategic_merge`]: strategic merge patch as `kubectl apply` sends it.
//! - [`backoff`]: the exponential retry delay every retrying loop uses.
//! - [`duration`]: durations as Kubernetes flags and query parameters write them.
//! - [`quantity`]: resource quantities (`100m`, `512Mi`) as integers.
//! - [`columns`]: the Table column type and the cells kinds share (server-side printing).
//! - [`customresource`]: what a CustomResourceDefinition turns into (registry entries whose
//!   strategy is the CRD's [`schema`]); [`jsonpath`]: the JSONPath of printer columns.
//! - [`managedfields`]: field ownership for server-side apply.
//!
//! This crate does no I/O: everything here is pure and unit tested.

pub mod backoff;
pub mod columns;
pub mod cron;
pub mod customresource;
pub mod defaulting;
pub mod duration;
pub mod field;
pub mod jsonpath;
pub mod kinds;
pub mod managedfields;
pub mod placement;
pub mod quantity;
pub mod quota;
pub mod registry;
pub mod remotecommand;
pub mod schema;
pub mod selector;
pub mod strategic_merge;
pub mod strategy;
pub mod validation;

pub use field::{FieldError, FieldErrorKind};
pub use registry::{ResourceDef, Subresource};
pub use strategy::{RestStrategy, Strategy};
