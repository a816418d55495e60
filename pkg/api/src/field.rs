//! Field errors, as Kubernetes' validation reports them (`field.Error`), and the fields a
//! kind's type does not know.
//!
//! A strategy ([`crate::strategy`]) decodes a body into the kind's k8s-openapi type; fields
//! that the type does not know are dropped on the way, as Kubernetes drops them;
//! [`unknown_fields`] finds them so that `fieldValidation=Strict` can reject them instead.

use std::fmt;

use serde_json::Value;

/// The ways a field can be wrong; each maps onto a Kubernetes `StatusCause` reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing or empty (`FieldValueRequired`).
    Required,
    /// The value is malformed (`FieldValueInvalid`); holds the offending value.
    Invalid(String),
    /// The value repeats one that must be unique (`FieldValueDuplicate`).
    Duplicate(String),
    /// The field may not be set or changed (`FieldValueForbidden`).
    Forbidden,
    /// The value is not one of a fixed set (`FieldValueNotSupported`).
    NotSupported {
        /// What the user sent.
        value: String,
        /// What would have been accepted.
        supported: Vec<String>,
    },
    /// The value is longer than allowed (`FieldValueTooLong`).
    TooLong,
    /// The value is malformed (`FieldValueInvalid`), holding it as JSON so that it prints as
    /// Kubernetes prints a bad value: strings quoted, numbers and booleans bare (`Invalid value:
    /// 20`), anything else as its JSON; `None` when the value is omitted (objects and lists that
    /// fail a CEL rule: `Invalid value: <detail>`).
    InvalidJson(Option<Value>),
    /// The value repeats one that must be unique (`FieldValueDuplicate`), held as JSON like
    /// [`FieldErrorKind::InvalidJson`].
    DuplicateJson(Option<Value>),
    /// The value is not one of a fixed set (`FieldValueNotSupported`), held as JSON like
    /// [`FieldErrorKind::InvalidJson`] (an `enum` of a schema may list numbers).
    NotSupportedJson {
        /// What the user sent.
        value: Value,
        /// What would have been accepted, each as Kubernetes quotes it.
        supported: Vec<String>,
    },
    /// The list or map has more entries than allowed (`FieldValueTooMany`); holds how many it has.
    TooMany(usize),
    /// The value is not of the type (or format) the schema names (`FieldValueTypeInvalid`),
    /// held as JSON and printed like [`FieldErrorKind::InvalidJson`]: `Invalid value: "string"`.
    TypeInvalid(Value),
}

/// One field that failed validation, with its path (`spec.containers[0].image`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The field's path, as Kubernetes writes it: `spec.containers[0].name`.
    pub field: String,
    /// Extra explanation, may be empty.
    pub detail: String,
}

impl FieldError {
    /// A missing required field.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind: FieldErrorKind::Required, field: field.into(), detail: detail.into() }
    }

    /// A malformed value.
    pub fn invalid(field: impl Into<String>, value: impl fmt::Display, detail: impl Into<String>) -> Self {
        Self { kind: FieldErrorKind::Invalid(value.to_string()), field: field.into(), detail: detail.into() }
    }

    /// A value that must be unique but repeats.
    pub fn duplicate(field: impl Into<String>, value: impl fmt::Display) -> Self {
        Self { kind: FieldErrorKind::Duplicate(value.to_string()), field: field.into(), detail: String::new() }
    }

    /// A field that may not be set or changed.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind: FieldErrorKind::Forbidden, field: field.into(), detail: detail.into() }
    }

    /// A value outside a fixed set.
    pub fn not_supported(field: impl Into<String>, value: impl fmt::Display, supported: &[&str]) -> Self {
        Self {
            kind: FieldErrorKind::NotSupported {
                value: value.to_string(),
                supported: supported.iter().map(|s| (*s).to_string()).collect(),
            },
            field: field.into(),
            detail: String::new(),
        }
    }

    /// A value that is too long.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self { kind: FieldErrorKind::TooLong, field: field.into(), detail: format!("must have at most {max} bytes") }
    }

    /// A malformed value, shown as Kubernetes shows it (`Invalid value: 20`, `Invalid value:
    /// "x"`): what schema validation of custom resources reports.
    pub fn invalid_json(field: impl Into<String>, value: &Value, detail: impl Into<String>) -> Self {
        Self { kind: FieldErrorKind::InvalidJson(Some(value.clone())), field: field.into(), detail: detail.into() }
    }

    /// A value of the wrong type or format, as Kubernetes reports kube-openapi's type checks
    /// of custom resources (`Invalid value: "string": spec.size in body must be of type
    /// integer: "string"`, reason `FieldValueTypeInvalid`).
    pub fn type_invalid(field: impl Into<String>, value: &Value, detail: impl Into<String>) -> Self {
        Self { kind: FieldErrorKind::TypeInvalid(value.clone()), field: field.into(), detail: detail.into() }
    }

    /// Whether this error keeps a custom resource's CEL rules from running, as in Kubernetes
    /// (`hasBlockingErr`): a missing, unsupported, too long or wrongly typed value, or too
    /// many items, means the object lacks the shape the rules were written for.
    pub fn blocks_rules(&self) -> bool {
        matches!(
            self.kind,
            FieldErrorKind::Required
                | FieldErrorKind::NotSupported { .. }
                | FieldErrorKind::NotSupportedJson { .. }
                | FieldErrorKind::TooLong
                | FieldErrorKind::TooMany(_)
                | FieldErrorKind::TypeInvalid(_)
        )
    }

    /// A malformed object or list whose value is left out of the message (`Invalid value:
    /// <detail>`), as Kubernetes reports a failed CEL rule on them.
    pub fn invalid_omitted(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind: FieldErrorKind::InvalidJson(None), field: field.into(), detail: detail.into() }
    }

    /// A repeated value, shown as JSON (`Duplicate value: {"name":"a"}`); `None` leaves it out.
    pub fn duplicate_json(field: impl Into<String>, value: Option<&Value>) -> Self {
        Self { kind: FieldErrorKind::DuplicateJson(value.cloned()), field: field.into(), detail: String::new() }
    }

    /// A value outside a fixed set, shown as JSON (`Unsupported value: 3: supported values:
    /// "1", "2"`).
    pub fn not_supported_json(field: impl Into<String>, value: &Value, supported: Vec<String>) -> Self {
        Self {
            kind: FieldErrorKind::NotSupportedJson { value: value.clone(), supported },
            field: field.into(),
            detail: String::new(),
        }
    }

    /// A string longer than a schema's `maxLength`, in Kubernetes' current words (`Too long: may
    /// not be more than 5 bytes`).
    pub fn too_long_bytes(field: impl Into<String>, max: i64) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self {
            kind: FieldErrorKind::TooLong,
            field: field.into(),
            detail: format!("may not be more than {max} {unit}"),
        }
    }

    /// A list (or map) with more than `max` entries (`Too many: 4: must have at most 3 items`).
    pub fn too_many(field: impl Into<String>, actual: usize, max: i64) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        Self {
            kind: FieldErrorKind::TooMany(actual),
            field: field.into(),
            detail: format!("must have at most {max} {unit}"),
        }
    }

    /// The `StatusCause.reason` Kubernetes uses for this error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) | FieldErrorKind::InvalidJson(_) => "FieldValueInvalid",
            FieldErrorKind::Duplicate(_) | FieldErrorKind::DuplicateJson(_) => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotSupported { .. } | FieldErrorKind::NotSupportedJson { .. } => "FieldValueNotSupported",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany(_) => "FieldValueTooMany",
            FieldErrorKind::TypeInvalid(_) => "FieldValueTypeInvalid",
        }
    }

    /// The `StatusCause.message`: the error without the field path, e.g. `Required value`.
    pub fn message(&self) -> String {
        let with_detail = |head: String| {
            if self.detail.is_empty() { head } else { format!("{head}: {}", self.detail) }
        };
        match &self.kind {
            FieldErrorKind::Required => with_detail("Required value".into()),
            FieldErrorKind::Invalid(v) => with_detail(format!("Invalid value: {v:?}")),
            FieldErrorKind::Duplicate(v) => with_detail(format!("Duplicate value: {v:?}")),
            FieldErrorKind::Forbidden => with_detail("Forbidden".into()),
            FieldErrorKind::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                with_detail(format!("Unsupported value: {value:?}: supported values: {}", list.join(", ")))
            }
            FieldErrorKind::TooLong => with_detail("Too long".into()),
            FieldErrorKind::InvalidJson(Some(v)) | FieldErrorKind::TypeInvalid(v) => {
                with_detail(format!("Invalid value: {}", bad_value(v)))
            }
            FieldErrorKind::InvalidJson(None) => with_detail("Invalid value".into()),
            FieldErrorKind::DuplicateJson(Some(v)) => with_detail(format!("Duplicate value: {}", bad_value(v))),
            FieldErrorKind::DuplicateJson(None) => with_detail("Duplicate value".into()),
            FieldErrorKind::NotSupportedJson { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                with_detail(format!("Unsupported value: {}: supported values: {}", bad_value(value), list.join(", ")))
            }
            FieldErrorKind::TooMany(n) => with_detail(format!("Too many: {n}")),
        }
    }
}

/// A bad value as Kubernetes' `field.Error` prints it: a string quoted, a float in Go's `%v`
/// (`1.5`, `1e+06`), anything else as its JSON.
pub fn bad_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) if n.is_f64() => n.as_f64().map(go_float).unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

/// A float as Go's `%v` writes it: the shortest digits that round-trip, in exponent form
/// (`1e+06`, `1e-05`) when the decimal exponent is below -4 or at least 6.
pub fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    let sci = format!("{f:e}"); // shortest round-trip digits: "1.5e6", "-2e-7"
    let Some((mantissa, exp)) = sci.split_once('e') else { return f.to_string() };
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        f.to_string()
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

/// Paths of the fields in `original` that are absent from `decoded`, the same object after a
/// round trip through its typed form: the fields the type does not know.
///
/// `null` values are ignored (they mean "unset"). Paths are written like Kubernetes'
/// strict-decoding errors: `.spec.containers[0].imagee`.
pub fn unknown_fields(original: &Value, decoded: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_unknown(original, decoded, &mut String::new(), &mut out);
    out
}

fn collect_unknown(original: &Value, decoded: &Value, path: &mut String, out: &mut Vec<String>) {
    match (original, decoded) {
        (Value::Object(o), Value::Object(d)) => {
            for (key, value) in o {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                match d.get(key) {
                    Some(dv) => collect_unknown(value, dv, path, out),
                    None if !value.is_null() => out.push(path.clone()),
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(o), Value::Array(d)) => {
            for (i, (ov, dv)) in o.iter().zip(d).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                collect_unknown(ov, dv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The field paths of `errs`, in order: what most validation tests compare.
    pub(crate) fn fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn unknown_fields_names_each_field_the_type_dropped() {
        let original = json!({"spec": {"containers": [{"name": "a", "imagee": "x"}], "bogus": 1, "n": null}});
        let decoded = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(unknown_fields(&original, &decoded), vec![".spec.bogus", ".spec.containers[0].imagee"]);
    }

    #[test]
    fn field_error_messages_read_like_kubernetes() {
        assert_eq!(
            FieldError::required("spec.containers[0].image", "").to_string(),
            "spec.containers[0].image: Required value"
        );
        assert_eq!(
            FieldError::not_supported("spec.restartPolicy", "X", &["Always", "Never"]).to_string(),
            "spec.restartPolicy: Unsupported value: \"X\": supported values: \"Always\", \"Never\""
        );
    }
}
