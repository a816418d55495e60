//! `explain TYPE[.FIELD...]`: the documentation of a kind and its fields, from the server's
//! OpenAPI v3 documents, printed as kubectl's `explain` prints it.
//!
//! `/openapi/v3` lists one document per group version; the kind's schema is the one in its
//! group version's document whose `x-kubernetes-group-version-kind` names it, and each field
//! of the path is followed through `properties`, `items` (lists), `additionalProperties`
//! (maps), `$ref` and single-element `allOf`. The output is kubectl's plain-text template:
//! `GROUP:`/`KIND:`/`VERSION:` headers, `FIELD: name <type>` for a field, the `DESCRIPTION:`
//! and the `FIELDS:` with their types (`<PodSpec>`, `<[]Container>`, `<map[string]string>`)
//! and `-required-`; `--recursive` prints the field tree instead of the descriptions.
//!
//! What this keeps true: a path that is no field is kubectl's one-line error (`field
//! "nosuchfield" does not exist`), and a kind the server has no schema for is an error, never
//! an empty page. Not promised: kubectl's `--output=plaintext-openapiv2` and `--api-version`.

use serde_json::{Map, Value};

use crate::cli::ExplainArgs;
use crate::context::Connection;
use crate::error::{Error, Result};
use crate::resource;

/// Runs `explain`.
pub async fn run(ctx: &Connection, args: &ExplainArgs) -> Result<()> {
    let (type_name, fields) = match args.resource.split_once('.') {
        // `deployments.apps.spec` is ambiguous with a group; a built-in name first, as kubectl.
        Some((ty, rest)) => (ty, rest.split('.').filter(|f| !f.is_empty()).collect::<Vec<_>>()),
        None => (args.resource.as_str(), Vec::new()),
    };
    let def = resource::resolve(type_name)?;
    let root = ctx.get("/openapi/v3").await?;
    let key = if def.group.is_empty() {
        format!("api/{}", def.version)
    } else {
        format!("apis/{}/{}", def.group, def.version)
    };
    let url = root["paths"][&key]["serverRelativeURL"]
        .as_str()
        .ok_or_else(|| Error::msg(format!("the server has no OpenAPI document for {key}")))?
        .to_string();
    let document = ctx.get(&url).await?;
    let schemas = document["components"]["schemas"]
        .as_object()
        .ok_or_else(|| Error::msg(format!("the OpenAPI document of {key} has no schemas")))?;
    let kind_schema = schemas
        .values()
        .find(|schema| {
            schema["x-kubernetes-group-version-kind"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|gvk| gvk["group"] == def.group && gvk["version"] == def.version && gvk["kind"] == def.kind)
        })
        .ok_or_else(|| {
            Error::msg(format!("couldn't find resource for \"{}\"", rkube_api::ResourceDef::api_version(def)))
        })?;
    let explainer = Explainer { schemas };
    let mut schema = kind_schema.clone();
    let mut field_line = None;
    for field in &fields {
        let resolved = explainer.resolve(&schema);
        let property = explainer
            .element(&resolved)
            .get("properties")
            .and_then(|p| p.get(*field))
            .cloned()
            .ok_or_else(|| Error::msg(format!("field \"{field}\" does not exist")))?;
        field_line = Some(format!("FIELD: {field} <{}>", explainer.type_name(&property)));
        schema = property;
    }
    let mut out = String::new();
    if !def.group.is_empty() {
        out.push_str(&format!("GROUP:      {}\n", def.group));
    }
    out.push_str(&format!("KIND:       {}\nVERSION:    {}\n\n", def.kind, def.version));
    if let Some(line) = field_line {
        out.push_str(&line);
        out.push_str("\n\n\n");
    }
    // A field's own description, then its type's (a list's: its items'), as kubectl shows both.
    let resolved = explainer.resolve(&schema);
    let object = explainer.element(&resolved);
    let mut texts: Vec<String> = description(&schema).into_iter().collect();
    if let Some(type_text) = description(&object).filter(|_| object != schema)
        && !texts.contains(&type_text)
    {
        texts.push(type_text);
    }
    out.push_str("DESCRIPTION:\n");
    let text = if texts.is_empty() { "<empty>".to_string() } else { texts.join("\n") };
    out.push_str(&indent(&wrap(&text, WIDTH), 4));
    out.push_str("    \n");
    match object.get("properties").and_then(Value::as_object).filter(|p| !p.is_empty()) {
        Some(properties) => {
            out.push_str("FIELDS:\n");
            if args.recursive {
                explainer.tree(&object, 1, &mut out, &mut Vec::new());
            } else {
                let required = required(&object);
                for (name, property) in properties {
                    let mark = if required.contains(&name.as_str()) { " -required-" } else { "" };
                    out.push_str(&format!("  {name}\t<{}>{mark}\n", explainer.type_name(property)));
                    let text = description(property).or_else(|| description(&explainer.resolve(property)));
                    out.push_str(&indent(&wrap(text.as_deref().unwrap_or("<no description>"), WIDTH), 4));
                    out.push('\n');
                }
            }
            out.push('\n');
        }
        None => out.push('\n'),
    }
    print!("{out}");
    Ok(())
}

fn description(schema: &Value) -> Option<String> {
    schema["description"].as_str().filter(|d| !d.is_empty()).map(str::to_string)
}

fn required(object: &Value) -> Vec<&str> {
    object["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Follows `$ref` and single-element `allOf` through one document's schemas.
struct Explainer<'a> {
    schemas: &'a Map<String, Value>,
}

impl Explainer<'_> {
    /// The schema `schema` stands for, with references followed (at most a few deep).
    fn resolve(&self, schema: &Value) -> Value {
        let mut current = schema.clone();
        for _ in 0..8 {
            if let Some(reference) = current["$ref"].as_str() {
                let name = reference.rsplit('/').next().unwrap_or_default();
                match self.schemas.get(name) {
                    Some(target) => current = target.clone(),
                    None => return current,
                }
            } else if let Some([only]) = current["allOf"].as_array().map(Vec::as_slice) {
                current = only.clone();
            } else {
                return current;
            }
        }
        current
    }

    /// What a field path continues into: the items of a list, the values of a map, else the
    /// schema itself.
    fn element(&self, schema: &Value) -> Value {
        let mut current = schema.clone();
        for _ in 0..4 {
            if current["type"] == "array" {
                current = self.resolve(&current["items"]);
            } else if current["additionalProperties"].is_object() && current.get("properties").is_none() {
                current = self.resolve(&current["additionalProperties"]);
            } else {
                return current;
            }
        }
        current
    }

    /// kubectl's type guess: a reference's last name component, `[]T` for lists,
    /// `map[string]T` for maps, else the JSON type (`Object` for an object without a name).
    fn type_name(&self, schema: &Value) -> String {
        let reference = schema["$ref"].as_str().or_else(|| match schema["allOf"].as_array().map(Vec::as_slice) {
            Some([only]) => only["$ref"].as_str(),
            _ => None,
        });
        if let Some(reference) = reference {
            let name = reference.rsplit('/').next().unwrap_or_default();
            let resolved = self.resolve(schema);
            // A named scalar (Quantity, Time, IntOrString) keeps its name, as kubectl shows it.
            if resolved["type"] == "array" || resolved.get("additionalProperties").is_some() {
                return self.type_name(&resolved);
            }
            return name.rsplit('.').next().unwrap_or(name).to_string();
        }
        match schema["type"].as_str() {
            Some("array") => format!("[]{}", self.type_name(&schema["items"])),
            Some("object") | None if schema["additionalProperties"].is_object() => {
                format!("map[string]{}", self.type_name(&schema["additionalProperties"]))
            }
            Some("object") | None => "Object".into(),
            Some(other) => other.to_string(),
        }
    }

    /// `--recursive`: every field below `object`, indented by depth, with its type.
    fn tree(&self, object: &Value, depth: usize, out: &mut String, seen: &mut Vec<String>) {
        let required = required(object);
        for (name, property) in object["properties"].as_object().into_iter().flatten() {
            let mark = if required.contains(&name.as_str()) { " -required-" } else { "" };
            out.push_str(&format!("{}{name}\t<{}>{mark}\n", "  ".repeat(depth), self.type_name(property)));
            let type_name = self.type_name(property);
            // Recursive types (JSONSchemaProps) stop at their first repetition.
            if seen.contains(&type_name) {
                continue;
            }
            let inner = self.element(&self.resolve(property));
            if inner.get("properties").is_some() {
                seen.push(type_name);
                self.tree(&inner, depth + 1, out, seen);
                seen.pop();
            }
        }
    }
}

/// How wide kubectl wraps descriptions (before their 4-space indent: 80 columns in all).
const WIDTH: usize = 76;

/// `text` in lines of at most `width` characters, broken at spaces (a longer word gets a
/// line of its own); the text's own line breaks and runs of spaces are kept, as kubectl keeps
/// them.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut started = false;
        for word in paragraph.split(' ') {
            if started && line.chars().count() + 1 + word.chars().count() > width {
                out.push_str(line.trim_end());
                out.push('\n');
                line.clear();
                started = false;
            }
            if !started {
                if word.is_empty() {
                    continue; // no line starts with the space it was broken at
                }
                line.push_str(word);
                started = true;
            } else {
                line.push(' ');
                line.push_str(word);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Every line of `text` indented by `by` spaces (empty ones too, as kubectl's template does).
fn indent(text: &str, by: usize) -> String {
    text.lines().map(|line| format!("{}{line}\n", " ".repeat(by))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_wraps_at_the_width_and_keeps_paragraphs() {
        assert_eq!(wrap("aa bb cc dd", 5), "aa bb\ncc dd\n");
        assert_eq!(wrap("aa.  bb cc", 7), "aa.  bb\ncc\n");
        assert_eq!(wrap("one\ntwo three", 20), "one\ntwo three\n");
        assert_eq!(indent("a\n\nb\n", 2), "  a\n  \n  b\n");
        assert_eq!(wrap("ends. \nnext", 20), "ends.\nnext\n");
    }

    #[test]
    fn types_are_named_as_kubectl_names_them() {
        let schemas = json!({
            "io.k8s.api.core.v1.PodSpec": {"type": "object", "properties": {"containers": {"type": "array", "items": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}}}},
            "io.k8s.api.core.v1.Container": {"type": "object", "properties": {"name": {"type": "string"}}},
            "Quantity": {"type": "string"}
        });
        let schemas = schemas.as_object().expect("map");
        let explainer = Explainer { schemas };
        let spec = json!({"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"});
        assert_eq!(explainer.type_name(&spec), "PodSpec");
        assert_eq!(explainer.type_name(&json!({"allOf": [spec.clone()]})), "PodSpec");
        assert_eq!(explainer.type_name(&json!({"type": "array", "items": {"type": "string"}})), "[]string");
        assert_eq!(
            explainer.type_name(
                &json!({"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Quantity"}})
            ),
            "map[string]Quantity"
        );
        let containers = &explainer.resolve(&spec)["properties"]["containers"];
        assert_eq!(explainer.type_name(containers), "[]Container");
        assert!(explainer.element(&explainer.resolve(containers))["properties"]["name"].is_object());
    }
}
