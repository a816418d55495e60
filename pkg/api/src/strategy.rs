//! Per-kind REST strategies: what each kind decides on the way into and out of storage,
//! as k8s.io/apiserver's `RESTCreateStrategy`, `RESTUpdateStrategy` and
//! `RESTDeleteStrategy` do for Kubernetes.
//!
//! Two traits, one per side of the registry:
//! - [`Strategy`] is written once per kind, on its k8s-openapi type (in
//!   `kinds/<kind>.rs`): defaults, what create resets (`PrepareForCreate`: a new Deployment
//!   starts without status), validation of a new object and of an update, the grace
//!   period a deletion gets (`CheckGracefulDelete`), what marking for deletion changes and
//!   whether something besides `metadata.finalizers` must finish first (a namespace's
//!   `spec.finalizers`).
//! - [`RestStrategy`] is what the apiserver's generic code calls, on JSON: decode into the
//!   kind's type (which rejects wrong types and a wrong `apiVersion`/`kind`), run the
//!   strategy, re-encode. [`StrategyFor`] turns any [`Strategy`] into one; the registry
//!   entry of a kind points to it, so generic code never names a kind.
//!
//! What it keeps true (tests in `kinds/`): metadata is validated for every kind, with the
//! kind's name format and the scope k8s-openapi gives its type (namespaced kinds need a
//! namespace, cluster-scoped ones may not have one); fields the type does not know are
//! dropped and reported in [`Prepared::unknown_fields`], so `fieldValidation=Strict` can
//! refuse them.
//!
//! Not here: what the server owns in every object's metadata (`uid`, `resourceVersion`,
//! `generation`, ...), which the apiserver sets the same way for all kinds, and the rule that
//! the main resource ignores `status` when `status` is a subresource (decided from the
//! registry entry's subresources).

use std::any::TypeId;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::field::{FieldError, unknown_fields};
use crate::validation::{self, NameFormat};

/// The rules of one kind, on its k8s-openapi type. Only [`Strategy::validate`] is
/// required; every other rule has Kubernetes' default for kinds without one.
pub trait Strategy:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + schemars::JsonSchema
    + Clone
    + Send
    + Sync
    + 'static
{
    /// The format `metadata.name` must have (DNS-1123 subdomain for most kinds).
    const NAME_FORMAT: NameFormat = NameFormat::Dns1123Subdomain;

    /// Fills in what the user left out, as Kubernetes' defaulters do (a pod's
    /// `restartPolicy: Always`). Runs on creates and updates.
    fn set_defaults(&mut self) {}

    /// Clears what a client may not set on create (`PrepareForCreate`), e.g. the status of
    /// a new Deployment. Runs before [`Strategy::set_defaults`].
    fn prepare_for_create(&mut self) {}

    /// Adjusts an update of `old` before it is defaulted and validated (`PrepareForUpdate`),
    /// e.g. a Service turned from NodePort into ClusterIP drops the node ports it had.
    fn prepare_for_update(&mut self, old: &Self) {
        let _ = old;
    }

    /// Checks the kind's own fields (metadata is checked for every kind). An empty list
    /// means valid.
    fn validate(&self) -> Vec<FieldError>;

    /// The extra rules of a create (fields only other paths may set, as a pod's ephemeral
    /// containers). [`Strategy::validate`] runs too.
    fn validate_create(&self) -> Vec<FieldError> {
        Vec::new()
    }

    /// The extra rules of an update of `old` into `self`: fields that may not change (a
    /// pod's spec, selectors, an allocated cluster IP). [`Strategy::validate`] runs too.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let _ = old;
        Vec::new()
    }

    /// How many seconds a deletion waits (`CheckGracefulDelete`), given the client's
    /// `gracePeriodSeconds`; 0, the default, deletes at once.
    fn deletion_grace_period(&self, requested: Option<i64>) -> i64 {
        let _ = requested;
        0
    }

    /// What marking the object for deletion changes besides `deletionTimestamp` (a
    /// namespace turns `Terminating` and gains the `kubernetes` finalizer).
    fn prepare_for_delete(&mut self) {}

    /// Whether a marked object still waits for something other than `metadata.finalizers`
    /// before it may go (a namespace waits for its content to be deleted).
    fn awaits_finalization(&self) -> bool {
        false
    }
}

/// Why a body could not become a valid object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    /// The JSON does not fit the kind's type (wrong types, wrong kind or apiVersion).
    #[error("{0}")]
    Decode(String),
    /// The object decoded but breaks validation rules.
    #[error("{} field error(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

/// A body turned into a normalized, defaulted and validated object.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The object as it will be stored (re-encoded from the typed form).
    pub object: Value,
    /// Fields of the body the kind does not know (dropped from `object`).
    pub unknown_fields: Vec<String>,
}

/// A kind's [`Strategy`] on JSON, as the apiserver's generic code calls it. Every method
/// works on the stored JSON form of the kind.
pub trait RestStrategy: Send + Sync {
    /// Decodes a new object, resets what create resets, defaults and validates it.
    fn create(&self, body: Value) -> Result<Prepared, StrategyError>;
    /// Decodes, defaults and validates `body` as an update of `old`.
    fn update(&self, body: Value, old: &Value) -> Result<Prepared, StrategyError>;
    /// Decodes and defaults without validating (to normalize objects for display or tests).
    fn normalize(&self, body: Value) -> Result<Value, StrategyError>;
    /// Seconds a deletion of `object` waits, given the client's `gracePeriodSeconds`.
    fn deletion_grace_period(&self, object: &Value, requested: Option<i64>) -> i64;
    /// `object` as marked for deletion (besides `deletionTimestamp`, which the caller sets).
    fn prepare_for_delete(&self, object: Value) -> Result<Value, StrategyError>;
    /// Whether a marked `object` still waits for something besides `metadata.finalizers`.
    fn awaits_finalization(&self, object: &Value) -> bool;
    /// Whether an update from `old` to `new` changes what `metadata.generation` counts: the
    /// spec, for built-in kinds; everything but metadata and status, for custom resources.
    fn generation_changed(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }
    /// The JSON schema of the kind (for the OpenAPI documents).
    fn json_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

/// The [`RestStrategy`] of a kind `K`: decode, run `K`'s [`Strategy`], encode.
pub struct StrategyFor<K>(PhantomData<fn() -> K>);

impl<K> StrategyFor<K> {
    /// The strategy of `K`.
    pub const fn new() -> Self {
        StrategyFor(PhantomData)
    }
}

impl<K> Default for StrategyFor<K> {
    fn default() -> Self {
        Self::new()
    }
}

fn decode<K: Strategy>(body: &Value) -> Result<K, StrategyError> {
    K::deserialize(body).map_err(|e| StrategyError::Decode(e.to_string()))
}

fn encode<K: Strategy>(object: &K) -> Result<Value, StrategyError> {
    serde_json::to_value(object).map_err(|e| StrategyError::Decode(e.to_string()))
}

/// Whether k8s-openapi puts `K` in namespaces.
fn is_namespaced<K: Strategy>() -> bool {
    TypeId::of::<K::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>()
}

/// Metadata errors plus the kind's own.
fn validate_new<K: Strategy>(object: &K) -> Vec<FieldError> {
    let mut errors = validation::validate_object_meta(object.metadata(), is_namespaced::<K>(), K::NAME_FORMAT);
    errors.extend(object.validate());
    errors
}

/// Decodes `body` and names the fields the type does not know: the ones missing from the
/// decoded object, encoded again before any rule runs (a rule may drop a field on purpose,
/// as a Secret's `stringData`; that field is known).
fn decode_noting_unknown<K: Strategy>(body: &Value) -> Result<(K, Vec<String>), StrategyError> {
    let object: K = decode(body)?;
    let unknown = unknown_fields(body, &encode(&object)?);
    Ok((object, unknown))
}

fn finish<K: Strategy>(
    object: &K,
    unknown_fields: Vec<String>,
    errors: Vec<FieldError>,
) -> Result<Prepared, StrategyError> {
    if !errors.is_empty() {
        return Err(StrategyError::Invalid(errors));
    }
    Ok(Prepared { object: encode(object)?, unknown_fields })
}

impl<K: Strategy> RestStrategy for StrategyFor<K> {
    fn create(&self, body: Value) -> Result<Prepared, StrategyError> {
        let (mut object, unknown) = decode_noting_unknown::<K>(&body)?;
        object.prepare_for_create();
        object.set_defaults();
        let mut errors = validate_new(&object);
        errors.extend(object.validate_create());
        finish(&object, unknown, errors)
    }

    fn update(&self, body: Value, old: &Value) -> Result<Prepared, StrategyError> {
        let (mut object, unknown) = decode_noting_unknown::<K>(&body)?;
        let old: K = decode(old)?;
        object.prepare_for_update(&old);
        object.set_defaults();
        let mut errors = validate_new(&object);
        errors.extend(object.validate_update(&old));
        finish(&object, unknown, errors)
    }

    fn normalize(&self, body: Value) -> Result<Value, StrategyError> {
        let mut object: K = decode(&body)?;
        object.set_defaults();
        encode(&object)
    }

    fn deletion_grace_period(&self, object: &Value, requested: Option<i64>) -> i64 {
        // A stored object always decodes; were it not to, deleting at once is what the
        // default strategy does anyway.
        decode::<K>(object).map_or(0, |o| o.deletion_grace_period(requested))
    }

    fn prepare_for_delete(&self, object: Value) -> Result<Value, StrategyError> {
        let mut typed: K = decode(&object)?;
        typed.prepare_for_delete();
        encode(&typed)
    }

    fn awaits_finalization(&self, object: &Value) -> bool {
        decode::<K>(object).is_ok_and(|o| o.awaits_finalization())
    }

    fn json_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<K>()
    }
}
