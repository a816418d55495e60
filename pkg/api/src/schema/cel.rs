//! CEL validation rules (`x-kubernetes-validations`), compiled once with the cel-rust
//! interpreter and evaluated with `self` (and `oldSelf` on updates) bound to the value at the
//! rule's node (`pkg/apiserver/schema/cel`).
//!
//! Values are bound by their schema: `integer` as CEL `int`, `number` as `double` (even when
//! written `1`), strings with `format: date-time` as `timestamp`, objects as maps; at a
//! resource's root `metadata` only shows `name` and `generateName`, as in Kubernetes.
//!
//! Not done: Kubernetes' static type checking (a rule naming a field the schema does not have
//! compiles here and fails when evaluated), its cost estimates and budgets, and the
//! Kubernetes-specific libraries (quantity, IP, CIDR, URL, `format`); the cel-rust standard
//! library with its strings, lists and math extensions is what rules can call.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Map as CelMap, OptionalValue};
use cel::{Context, Env, Program};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrBool, ValidationRule,
};
use serde_json::Value;

use super::{Additional, FieldPath, JsonType, ListType, Node};
use crate::field::FieldError;

/// The environment every rule compiles and runs in: the standard library plus the strings,
/// lists and math extensions.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The extensions only fail on a name declared twice, which a fresh stdlib does not have;
    // a failure leaves the extension out rather than failing every rule.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    let _ = env.add_extension(cel::extensions::math);
    Arc::new(env)
});

/// The reasons a rule may give for its error.
const REASONS: [&str; 4] = ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"];

/// One compiled rule with what its error needs.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    /// The rule as written, trimmed (for `failed rule: <rule>`).
    source: String,
    program: Arc<Program>,
    message: Option<String>,
    message_expression: Option<Arc<Program>>,
    reason: Option<String>,
    /// Where the error goes, relative to the node (`fieldPath`), as a field path.
    field_path: Option<String>,
    uses_old_self: bool,
    optional_old_self: bool,
}

impl Rule {
    /// Checks and compiles `rule` of the schema `props` at `at`
    /// (`...x-kubernetes-validations[0]`); `no_old_self` names the list above whose items
    /// cannot be matched with their old values, if any.
    pub(super) fn compile(
        rule: &ValidationRule,
        props: &JSONSchemaProps,
        at: &FieldPath,
        no_old_self: Option<&str>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        let source = rule.rule.trim().to_string();
        let message = rule.message.as_deref().map(str::trim);
        if source.is_empty() {
            errs.push(FieldError::required(at.child("rule").field(), "rule is not specified"));
        } else if let Some(m) = rule.message.as_deref()
            && !m.is_empty()
            && m.trim().is_empty()
        {
            errs.push(FieldError::invalid(at.child("message").field(), m, "must be non-empty if specified"));
        } else if message.is_some_and(|m| m.contains('\n')) {
            let m = rule.message.as_deref().unwrap_or_default();
            errs.push(FieldError::invalid(at.child("message").field(), m, "must not contain line breaks"));
        } else if source.contains('\n') && message.is_none_or(str::is_empty) {
            let detail = "message must be specified if rule contains line breaks";
            errs.push(FieldError::required(at.child("message").field(), detail));
        }
        let expression = rule.message_expression.as_deref();
        if expression.is_some_and(|e| !e.is_empty() && e.trim().is_empty()) {
            let detail = "messageExpression must be non-empty if specified";
            errs.push(FieldError::required(at.child("messageExpression").field(), detail));
        }
        if let Some(reason) = &rule.reason
            && !REASONS.contains(&reason.as_str())
        {
            let value = Value::from(reason.clone());
            let supported = REASONS.iter().map(|s| (*s).to_string()).collect();
            errs.push(FieldError::not_supported_json(at.child("reason").field(), &value, supported));
        }
        let mut field_path = None;
        if let Some(path) = &rule.field_path {
            if path.trim().is_empty() {
                errs.push(FieldError::invalid(at.child("fieldPath").field(), path, "must be non-empty if specified"));
            } else if path.contains('\n') {
                errs.push(FieldError::invalid(at.child("fieldPath").field(), path, "must not contain line breaks"));
            } else {
                match resolve_field_path(props, path) {
                    Some(p) => field_path = Some(p),
                    None => errs.push(FieldError::invalid(at.child("fieldPath").field(), path, "must be a valid path")),
                }
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }

        let rule_json = serde_json::to_value(rule).unwrap_or(Value::Null);
        let program = match compile(&source) {
            Ok(p) => p,
            Err(e) => {
                let detail = format!("compilation failed: {e}");
                return Err(vec![FieldError::invalid_json(at.child("rule").field(), &rule_json, detail)]);
            }
        };
        let references = program.references();
        let uses_old_self = references.has_variable("oldSelf");
        drop(references);
        if uses_old_self && let Some(list) = no_old_self {
            let detail = format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {list}");
            errs.push(FieldError::invalid(at.child("rule").field(), &source, detail));
        }
        let optional_old_self = rule.optional_old_self == Some(true);
        if optional_old_self && !uses_old_self {
            let detail = "may not be set if oldSelf is not used in rule";
            errs.push(FieldError::invalid_json(at.child("optionalOldSelf").field(), &Value::Bool(true), detail));
        }
        let message_expression = match expression.map(str::trim).filter(|e| !e.is_empty()) {
            None => None,
            Some(e) => match compile(e) {
                Ok(p) => Some(Arc::new(p)),
                Err(err) => {
                    let detail = format!("messageExpression compilation failed: {err}");
                    errs.push(FieldError::invalid_json(at.child("messageExpression").field(), &rule_json, detail));
                    None
                }
            },
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Self {
            source,
            program: Arc::new(program),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
            message_expression,
            reason: rule.reason.clone(),
            field_path,
            uses_old_self,
            optional_old_self,
        })
    }

    /// The message, else `failed rule: <rule>`.
    fn message_or_default(&self) -> String {
        match &self.message {
            Some(m) => m.clone(),
            None => format!("failed rule: {}", self.source),
        }
    }

    /// The message, else the rule: how evaluation errors name the rule.
    fn name(&self) -> &str {
        self.message.as_deref().unwrap_or(&self.source)
    }
}

/// Compiles a CEL expression. Rules come from users: should the interpreter panic on one, the
/// panic is caught and reported as a compilation error instead of taking the server down.
fn compile(source: &str) -> Result<Program, String> {
    match std::panic::catch_unwind(|| ENV.compile(source)) {
        Ok(Ok(program)) => Ok(program),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the CEL interpreter failed on this expression".to_string()),
    }
}

/// Runs a compiled expression, a panic of the interpreter caught as an error.
fn execute(program: &Program, ctx: &Context) -> Result<cel::Value, String> {
    let run = std::panic::AssertUnwindSafe(|| program.execute(ctx));
    match std::panic::catch_unwind(run) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("internal error: the CEL interpreter failed".to_string()),
    }
}

/// A rule's `fieldPath` (`.spec.ports['http'].port`, `.a.b`) resolved against the node's
/// schema into a field path relative to the node (`spec.ports[http].port`); `None` when the
/// schema does not specify it.
fn resolve_field_path(props: &JSONSchemaProps, path: &str) -> Option<String> {
    let mut rest = path.trim();
    let mut schema = props;
    let mut out = FieldPath::default();
    while !rest.is_empty() {
        let (name, next) = if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            (&r[..end], &r[end + 2..])
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (&r[..end], &r[end..])
        } else {
            return None;
        };
        if name.is_empty() {
            return None;
        }
        match schema.properties.as_ref().and_then(|m| m.get(name)) {
            Some(s) => {
                out = out.child(name);
                schema = s;
            }
            None => match &schema.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(s)) => {
                    out = out.key(name);
                    schema = s;
                }
                _ => return None,
            },
        }
        rest = next;
    }
    if out.0.is_empty() { None } else { Some(out.0) }
}

/// Evaluates every rule in the object (the root is a resource).
pub(super) fn validate(root: &Node, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    validate_at(root, object, old, &FieldPath::default(), true)
}

/// Evaluates every rule of `node` and below on `value`, errors under `at`; `resource` when
/// `value` is a resource's root.
pub(super) fn validate_at(
    node: &Node,
    value: &Value,
    old: Option<&Value>,
    at: &FieldPath,
    resource: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk(node, value, old, at, resource, &mut errs);
    errs
}

fn walk(node: &Node, value: &Value, old: Option<&Value>, at: &FieldPath, resource: bool, errs: &mut Vec<FieldError>) {
    // Rules validate non-null values only; a null's presence is the business of its parent.
    if value.is_null() {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    if !node.rules.is_empty() {
        evaluate(node, value, old, at, resource, errs);
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let old_v = old.and_then(|o| o.get(key));
                match node.properties.get(key) {
                    Some(child) => walk(child, v, old_v, &at.child(key), false, errs),
                    None => {
                        if let Some(Additional::Schema(child)) = &node.additional {
                            walk(child, v, old_v, &at.key(key), false, errs);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &node.items {
                let old_items = old.and_then(Value::as_array);
                for (i, v) in items.iter().enumerate() {
                    let old_v = match (&node.list_type, old_items) {
                        (Some(ListType::Map(keys)), Some(old_items)) => correlate(keys, v, old_items),
                        _ => None,
                    };
                    walk(item, v, old_v, &at.index(i), false, errs);
                }
            }
        }
        _ => {}
    }
}

/// The old item of a `map` list with the same keys as `item`.
fn correlate<'a>(keys: &[String], item: &Value, old_items: &'a [Value]) -> Option<&'a Value> {
    old_items.iter().find(|o| o.is_object() && keys.iter().all(|k| o.get(k) == item.get(k)))
}

fn evaluate(
    node: &Node,
    value: &Value,
    old: Option<&Value>,
    at: &FieldPath,
    resource: bool,
    errs: &mut Vec<FieldError>,
) {
    let type_name = node.type_.map(JsonType::name).unwrap_or("");
    let self_value = to_cel(value, Some(node), resource);
    let old_value = old.map(|o| to_cel(o, Some(node), resource));
    for rule in &node.rules {
        if rule.uses_old_self && old_value.is_none() && !rule.optional_old_self {
            // A transition rule needs a value to compare with.
            continue;
        }
        let mut ctx = Context::with_env(Arc::clone(&ENV));
        ctx.add_variable_from_value("self", self_value.clone());
        if rule.uses_old_self {
            let old_self = match (&old_value, rule.optional_old_self) {
                (Some(o), false) => o.clone(),
                (Some(o), true) => cel::Value::Opaque(Arc::new(OptionalValue::of(o.clone()))),
                (None, _) => cel::Value::Opaque(Arc::new(OptionalValue::none())),
            };
            ctx.add_variable_from_value("oldSelf", old_self);
        }
        let result = execute(&rule.program, &ctx);
        match result {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => errs.push(failure(node, rule, value, at, &ctx)),
            Ok(other) => {
                let detail = format!(
                    "rule did not evaluate to a bool (got {}) evaluating rule: {}",
                    kind_of(&other),
                    rule.name()
                );
                errs.push(FieldError::invalid_json(at.field(), &Value::from(type_name), detail));
            }
            Err(e) => {
                let detail = format!("{} evaluating rule: {}", lower_first(&e), rule.name());
                errs.push(FieldError::invalid_json(at.field(), &Value::from(type_name), detail));
            }
        }
    }
}

/// The error of a rule that evaluated to false.
fn failure(node: &Node, rule: &Rule, value: &Value, at: &FieldPath, ctx: &Context) -> FieldError {
    let at = match &rule.field_path {
        Some(p) => at.child(p),
        None => at.clone(),
    };
    let detail = rule
        .message_expression
        .as_ref()
        .and_then(|p| match execute(p, ctx) {
            Ok(cel::Value::String(s)) => {
                let s = s.trim();
                (!s.is_empty() && !s.contains('\n')).then(|| s.to_string())
            }
            _ => None,
        })
        .unwrap_or_else(|| rule.message_or_default());
    let shown = match node.type_ {
        Some(JsonType::Object | JsonType::Array) => None,
        _ => Some(value),
    };
    match rule.reason.as_deref() {
        Some("FieldValueForbidden") => FieldError::forbidden(at.field(), detail),
        Some("FieldValueRequired") => FieldError::required(at.field(), detail),
        Some("FieldValueDuplicate") => FieldError::duplicate_json(at.field(), shown),
        _ => match shown {
            Some(v) => FieldError::invalid_json(at.field(), v, detail),
            None => FieldError::invalid_omitted(at.field(), detail),
        },
    }
}

fn kind_of(value: &cel::Value) -> String {
    format!("{:?}", value.type_of())
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Converts a JSON value into a CEL value by its schema (`None` where the schema says
/// nothing: then by the JSON alone).
fn to_cel(value: &Value, node: Option<&Node>, resource: bool) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => {
            let wants_double = node.is_some_and(|n| n.type_ == Some(JsonType::Number));
            match (n.as_i64(), n.as_u64()) {
                (Some(i), _) if !wants_double => cel::Value::Int(i),
                (None, Some(u)) if !wants_double => cel::Value::UInt(u),
                _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            }
        }
        Value::String(s) => {
            let date_time =
                node.is_some_and(|n| n.checks.format.as_deref().is_some_and(|f| f == "date-time" || f == "datetime"));
            if date_time && let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return cel::Value::Timestamp(t);
            }
            cel::Value::String(Arc::new(s.clone()))
        }
        Value::Array(items) => {
            let item = node.and_then(|n| n.items.as_deref());
            cel::Value::List(Arc::new(items.iter().map(|v| to_cel(v, item, false)).collect()))
        }
        Value::Object(map) => {
            let mut out: HashMap<Key, cel::Value> = HashMap::with_capacity(map.len());
            for (key, v) in map {
                if resource && key == "metadata" {
                    out.insert(Key::String(Arc::new(key.clone())), metadata(v));
                    continue;
                }
                let child = node.and_then(|n| n.child(key));
                out.insert(Key::String(Arc::new(key.clone())), to_cel(v, child, false));
            }
            cel::Value::Map(CelMap { map: Arc::new(out) })
        }
    }
}

/// A resource's metadata as rules see it: `name` and `generateName` only.
fn metadata(value: &Value) -> cel::Value {
    let mut out: HashMap<Key, cel::Value> = HashMap::new();
    for key in ["name", "generateName"] {
        if let Some(Value::String(s)) = value.get(key) {
            out.insert(Key::String(Arc::new(key.to_string())), cel::Value::String(Arc::new(s.clone())));
        }
    }
    cel::Value::Map(CelMap { map: Arc::new(out) })
}
