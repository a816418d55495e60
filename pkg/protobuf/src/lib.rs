//! Kubernetes' protobuf bodies (`Content-Type: application/vnd.kubernetes.protobuf`), read
//! into the Kubernetes JSON the rest of the apiserver works with ([`decode`]) and written
//! from it ([`encode`]), and the protobuf watch stream's frames ([`encode_watch_event`],
//! [`decode_watch_event`]).
//!
//! A body is the 4 magic bytes `k8s\0` and a `runtime.Unknown` message: `typeMeta`
//! (apiVersion, kind), `raw` (the object's own message, without type meta) and an empty
//! `contentEncoding` and `contentType`. The object's message is found by apiVersion and kind
//! in the descriptors of the upstream `generated.proto` files (vendored in `proto/`, compiled
//! at build time by `build.rs`) and read or written dynamically: no message is written by
//! hand, and a new kind needs nothing here.
//!
//! The JSON is Kubernetes', whose member names the proto names already are (go-to-protobuf
//! names each field after its JSON tag; the few exceptions, `uid` for `uID`, `$ref`,
//! `x-kubernetes-*`, are in `proto/json_names.txt`), with the types whose JSON is not their
//! message:
//! `resource.Quantity` ↔ `"500m"`, `intstr.IntOrString` ↔ a number or a string,
//! `meta.v1.Time` ↔ RFC 3339 seconds (an empty message, Go's zero time, ↔ `null`),
//! `MicroTime` ↔ microseconds, `meta.v1.Duration` ↔ `"1m30s"`, `FieldsV1` and
//! `runtime.RawExtension` ↔ the JSON they hold (a nested `k8s\0` body is decoded in turn),
//! the named-slice wrappers `ExtraValue` and `Verbs` ↔ arrays, a CRD schema's `JSON` ↔ the
//! JSON it holds and its `JSONSchemaPropsOr{Bool,Array,StringArray}` ↔ a bool, an array or a
//! schema, whole-number doubles ↔ integers (as Go prints them), `bytes` ↔ base64, and the
//! embedded Go structs go-to-protobuf turned into fields (`Probe.handler`,
//! `Volume.volumeSource`, ...) flattened into their parent, as their JSON is.
//!
//! Go writes every non-pointer field, so a body carries zeros a JSON body would omit: reading,
//! empty strings are dropped (the JSON decoder defaults them the same), zero numbers and
//! `false` are kept (they mean what a JSON client omitting them means); writing, the same
//! zeros are written back, from the table `proto/zero_fields.txt` of the fields Go's
//! marshalers write unconditionally (the `.proto` files do not say which fields are Go
//! pointers), so that [`encode`] writes the bytes kube-apiserver writes.
//!
//! The vendored protos are Kubernetes 1.35's (the newest published in a package registry);
//! fields a 1.37 client adds are unknown to them and dropped, not refused.

use std::collections::HashMap;
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, FieldDescriptor, MessageDescriptor};

mod decode;
mod encode;

pub use decode::{DecodeError, decode, decode_watch_event};
pub use encode::{EncodeError, encode, encode_watch_event};

/// The first bytes of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";
/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The media type of a protobuf watch response: length-prefixed `WatchEvent` frames (see
/// [`encode_watch_event`]).
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// The descriptors of every Kubernetes message, loaded once.
static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds")).as_slice())
        .map_err(|e| e.to_string())
});

fn pool() -> Result<&'static DescriptorPool, DecodeError> {
    POOL.as_ref().map_err(|e| DecodeError::Descriptors(e.clone()))
}

/// Whether `body` is a Kubernetes protobuf body (starts with `k8s\0`).
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// The message of `kind` in `api_version`, if Kubernetes has one (custom resources do not).
///
/// # Errors
/// [`DecodeError::Descriptors`] only.
pub fn message_for(api_version: &str, kind: &str) -> Result<Option<MessageDescriptor>, DecodeError> {
    let pool = pool()?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => "api.core".to_string(),
        "meta.k8s.io" => "apimachinery.pkg.apis.meta".to_string(),
        "apiextensions.k8s.io" => "apiextensions_apiserver.pkg.apis.apiextensions".to_string(),
        "apiregistration.k8s.io" => "kube_aggregator.pkg.apis.apiregistration".to_string(),
        "internal.apiserver.k8s.io" => "api.apiserverinternal".to_string(),
        "metrics.k8s.io" => "metrics.pkg.apis.metrics".to_string(),
        "custom.metrics.k8s.io" => "metrics.pkg.apis.custom_metrics".to_string(),
        "external.metrics.k8s.io" => "metrics.pkg.apis.external_metrics".to_string(),
        group => format!("api.{}", group.split('.').next().unwrap_or(group)),
    };
    Ok(pool
        .get_message_by_name(&format!("{package}.{version}.{kind}"))
        // DeleteOptions, Status, WatchEvent, ... are registered in every group version.
        .or_else(|| pool.get_message_by_name(&format!("apimachinery.pkg.apis.meta.v1.{kind}"))))
}

/// Go's embedded structs that go-to-protobuf made named fields: (field type, field name).
/// Their members are the parent's in JSON. The protos do not say which they are; this is
/// the list of `json:",inline"` embeds with a protobuf tag in Kubernetes' API types.
const INLINE: &[(&str, &str)] = &[
    ("LocalObjectReference", "localObjectReference"),
    ("VolumeSource", "volumeSource"),
    ("PersistentVolumeSource", "persistentVolumeSource"),
    ("ProbeHandler", "handler"),
    ("EphemeralContainerCommon", "ephemeralContainerCommon"),
    ("RuleWithOperations", "ruleWithOperations"),
    ("Rule", "rule"),
    ("IngressRuleValue", "ingressRuleValue"),
    ("DeviceConfiguration", "deviceConfiguration"),
];

fn is_inline(field: &FieldDescriptor) -> bool {
    let Some(message) = field.kind().as_message().cloned() else { return false };
    !field.is_list() && !field.is_map() && INLINE.contains(&(message.name(), field.name()))
}

/// The fields Go writes even when they hold their zero value (its non-pointer strings,
/// numbers, bools and structs), by message: `proto/zero_fields.txt`, generated from the
/// `generated.pb.go` marshalers of the same release by `proto/zero_fields.py`. A message
/// missing from it (a hand-written marshaler: Quantity, Time, ...) writes only what is set.
static ZERO_FIELDS: LazyLock<HashMap<&'static str, Vec<u32>>> = LazyLock::new(|| {
    include_str!("../proto/zero_fields.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let message = words.next()?;
            Some((message, words.filter_map(|n| n.parse().ok()).collect()))
        })
        .collect()
});

/// The fields whose JSON name is not their proto name (`uid` is `uID`, `$ref` is `ref`,
/// `x-kubernetes-list-type` is `xKubernetesListType`, ...), by message and field number:
/// `proto/json_names.txt`, generated from the Go types' struct tags by `proto/go_tables.py`.
static JSON_NAMES: LazyLock<HashMap<(&'static str, u32), &'static str>> = LazyLock::new(|| {
    include_str!("../proto/json_names.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(((words.next()?, words.next()?.parse().ok()?), words.next()?))
        })
        .collect()
});

/// The JSON member name of `field` of `message`.
fn json_name<'a>(message: &MessageDescriptor, field: &'a FieldDescriptor) -> &'a str {
    JSON_NAMES.get(&(message.full_name(), field.number())).copied().unwrap_or_else(|| field.json_name())
}

/// Whether Go writes `field` of `message` when it holds its zero value.
fn written_when_zero(message: &MessageDescriptor, field: &FieldDescriptor) -> bool {
    !field.is_list()
        && !field.is_map()
        && ZERO_FIELDS.get(message.full_name()).is_some_and(|fields| fields.contains(&field.number()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_by_group_version_and_meta_types_everywhere() {
        let name = |v: &str, k: &str| message_for(v, k).expect("pool").map(|m| m.full_name().to_string());
        assert_eq!(name("v1", "Pod").as_deref(), Some("api.core.v1.Pod"));
        assert_eq!(name("apps/v1", "Deployment").as_deref(), Some("api.apps.v1.Deployment"));
        assert_eq!(name("rbac.authorization.k8s.io/v1", "Role").as_deref(), Some("api.rbac.v1.Role"));
        assert_eq!(name("apps/v1", "DeleteOptions").as_deref(), Some("apimachinery.pkg.apis.meta.v1.DeleteOptions"));
        assert_eq!(
            name("metrics.k8s.io/v1beta1", "NodeMetrics").as_deref(),
            Some("metrics.pkg.apis.metrics.v1beta1.NodeMetrics")
        );
        assert_eq!(name("example.com/v1", "Widget"), None);
    }

    /// Every message of the descriptors is in the zero-field table, but for those Go
    /// marshals by hand (the encoder writes them itself): the table and the protos are of the
    /// same release.
    #[test]
    fn the_zero_field_table_covers_every_message_and_names_real_fields() {
        let hand_written = ["Quantity", "QuantityValue", "Time", "MicroTime", "ExtraValue", "Verbs"];
        let pool = pool().expect("pool");
        for message in pool.all_messages() {
            if message.is_map_entry() || hand_written.contains(&message.name()) {
                continue;
            }
            let fields = ZERO_FIELDS.get(message.full_name());
            let fields = fields.unwrap_or_else(|| panic!("{} is not in zero_fields.txt", message.full_name()));
            for number in fields {
                assert!(message.get_field(*number).is_some(), "{}: no field {number}", message.full_name());
            }
        }
        for name in ZERO_FIELDS.keys() {
            assert!(pool.get_message_by_name(name).is_some(), "zero_fields.txt: {name} is not a message");
        }
    }

    #[test]
    fn json_names_name_real_fields() {
        let pool = pool().expect("pool");
        assert!(JSON_NAMES.len() >= 30);
        for ((message, number), name) in JSON_NAMES.iter() {
            let message = pool.get_message_by_name(message).unwrap_or_else(|| panic!("{message} is not a message"));
            let field =
                message.get_field(*number).unwrap_or_else(|| panic!("{}: no field {number}", message.full_name()));
            assert_eq!(json_name(&message, &field), *name);
            assert_ne!(field.json_name(), *name);
        }
        let reference = pool.get_message_by_name("api.authentication.v1.BoundObjectReference").expect("message");
        let uid = reference.get_field_by_name("uID").expect("field");
        assert_eq!(json_name(&reference, &uid), "uid");
    }
}
