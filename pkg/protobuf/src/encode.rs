//! Writing: Kubernetes JSON into the protobuf bodies and watch frames kube-apiserver writes.
//!
//! The mapping is [`crate::decode`]'s inverse (see the crate docs). Fields are written in
//! field-number order, map entries sorted by key, and the fields Go writes even when zero
//! (`proto/zero_fields.txt`) are written when the JSON omits them, as Go's gogo-generated
//! marshalers do: for the same object, the bytes are kube-apiserver's (every kubectl body in
//! `testdata/kubectl-1.37` is written back byte for byte). They differ where the JSON is not
//! what Go would print: a quantity is written as given (Go writes its canonical form, `"1"`
//! for `"1000m"`), `FieldsV1`, `RawExtension` and a CRD's `JSON` are written as compact JSON
//! with sorted keys (Go keeps the bytes it was given), an empty string in a pointer field is
//! lost on reading (`storageClassName` excepted), and members the 1.35 protos lack are dropped.
//!
//! # Protobuf watch streams
//!
//! For `GET ...?watch=true` with `Accept: application/vnd.kubernetes.protobuf;stream=watch`,
//! kube-apiserver answers `Content-Type: application/vnd.kubernetes.protobuf;stream=watch`
//! and writes each event as one frame:
//!
//! ```text
//! frame  = length event              length: 4 bytes, big-endian uint32, = len(event)
//! event  = meta.v1.WatchEvent        no k8s\0, no runtime.Unknown around it
//!          { 1: type   (string, "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR"),
//!            2: object (runtime.RawExtension { 1: raw }) }
//! raw    = k8s\0 runtime.Unknown     the object as a whole protobuf body, with its
//!          { typeMeta, raw, "", "" }  apiVersion and kind (a Status for ERROR)
//! ```
//!
//! The protobuf media type's stream serializer is the `RawSerializer` (objects without the
//! magic and the `Unknown` wrapper) with the `LengthDelimitedFramer`; the watch handler
//! encodes the object with the negotiated (non-stream) `Serializer` into the event's
//! `RawExtension`, then the event with the stream serializer, into the framer. Sources
//! (Kubernetes 1.35): `staging/src/k8s.io/apimachinery/pkg/runtime/serializer/codec_factory.go`,
//! `staging/src/k8s.io/apimachinery/pkg/runtime/serializer/protobuf/protobuf.go`,
//! `staging/src/k8s.io/apimachinery/pkg/util/framer/framer.go`,
//! `staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/watch.go`,
//! `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/watch.go` (`serveWatchHandler`) and
//! `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/response.go` (`watchEncoder.doEncode`).

use std::fmt;

use base64::Engine;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use crate::{DecodeError, MAGIC, is_inline, json_name, message_for, written_when_zero};

/// How deep messages and JSON may nest: serde_json's own parsing limit, far beyond any real
/// object, and a bound on the encoder's recursion.
const MAX_DEPTH: usize = 128;

/// Why an object could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The value to write is not a JSON object.
    #[error("the object to encode is not a JSON object")]
    NotAnObject,
    /// The object has no (string) `apiVersion` or `kind`.
    #[error("the object to encode has no apiVersion and kind")]
    NoKind,
    /// No message is known for this apiVersion and kind (a custom resource, a JSON-only kind
    /// such as `meta.k8s.io/v1` `Table`): Kubernetes answers such requests in JSON.
    #[error("no protobuf message is known for {api_version}, Kind={kind}")]
    UnknownKind {
        /// The object's apiVersion.
        api_version: String,
        /// The object's kind.
        kind: String,
    },
    /// A member's JSON does not fit its field.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where, as `spec.containers[0].ports[1].containerPort`.
        path: String,
        /// What was expected and found.
        reason: String,
    },
    /// The object nests deeper than any Kubernetes object does.
    #[error("{path}: nested deeper than {MAX_DEPTH} levels")]
    TooDeep {
        /// Where the limit was reached.
        path: String,
    },
    /// A watch event does not fit the 4-byte length of its frame.
    #[error("the watch event is larger than a frame can say ({0} bytes)")]
    TooLarge(usize),
    /// The descriptors compiled into this binary do not load (a build defect).
    #[error("the Kubernetes protobuf descriptors do not load: {0}")]
    Descriptors(String),
}

impl From<DecodeError> for EncodeError {
    fn from(error: DecodeError) -> Self {
        EncodeError::Descriptors(error.to_string())
    }
}

/// Writes a Kubernetes JSON object (with `apiVersion` and `kind`) as the protobuf body
/// kube-apiserver writes for it: `k8s\0` + `runtime.Unknown{typeMeta, raw, "", ""}`.
///
/// JSON members the message lacks are dropped (as protobuf drops what its proto lacks).
///
/// # Errors
/// [`EncodeError`] naming what is wrong and where; nothing in the object can make it panic.
pub fn encode(object: &Value) -> Result<Vec<u8>, EncodeError> {
    encode_at(object, &Path::Root, 0)
}

/// Writes one event of a protobuf watch stream, as one complete frame on the wire: the
/// 4-byte big-endian length and a `meta.v1.WatchEvent` whose object is a whole protobuf body
/// (see the module docs). `event_type` is `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or
/// `ERROR` (with a `Status` object).
///
/// An object with no protobuf message (a custom resource) is embedded as its JSON, which
/// [`crate::decode_watch_event`] reads too; kube-apiserver serves such kinds in JSON only.
///
/// # Errors
/// The object's, as [`encode`]'s; [`EncodeError::TooLarge`] past 4 GiB.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut extension = Vec::new();
    if !object.is_null() {
        let raw = embedded_object(object, &Path::Field(&Path::Root, "object"), 0)?;
        bytes_field(&mut extension, 1, &raw);
    }
    let mut event = Vec::new();
    bytes_field(&mut event, 1, event_type.as_bytes());
    bytes_field(&mut event, 2, &extension);
    let length = u32::try_from(event.len()).map_err(|_| EncodeError::TooLarge(event.len()))?;
    let mut frame = Vec::with_capacity(4 + event.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&event);
    Ok(frame)
}

fn encode_at(object: &Value, path: &Path, depth: usize) -> Result<Vec<u8>, EncodeError> {
    let Value::Object(members) = object else { return Err(EncodeError::NotAnObject) };
    let text = |name: &str| members.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else { return Err(EncodeError::NoKind) };
    let message = message_for(api_version, kind)?
        .ok_or_else(|| EncodeError::UnknownKind { api_version: api_version.into(), kind: kind.into() })?;
    let raw = write_message(&message, members, path, depth + 1)?;
    let mut type_meta = Vec::new();
    bytes_field(&mut type_meta, 1, api_version.as_bytes());
    bytes_field(&mut type_meta, 2, kind.as_bytes());
    let mut body = Vec::with_capacity(raw.len() + type_meta.len() + 16);
    body.extend_from_slice(MAGIC);
    bytes_field(&mut body, 1, &type_meta);
    bytes_field(&mut body, 2, &raw);
    bytes_field(&mut body, 3, b""); // contentEncoding
    bytes_field(&mut body, 4, b""); // contentType
    Ok(body)
}

/// The raw bytes of an object embedded in a watch event: its protobuf body, or its JSON if
/// it has no message.
fn embedded_object(object: &Value, path: &Path, depth: usize) -> Result<Vec<u8>, EncodeError> {
    match encode_at(object, path, depth) {
        Err(EncodeError::NotAnObject | EncodeError::NoKind | EncodeError::UnknownKind { .. }) => {
            json_bytes(object, path, depth)
        }
        result => result,
    }
}

/// A member's place in the object, for errors; built only when one is reported.
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
    Key(&'a Path<'a>, &'a str),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => write!(f, "{name}"),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
            Path::Key(parent, key) => write!(f, "{parent}[{key}]"),
        }
    }
}

fn invalid(path: &Path, expected: &str, found: &Value) -> EncodeError {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    EncodeError::Invalid { path: path.to_string(), reason: format!("expected {expected}, found {found}") }
}

fn bad(path: &Path, reason: String) -> EncodeError {
    EncodeError::Invalid { path: path.to_string(), reason }
}

// --- wire format -------------------------------------------------------------------------

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn tag(out: &mut Vec<u8>, number: u32, wire_type: u32) {
    varint(out, u64::from(number << 3 | wire_type));
}

fn bytes_field(out: &mut Vec<u8>, number: u32, data: &[u8]) {
    tag(out, number, LENGTH_DELIMITED);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    tag(out, number, VARINT);
    varint(out, value);
}

// --- messages ----------------------------------------------------------------------------

const QUANTITY: &str = "apimachinery.pkg.api.resource.Quantity";
const QUANTITY_VALUE: &str = "apimachinery.pkg.api.resource.QuantityValue";
const INT_OR_STRING: &str = "apimachinery.pkg.util.intstr.IntOrString";
const TIME: &str = "apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "apimachinery.pkg.runtime.RawExtension";
const WATCH_EVENT: &str = "apimachinery.pkg.apis.meta.v1.WatchEvent";
/// Go's `time.Time{}` in Unix seconds: Go writes an empty message for it.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Go's named slices (`type ExtraValue []string`), a message of `items` on the wire.
fn is_named_slice(message: &MessageDescriptor) -> bool {
    matches!(message.name(), "ExtraValue" | "Verbs")
}

/// apiextensions' `JSON`: raw JSON bytes, as `FieldsV1`.
fn is_crd_json(message: &MessageDescriptor) -> bool {
    message.name() == "JSON" && message.package_name().starts_with("apiextensions_apiserver.")
}

/// apiextensions' `JSONSchemaPropsOrBool`, `...OrArray`, `...OrStringArray`.
fn is_crd_either(message: &MessageDescriptor) -> bool {
    message.name().starts_with("JSONSchemaPropsOr") && message.package_name().starts_with("apiextensions_apiserver.")
}

/// The fields of `message` from the JSON members `object`, in field-number order.
fn write_message(
    message: &MessageDescriptor,
    object: &Map<String, Value>,
    path: &Path,
    depth: usize,
) -> Result<Vec<u8>, EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep { path: path.to_string() });
    }
    let mut fields: Vec<FieldDescriptor> = message.fields().collect();
    fields.sort_by_key(FieldDescriptor::number);
    let mut out = Vec::new();
    for field in &fields {
        if is_inline(field) {
            // An embedded Go struct: its members are the parent's.
            if let Kind::Message(inline) = field.kind() {
                let bytes = write_message(&inline, object, path, depth + 1)?;
                if !bytes.is_empty() || written_when_zero(message, field) {
                    bytes_field(&mut out, field.number(), &bytes);
                }
            }
            continue;
        }
        let name = json_name(message, field);
        let path = Path::Field(path, name);
        match object.get(name).filter(|v| !v.is_null()) {
            None if written_when_zero(message, field) => {
                write_zero(&mut out, field.number(), &field.kind(), &path, depth)?
            }
            None => {}
            Some(value) if message.full_name() == WATCH_EVENT && field.name() == "object" => {
                let mut extension = Vec::new();
                bytes_field(&mut extension, 1, &embedded_object(value, &path, depth)?);
                bytes_field(&mut out, field.number(), &extension);
            }
            Some(value) => write_field(&mut out, field, value, &path, depth)?,
        }
    }
    Ok(out)
}

/// A member present in the JSON: a map, a list or a single value.
fn write_field(
    out: &mut Vec<u8>,
    field: &FieldDescriptor,
    value: &Value,
    path: &Path,
    depth: usize,
) -> Result<(), EncodeError> {
    let number = field.number();
    if field.is_map() {
        let Value::Object(entries) = value else { return Err(invalid(path, "an object", value)) };
        let Kind::Message(entry) = field.kind() else {
            return Err(EncodeError::Descriptors(format!("{}: a map without entries", field.full_name())));
        };
        let (key_field, value_field) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let mut sorted = Vec::with_capacity(entries.len());
        for (key, item) in entries {
            let path = Path::Key(path, key);
            let key_value = map_key(&key_field.kind(), key).ok_or_else(|| bad(&path, "not a valid key".into()))?;
            let mut bytes = Vec::new();
            write_single(&mut bytes, 1, &key_field.kind(), &key_value, &path, depth)?;
            match (item, value_field.kind()) {
                (Value::Null, Kind::Bytes) => {} // a nil []byte
                (Value::Null, kind) => write_zero(&mut bytes, 2, &kind, &path, depth)?,
                (item, kind) => write_single(&mut bytes, 2, &kind, item, &path, depth)?,
            }
            sorted.push((MapKey::of(&key_value), bytes));
        }
        // Go sorts map keys (gogo's sortkeys); serde_json's order is not the keys' for numbers.
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, bytes) in sorted {
            bytes_field(out, number, &bytes);
        }
    } else if field.is_list() {
        let Value::Array(items) = value else { return Err(invalid(path, "an array", value)) };
        let kind = field.kind();
        if field.is_packed() {
            let mut packed = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let mut single = Vec::new();
                write_single(&mut single, 1, &kind, item, &Path::Index(path, index), depth)?;
                packed.extend_from_slice(&single[1..]); // without the one-byte tag of field 1
            }
            bytes_field(out, number, &packed);
        } else {
            for (index, item) in items.iter().enumerate() {
                let path = Path::Index(path, index);
                if item.is_null() {
                    write_zero(out, number, &kind, &path, depth)?;
                } else {
                    write_single(out, number, &kind, item, &path, depth)?;
                }
            }
        }
    } else {
        write_single(out, number, &field.kind(), value, path, depth)?;
    }
    Ok(())
}

/// A map key as the JSON value of its kind (JSON object keys are strings; protobuf's may be
/// numbers or bools).
fn map_key(kind: &Kind, key: &str) -> Option<Value> {
    Some(match kind {
        Kind::String => Value::String(key.into()),
        Kind::Bool => Value::Bool(key.parse().ok()?),
        Kind::Uint32 | Kind::Uint64 | Kind::Fixed32 | Kind::Fixed64 => Value::from(key.parse::<u64>().ok()?),
        _ => Value::from(key.parse::<i64>().ok()?),
    })
}

/// The order Go sorts map keys in.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum MapKey {
    Bool(bool),
    Number(i128),
    String(String),
}

impl MapKey {
    fn of(key: &Value) -> Self {
        match key {
            Value::Bool(b) => MapKey::Bool(*b),
            Value::Number(n) => {
                MapKey::Number(n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)).unwrap_or_default())
            }
            other => MapKey::String(other.as_str().unwrap_or_default().to_string()),
        }
    }
}

/// One value of a field (a singular field, a list item, a map key or value).
fn write_single(
    out: &mut Vec<u8>,
    number: u32,
    kind: &Kind,
    value: &Value,
    path: &Path,
    depth: usize,
) -> Result<(), EncodeError> {
    let integer = |min: i64, max: i64| {
        value.as_i64().filter(|n| (min..=max).contains(n)).ok_or_else(|| invalid(path, "an integer in range", value))
    };
    let unsigned = |max: u64| {
        value.as_u64().filter(|n| *n <= max).ok_or_else(|| invalid(path, "an unsigned integer in range", value))
    };
    let float = || value.as_f64().ok_or_else(|| invalid(path, "a number", value));
    match kind {
        Kind::String => {
            let text = value.as_str().ok_or_else(|| invalid(path, "a string", value))?;
            bytes_field(out, number, text.as_bytes());
        }
        Kind::Bytes => {
            let text = value.as_str().ok_or_else(|| invalid(path, "a base64 string", value))?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| bad(path, format!("not base64: {e}")))?;
            bytes_field(out, number, &data);
        }
        Kind::Bool => {
            let flag = value.as_bool().ok_or_else(|| invalid(path, "a bool", value))?;
            varint_field(out, number, u64::from(flag));
        }
        // Negative int32s are sign-extended to 10 bytes, as Go's uint64(int32) does.
        Kind::Int32 => varint_field(out, number, integer(i32::MIN.into(), i32::MAX.into())? as u64),
        Kind::Int64 => varint_field(out, number, integer(i64::MIN, i64::MAX)? as u64),
        Kind::Uint32 => varint_field(out, number, unsigned(u32::MAX.into())?),
        Kind::Uint64 => varint_field(out, number, unsigned(u64::MAX)?),
        Kind::Sint32 => {
            let n = integer(i32::MIN.into(), i32::MAX.into())?;
            varint_field(out, number, ((n << 1) ^ (n >> 63)) as u64);
        }
        Kind::Sint64 => {
            let n = integer(i64::MIN, i64::MAX)?;
            varint_field(out, number, ((n << 1) ^ (n >> 63)) as u64);
        }
        Kind::Fixed32 => {
            tag(out, number, FIXED32);
            out.extend_from_slice(&(unsigned(u32::MAX.into())? as u32).to_le_bytes());
        }
        Kind::Sfixed32 => {
            tag(out, number, FIXED32);
            out.extend_from_slice(&(integer(i32::MIN.into(), i32::MAX.into())? as i32).to_le_bytes());
        }
        Kind::Fixed64 => {
            tag(out, number, FIXED64);
            out.extend_from_slice(&unsigned(u64::MAX)?.to_le_bytes());
        }
        Kind::Sfixed64 => {
            tag(out, number, FIXED64);
            out.extend_from_slice(&integer(i64::MIN, i64::MAX)?.to_le_bytes());
        }
        Kind::Float => {
            tag(out, number, FIXED32);
            out.extend_from_slice(&(float()? as f32).to_le_bytes());
        }
        Kind::Double => {
            tag(out, number, FIXED64);
            out.extend_from_slice(&float()?.to_le_bytes());
        }
        Kind::Enum(descriptor) => {
            let n = match value {
                Value::String(name) => descriptor.get_value_by_name(name).map(|v| i64::from(v.number())),
                _ => value.as_i64().filter(|n| i32::try_from(*n).is_ok()),
            };
            let n = n.ok_or_else(|| invalid(path, &format!("a value of {}", descriptor.name()), value))?;
            varint_field(out, number, n as u64);
        }
        Kind::Message(message) => {
            let bytes = message_value(message, value, path, depth + 1)?;
            bytes_field(out, number, &bytes);
        }
    }
    Ok(())
}

/// The zero value Go writes for a non-pointer field the JSON omits.
fn write_zero(out: &mut Vec<u8>, number: u32, kind: &Kind, path: &Path, depth: usize) -> Result<(), EncodeError> {
    match kind {
        Kind::String | Kind::Bytes => bytes_field(out, number, b""),
        Kind::Fixed32 | Kind::Sfixed32 | Kind::Float => {
            tag(out, number, FIXED32);
            out.extend_from_slice(&[0; 4]);
        }
        Kind::Fixed64 | Kind::Sfixed64 | Kind::Double => {
            tag(out, number, FIXED64);
            out.extend_from_slice(&[0; 8]);
        }
        Kind::Message(message) => {
            let bytes = zero_message(message, path, depth + 1)?;
            bytes_field(out, number, &bytes);
        }
        _ => varint_field(out, number, 0),
    }
    Ok(())
}

/// Go's zero struct of `message`, as its marshaler writes it.
fn zero_message(message: &MessageDescriptor, path: &Path, depth: usize) -> Result<Vec<u8>, EncodeError> {
    Ok(match message.full_name() {
        QUANTITY | QUANTITY_VALUE => {
            let mut out = Vec::new();
            bytes_field(&mut out, 1, b"0"); // resource.Quantity{}.String()
            out
        }
        TIME | MICRO_TIME | FIELDS_V1 | RAW_EXTENSION => Vec::new(),
        _ if is_named_slice(message) || is_crd_json(message) => Vec::new(),
        _ => write_message(message, &Map::new(), path, depth)?,
    })
}

/// A message from its JSON, with the types whose JSON is not their message.
fn message_value(
    message: &MessageDescriptor,
    value: &Value,
    path: &Path,
    depth: usize,
) -> Result<Vec<u8>, EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep { path: path.to_string() });
    }
    let mut out = Vec::new();
    match message.full_name() {
        QUANTITY | QUANTITY_VALUE => {
            // Written as given: Go would write its canonical form ("1000m" as "1").
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(invalid(path, "a quantity", value)),
            };
            bytes_field(&mut out, 1, text.as_bytes());
        }
        INT_OR_STRING => {
            // type, intVal, strVal: all three always, as Go writes them.
            let (kind, int, text) = match value {
                Value::String(text) => (1, 0, text.as_str()),
                Value::Number(_) => {
                    let n = value.as_i64().filter(|n| i32::try_from(*n).is_ok());
                    (0, n.ok_or_else(|| invalid(path, "an int32 or a string", value))?, "")
                }
                _ => return Err(invalid(path, "an int32 or a string", value)),
            };
            varint_field(&mut out, 1, kind);
            varint_field(&mut out, 2, int as u64);
            bytes_field(&mut out, 3, text.as_bytes());
        }
        name @ (TIME | MICRO_TIME) => {
            let text = value.as_str().ok_or_else(|| invalid(path, "an RFC 3339 time", value))?;
            let at: jiff::Timestamp = text.parse().map_err(|e| bad(path, format!("not an RFC 3339 time: {e}")))?;
            let (seconds, nanos) = (at.as_second(), at.subsec_nanosecond());
            if seconds == GO_ZERO_TIME && nanos == 0 {
                return Ok(out); // Go's zero time: an empty message
            }
            // Time keeps whole seconds on the wire (nanos always 0), MicroTime microseconds.
            let nanos = if name == MICRO_TIME { nanos / 1000 * 1000 } else { 0 };
            varint_field(&mut out, 1, seconds as u64);
            varint_field(&mut out, 2, i64::from(nanos) as u64);
        }
        DURATION => {
            let text = value.as_str().ok_or_else(|| invalid(path, "a duration such as \"1m30s\"", value))?;
            let nanos = parse_go_duration(text).ok_or_else(|| bad(path, format!("not a duration: {text:?}")))?;
            varint_field(&mut out, 1, nanos as u64);
        }
        FIELDS_V1 | RAW_EXTENSION => bytes_field(&mut out, 1, &json_bytes(value, path, depth)?),
        _ if is_crd_json(message) => bytes_field(&mut out, 1, &json_bytes(value, path, depth)?),
        _ if is_crd_either(message) => {
            // Go's custom JSON of a CRD schema's either-or members (apiextensions' marshal.go).
            let (name, members) = match (message.name(), value) {
                ("JSONSchemaPropsOrBool", Value::Bool(allows)) => ("allows", Value::Bool(*allows)),
                ("JSONSchemaPropsOrBool", Value::Object(_)) => ("schema", value.clone()),
                ("JSONSchemaPropsOrArray", Value::Array(_)) => ("jSONSchemas", value.clone()),
                ("JSONSchemaPropsOrStringArray", Value::Array(_)) => ("property", value.clone()),
                (_, Value::Object(_)) => ("schema", value.clone()),
                _ => return Err(invalid(path, "a schema, or an array or bool in its place", value)),
            };
            let mut object = Map::from_iter([(name.to_string(), members)]);
            if name == "schema" && message.name() == "JSONSchemaPropsOrBool" {
                object.insert("allows".into(), Value::Bool(true));
            }
            out = write_message(message, &object, path, depth)?;
        }
        _ if is_named_slice(message) => {
            if !value.is_array() {
                return Err(invalid(path, "an array", value));
            }
            if let Some(items) = message.get_field_by_name("items") {
                write_field(&mut out, &items, value, path, depth)?;
            }
        }
        _ => {
            let Value::Object(members) = value else { return Err(invalid(path, "an object", value)) };
            out = write_message(message, members, path, depth)?;
        }
    }
    Ok(out)
}

/// Compact JSON, after checking it nests no deeper than the limit (serde_json's writer
/// recurses without one).
fn json_bytes(value: &Value, path: &Path, depth: usize) -> Result<Vec<u8>, EncodeError> {
    fn fits(value: &Value, room: usize) -> bool {
        match value {
            Value::Array(items) => room > 0 && items.iter().all(|v| fits(v, room - 1)),
            Value::Object(members) => room > 0 && members.values().all(|v| fits(v, room - 1)),
            _ => true,
        }
    }
    if !fits(value, MAX_DEPTH.saturating_sub(depth)) {
        return Err(EncodeError::TooDeep { path: path.to_string() });
    }
    serde_json::to_vec(value).map_err(|e| bad(path, e.to_string()))
}

/// Go's `time.ParseDuration`: `"1h2m3.5s"`, `"-1.5h"`, `"300ms"`, `"0"` → nanoseconds.
fn parse_go_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let (whole, after) = rest.split_at(digits(rest));
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => after.split_at(digits(after)),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let unit_length = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_length);
        let unit: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut value = whole.checked_mul(unit)?;
        if !fraction.is_empty() {
            // As Go: the leading digits that fit, scaled in floating point.
            let kept = &fraction[..fraction.len().min(18)];
            let scale = 10f64.powi(i32::try_from(kept.len()).ok()?);
            value = value.checked_add((kept.parse::<u64>().ok()? as f64 * (unit as f64 / scale)) as u64)?;
        }
        total = total.checked_add(value)?;
        rest = next;
    }
    if negative { 0i64.checked_sub_unsigned(total) } else { i64::try_from(total).ok() }
}

#[cfg(test)]
mod tests;
