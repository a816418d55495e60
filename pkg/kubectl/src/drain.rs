//! `drain`: cordon a node, evict the pods on it, and wait until they are gone.
//!
//! Which pods go is decided as kubectl's drain decides it, pod by pod, by these filters in
//! order (the first that keeps a pod decides):
//!
//! - mirror pods (annotation `kubernetes.io/config.mirror`) stay, silently;
//! - pods a DaemonSet controls stay: without `--ignore-daemonsets` drain refuses
//!   (`cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ns/name`), with
//!   it they are skipped with `Warning: ignoring DaemonSet-managed Pods: ns/name`, since their
//!   controller would put them back on the node (it ignores `unschedulable`). A pod whose
//!   DaemonSet is gone is evicted only with `--force`;
//! - pods with emptyDir data need `--delete-emptydir-data`;
//! - pods no controller owns would come back nowhere, so they need `--force`.
//!
//! Finished pods (Succeeded, Failed) always go. Every refusal is collected before anything is
//! evicted, so a refused drain has evicted nothing (the node stays cordoned, as with kubectl);
//! the refusals print as one line, several in kubectl's `[a, b]`. Warnings (skipped DaemonSet
//! pods, `--force`d pods without a controller) print as one `Warning: ...` line on stderr
//! before the evictions. Tested in `test/tests/rkubectl_verbs.rs`
//! (`drain_skips_daemonset_pods_only_when_told`) and by the unit tests below.
//!
//! Each pod is evicted through `pods/<name>/eviction`, so PodDisruptionBudgets hold: while a
//! budget allows no disruption the apiserver answers 429 and the eviction is tried again
//! every 5 s, as kubectl does, until `--timeout`. An evicted pod that is bound to a node is
//! only marked; it is gone once that node's kubelet has stopped it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::DrainArgs;
use crate::context::{Connection, path, with_query};
use crate::error::{Error, Result};
use crate::resource;
use crate::wait::{parse_duration, watch_until};

/// What drain does with one pod, and why (kubectl's `PodDeleteStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Evict it.
    Evict,
    /// Evict it, and say why in a warning.
    EvictWithWarning(String),
    /// Leave it, silently.
    Skip,
    /// Leave it, and say why in a warning.
    SkipWithWarning(String),
    /// Refuse to drain the node because of it.
    Refuse(String),
}

const DAEMONSET_FATAL: &str = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)";
const DAEMONSET_WARNING: &str = "ignoring DaemonSet-managed Pods";
const LOCAL_STORAGE_FATAL: &str = "Pods with local storage (use --delete-emptydir-data to override)";
const UNMANAGED_FATAL: &str = "Pods that declare no controller (use --force to override)";
const UNMANAGED_WARNING: &str = "deleting Pods that declare no controller";

/// The flags the filters read.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    ignore_daemonsets: bool,
    delete_emptydir_data: bool,
    force: bool,
}

/// `namespace/name` of a pod.
fn pod_key(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// The controller owner reference of `pod`, if any.
fn controller_of(pod: &Value) -> Option<&Value> {
    pod["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["controller"] == true)
}

fn finished(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// What became of the DaemonSet that controls a pod, when one does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DaemonSet {
    /// It exists (or the pod has none: then it is not consulted).
    Exists,
    /// It is gone; the server's message.
    Gone(String),
    /// It could not be read; the error.
    Unreadable(String),
}

/// The verdict for one pod; `daemon_set` is consulted only for DaemonSet-controlled pods.
///
/// As in kubectl, the last filter a pod passes decides its warning: an evicted pod warns
/// only when it declares no controller (`--force`), not for its emptyDir data or a vanished
/// DaemonSet.
fn verdict(pod: &Value, flags: Flags, daemon_set: DaemonSet) -> Verdict {
    if pod["metadata"]["annotations"].get("kubernetes.io/config.mirror").is_some() {
        return Verdict::Skip;
    }
    if finished(pod) {
        return Verdict::Evict;
    }
    let controller = controller_of(pod);
    if controller.is_some_and(|owner| owner["kind"] == "DaemonSet") {
        match daemon_set {
            DaemonSet::Exists if flags.ignore_daemonsets => {
                return Verdict::SkipWithWarning(DAEMONSET_WARNING.into());
            }
            DaemonSet::Exists => return Verdict::Refuse(DAEMONSET_FATAL.into()),
            // An orphan: nothing would put it back, so it goes with --force, as in kubectl.
            DaemonSet::Gone(_) if flags.force => {}
            DaemonSet::Gone(message) | DaemonSet::Unreadable(message) => return Verdict::Refuse(message),
        }
    }
    let has_empty_dir = pod["spec"]["volumes"]
        .as_array()
        .is_some_and(|volumes| volumes.iter().any(|volume| volume.get("emptyDir").is_some()));
    if has_empty_dir && !flags.delete_emptydir_data {
        return Verdict::Refuse(LOCAL_STORAGE_FATAL.into());
    }
    match (controller, flags.force) {
        (Some(_), _) => Verdict::Evict,
        (None, true) => Verdict::EvictWithWarning(UNMANAGED_WARNING.into()),
        (None, false) => Verdict::Refuse(UNMANAGED_FATAL.into()),
    }
}

/// Groups `(message, pod)` pairs as kubectl prints them: `message: ns/a, ns/b`, messages in
/// the order first seen.
fn grouped(entries: &[(String, String)]) -> Vec<String> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (message, pod) in entries {
        match groups.iter_mut().find(|(m, _)| m == message) {
            Some((_, pods)) => pods.push(pod.clone()),
            None => groups.push((message.clone(), vec![pod.clone()])),
        }
    }
    groups.into_iter().map(|(message, pods)| format!("{message}: {}", pods.join(", "))).collect()
}

/// Runs `drain`.
pub async fn run(ctx: &Connection, args: &DrainArgs) -> Result<()> {
    let timeout = parse_duration(&args.timeout)?;
    crate::mutate::cordon(ctx, &args.node, true).await?;
    let pods_def = resource::resolve("pods")?;
    let daemon_sets = resource::resolve("daemonsets")?;
    let selector = format!("spec.nodeName={}", args.node);
    let list = ctx.get(&with_query(&path(pods_def, None, None), &[("fieldSelector", &selector)])).await?;
    let flags = Flags {
        ignore_daemonsets: args.ignore_daemonsets,
        delete_emptydir_data: args.delete_emptydir_data,
        force: args.force,
    };
    let mut pods = Vec::new();
    let (mut refusals, mut warnings) = (Vec::new(), Vec::new());
    for pod in list["items"].as_array().into_iter().flatten() {
        // Whether the pod's DaemonSet exists, read only for DaemonSet pods.
        let mut daemon_set = DaemonSet::Exists;
        if let Some(owner) = controller_of(pod).filter(|owner| owner["kind"] == "DaemonSet") {
            let ns = pod["metadata"]["namespace"].as_str();
            let name = owner["name"].as_str().unwrap_or_default();
            daemon_set = match ctx.get(&path(daemon_sets, ns, Some(name))).await {
                Ok(_) => DaemonSet::Exists,
                Err(Error::Server { code: 404, message, .. }) => DaemonSet::Gone(message),
                Err(e) => DaemonSet::Unreadable(e.to_string()),
            };
        }
        match verdict(pod, flags, daemon_set) {
            Verdict::Evict => pods.push(pod.clone()),
            Verdict::EvictWithWarning(warning) => {
                warnings.push((warning, pod_key(pod)));
                pods.push(pod.clone());
            }
            Verdict::Skip => {}
            Verdict::SkipWithWarning(warning) => warnings.push((warning, pod_key(pod))),
            Verdict::Refuse(message) => refusals.push((message, pod_key(pod))),
        }
    }
    if !refusals.is_empty() {
        let lines: Vec<String> = grouped(&refusals).into_iter().map(|line| format!("cannot delete {line}")).collect();
        let text = if lines.len() == 1 { lines.join("") } else { format!("[{}]", lines.join(", ")) };
        return Err(Error::msg(text));
    }
    if !warnings.is_empty() {
        eprintln!("Warning: {}", grouped(&warnings).join("; "));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(owner: Option<&str>, phase: &str, empty_dir: bool) -> Value {
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": phase}, "spec": {}});
        if let Some(kind) = owner {
            pod["metadata"]["ownerReferences"] = json!([{"kind": kind, "name": "o", "controller": true}]);
        }
        if empty_dir {
            pod["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
        }
        pod
    }

    #[test]
    fn daemonset_pods_refuse_the_drain_unless_ignored() {
        let ds = pod(Some("DaemonSet"), "Running", false);
        let plain = Flags::default();
        let ignoring = Flags { ignore_daemonsets: true, ..Flags::default() };
        assert_eq!(verdict(&ds, plain, DaemonSet::Exists), Verdict::Refuse(DAEMONSET_FATAL.into()));
        assert_eq!(verdict(&ds, ignoring, DaemonSet::Exists), Verdict::SkipWithWarning(DAEMONSET_WARNING.into()));
        let gone = || DaemonSet::Gone("daemonsets.apps \"o\" not found".into());
        assert_eq!(verdict(&ds, ignoring, gone()), Verdict::Refuse("daemonsets.apps \"o\" not found".into()));
        assert_eq!(verdict(&ds, Flags { force: true, ..ignoring }, gone()), Verdict::Evict);
        assert_eq!(verdict(&pod(Some("DaemonSet"), "Succeeded", false), plain, DaemonSet::Exists), Verdict::Evict);
    }

    #[test]
    fn unmanaged_and_emptydir_pods_need_their_flags() {
        let plain = Flags::default();
        let lone = pod(None, "Running", false);
        assert_eq!(verdict(&lone, plain, DaemonSet::Exists), Verdict::Refuse(UNMANAGED_FATAL.into()));
        let forced = Flags { force: true, ..plain };
        assert_eq!(verdict(&lone, forced, DaemonSet::Exists), Verdict::EvictWithWarning(UNMANAGED_WARNING.into()));
        let scratch = pod(Some("ReplicaSet"), "Running", true);
        assert_eq!(verdict(&scratch, plain, DaemonSet::Exists), Verdict::Refuse(LOCAL_STORAGE_FATAL.into()));
        let deleting = Flags { delete_emptydir_data: true, ..plain };
        assert_eq!(verdict(&scratch, deleting, DaemonSet::Exists), Verdict::Evict);
        let mut mirror = lone.clone();
        mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        assert_eq!(verdict(&mirror, plain, DaemonSet::Exists), Verdict::Skip);
    }

    #[test]
    fn messages_group_pods_by_reason_in_order() {
        let entries = [("a".to_string(), "ns/x".to_string()), ("b".into(), "ns/y".into()), ("a".into(), "ns/z".into())];
        assert_eq!(grouped(&entries), vec!["a: ns/x, ns/z", "b: ns/y"]);
    }
}
