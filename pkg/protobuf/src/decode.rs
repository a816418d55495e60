//! Reading: a protobuf body or watch frame into Kubernetes JSON (see the crate docs for the
//! mapping, and [`crate::encode`] for the watch frame's format).

use base64::Engine;
use prost_reflect::{DynamicMessage, MapKey, ReflectMessage, Value as Field};
use serde_json::{Map, Value, json};

use crate::{MAGIC, is_inline, is_protobuf, json_name, message_for, pool};

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body does not start with `k8s\0`.
    #[error("the protobuf body does not start with the Kubernetes magic bytes")]
    NoMagic,
    /// The bytes are not the message they claim to be.
    #[error("the protobuf body is malformed: {0}")]
    Malformed(String),
    /// No message is known for this apiVersion and kind.
    #[error("no protobuf message is known for {api_version}, Kind={kind}")]
    UnknownKind {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },
    /// The descriptors compiled into this binary do not load (a build defect).
    #[error("the Kubernetes protobuf descriptors do not load: {0}")]
    Descriptors(String),
}

/// Reads a Kubernetes protobuf body into its JSON object, with `apiVersion` and `kind`.
///
/// # Errors
/// [`DecodeError`] naming what is wrong; nothing in the body can make it panic.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let rest = body.strip_prefix(MAGIC.as_slice()).ok_or(DecodeError::NoMagic)?;
    let unknown_type = pool()?
        .get_message_by_name("apimachinery.pkg.runtime.Unknown")
        .ok_or_else(|| DecodeError::Descriptors("no runtime.Unknown".into()))?;
    let unknown = DynamicMessage::decode(unknown_type, rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let text = |message: &DynamicMessage, name: &str| {
        message.get_field_by_name(name).and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    };
    let type_meta = unknown.get_field_by_name("typeMeta");
    let type_meta = type_meta.as_ref().and_then(|v| v.as_message());
    let api_version = type_meta.map(|m| text(m, "apiVersion")).unwrap_or_default();
    let kind = type_meta.map(|m| text(m, "kind")).unwrap_or_default();
    let encoding = text(&unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(DecodeError::Malformed(format!("contentEncoding {encoding:?} is not supported")));
    }
    if api_version.is_empty() || kind.is_empty() {
        return Err(DecodeError::Malformed("the envelope names no apiVersion and kind".into()));
    }
    let message = message_for(&api_version, &kind)?
        .ok_or_else(|| DecodeError::UnknownKind { api_version: api_version.clone(), kind: kind.clone() })?;
    let raw = unknown.get_field_by_name("raw").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
    let object = DynamicMessage::decode(message, raw.as_ref()).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    if let Value::Object(fields) = to_json(&object)? {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// Reads one frame of a protobuf watch stream (`4-byte big-endian length` + `WatchEvent`, as
/// [`crate::encode_watch_event`] writes it) into the event's type and object.
///
/// # Errors
/// [`DecodeError::Malformed`] if the length prefix does not match the frame or the event does
/// not read; the object's own errors as [`decode`]'s.
pub fn decode_watch_event(frame: &[u8]) -> Result<(String, Value), DecodeError> {
    let (length, event) = frame
        .split_first_chunk::<4>()
        .ok_or_else(|| DecodeError::Malformed("a watch frame shorter than its length prefix".into()))?;
    if usize::try_from(u32::from_be_bytes(*length)).ok() != Some(event.len()) {
        return Err(DecodeError::Malformed(format!(
            "the watch frame says {} bytes and holds {}",
            u32::from_be_bytes(*length),
            event.len()
        )));
    }
    let descriptor = pool()?
        .get_message_by_name("apimachinery.pkg.apis.meta.v1.WatchEvent")
        .ok_or_else(|| DecodeError::Descriptors("no meta.v1.WatchEvent".into()))?;
    let event = DynamicMessage::decode(descriptor, event).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let event_type = event.get_field_by_name("type").and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    let object = match to_json(&event)? {
        Value::Object(mut members) => members.remove("object").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Ok((event_type, object))
}

/// Pointer string fields whose empty value means something (kept when empty).
const KEEP_EMPTY_STRING: &[&str] = &["storageClassName"];

/// `message` as Kubernetes JSON (see the module docs).
fn to_json(message: &DynamicMessage) -> Result<Value, DecodeError> {
    let descriptor = message.descriptor();
    let field = |name: &str| message.get_field_by_name(name).map(std::borrow::Cow::into_owned);
    let number = |name: &str| field(name).and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)));
    match descriptor.full_name() {
        "apimachinery.pkg.api.resource.Quantity" | "apimachinery.pkg.api.resource.QuantityValue" => {
            return Ok(json!(field("string").and_then(|v| v.as_str().map(String::from)).unwrap_or_default()));
        }
        "apimachinery.pkg.util.intstr.IntOrString" => {
            return Ok(if number("type") == Some(1) {
                json!(field("strVal").and_then(|v| v.as_str().map(String::from)).unwrap_or_default())
            } else {
                json!(number("intVal").unwrap_or(0))
            });
        }
        name @ ("apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime") => {
            if !message.has_field_by_name("seconds") && !message.has_field_by_name("nanos") {
                return Ok(Value::Null); // Go's zero time
            }
            let micro = name.ends_with("MicroTime");
            // Go's Time keeps whole seconds on the wire; MicroTime microseconds.
            let nanos = if micro { number("nanos").unwrap_or(0) / 1000 * 1000 } else { 0 };
            let nanos = i32::try_from(nanos).map_err(|_| DecodeError::Malformed(format!("{name}: bad nanos")))?;
            let at = jiff::Timestamp::new(number("seconds").unwrap_or(0), nanos)
                .map_err(|e| DecodeError::Malformed(format!("{name}: {e}")))?;
            let format = if micro { "%Y-%m-%dT%H:%M:%S.%6fZ" } else { "%Y-%m-%dT%H:%M:%SZ" };
            return Ok(json!(at.strftime(format).to_string()));
        }
        "apimachinery.pkg.apis.meta.v1.Duration" => return Ok(json!(go_duration(number("duration").unwrap_or(0)))),
        name @ ("apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.JSON") => {
            let raw = field(if name.ends_with("FieldsV1") { "Raw" } else { "raw" });
            let raw = raw.and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&raw).map_err(|e| DecodeError::Malformed(format!("{name}: {e}")));
        }
        "apimachinery.pkg.runtime.RawExtension" => {
            let raw = field("raw").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            if is_protobuf(&raw) {
                return decode(&raw);
            }
            return serde_json::from_slice(&raw).map_err(|e| DecodeError::Malformed(format!("RawExtension: {e}")));
        }
        // A CRD schema's either-or members (Go's custom JSON in apiextensions' marshal.go):
        // a bool or a schema, a schema or an array of schemas or of strings.
        name if name.starts_with("apiextensions_apiserver.") && descriptor.name().starts_with("JSONSchemaPropsOr") => {
            let schema = field("schema").filter(|_| message.has_field_by_name("schema"));
            let array = ["jSONSchemas", "property"]
                .into_iter()
                .find_map(&field)
                .filter(|v| v.as_list().is_some_and(|items| !items.is_empty()));
            return Ok(match (array, schema) {
                (Some(array), _) => value_json(&array)?,
                (None, Some(schema)) => value_json(&schema)?,
                (None, None) if descriptor.name() == "JSONSchemaPropsOrBool" => {
                    json!(field("allows").and_then(|v| v.as_bool()).unwrap_or(false))
                }
                (None, None) => Value::Null,
            });
        }
        name if matches!(name.rsplit('.').next(), Some("ExtraValue" | "Verbs")) => {
            // Go named slices (`type ExtraValue []string`): an array in JSON.
            return Ok(field("items").map(|v| value_json(&v)).transpose()?.unwrap_or_else(|| json!([])));
        }
        _ => {}
    }
    let mut out = Map::new();
    for (field, value) in message.fields() {
        if matches!(value, Field::String(s) if s.is_empty()) && !KEEP_EMPTY_STRING.contains(&field.json_name()) {
            continue;
        }
        let json = value_json(value)?;
        if is_inline(&field) {
            if let Value::Object(members) = json {
                out.extend(members);
            }
            continue;
        }
        out.insert(json_name(&descriptor, &field).to_string(), json);
    }
    Ok(Value::Object(out))
}

fn value_json(value: &Field) -> Result<Value, DecodeError> {
    Ok(match value {
        Field::Bool(b) => json!(b),
        Field::I32(i) => json!(i),
        Field::I64(i) => json!(i),
        Field::U32(i) => json!(i),
        Field::U64(i) => json!(i),
        Field::F32(x) => go_float(f64::from(*x)),
        Field::F64(x) => go_float(*x),
        Field::String(s) => json!(s),
        Field::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Field::EnumNumber(n) => json!(n),
        Field::Message(m) => to_json(m)?,
        Field::List(items) => Value::Array(items.iter().map(value_json).collect::<Result<_, _>>()?),
        Field::Map(entries) => {
            let mut sorted: Vec<(String, Value)> =
                entries.iter().map(|(k, v)| Ok((map_key(k), value_json(v)?))).collect::<Result<_, DecodeError>>()?;
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(sorted.into_iter().collect())
        }
    })
}

/// A float as Go's JSON writes it: whole numbers without a fraction (`100`, not `100.0`).
fn go_float(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 { json!(x as i64) } else { json!(x) }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(i) => i.to_string(),
        MapKey::I64(i) => i.to_string(),
        MapKey::U32(i) => i.to_string(),
        MapKey::U64(i) => i.to_string(),
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let mut rest = nanos.unsigned_abs();
    let hours = rest / 3_600_000_000_000;
    rest %= 3_600_000_000_000;
    let minutes = rest / 60_000_000_000;
    rest %= 60_000_000_000;
    let mut out = String::from(if nanos < 0 { "-" } else { "" });
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    let seconds = rest / 1_000_000_000;
    let fraction = rest % 1_000_000_000;
    if fraction == 0 {
        out.push_str(&format!("{seconds}s"));
    } else {
        let digits = format!("{fraction:09}");
        out.push_str(&format!("{seconds}.{}s", digits.trim_end_matches('0')));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/kubectl-1.37/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// What `kubectl create ... --dry-run=client -o json` printed for the same command.
    fn kubectl_json(name: &str) -> Value {
        serde_json::from_slice(&fixture(name)).expect("kubectl's JSON")
    }

    /// `decoded` holds every field of `expected` with the same value (it may hold more: the
    /// zero scalars Go writes and JSON omits).
    fn assert_covers(decoded: &Value, expected: &Value, path: &str) {
        match (decoded, expected) {
            (Value::Object(d), Value::Object(e)) => {
                for (key, value) in e {
                    if key == "creationTimestamp" && value.is_null() {
                        continue;
                    }
                    let got = d.get(key).unwrap_or_else(|| panic!("{path}.{key} missing in {decoded}"));
                    assert_covers(got, value, &format!("{path}.{key}"));
                }
            }
            (Value::Array(d), Value::Array(e)) => {
                assert_eq!(d.len(), e.len(), "{path}");
                for (i, (got, want)) in d.iter().zip(e).enumerate() {
                    assert_covers(got, want, &format!("{path}[{i}]"));
                }
            }
            _ => assert_eq!(decoded, expected, "{path}"),
        }
    }

    #[test]
    fn kubectl_create_bodies_decode_to_what_kubectl_prints_as_json() {
        for name in ["configmap", "crb", "deployment", "namespace", "quota", "rolebinding", "secret", "service"] {
            let decoded = decode(&fixture(&format!("b_{name}.bin"))).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_covers(&decoded, &kubectl_json(&format!("t_{name}.json")), name);
        }
    }

    #[test]
    fn review_and_token_requests_decode() {
        let ssar = decode(&fixture("b_ssar.bin")).expect("ssar");
        assert_eq!(ssar["kind"], "SelfSubjectAccessReview");
        assert_eq!(ssar["spec"]["resourceAttributes"]["verb"], "get");
        let ssr = decode(&fixture("b_ssr.bin")).expect("ssr");
        assert_eq!(ssr["apiVersion"], "authentication.k8s.io/v1");
        let token = decode(&fixture("b_token.bin")).expect("token");
        assert_eq!(token["kind"], "TokenRequest");
        assert_eq!(token["spec"]["expirationSeconds"], 3600);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(matches!(decode(b"{}"), Err(DecodeError::NoMagic)));
        assert!(matches!(decode(b"k8s\0\xff\xff\xff"), Err(DecodeError::Malformed(_))));
        let mut truncated = fixture("b_deployment.bin");
        truncated.truncate(truncated.len() / 2);
        assert!(decode(&truncated).is_err());
        // Every prefix and a flipped byte at every position: an error or a value, never a panic.
        let body = fixture("b_service.bin");
        for end in 0..body.len() {
            let _ = decode(&body[..end]);
        }
        for at in 4..body.len() {
            let mut flipped = body.clone();
            flipped[at] ^= 0xff;
            let _ = decode(&flipped);
        }
    }

    #[test]
    fn go_durations_read_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000 + 500_000_000), "1h0m0.5s");
        assert_eq!(go_duration(-2_000_000_000), "-2s");
    }
}
