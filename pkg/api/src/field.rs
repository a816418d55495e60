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

    /// The `StatusCause.reason` Kubernetes uses for this error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotSupported { .. } => "FieldValueNotSupported",
            FieldErrorKind::TooLong => "FieldValueTooLong",
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
        }
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
