//! `drain`: cordon a node, evict the pods on it, and wait until they are gone.
//!
//! Each pod is evicted through `pods/<name>/eviction`, so PodDisruptionBudgets hold: while a
//! budget allows no disruption the apiserver answers 429 and the eviction is tried again
//! every 5 s, as kubectl does, until `--timeout`. Pods no controller owns would not come back
//! anywhere else, so they are only evicted with `--force`, and pods with emptyDir data only
//! with `--delete-emptydir-data`, as kubectl requires. rkube has no DaemonSets:
//! `--ignore-daemonsets` is accepted and changes nothing. An evicted pod that is bound to a
//! node is only marked; it is gone once that node's kubelet has stopped it.

use std::time::{Duration, Instant};

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
    let local: Vec<String> = pods
        .iter()
        .filter(|p| p["spec"]["volumes"].as_array().is_some_and(|v| v.iter().any(|v| v.get("emptyDir").is_some())))
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap_or(""),
                p["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    if !local.is_empty() && !args.delete_emptydir_data {
        return Err(Error::msg(format!(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override): {}",
            local.join(", ")
        )));
    }
    let mut options = json!({"propagationPolicy": "Background"});
    if let Some(grace) = args.grace_period.filter(|g| *g >= 0) {
        options["gracePeriodSeconds"] = Value::from(grace);
    }
    let started = Instant::now();
    let mut deleted = Vec::new();
    for p in &pods {
        let ns = p["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
        println!("evicting pod {ns}/{name}");
        if evict(ctx, pods_def, &ns, &name, &options, started, timeout).await? {
            deleted.push((ns, name));
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

/// How long a refused eviction waits before it is tried again (kubectl's 5 s).
const RETRY: Duration = Duration::from_secs(5);

/// Evicts one pod, trying again while its disruption budget refuses (429), until `timeout`
/// after `started`. `false` when the pod is gone already.
async fn evict(
    ctx: &Connection,
    pods_def: &'static rkube_api::ResourceDef,
    ns: &str,
    name: &str,
    options: &Value,
    started: Instant,
    timeout: Option<Duration>,
) -> Result<bool> {
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns}, "deleteOptions": options});
    let url = format!("{}/eviction", path(pods_def, Some(ns), Some(name)));
    loop {
        match ctx.send(http::Method::POST, &url, None, None, Some(&body)).await {
            Ok(_) => return Ok(true),
            Err(e) if e.is_not_found() => return Ok(false),
            Err(Error::Server { code: 429, message, .. }) => {
                if timeout.is_some_and(|limit| started.elapsed() + RETRY > limit) {
                    return Err(Error::msg(format!(
                        "error when evicting pods/{name:?} -n {ns:?}: global timeout reached: {message}"
                    )));
                }
                eprintln!("error when evicting pods/{name:?} -n {ns:?} (will retry after 5s): {message}");
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}
