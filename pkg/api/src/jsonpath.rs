//! The JSONPath subset CustomResourceDefinitions use in `additionalPrinterColumns` and
//! `selectableFields` (Kubernetes' `k8s.io/client-go/util/jsonpath` syntax inside `{}`,
//! written without the braces): `.spec.replicas`, `.metadata.labels.app`,
//! `.spec.items[0].name`, `.spec.items[*].name` and filters such as
//! `.status.conditions[?(@.type=="Ready")].status`.
//!
//! Promises (tests below): a path parses or fails with a one-line reason, never a panic;
//! evaluating never fails, a path that finds nothing gives no values.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name` or `['name']`.
    Field(String),
    /// `[n]`; negative counts from the end.
    Index(i64),
    /// `[*]` or `.*`: every element or value.
    Wildcard,
    /// `[?(@.a.b == "x")]` (or `!=`): the elements whose field at the relative path equals (or
    /// not) the literal; `[?(@.a)]`: those that have the field.
    Filter { path: Vec<String>, test: Option<(bool, Value)> },
}

/// A parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `path` (with or without the surrounding `{}`); it must start with `.`.
    pub fn parse(path: &str) -> Result<JsonPath, String> {
        let text = path.trim();
        let text = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or(text);
        if !text.starts_with('.') {
            return Err(format!("{path:?} must be a JSONPath starting with '.'"));
        }
        let chars: Vec<char> = text.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < chars.len() && !matches!(chars[end], '.' | '[') {
                        end += 1;
                    }
                    let name: String = chars[start..end].iter().collect();
                    if name.contains([']', '(', ')', '"', '\'', ' ']) {
                        return Err(format!("{path:?}: unexpected character in field name {name:?}"));
                    }
                    if name.is_empty() {
                        if start == chars.len() && steps.is_empty() {
                            // `.` alone: the whole object.
                            break;
                        }
                        return Err(format!("{path:?}: empty field name at offset {start}"));
                    }
                    steps.push(if name == "*" { Step::Wildcard } else { Step::Field(name) });
                    i = end;
                }
                '[' => {
                    let close = bracket_end(&chars, i).ok_or_else(|| format!("{path:?}: unclosed '['"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(bracket_step(inner.trim()).map_err(|e| format!("{path:?}: {e}"))?);
                    i = close + 1;
                }
                other => return Err(format!("{path:?}: unexpected {other:?} at offset {i}")),
            }
        }
        Ok(JsonPath { steps })
    }

    /// The values the path finds in `root`, in document order.
    pub fn find<'v>(&self, root: &'v Value) -> Vec<&'v Value> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for value in current {
                match step {
                    Step::Field(name) => next.extend(value.get(name)),
                    Step::Index(n) => {
                        if let Some(items) = value.as_array() {
                            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
                            let at = if *n < 0 { len + n } else { *n };
                            next.extend(usize::try_from(at).ok().and_then(|at| items.get(at)));
                        }
                    }
                    Step::Wildcard => match value {
                        Value::Array(items) => next.extend(items),
                        Value::Object(fields) => next.extend(fields.values()),
                        _ => {}
                    },
                    Step::Filter { path, test } => {
                        for item in value.as_array().into_iter().flatten() {
                            let field = path.iter().try_fold(item, |v, name| v.get(name));
                            let keep = match (field, test) {
                                (Some(_), None) => true,
                                (Some(found), Some((equal, literal))) => loosely_equal(found, literal) == *equal,
                                (None, Some((false, _))) => true,
                                (None, _) => false,
                            };
                            if keep {
                                next.push(item);
                            }
                        }
                    }
                }
            }
            current = next;
        }
        current
    }

    /// The field names of a plain path (`.spec.replicas` → `["spec", "replicas"]`), or `None`
    /// when it has indices, wildcards or filters (a scale subresource's paths must be plain).
    pub fn fields(&self) -> Option<Vec<&str>> {
        self.steps
            .iter()
            .map(|step| match step {
                Step::Field(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A literal compared as Kubernetes' JSONPath compares: numbers by value, anything else by its
/// text (`@.port == 80` holds for `80` and `"80"`).
fn loosely_equal(found: &Value, literal: &Value) -> bool {
    match (found, literal) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a == b,
        (a, Value::String(b)) | (Value::String(b), a) => serde_json::to_string(a).is_ok_and(|text| text == *b),
        (a, b) => a == b,
    }
}

/// The index of the `]` closing the `[` at `open`, skipping quoted text and nested brackets.
fn bracket_end(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote = None;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if *c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(*c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn bracket_step(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(quoted) = unquote(inner) {
        return Ok(Step::Field(quoted));
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Ok(Step::Index(n));
    }
    let filter = inner
        .strip_prefix("?(")
        .and_then(|f| f.strip_suffix(')'))
        .ok_or_else(|| format!("unsupported subscript [{inner}]"))?
        .trim();
    let (lhs, test) = match filter.find("==").map(|at| (at, true)).or_else(|| filter.find("!=").map(|at| (at, false))) {
        Some((at, equal)) => {
            let literal = filter[at + 2..].trim();
            let value = match unquote(literal) {
                Some(text) => Value::String(text),
                None => serde_json::from_str(literal).map_err(|_| format!("unsupported literal {literal}"))?,
            };
            (filter[..at].trim(), Some((equal, value)))
        }
        None => (filter, None),
    };
    let relative = lhs.strip_prefix("@.").ok_or_else(|| format!("a filter must test a field of @, not {lhs}"))?;
    let path: Vec<String> = relative.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!("empty field name in filter {lhs}"));
    }
    Ok(Step::Filter { path, test })
}

fn unquote(text: &str) -> Option<String> {
    ['\'', '"'].into_iter().find_map(|q| text.strip_prefix(q).and_then(|t| t.strip_suffix(q)).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find(path: &str, doc: &Value) -> Vec<Value> {
        JsonPath::parse(path).expect("parses").find(doc).into_iter().cloned().collect()
    }

    #[test]
    fn fields_indices_wildcards_and_filters_find_what_kubectl_finds() {
        let doc = json!({
            "spec": {"replicas": 3, "items": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}}
        });
        assert_eq!(find(".spec.replicas", &doc), vec![json!(3)]);
        assert_eq!(find("{.spec.items[1].name}", &doc), vec![json!("b")]);
        assert_eq!(find(".spec.items[-1].name", &doc), vec![json!("b")]);
        assert_eq!(find(".spec.items[*].name", &doc), vec![json!("a"), json!("b")]);
        assert_eq!(find(".status.conditions[?(@.type==\"Ready\")].status", &doc), vec![json!("True")]);
        assert_eq!(find(".spec.items[?(@.port == 81)].name", &doc), vec![json!("b")]);
        assert_eq!(find(".metadata.labels['app.kubernetes.io/name']", &doc), vec![json!("web")]);
        assert!(find(".spec.missing.deeper", &doc).is_empty());
        assert!(find(".spec.items[7]", &doc).is_empty());
    }

    #[test]
    fn malformed_paths_are_errors_not_panics() {
        for bad in ["spec.replicas", ".spec..x", ".spec[", ".spec[?(x==1)]", ".a[?(@.b==nope)]", "", ".a]"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_plain_paths_have_fields() {
        assert_eq!(JsonPath::parse(".spec.replicas").expect("parses").fields(), Some(vec!["spec", "replicas"]));
        assert_eq!(JsonPath::parse(".spec.items[0]").expect("parses").fields(), None);
    }
}
