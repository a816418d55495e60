//! `create -f` and `apply -f`.
//!
//! `create` posts each object and fails for one that exists. `apply` is kubectl's client-side
//! apply: the file's object, stamped with the annotation
//! `kubectl.kubernetes.io/last-applied-configuration` (the object as JSON), is created when
//! missing; otherwise a strategic merge patch is computed from three objects (the file, the
//! live object and the last applied file) and sent only when it is not empty. Each object
//! prints `created`, `configured` or `unchanged`, so applying the same file twice is a no-op.
//!
//! The patch ([`three_way_patch`]): every field the file sets that the live object does not
//! already hold is set (maps recursively; lists whole, which the strategic merge then merges by
//! key); every field the last applied file set that the file no longer sets is removed
//! (`null`). Fields set by others (defaults, controllers) are left alone.
//!
//! A list the strategic merge merges by key (containers by `name`, ports by `containerPort`,
//! ...; the apiserver's own table, [`rkube_api::strategic_merge::merge_key`]) keeps elements the patch does not name, so an element the last applied file had and
//! the file dropped is sent as `{"$patch": "delete", <key>: <value>}`, as kubectl does.
//! Not promised: kubectl's `$setElementOrder` (the order of merged lists is the server's).
//!
//! Errors of one object do not stop the others; they are printed at the end and the command
//! exits non-zero.

use rkube_api::strategic_merge;
use serde_json::{Map, Value, json};

use crate::cli::FileArgs;
use crate::context::{Connection, path};
use crate::error::{Error, Result};
use crate::manifest::{self, Document};
use crate::resource;

/// The annotation client-side apply keeps the last applied object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist and was created.
    Created,
    /// It existed and was patched.
    Configured,
    /// It already matched the file.
    Unchanged,
}

impl Outcome {
    /// The word kubectl prints.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Runs `create -f`.
pub async fn create(ctx: &Connection, args: &FileArgs) -> Result<()> {
    let docs = manifest::read_all(&args.filenames, args.recursive)?;
    for_each(&docs, |doc| async move {
        let def = doc.resource()?;
        let name = doc.name()?;
        let ns = object_namespace(ctx, def, &doc.object)?;
        ctx.send(http::Method::POST, &path(def, ns.as_deref(), None), None, None, Some(&doc.object)).await?;
        Ok(format!("{} created", resource::ref_name(def, &name)))
    })
    .await
}

/// Runs `apply -f`.
pub async fn apply(ctx: &Connection, args: &FileArgs) -> Result<()> {
    let docs = manifest::read_all(&args.filenames, args.recursive)?;
    for_each(&docs, |doc| async move {
        let def = doc.resource()?;
        let name = doc.name()?;
        let outcome = apply_one(ctx, doc).await?;
        Ok(format!("{} {}", resource::ref_name(def, &name), outcome.word()))
    })
    .await
}

/// Applies one object; see the module docs.
pub async fn apply_one(ctx: &Connection, doc: &Document) -> Result<Outcome> {
    let def = doc.resource()?;
    let name = doc.name()?;
    let ns = object_namespace(ctx, def, &doc.object)?;
    let mut modified = doc.object.clone();
    if let Some(annotations) = modified["metadata"]["annotations"].as_object_mut() {
        annotations.remove(LAST_APPLIED);
    }
    let last_applied = format!("{}\n", serde_json::to_string(&modified).map_err(Error::msg)?);
    set_annotation(&mut modified, LAST_APPLIED, &last_applied);
    let object_path = path(def, ns.as_deref(), Some(&name));
    let Some(live) = ctx.get_opt(&object_path).await? else {
        ctx.send(http::Method::POST, &path(def, ns.as_deref(), None), None, None, Some(&modified)).await?;
        return Ok(Outcome::Created);
    };
    let original: Option<Value> =
        live["metadata"]["annotations"][LAST_APPLIED].as_str().and_then(|text| serde_json::from_str(text).ok());
    let patch = three_way_patch(def.kind, original.as_ref(), &modified, &live);
    if patch.as_object().is_none_or(Map::is_empty) {
        return Ok(Outcome::Unchanged);
    }
    ctx.patch(&object_path, "application/strategic-merge-patch+json", &patch).await?;
    Ok(Outcome::Configured)
}

/// The namespace an object from a file goes to: its own, else the context's (`None` for
/// cluster-scoped kinds). An object whose namespace differs from an explicit `-n` is an
/// error, as in kubectl.
pub fn object_namespace(ctx: &Connection, def: &rkube_api::ResourceDef, object: &Value) -> Result<Option<String>> {
    if !def.namespaced {
        return Ok(None);
    }
    match object["metadata"]["namespace"].as_str().filter(|n| !n.is_empty()) {
        Some(own) if ctx.explicit_namespace && own != ctx.namespace => Err(Error::msg(format!(
            "the namespace from the provided object {own:?} does not match the namespace {:?}. You must pass \
             '--namespace={own}' to perform this operation.",
            ctx.namespace
        ))),
        Some(own) => Ok(Some(own.to_string())),
        None => Ok(Some(ctx.namespace.clone())),
    }
}

fn set_annotation(object: &mut Value, key: &str, value: &str) {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    if !object["metadata"]["annotations"].is_object() {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"][key] = Value::String(value.to_string());
}

/// Runs `work` for every document, printing each success line on stdout and each error on
/// stderr; fails (after all of them) if any failed.
pub async fn for_each<'a, F, Fut>(docs: &'a [Document], work: F) -> Result<()>
where
    F: Fn(&'a Document) -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let mut failed = 0usize;
    let mut last = None;
    for doc in docs {
        match work(doc).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed += 1;
                if let Some(prev) = last.replace(e) {
                    eprintln!("{prev}");
                }
            }
        }
    }
    if docs.is_empty() {
        return Err(Error::msg("no objects passed to the command"));
    }
    match last {
        Some(e) => Err(e),
        None if failed == 0 => Ok(()),
        None => Err(Error::msg("some objects failed")),
    }
}

/// The strategic merge patch that makes `current` (an object of `kind`) match `modified`,
/// given the last applied `original` (see the module docs). An empty object means nothing
/// to do.
pub fn three_way_patch(kind: &str, original: Option<&Value>, modified: &Value, current: &Value) -> Value {
    patch_at(kind, "", original, modified, current)
}

/// [`three_way_patch`] of the fields under `path` (dot-separated, empty at the root).
fn patch_at(kind: &str, path: &str, original: Option<&Value>, modified: &Value, current: &Value) -> Value {
    let mut patch = Map::new();
    let (Some(modified), Some(current_map)) = (modified.as_object(), current.as_object()) else {
        return Value::Object(patch);
    };
    for (key, want) in modified {
        let have = current_map.get(key);
        let was = original.and_then(|o| o.get(key));
        let field_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        match (want, have) {
            (Value::Object(_), Some(have @ Value::Object(_))) => {
                let sub = patch_at(kind, &field_path, was, want, have);
                if sub.as_object().is_some_and(|m| !m.is_empty()) {
                    patch.insert(key.clone(), sub);
                }
            }
            _ => {
                if !have.is_some_and(|have| is_subset(want, have)) {
                    let merge_key = strategic_merge::merge_key(kind, &field_path);
                    patch.insert(key.clone(), with_deletions(merge_key, was, want, have));
                }
            }
        }
    }
    if let Some(Value::Object(original)) = original {
        for key in original.keys() {
            if !modified.contains_key(key) && current_map.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    Value::Object(patch)
}

/// The value to send for a changed field: `want` itself, and for a list merged by
/// `merge_key`, a `$patch: delete` element for each element the last apply had that the file
/// dropped (the merge would keep it otherwise).
fn with_deletions(merge_key: Option<&str>, was: Option<&Value>, want: &Value, have: Option<&Value>) -> Value {
    let (Value::Array(wanted), Some(Value::Array(previous)), Some(Value::Array(live))) = (want, was, have) else {
        return want.clone();
    };
    let Some(key) = merge_key else {
        return want.clone();
    };
    let mut out = wanted.clone();
    for old in previous {
        let Some(id) = old.get(key) else { continue };
        let dropped = !wanted.iter().any(|w| w.get(key) == Some(id));
        let still_live = live.iter().any(|l| l.get(key) == Some(id));
        if dropped && still_live {
            out.push(json!({"$patch": "delete", key: id}));
        }
    }
    Value::Array(out)
}

/// Whether `have` holds everything `want` says (extra fields in `have` are defaults or others').
fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| is_subset(v, hv))),
        (Value::Array(w), Value::Array(h)) => w.len() == h.len() && w.iter().zip(h).all(|(a, b)| is_subset(a, b)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == have,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_do_when_the_live_object_holds_the_file_plus_defaults() {
        let modified = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let live = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1"}}, "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "IfNotPresent"}]}});
        assert_eq!(three_way_patch("Pod", Some(&modified), &modified, &live), json!({}));
    }

    #[test]
    fn changed_fields_are_set_and_dropped_fields_are_removed() {
        let original = json!({"metadata": {"labels": {"x": "1", "old": "y"}}, "data": {"a": "1"}});
        let modified = json!({"metadata": {"labels": {"x": "2"}}, "data": {"a": "1"}});
        let live = json!({"metadata": {"labels": {"x": "1", "old": "y", "other": "z"}}, "data": {"a": "1"}});
        assert_eq!(
            three_way_patch("Pod", Some(&original), &modified, &live),
            json!({"metadata": {"labels": {"x": "2", "old": null}}})
        );
    }

    #[test]
    fn an_element_dropped_from_a_keyed_list_is_deleted() {
        let original = json!({"spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}});
        let modified = json!({"spec": {"containers": [{"name": "a", "image": "i"}]}});
        let live = json!({"spec": {"containers": [{"name": "a", "image": "i", "x": 1}, {"name": "b", "image": "i"}]}});
        assert_eq!(
            three_way_patch("Pod", Some(&original), &modified, &live),
            json!({"spec": {"containers": [{"name": "a", "image": "i"}, {"$patch": "delete", "name": "b"}]}})
        );
    }

    #[test]
    fn a_changed_list_is_sent_whole() {
        let modified = json!({"spec": {"containers": [{"name": "c", "image": "new"}]}});
        let live = json!({"spec": {"containers": [{"name": "c", "image": "old", "imagePullPolicy": "Always"}]}});
        assert_eq!(three_way_patch("Pod", None, &modified, &live), modified);
    }
}
