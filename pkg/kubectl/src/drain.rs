//! `drain`: cordon a node, delete the pods on it, and wait until they are gone.
//!
//! rkube serves no eviction subresource yet, so pods are deleted (kubectl falls back to the
//! same when eviction is unavailable). Pods no controller owns would not come back anywhere
//! else, so they are only deleted with `--force`, as kubectl requires. rkube has no DaemonSets:
//! `--ignore-daemonsets` is accepted and changes nothing. Deleting a pod that is bound to a node
//! only marks it; it is gone once that node's kubelet has stopped it.

use serde_json::{Value, json};

use crate::cli::DrainArgs;
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::resource;
use crate::wait::{parse_duration, watch_until};

/// Runs `drain`.
pub async fn run(ctx: &Connection, args: &DrainArgs) -> Result<()> {
    let timeout = parse_duration(&args.timeout)?;
    crate::mutate::cordon(ctx, &args.node, true).await?;
    let pods_def = resource::resolve("pods")?;
    let selector = format!("spec.nodeName={}", args.node);
    let list = ctx.get(&with_query(&path(pods_def, None, None), &[("fieldSelector", &selector)])).await?;
    let pods = list["items"].as_array().cloned().unwrap_or_default();
    let unmanaged: Vec<String> = pods
        .iter()
        .filter(|p| {
            !p["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|r| r["controller"] == true))
        })
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap_or(""),
                p["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    if !unmanaged.is_empty() && !args.force {
        return Err(Error::msg(format!(
            "cannot delete pods that declare no controller (use --force to override): {}",
            unmanaged.join(", ")
        )));
    }
    let mut options = json!({"propagationPolicy": "Background"});
    if let Some(grace) = args.grace_period.filter(|g| *g >= 0) {
        options["gracePeriodSeconds"] = Value::from(grace);
    }
    let mut deleted = Vec::new();
    for p in &pods {
        let ns = p["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
        println!("evicting pod {ns}/{name}");
        match ctx.send(http::Method::DELETE, &path(pods_def, Some(&ns), Some(&name)), None, None, Some(&options)).await
        {
            Ok(_) => deleted.push((ns, name)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    for (ns, name) in &deleted {
        let uid = pods
            .iter()
            .find(|p| p["metadata"]["name"] == name.as_str() && p["metadata"]["namespace"] == ns.as_str())
            .map(|p| p["metadata"]["uid"].clone());
        let what = format!("pod/{name}");
        // A controller may create a new pod with the same name; only the old uid counts.
        watch_until(ctx, pods_def, Some(ns), name, timeout, &what, |s| {
            s.is_none_or(|p| Some(&p["metadata"]["uid"]) != uid.as_ref())
        })
        .await?;
        println!("pod/{name} evicted");
    }
    println!("node/{} drained", args.node);
    Ok(())
}
