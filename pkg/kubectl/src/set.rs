//! `set env`: environment variables of a workload's containers, changed with one strategic
//! merge patch of its pod template, as kubectl's `set env` changes them.
//!
//! `KEY=VALUE` sets a variable (replacing a `valueFrom`), `KEY-` removes one; `-c` limits the
//! change to the containers (and init containers) whose name matches (`*` globs). The patch
//! names only the variables that change, each in its container (env lists merge by `name`), so
//! a controller's or another user's concurrent change to other fields is kept. Prints
//! `deployment.apps/web env updated`; when nothing would change, nothing is sent and nothing is
//! printed, as with kubectl. `--list` prints the variables instead (`# deployments web,
//! container main`, then `KEY=VALUE` lines).
//!
//! Not promised: kubectl's `--from=configmap/...`, `--keys`, `--prefix`, `--resolve`, `-l` and
//! `--all`.

use serde_json::{Map, Value, json};

use crate::cli::{SetCommand, SetEnvArgs};
use crate::context::{Connection, path};
use crate::error::{Error, Result};
use crate::resource;

/// Runs `set env`.
pub async fn run(ctx: &Connection, command: &SetCommand) -> Result<()> {
    match command {
        SetCommand::Env(args) => env(ctx, args).await,
    }
}

/// One change: set `key` to `Some(value)`, or remove it (`None`).
type Change = (String, Option<String>);

/// Where the pod spec of an object of `kind` lives.
fn pod_spec_path(kind: &str) -> Result<&'static [&'static str]> {
    Ok(match kind {
        "Pod" => &["spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "ReplicationController" | "Job" => {
            &["spec", "template", "spec"]
        }
        other => return Err(Error::msg(format!("{other} has no containers whose environment could be set"))),
    })
}

/// Whether `name` matches the glob `pattern` (`*` is any text).
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    // One part: no `*` at all.
    let [first, middle @ .., last] = parts.as_slice() else { return pattern == name };
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Splits the positional arguments into the object and the changes.
fn parse_args(args: &SetEnvArgs) -> Result<(Vec<String>, Vec<Change>)> {
    let split = args.args.iter().position(|a| a.contains('=') || (a.ends_with('-') && !a.contains('/')));
    let (resources, changes) = match split {
        Some(at) => args.args.split_at(at),
        None => (args.args.as_slice(), &[][..]),
    };
    let mut parsed = Vec::new();
    for change in changes.iter().chain(&args.env) {
        if let Some((key, value)) = change.split_once('=') {
            if key.is_empty() {
                return Err(Error::msg(format!("invalid environment variable {change:?}: the name is empty")));
            }
            parsed.push((key.to_string(), Some(value.to_string())));
        } else if let Some(key) = change.strip_suffix('-').filter(|key| !key.is_empty()) {
            parsed.push((key.to_string(), None));
        } else {
            return Err(Error::msg(format!("invalid environment variable {change:?} (use KEY=VALUE or KEY-)")));
        }
    }
    if parsed.is_empty() && !args.list {
        return Err(Error::msg("at least one environment variable must be provided"));
    }
    Ok((resources.to_vec(), parsed))
}

/// The env patch items for one container, or `None` when nothing changes.
fn container_patch(container: &Value, changes: &[Change], overwrite: bool) -> Result<Option<Vec<Value>>> {
    let current = container["env"].as_array().cloned().unwrap_or_default();
    let mut items: Vec<Value> = Vec::new();
    for (key, value) in changes {
        let existing = current.iter().find(|entry| entry["name"] == key.as_str());
        // A later change of the same key wins.
        items.retain(|item| item["name"] != key.as_str());
        match (value, existing) {
            (Some(value), Some(entry)) => {
                if entry["value"].as_str() == Some(value) && entry.get("valueFrom").is_none() {
                    continue;
                }
                if !overwrite {
                    let old = entry["value"].as_str().unwrap_or("<from a source>");
                    return Err(Error::msg(format!("'{key}' already has a value ({old}), and --overwrite is false")));
                }
                let mut item = json!({"name": key, "value": value});
                if entry.get("valueFrom").is_some() {
                    item["valueFrom"] = Value::Null;
                }
                items.push(item);
            }
            (Some(value), None) => items.push(json!({"name": key, "value": value})),
            (None, Some(_)) => items.push(json!({"name": key, "$patch": "delete"})),
            (None, None) => {}
        }
    }
    Ok((!items.is_empty()).then_some(items))
}

/// The `# KIND NAME, container C` block of `--list`.
fn list_text(plural: &str, name: &str, container: &Value) -> String {
    let mut out = format!("# {plural} {name}, container {}\n", container["name"].as_str().unwrap_or_default());
    for entry in container["env"].as_array().into_iter().flatten() {
        let key = entry["name"].as_str().unwrap_or_default();
        let from = &entry["valueFrom"];
        let line = if let Some(value) = entry["value"].as_str() {
            format!("{key}={value}")
        } else if let Some(reference) = from["configMapKeyRef"].as_object() {
            let (map, key_in) = (reference.get("name"), reference.get("key"));
            format!("# {key} from configmap {}, key {}", text(map), text(key_in))
        } else if let Some(reference) = from["secretKeyRef"].as_object() {
            format!("# {key} from secret {}, key {}", text(reference.get("name")), text(reference.get("key")))
        } else if let Some(field) = from["fieldRef"]["fieldPath"].as_str() {
            format!("# {key} from field path {field}")
        } else if let Some(resource) = from["resourceFieldRef"]["resource"].as_str() {
            format!("# {key} from resource {resource}")
        } else {
            format!("{key}=")
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn text(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap_or_default()
}

async fn env(ctx: &Connection, args: &SetEnvArgs) -> Result<()> {
    let (resources, changes) = parse_args(args)?;
    let (def, name) = resource::parse_one(&resources)?;
    let spec_path = pod_spec_path(def.kind)?;
    let object_path = path(def, ctx.ns_for(def), Some(&name));
    let live = ctx.get(&object_path).await?;
    let spec = spec_path.iter().fold(&live, |value, key| &value[*key]);
    let selected = |container: &&Value| {
        args.containers.as_deref().is_none_or(|pattern| glob(pattern, container["name"].as_str().unwrap_or_default()))
    };
    if args.list {
        let mut out = String::new();
        for field in ["initContainers", "containers"] {
            for container in spec[field].as_array().into_iter().flatten().filter(selected) {
                out.push_str(&list_text(def.plural, &name, container));
            }
        }
        print!("{out}");
        return Ok(());
    }
    let mut spec_patch = Map::new();
    let mut matched = false;
    for field in ["initContainers", "containers"] {
        let mut patched = Vec::new();
        for container in spec[field].as_array().into_iter().flatten().filter(selected) {
            matched = true;
            if let Some(items) = container_patch(container, &changes, args.overwrite)? {
                patched.push(json!({"name": container["name"], "env": items}));
            }
        }
        if !patched.is_empty() {
            spec_patch.insert(field.to_string(), Value::Array(patched));
        }
    }
    if !matched {
        let wanted = args.containers.as_deref().unwrap_or("*");
        return Err(Error::msg(format!("unable to find container named {wanted:?}")));
    }
    if spec_patch.is_empty() {
        return Ok(());
    }
    let patch = spec_path.iter().rev().fold(Value::Object(spec_patch), |inner, key| json!({ *key: inner }));
    ctx.patch(&object_path, "application/strategic-merge-patch+json", &patch).await?;
    println!("{} env updated", resource::ref_name(def, &name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names() {
        assert!(glob("*", "main"));
        assert!(glob("ma*", "main"));
        assert!(glob("*n", "main"));
        assert!(glob("m*i*n", "main"));
        assert!(!glob("side*", "main"));
        assert!(glob("main", "main") && !glob("mai", "main"));
    }

    #[test]
    fn only_changes_are_patched() {
        let container = json!({"name": "c", "env": [{"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]});
        let change = |key: &str, value: Option<&str>| (key.to_string(), value.map(str::to_string));
        assert_eq!(container_patch(&container, &[change("A", Some("1"))], true).ok(), Some(None));
        assert_eq!(
            container_patch(&container, &[change("A", Some("2")), change("B", Some("x")), change("C", None)], true)
                .ok()
                .flatten(),
            Some(vec![json!({"name": "A", "value": "2"}), json!({"name": "B", "value": "x", "valueFrom": null})])
        );
        assert_eq!(
            container_patch(&container, &[change("A", None), change("D", Some("4"))], true).ok().flatten(),
            Some(vec![json!({"name": "A", "$patch": "delete"}), json!({"name": "D", "value": "4"})])
        );
        assert!(container_patch(&container, &[change("A", Some("2"))], false).is_err());
    }
}
