//! Small writes: `patch`, `label`, `annotate`, `scale`, `cordon`, `uncordon`.
//!
//! Each sends one request of the kind kubectl sends: `patch` the content type `--type` names;
//! `label`/`annotate` a JSON merge patch of `metadata.labels`/`annotations` (`key-` is `null`);
//! `scale` a merge patch of the `scale` subresource; `cordon` a strategic merge patch of
//! `spec.unschedulable`. Messages are kubectl's (`pod/web labeled`,
//! `deployment.apps/web scaled`, `node/n1 cordoned`).

use serde_json::{Value, json};

use crate::cli::{MetaArgs, PatchArgs, ScaleArgs};
use crate::context::{Connection, path};
use crate::error::{Error, Result};
use crate::resource;

/// Runs `patch`.
pub async fn patch(ctx: &Connection, args: &PatchArgs) -> Result<()> {
    let (def, name) = resource::parse_one(&args.resources)?;
    let content_type = match args.patch_type.as_str() {
        "strategic" => "application/strategic-merge-patch+json",
        "merge" => "application/merge-patch+json",
        "json" => "application/json-patch+json",
        other => {
            return Err(Error::msg(format!("--type must be one of [json merge strategic], not {other:?}")));
        }
    };
    let body: Value = serde_yaml_ng::from_str(&args.patch)
        .map_err(|e| Error::msg(format!("unable to parse {:?}: {e}", args.patch)))?;
    let p = path(def, ctx.ns_for(def), Some(&name));
    let before = ctx.get(&p).await?;
    let after = ctx.patch(&p, content_type, &body).await?;
    let same = before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"];
    println!("{} patched{}", resource::ref_name(def, &name), if same { " (no change)" } else { "" });
    Ok(())
}

/// Runs `label` (`field` = `labels`) or `annotate` (`annotations`).
pub async fn label(ctx: &Connection, args: &MetaArgs, field: &str) -> Result<()> {
    let split = args.args.iter().position(|a| a.contains('=') || (a.ends_with('-') && !a.contains('/')));
    let (resources, changes) = match split {
        Some(i) if i > 0 => args.args.split_at(i),
        _ => {
            return Err(Error::msg(format!(
                "at least one {} update is required (KEY=VALUE or KEY-)",
                &field[..field.len() - 1]
            )));
        }
    };
    let (def, name) = resource::parse_one(resources)?;
    let p = path(def, ctx.ns_for(def), Some(&name));
    let live = ctx.get(&p).await?;
    let mut set = serde_json::Map::new();
    for change in changes {
        if let Some((key, value)) = change.split_once('=') {
            if key.is_empty() {
                return Err(Error::msg(format!("invalid {field} update {change:?}")));
            }
            if let Some(old) = live["metadata"][field][key].as_str()
                && old != value
                && !args.overwrite
            {
                return Err(Error::msg(format!("'{key}' already has a value ({old}), and --overwrite is false")));
            }
            set.insert(key.to_string(), Value::String(value.to_string()));
        } else if let Some(key) = change.strip_suffix('-') {
            set.insert(key.to_string(), Value::Null);
        } else {
            return Err(Error::msg(format!("invalid {field} update {change:?} (use KEY=VALUE or KEY-)")));
        }
    }
    let body = json!({"metadata": {field: set}});
    ctx.patch(&p, "application/merge-patch+json", &body).await?;
    let verb = if field == "labels" { "labeled" } else { "annotated" };
    println!("{} {verb}", resource::ref_name(def, &name));
    Ok(())
}

/// Runs `scale`.
pub async fn scale(ctx: &Connection, args: &ScaleArgs) -> Result<()> {
    let (def, name) = resource::parse_one(&args.resources)?;
    if !def.has_subresource(rkube_api::Subresource::Scale) {
        return Err(Error::msg(format!("{} cannot be scaled (only deployments and replicasets)", def.plural)));
    }
    if args.replicas < 0 {
        return Err(Error::msg("--replicas must be 0 or more"));
    }
    let p = format!("{}/scale", path(def, ctx.ns_for(def), Some(&name)));
    ctx.patch(&p, "application/merge-patch+json", &json!({"spec": {"replicas": args.replicas}})).await?;
    println!("{} scaled", resource::ref_name(def, &name));
    Ok(())
}

/// Runs `cordon` (`on`) or `uncordon`.
pub async fn cordon(ctx: &Connection, node: &str, on: bool) -> Result<()> {
    let def = resource::resolve("nodes")?;
    let p = path(def, None, Some(node));
    let live = ctx.get(&p).await?;
    let verb = if on { "cordoned" } else { "uncordoned" };
    if live["spec"]["unschedulable"].as_bool().unwrap_or(false) == on {
        println!("node/{node} already {verb}");
        return Ok(());
    }
    let value = if on { Value::Bool(true) } else { Value::Null };
    ctx.patch(&p, "application/strategic-merge-patch+json", &json!({"spec": {"unschedulable": value}})).await?;
    println!("node/{node} {verb}");
    Ok(())
}
